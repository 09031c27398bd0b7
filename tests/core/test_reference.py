"""The NumPy float64 reference against brute-force loops and against networkx."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_npz_graph
from oracle import brute_force, karate, random_batch

import dmon


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("masked", [False, True])
def test_numpy_reference_equals_brute_force(seed: int, masked: bool) -> None:
    x, a, logits, mask = random_batch(seed, masked=masked)
    got = dmon.pool(x, a, logits, mask)
    want = brute_force(x, a, logits, mask)
    for name, g, w in zip(got._fields, got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=name)


def test_standalone_losses_equal_pool() -> None:
    x, a, logits, mask = random_batch(7, masked=True)
    out = dmon.pool(x, a, logits, mask)
    np.testing.assert_allclose(dmon.spectral_loss(a, out.s, mask), out.spectral_loss, rtol=1e-12)
    np.testing.assert_allclose(dmon.orthogonality_loss(out.s, mask), out.ortho_loss, rtol=1e-12)
    np.testing.assert_allclose(dmon.cluster_loss(out.s, mask), out.cluster_loss, rtol=1e-12)


def _one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(labels.max() + 1)[labels]


def _nx_modularity(a: np.ndarray, labels: np.ndarray) -> float:
    nx = pytest.importorskip("networkx")
    g = nx.from_numpy_array(a)
    communities = [set(np.flatnonzero(labels == k).tolist()) for k in np.unique(labels)]
    return float(nx.algorithms.community.modularity(g, communities))


def test_spectral_loss_is_minus_modularity_on_karate() -> None:
    a = karate()
    rng = np.random.default_rng(0)
    nx = pytest.importorskip("networkx")
    club = np.array(
        [d["club"] == "Officer" for _, d in nx.karate_club_graph().nodes(data=True)], dtype=int
    )
    for labels in (club, rng.integers(0, 4, size=len(a))):
        got = float(dmon.spectral_loss(a, _one_hot(labels)))
        assert got == pytest.approx(-_nx_modularity(a, labels), rel=1e-12, abs=1e-14)


def test_spectral_loss_is_minus_weighted_modularity() -> None:
    nx = pytest.importorskip("networkx")
    rng = np.random.default_rng(1)
    _, a, _, _ = random_batch(3, b=1, n=30)
    a = a[0]
    labels = rng.integers(0, 3, size=30)
    g = nx.from_numpy_array(a)  # edge attribute "weight"
    communities = [set(np.flatnonzero(labels == k).tolist()) for k in range(3)]
    want = nx.algorithms.community.modularity(g, communities, weight="weight")
    assert float(dmon.spectral_loss(a, _one_hot(labels))) == pytest.approx(-want, rel=1e-12)


@pytest.mark.parametrize("name", ["cora"])
def test_spectral_loss_is_minus_modularity_on_real_graph(name: str) -> None:
    a, labels = load_npz_graph(name)
    got = float(dmon.spectral_loss(a, _one_hot(labels)))
    assert got == pytest.approx(-_nx_modularity(a, labels), rel=1e-10)
    assert -got > 0.5  # Cora's classes are strongly modular (sanity of the loader too)
