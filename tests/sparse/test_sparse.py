"""Sparse adjacency on every backend: equal to the dense path (same graphs densified) for
all six outputs and for gradients w.r.t. logits, x and edge weights; several graphs in
one sparse batch; compiled; what a graph remembers. Its bad input is in the table of
`tests/support/bad_inputs.py`; its products alone: `test_sparse_products.py`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    AUTODIFF,
    TORCH_DEVICE,
    assert_close,
    compiled,
    edges,
    gradient,
    pool_objective,
    require,
    sparse_graph,
    to_backend,
    to_numpy,
)
from oracle import random_batch

import dmon


def _native(backend: str, a: np.ndarray, form: str):
    if backend == "numpy":
        sp = pytest.importorskip("scipy.sparse")
        return {"csr": sp.csr_matrix, "coo": sp.coo_matrix}[form](a)
    if backend == "torch":
        t = require("torch").from_numpy(a).to(TORCH_DEVICE).to_sparse()
        return t if form == "coo" else t.to_sparse_csr()
    if backend == "tensorflow":
        return require("tensorflow").sparse.from_dense(a)
    from jax.experimental import sparse

    return sparse.BCOO.fromdense(a)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_edge_index_equals_dense(backend: str, dtype: str) -> None:
    x, a, logits, _ = random_batch(0, b=1, n=15)
    want = dmon.pool(x, a, logits)
    got = dmon.pool(
        to_backend(backend, x[0], dtype),
        sparse_graph(backend, a[0], dtype),
        to_backend(backend, logits[0], dtype),
    )
    assert to_numpy(got.s).shape == (15, 4)
    assert_close(got.s, to_numpy(want.s)[0], dtype, "s")
    for name in ("x", "adj", "spectral_loss", "ortho_loss", "cluster_loss"):
        assert_close(getattr(got, name), getattr(want, name), dtype, name)


@pytest.mark.parametrize("form", ["coo", "csr"])
def test_native_sparse_equals_dense(backend: str, form: str) -> None:
    if form == "csr" and backend in ("tensorflow", "jax"):
        pytest.skip(f"{backend} has one native sparse format")
    x, a, logits, _ = random_batch(1, b=1, n=13)
    want = dmon.pool(x, a, logits)
    got = dmon.pool(
        to_backend(backend, x[0]), _native(backend, a[0], form), to_backend(backend, logits[0])
    )
    assert_close(got.s, to_numpy(want.s)[0], "float64")
    for g, w in zip(got[1:], want[1:], strict=True):
        assert_close(g, w, "float64")


def _block_diagonal(seed: int):
    """Three graphs of 9, 14 and 11 nodes: one sparse batch and the same graphs padded."""
    rng = np.random.default_rng(seed)
    sizes = [9, 14, 11]
    n_max, total = max(sizes), sum(sizes)
    x_pad, a_pad, l_pad, mask = (
        np.zeros((3, n_max, 5)),
        np.zeros((3, n_max, n_max)),
        np.zeros((3, n_max, 4)),
        np.zeros((3, n_max), bool),
    )
    a_big = np.zeros((total, total))
    start = 0
    for g, n in enumerate(sizes):
        _, a, _, _ = random_batch(seed + g, b=1, n=n)
        a_pad[g, :n, :n] = a[0]
        a_big[start : start + n, start : start + n] = a[0]
        mask[g, :n] = True
        start += n
    x_pad[mask] = rng.normal(size=(total, 5))
    l_pad[mask] = 2 * rng.normal(size=(total, 4))
    batch = np.repeat(np.arange(3), sizes)
    return (x_pad, a_pad, l_pad, mask), (x_pad[mask], a_big, l_pad[mask], batch)


def test_batch_of_graphs_equals_dense_masked_path(backend: str) -> None:
    dense, (x, a, logits, batch) = _block_diagonal(3)
    want = dmon.pool(*dense)
    ei, w = edges(a)
    graph = dmon.SparseGraph(
        to_backend(backend, ei), to_backend(backend, w), batch=to_backend(backend, batch)
    )
    got = dmon.pool(to_backend(backend, x), graph, to_backend(backend, logits))
    assert_close(got.s, to_numpy(want.s)[dense[3]], "float64", "s")
    for name in ("x", "adj", "spectral_loss", "ortho_loss", "cluster_loss"):
        assert_close(getattr(got, name), getattr(want, name), "float64", name)
    # the loss functions take the same sparse batch
    assert_close(dmon.spectral_loss(graph, got.s), want.spectral_loss, "float64")


def test_unsorted_and_duplicate_edges(backend: str) -> None:
    """Edges in any order; a repeated (i, j) adds its weights, as a sparse matrix does."""
    x, a, logits, _ = random_batch(8, b=1, n=11)
    ei, w = edges(a[0])
    rng = np.random.default_rng(0)
    dup = rng.choice(ei.shape[1], size=5, replace=False)
    ei2 = np.concatenate([ei, ei[:, dup]], axis=1)
    w2 = np.concatenate([w, w[dup]])
    order = rng.permutation(ei2.shape[1])
    a2 = a[0].copy()
    np.add.at(a2, (ei[0, dup], ei[1, dup]), w[dup])
    want = dmon.pool(x, a2[None], logits)
    got = dmon.pool(
        to_backend(backend, x[0]),
        dmon.SparseGraph(to_backend(backend, ei2[:, order]), to_backend(backend, w2[order])),
        to_backend(backend, logits[0]),
    )
    for g, v in zip(got[1:], want[1:], strict=True):
        assert_close(g, v, "float64")


@pytest.mark.parametrize("fw", AUTODIFF)
@pytest.mark.parametrize("shuffled", [False, True])
def test_gradients_equal_dense(fw: str, shuffled: bool) -> None:
    require(fw)
    x, a, logits, _ = random_batch(4, b=1, n=12)
    ei, w = edges(a[0])
    if shuffled:  # unsorted rows: the torch CSR path sorts them (and the weights' grads follow)
        order = np.random.default_rng(1).permutation(ei.shape[1])
        ei, w = ei[:, order], w[order]
    eib = to_backend(fw, ei)
    sparse = gradient(
        fw,
        lambda lg, xx, ww: pool_objective(xx, dmon.SparseGraph(eib, ww), lg),
        to_backend(fw, logits[0]),
        to_backend(fw, x[0]),
        to_backend(fw, w),
    )
    dense = gradient(
        fw,
        lambda lg, xx, aa: pool_objective(xx, aa, lg),
        to_backend(fw, logits[0]),
        to_backend(fw, x[0]),
        to_backend(fw, a[0]),
    )
    np.testing.assert_allclose(sparse[0], dense[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sparse[1], dense[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        sparse[2], dense[2][ei[0], ei[1]], rtol=1e-10, atol=1e-12
    )  # d/d edge weight
    assert np.abs(sparse[2]).max() > 1e-3


@pytest.mark.parametrize("fw", AUTODIFF)
@pytest.mark.parametrize("batched", [False, True])
def test_compiled_sparse(fw: str, batched: bool) -> None:
    require(fw)
    dense, (x, a, logits, batch) = _block_diagonal(5)
    if not batched:
        x, a, logits, batch = x[:9], a[:9, :9], logits[:9], None
        want = dmon.pool(x, a, logits)
    else:
        want = dmon.pool(*dense)
    ei, w = edges(a)
    args = [to_backend(fw, v) for v in (x, ei, w, logits)]
    b = None if batch is None else to_backend(fw, batch)

    def fn(x, ei, w, lg, b=b):
        graph = dmon.SparseGraph(
            ei,
            w,
            batch=b,
            num_graphs=None if b is None else 3,
            max_num_nodes=None if b is None else 14,
        )
        return tuple(dmon.pool(x, graph, lg))

    got = compiled(fw, fn)(*args)
    for name, g, v in zip(dmon.DMoNOutput._fields[1:], got[1:], want[1:], strict=True):
        assert_close(g, v, "float64", name)


def test_tf_function_without_xla_uses_sparse_matmul() -> None:
    tf = require("tensorflow")
    x, a, logits, _ = random_batch(6, b=1, n=10)
    want = dmon.pool(x, a, logits)
    ei, w = edges(a[0])
    fn = tf.function(lambda x, ei, w, lg: tuple(dmon.pool(x, dmon.SparseGraph(ei, w), lg)))
    got = fn(*(tf.constant(v) for v in (x[0], ei, w, logits[0])))
    for g, v in zip(got[1:], want[1:], strict=True):
        assert_close(g, v, "float64")


@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_graph_captured_by_tf_function_and_used_eagerly(jit_compile: bool) -> None:
    """One SparseGraph used eagerly (which caches its indices) and inside a tf.function
    that captures it, in either order: all equal to the dense path (the cache is neither
    read nor written while tracing, so no traced tensor escapes its graph)."""
    tf = require("tensorflow")
    x, a, logits, _ = random_batch(8, b=1, n=10)
    want = dmon.pool(x, a, logits)
    ei, w = edges(a[0])
    xt, lt = tf.constant(x[0]), tf.constant(logits[0])
    for traced_first in (True, False):
        g = dmon.SparseGraph(tf.constant(ei), tf.constant(w))
        fn = tf.function(lambda x, lg, g=g: tuple(dmon.pool(x, g, lg)), jit_compile=jit_compile)
        calls = [lambda fn=fn: fn(xt, lt), lambda g=g: dmon.pool(xt, g, lt)] * 2
        for call in calls if traced_first else calls[::-1]:
            for u, v in zip(call()[1:], want[1:], strict=True):
                assert_close(u, v, "float64")


def test_jax_jit_takes_a_sparse_graph_argument() -> None:
    jax = require("jax")
    dense, (x, a, logits, batch) = _block_diagonal(7)
    ei, w = edges(a)
    graph = dmon.SparseGraph(
        jax.numpy.asarray(ei),
        jax.numpy.asarray(w),
        batch=jax.numpy.asarray(batch),
        num_graphs=3,
        max_num_nodes=14,
    )
    got = jax.jit(lambda x, g, lg: dmon.pool(x, g, lg).spectral_loss)(
        jax.numpy.asarray(x), graph, jax.numpy.asarray(logits)
    )
    assert_close(got, dmon.pool(*dense).spectral_loss, "float64")


def test_large_sparse_graph_forms_nothing_quadratic() -> None:
    """N = 200,000 nodes: a dense N x N float64 would be 320 GB."""
    import tracemalloc

    n = 200_000
    rng = np.random.default_rng(0)
    src = np.arange(n)
    ei = np.concatenate([np.stack([src, (src + 1) % n]), np.stack([(src + 1) % n, src])], axis=1)
    x, logits = rng.normal(size=(n, 4)), rng.normal(size=(n, 8))
    tracemalloc.start()
    out = dmon.pool(x, dmon.SparseGraph(ei), logits)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e6, peak  # O(E + N·C + N·F): tens of MB here
    assert np.isfinite(out.spectral_loss)
    # a ring: every node has degree 2, 2m = 2N
    want = -(
        np.trace(out.s.T @ (np.roll(out.s, 1, 0) + np.roll(out.s, -1, 0)))
        - np.sum((2 * out.s.sum(0)) ** 2) / (2 * n)
    ) / (2 * n)
    np.testing.assert_allclose(out.spectral_loss, want, rtol=1e-10)


X, A, LOGITS, _ = random_batch(0, b=1, n=6)
EI, W = edges(A[0])


def test_batch_under_jit_needs_static_sizes() -> None:
    jax = require("jax")
    batch = jax.numpy.zeros(6, dtype=jax.numpy.int32)
    with pytest.raises(
        ValueError, match=r"pass SparseGraph\(\.\.\., num_graphs=B, max_num_nodes=M\)"
    ):
        jax.jit(
            lambda b: (
                dmon.pool(
                    jax.numpy.asarray(X[0]),
                    dmon.SparseGraph(jax.numpy.asarray(EI), batch=b),
                    jax.numpy.asarray(LOGITS[0]),
                ).spectral_loss
            )
        )(batch)


def test_a_reused_graph_is_checked_again_after_new_edges(backend: str) -> None:
    """What a graph remembers from its first call (ids checked, torch's CSR index) is
    dropped when a new edge_index is assigned: the new ids are checked and used."""
    a = A[0]
    x, logits = (to_backend(backend, v[0]) for v in (X, LOGITS))
    g = sparse_graph(backend, a)
    first = dmon.pool(x, g, logits)
    g.edge_index = to_backend(backend, EI + 10)
    with pytest.raises(ValueError, match=r"`edge_index` holds node id 1[0-9], out of range"):
        dmon.pool(x, g, logits)
    # A graph with the same edges but a new order: same result as the first call.
    ei, w = edges(a)
    order = np.random.default_rng(0).permutation(ei.shape[1])
    g.edge_index, g.edge_weight = to_backend(backend, ei[:, order]), to_backend(backend, w[order])
    again = dmon.pool(x, g, logits)
    for u, v in zip(first, again, strict=True):
        assert_close(to_numpy(v), to_numpy(u), "float64")


def test_sparse_spectral_loss_of_any_assignment(backend: str) -> None:
    """`spectral_loss` takes any `s` (rows need not sum to 1: a partial or scaled
    assignment), so 2m must come from the degrees, not from Σ Sᵀd. Checked against the
    formula written out in NumPy."""
    rng = np.random.default_rng(11)
    a = A[0]
    s = rng.random((a.shape[0], 3)) * (rng.random((a.shape[0], 1)) < 0.6)  # rows: 0 or ≠ 1
    d = a.sum(1)
    two_m = d.sum()
    want = -(np.trace(s.T @ a @ s) - np.sum((s.T @ d) ** 2) / two_m) / two_m
    got = dmon.spectral_loss(sparse_graph(backend, a), to_backend(backend, s))
    assert_close(got, np.asarray(want), "float64")


def test_a_jax_graph_is_a_jit_argument_before_any_dmon_call() -> None:
    """A fresh process: a `SparseGraph` of JAX arrays passed to `jax.jit` as the first
    thing dmon sees (the JAX backend not yet started) is a pytree, and the jitted spectral
    loss is the formula's."""
    require("jax")
    code = (
        "import jax, jax.numpy as jnp, numpy as np\n"
        "import dmon\n"
        "ei = jnp.asarray([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])\n"
        "g = dmon.SparseGraph(ei, symmetric=True)\n"
        "x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)\n"
        "s = jnp.asarray(np.random.default_rng(1).normal(size=(4, 2)), jnp.float32)\n"
        "f = jax.jit(lambda g, x, s: dmon.pool(x, g, s).spectral_loss)\n"
        "jitted = float(f(g, x, s))\n"
        # the oracle: -(Tr(SᵀAS) - ‖Sᵀd‖²/2m)/2m by hand, in float64 NumPy
        "a = np.zeros((4, 4)); a[np.asarray(ei[0]), np.asarray(ei[1])] = 1\n"
        "e = np.exp(np.asarray(s, np.float64)); sm = e / e.sum(1, keepdims=True)\n"
        "d = a.sum(1); m2 = d.sum(); vol = sm.T @ d\n"
        "print(jitted, -(np.trace(sm.T @ a @ sm) - vol @ vol / m2) / m2)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    jitted, want = map(float, out.stdout.split())
    np.testing.assert_allclose(jitted, want, rtol=1e-5)
