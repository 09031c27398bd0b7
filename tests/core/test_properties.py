"""Properties that hold whatever the numbers, on every backend: equivariance, batching
identical graphs, the bounds reached, and the documented finite results for degenerate
graphs. The same properties over generated graphs (the bounds, a batch of different
graphs, sparse = dense, scale invariance) are `test_hypothesis.py`'s, on NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, to_backend, to_numpy
from oracle import brute_force, random_batch

import dmon


@pytest.mark.parametrize("seed", range(3))
def test_node_permutation(backend: str, seed: int) -> None:
    x, a, logits, mask = random_batch(seed, masked=True)
    perm = np.random.default_rng(seed).permutation(x.shape[1])
    out = dmon.pool(*(to_backend(backend, v) for v in (x, a, logits, mask)))
    pm = dmon.pool(
        *(
            to_backend(backend, v)
            for v in (x[:, perm], a[:, perm][:, :, perm], logits[:, perm], mask[:, perm])
        )
    )
    assert_close(pm.s, to_numpy(out.s)[:, perm], "float64")
    for name in ("x", "adj", "spectral_loss", "ortho_loss", "cluster_loss"):  # invariant
        assert_close(getattr(pm, name), getattr(out, name), "float64", name)


def test_batch_of_identical_graphs_equals_one_graph(backend: str) -> None:
    x, a, logits, _ = random_batch(8, b=1)
    one = dmon.pool(*(to_backend(backend, v) for v in (x, a, logits)))
    many = dmon.pool(*(to_backend(backend, np.repeat(v, 5, axis=0)) for v in (x, a, logits)))
    for name, g, w in zip(one._fields, many, one, strict=True):
        g, w = to_numpy(g), to_numpy(w)
        assert_close(g, np.broadcast_to(w, g.shape) if g.ndim else w, "float64", name)


def test_bounds_are_reached() -> None:
    """Cluster loss √C−1 when all nodes share a cluster, 0 when perfectly balanced."""
    x, a, _, _ = random_batch(0, b=1, n=12, c=4)
    collapsed = np.zeros((1, 12, 4))
    collapsed[..., 0] = 50.0
    assert float(dmon.pool(x, a, collapsed).cluster_loss) == pytest.approx(1.0, abs=1e-12)
    balanced = np.full((1, 12, 4), -50.0)
    balanced[0, np.arange(12), np.arange(12) % 4] = 50.0
    out = dmon.pool(x, a, balanced)
    assert float(out.cluster_loss) == pytest.approx(0.0, abs=1e-12)
    assert float(out.ortho_loss) == pytest.approx(0.0, abs=1e-12)


def test_graph_without_edges_and_fully_masked_graph(backend: str) -> None:
    x, a, logits, _ = random_batch(9, b=3)
    a[1] = 0.0
    mask = np.ones(a.shape[:2], dtype=bool)
    mask[2] = False
    out = dmon.pool(*(to_backend(backend, v) for v in (x, a, logits, mask)))
    for name, v in zip(out._fields, out, strict=True):
        assert np.all(np.isfinite(to_numpy(v))), name
    assert_close(out.spectral_loss, brute_force(x, a, logits, mask)[3], "float64")
    # per graph: the edgeless and the empty graph contribute 0 to every loss
    solo = dmon.pool(x[:1], a[:1], logits[:1])
    assert_close(out.spectral_loss, to_numpy(solo.spectral_loss) / 3, "float64")
    assert_close(
        out.cluster_loss,
        (to_numpy(solo.cluster_loss) + to_numpy(dmon.cluster_loss(to_numpy(out.s)[1:2]))) / 3,
        "float64",
    )
    np.testing.assert_array_equal(to_numpy(out.s)[2], 0.0)
    np.testing.assert_array_equal(to_numpy(out.adj)[1:], 0.0)


def test_mask_values_count_as_valid_when_nonzero(backend: str) -> None:
    """A 0/1 float mask, an int mask and a bool mask mean the same; any non-zero is valid."""
    x, a, logits, mask = random_batch(12, masked=True)
    want = dmon.pool(x, a, logits, mask)
    for m in (mask.astype(np.float64), mask.astype(np.int32), mask * 0.5):
        got = dmon.pool(*(to_backend(backend, v) for v in (x, a, logits)), to_backend(backend, m))
        for name, g, w in zip(want._fields, got, want, strict=True):
            assert_close(g, w, "float64", name)
