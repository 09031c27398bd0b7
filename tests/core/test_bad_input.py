"""Bad input to the API, table-driven on every installed backend: each case gets a dmon
`ValueError`/`TypeError` that names the function and the argument, raised before any
framework error (no chained cause); and degenerate or non-finite input gets its
documented result (docs/reliability.md): finite where the input is valid, NaN where it
is not, never a plausible finite number made from NaN.

The expected values come from the float64 loops of `oracle.brute_force` or from the
definitions, never from dmon itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from bad_inputs import DENSE_CASES, LOGITS, MASK, A, X, a1, l1, x1
from bad_sparse_inputs import SPARSE_CASES
from helpers import gradient, require, to_backend, to_numpy
from oracle import brute_force

import dmon

CASES = DENSE_CASES + SPARSE_CASES  # the one table of bad input


@pytest.mark.parametrize("what,call,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_dmon_error(
    backend: str, what: str, call, exc: type, pattern: str
) -> None:
    with pytest.raises(exc, match=pattern) as info:
        call(lambda a: to_backend(backend, a), backend)
    assert info.value.__cause__ is None, "translated from a framework error"
    assert str(info.value).startswith("dmon."), str(info.value)


def test_non_square_native_sparse_matrix(backend: str) -> None:
    sp = pytest.importorskip("scipy.sparse")
    native = {
        "numpy": lambda: sp.csr_matrix(np.ones((6, 7))),
        "torch": lambda: require("torch").ones(6, 7, dtype=require("torch").float64).to_sparse(),
        "tensorflow": lambda: require("tensorflow").sparse.from_dense(np.ones((6, 7))),
        "jax": lambda: __import__("jax.experimental.sparse").experimental.sparse.BCOO.fromdense(
            np.ones((6, 7))
        ),
    }[backend]()
    with pytest.raises(
        ValueError, match=r"dmon.pool: a sparse `adj` must be square \(N, N\); got shape \(6, 7\)"
    ):
        dmon.pool(to_backend(backend, x1), native, to_backend(backend, l1))


def test_scipy_to_another_backend_must_be_square(backend: str) -> None:
    sp = pytest.importorskip("scipy.sparse")
    with pytest.raises(
        ValueError, match=r"sparse `adj` must be square \(N, N\); got shape \(6, 7\)"
    ):
        dmon.pool(x1, sp.csr_matrix(np.ones((6, 7))), l1, backend=backend)


# --- documented results for degenerate and non-finite input ---------------------------


def _all(out: dmon.DMoNOutput) -> list[np.ndarray]:
    return [to_numpy(v).astype(np.float64) for v in out]


def test_nan_logits_give_nan_losses_never_plausible_numbers(backend: str) -> None:
    """The old guards (`den > 0`) turned NaN logits into spectral 0, ortho 1, cluster -1."""
    t = lambda a: to_backend(backend, a)  # noqa: E731
    for logits in (LOGITS * np.nan, np.where(np.arange(4) == 0, np.nan, LOGITS)):
        out = _all(dmon.pool(t(X), t(A), t(logits), t(MASK)))
        assert all(np.isnan(v) for v in out[3:]), out[3:]
        assert np.isnan(out[0][MASK]).any()


def test_nan_or_inf_adjacency_never_gives_a_finite_spectral_loss(backend: str) -> None:
    s = np.full((6, 4), 0.25)
    for bad in (np.nan, np.inf):
        a = a1.copy()
        a[0, 1] = a[1, 0] = bad
        assert np.isnan(
            to_numpy(dmon.spectral_loss(to_backend(backend, a), to_backend(backend, s)))
        )
        out = _all(dmon.pool(*(to_backend(backend, v) for v in (x1, a, l1))))
        assert np.isnan(out[3]), out[3]


def test_inf_features_reach_the_pooled_features(backend: str) -> None:
    x = x1.copy()
    x[2, 1] = np.inf
    out = _all(dmon.pool(*(to_backend(backend, v) for v in (x, a1, l1))))
    assert not np.all(np.isfinite(out[1]))
    assert np.all(np.isfinite(out[3]))  # the losses do not read x


def test_masked_padding_is_never_read(backend: str) -> None:
    """NaN/Inf in masked-out rows of x and logits: every output and every gradient equals
    the run with zeros there (the mask selects, it does not multiply)."""
    x, logits = X.copy(), LOGITS.copy()
    x[~MASK], logits[~MASK] = np.nan, np.inf
    clean_x, clean_l = np.where(MASK[..., None], X, 0.0), np.where(MASK[..., None], LOGITS, 0.0)
    t = lambda a: to_backend(backend, a)  # noqa: E731
    got, want = (
        _all(dmon.pool(t(x), t(A), t(logits), t(MASK))),
        brute_force(clean_x, A, clean_l, MASK),
    )
    for name, g, w in zip(dmon.DMoNOutput._fields, got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=name)
    if backend == "numpy":
        return

    fw = require(backend)
    sum_all = fw.reduce_sum if backend == "tensorflow" else (lambda v: v.sum())

    def total(xx: Any, ll: Any) -> Any:
        out = dmon.pool(xx, t(A), ll, t(MASK))
        return sum_all(out.x) + sum_all(out.adj) + out[3] + out[4] + out[5]

    grads = gradient(backend, total, t(x), t(logits))
    for g in grads:
        assert np.all(np.isfinite(g))
    clean = gradient(backend, total, t(clean_x), t(clean_l))
    for g, c in zip(grads, clean, strict=True):
        np.testing.assert_allclose(g, c, rtol=1e-10, atol=1e-12)


def test_empty_graph_n_0(backend: str) -> None:
    """N = 0 nodes: every loss is 0 (as a graph with no valid node), shapes as usual."""
    t = lambda a: to_backend(backend, a)  # noqa: E731
    for adj in (t(np.zeros((0, 0))), dmon.SparseGraph(t(np.zeros((2, 0), np.int64)))):
        out = dmon.pool(t(np.zeros((0, 3))), adj, t(np.zeros((0, 4))))
        assert to_numpy(out.x).shape == (1, 4, 3) and to_numpy(out.adj).shape == (1, 4, 4)
        assert [float(to_numpy(v)) for v in out[3:]] == [0.0, 0.0, 0.0]
    assert float(to_numpy(dmon.cluster_loss(t(np.zeros((2, 0, 3)))))) == 0.0


def test_scale_invariance_in_float32(backend: str) -> None:
    """Modularity does not depend on the unit of the weights: float32 weights of 1e-30
    and 1e20 give the loss of weights of 1 (they underflowed and overflowed before)."""
    ref = brute_force(X, A, LOGITS, MASK)[3]
    for scale in (1e-30, 1e-20, 1e20, 1e30):
        args = (X, A * scale, LOGITS, MASK)
        out = dmon.pool(
            *(
                to_backend(backend, v.astype(np.float32) if v.dtype == np.float64 else v)
                for v in args
            )
        )
        assert math.isclose(float(to_numpy(out.spectral_loss)), ref, rel_tol=1e-5, abs_tol=1e-6), (
            scale
        )


def test_negative_weights_under_compilation_give_nan(framework: str) -> None:
    """Values are unknown while tracing, so the eager check cannot run: the spectral loss
    of a graph with negative degrees is NaN there, never a plausible number."""
    from helpers import compiled

    if framework == "torch":
        pytest.skip("torch.compile of the whole pool is covered elsewhere; slow here")
    fn = compiled(framework, lambda x, a, lg: dmon.pool(x, a, lg).spectral_loss)
    got = to_numpy(fn(*(to_backend(framework, v) for v in (X, -A, LOGITS))))
    assert np.isnan(got)
