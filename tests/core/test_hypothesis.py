"""Property-based tests (hypothesis) over random valid graphs, degenerate ones included
(no edges, self-loops, isolated nodes, fully masked graphs, near one-hot assignments).

Each property is checked against an independent oracle: the loops of
`oracle.brute_force`, networkx's modularity, the dense path for the sparse one, each
graph alone for a batch, and the loss's own scale for scale invariance. Example counts
are bounded and derandomized (`EXAMPLES`), so CI is fast and repeatable.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import AUTODIFF, gradient, installed, require, to_backend, to_numpy

import dmon
from dmon import metrics

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
from hypothesis import HealthCheck, given, settings  # noqa: E402
from oracle import brute_force  # noqa: E402

EXAMPLES = 40
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def graphs(draw, max_nodes: int = 9, batch: int = 1, self_loops: bool = True):
    """`(x, adj, logits, mask)` for `batch` graphs of `n` node slots: symmetric
    non-negative weights (sometimes none), optional self-loops, logits from near-uniform
    to near one-hot, and a mask that may hide every node of a graph."""
    n = draw(st.integers(1, max_nodes))
    c = draw(st.integers(2, 5))
    f = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    density = draw(st.sampled_from([0.0, 0.2, 0.5, 1.0]))
    a = (rng.random((batch, n, n)) < density) * rng.uniform(0.1, 5.0, (batch, n, n))
    a = np.triu(a, 1)
    a = a + a.transpose(0, 2, 1)
    if self_loops and draw(st.booleans()):
        a = a + np.eye(n) * (rng.random((batch, 1, n)) < 0.5)
    scale = draw(st.sampled_from([0.1, 1.0, 10.0, 60.0]))
    logits = scale * rng.normal(size=(batch, n, c))
    x = rng.normal(size=(batch, n, f))
    mask = None
    if draw(st.booleans()):
        mask = rng.random((batch, n)) < draw(st.sampled_from([0.0, 0.5, 0.9]))
    return x, a, logits, mask


def _installed_autodiff() -> list[str]:
    return [b for b in AUTODIFF if installed(b)]


@SETTINGS
@given(graphs(batch=3))
def test_finite_and_equal_to_the_loops(g) -> None:
    x, a, logits, mask = g
    out = dmon.pool(x, a, logits, mask)
    want = brute_force(x, a, logits, mask)
    for name, got, w in zip(out._fields, out, want, strict=True):
        assert np.all(np.isfinite(got)), name
        np.testing.assert_allclose(got, w, rtol=1e-9, atol=1e-11, err_msg=name)


@SETTINGS
@given(graphs(batch=2))
def test_loss_ranges(g) -> None:
    x, a, logits, mask = g
    out = dmon.pool(x, a, logits, mask)
    c = logits.shape[-1]
    assert -1.0 - 1e-12 <= float(out.spectral_loss) <= 0.5 + 1e-12
    assert -1e-12 <= float(out.ortho_loss) <= math.sqrt(2) + 1e-12
    assert -1e-12 <= float(out.cluster_loss) <= math.sqrt(c) - 1 + 1e-12


@SETTINGS
@given(graphs(max_nodes=12), st.sampled_from([0.5, 1.0, 2.0]))
def test_modularity_against_networkx(g, resolution) -> None:
    """One convention: `-spectral_loss` of a one-hot `S` is `metrics.modularity(A)`, which
    counts `A_ii` once; networkx counts a self-loop twice, so its value is
    `metrics.modularity(A + diag(A))`."""
    nx = pytest.importorskip("networkx")
    _, a, logits, _ = g
    a = a[0]
    labels = logits[0].argmax(-1)
    one_hot = np.eye(logits.shape[-1])[labels]
    q = metrics.modularity(a, labels)
    assert -float(dmon.spectral_loss(a, one_hot)) == pytest.approx(q, abs=1e-12)
    graph = nx.from_numpy_array(a)
    parts = [set(np.flatnonzero(labels == k)) for k in np.unique(labels)]
    if graph.number_of_edges():
        want = nx.community.modularity(graph, parts, resolution=resolution)
        got = metrics.modularity(a + np.diag(np.diag(a)), labels, resolution=resolution)
        assert got == pytest.approx(want, abs=1e-12)


@SETTINGS
@given(graphs(max_nodes=10))
def test_sparse_equals_dense(backend, g) -> None:
    x, a, logits, _ = g
    x, a, logits = x[0], a[0], logits[0]
    edges = np.array(np.nonzero(a)).astype(np.int64)
    t = lambda v: to_backend(backend, v)  # noqa: E731
    sparse = dmon.pool(t(x), dmon.SparseGraph(t(edges), t(a[edges[0], edges[1]])), t(logits))
    dense = brute_force(x[None], a[None], logits[None])
    for name, got, want in zip(sparse._fields, sparse, dense, strict=True):
        got = to_numpy(got)
        np.testing.assert_allclose(
            got.reshape(np.shape(want)), want, rtol=1e-9, atol=1e-11, err_msg=name
        )


@SETTINGS
@given(st.lists(graphs(max_nodes=6), min_size=1, max_size=4))
def test_a_batch_equals_its_graphs_one_by_one(gs) -> None:
    """A block-diagonal `SparseGraph` with a `batch` vector, and the dense padded batch
    with a mask, both equal each graph pooled alone (losses: the mean over graphs)."""
    c = min(g[2].shape[-1] for g in gs)
    f = min(g[0].shape[-1] for g in gs)
    parts = [(x[0, :, :f], a[0], lg[0, :, :c]) for x, a, lg, _ in gs]
    alone = [dmon.pool(*p) for p in parts]
    sizes = [p[0].shape[0] for p in parts]
    offsets = np.cumsum([0, *sizes[:-1]])
    edges = np.concatenate(
        [np.array(np.nonzero(a)) + o for (_, a, _), o in zip(parts, offsets, strict=True)], axis=1
    ).astype(np.int64)
    weights = np.concatenate([a[np.nonzero(a)] for _, a, _ in parts])
    batch = np.repeat(np.arange(len(parts)), sizes)
    x = np.concatenate([p[0] for p in parts])
    logits = np.concatenate([p[2] for p in parts])
    together = dmon.pool(x, dmon.SparseGraph(edges, weights, batch), logits)
    np.testing.assert_allclose(together.s, np.concatenate([o.s[0] for o in alone]), atol=1e-12)
    for i, o in enumerate(alone):
        np.testing.assert_allclose(together.x[i], o.x[0], rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(together.adj[i], o.adj[0], rtol=1e-9, atol=1e-11)
    for k in (3, 4, 5):
        assert float(together[k]) == pytest.approx(np.mean([float(o[k]) for o in alone]), abs=1e-11)
    # the dense padded batch with a mask
    m = max(sizes)
    xd, ad, ld = (
        np.zeros((len(parts), m, f)),
        np.zeros((len(parts), m, m)),
        np.zeros((len(parts), m, c)),
    )
    mask = np.zeros((len(parts), m), bool)
    for i, (xi, ai, li) in enumerate(parts):
        k = xi.shape[0]
        xd[i, :k], ad[i, :k, :k], ld[i, :k], mask[i, :k] = xi, ai, li, True
    padded = dmon.pool(xd, ad, ld, mask)
    for k in (1, 2, 3, 4, 5):
        np.testing.assert_allclose(padded[k], together[k], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("framework", _installed_autodiff() or ["none"])
@SETTINGS
@given(g=graphs(batch=2))
def test_gradients_are_finite(framework, g) -> None:
    if framework == "none":
        pytest.skip("needs torch, tensorflow or jax")
    require(framework)
    x, a, logits, mask = g
    t = lambda v: to_backend(framework, v)  # noqa: E731
    fw = require(framework)
    sum_all = fw.reduce_sum if framework == "tensorflow" else (lambda v: v.sum())

    def total(xx, ll, aa):
        out = dmon.pool(xx, aa, ll, None if mask is None else t(mask))
        return sum_all(out.x) + sum_all(out.adj) + out[3] + out[4] + out[5]

    for grad in gradient(framework, total, t(x), t(logits), t(a)):
        assert np.all(np.isfinite(grad))


@SETTINGS
@given(graphs(max_nodes=10), st.floats(-100, 100))
def test_spectral_loss_is_scale_invariant(g, exponent) -> None:
    _, a, logits, mask = g
    s = dmon.pool(np.zeros((*logits.shape[:2], 1)), a, logits, mask).s
    ref = float(dmon.spectral_loss(a, s, mask))
    scale = 10.0**exponent
    assert float(dmon.spectral_loss(a * scale, s, mask)) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    if abs(exponent) <= 30:  # float32 holds 1e±30 weights times degrees of at most ~50
        got32 = float(
            dmon.spectral_loss(a.astype(np.float32) * np.float32(scale), s.astype(np.float32), mask)
        )
        assert got32 == pytest.approx(ref, rel=1e-4, abs=1e-5)
