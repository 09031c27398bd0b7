"""dmon.metrics against networkx, scikit-learn and brute force, on real and random graphs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import load_npz_graph
from oracle import karate, random_batch
from scipy import sparse

from dmon import metrics

nx = pytest.importorskip("networkx")


def _communities(labels: np.ndarray) -> list[set[int]]:
    return [set(np.flatnonzero(labels == k).tolist()) for k in np.unique(labels)]


def _graphs():
    rng = np.random.default_rng(0)
    a = karate()
    yield "karate", a, rng.integers(0, 3, len(a))
    _, w, _, _ = random_batch(1, b=1, n=40)
    yield "weighted", w[0], rng.integers(0, 5, 40)


@pytest.mark.parametrize(
    "name,a,labels", list(_graphs()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_modularity_and_coverage_equal_networkx(name, a, labels) -> None:
    g = nx.from_numpy_array(a)
    comms = _communities(labels)
    assert metrics.modularity(sparse.csr_matrix(a), labels) == pytest.approx(
        nx.community.modularity(g, comms, weight="weight"), rel=1e-12
    )
    assert metrics.modularity(a, labels, resolution=0.5) == pytest.approx(
        nx.community.modularity(g, comms, weight="weight", resolution=0.5), rel=1e-12
    )
    if name == "karate":  # networkx's coverage counts edges, unweighted
        coverage, _ = nx.community.partition_quality(g, comms)
        assert metrics.coverage(a, labels) == pytest.approx(coverage, rel=1e-12)


def test_modularity_on_cora_equals_networkx() -> None:
    a, labels = load_npz_graph("cora")
    g = nx.from_numpy_array(a)
    assert metrics.modularity(sparse.csr_matrix(a), labels) == pytest.approx(
        nx.community.modularity(g, _communities(labels)), rel=1e-10
    )


@pytest.mark.parametrize(
    "name,a,labels", list(_graphs()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_conductance_brute_force(name, a, labels) -> None:
    n = len(a)
    cut = sum(a[i, j] for i in range(n) for j in range(n) if labels[i] != labels[j])
    assert metrics.conductance(a, labels) == pytest.approx(cut / a.sum(), rel=1e-12)
    assert metrics.coverage(a, labels) == pytest.approx(1 - cut / a.sum(), rel=1e-12)
    g = nx.from_numpy_array(a)
    per_cluster = [nx.conductance(g, c, weight="weight") for c in _communities(labels)]
    assert metrics.average_conductance(a, labels) == pytest.approx(np.mean(per_cluster), rel=1e-12)


def test_nmi_equals_sklearn() -> None:
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for _ in range(10):
        t, p = rng.integers(0, 5, 200), rng.integers(0, 7, 200)
        assert metrics.nmi(t, p) == pytest.approx(skm.normalized_mutual_info_score(t, p), abs=1e-12)
    t = rng.integers(0, 4, 100)
    assert metrics.nmi(t, (t + 1) % 4) == pytest.approx(1.0)  # renaming
    assert metrics.nmi(np.zeros(5), np.zeros(5)) == skm.normalized_mutual_info_score(
        np.zeros(5), np.zeros(5)
    )


def test_pairwise_scores_by_counting_pairs() -> None:
    rng = np.random.default_rng(4)
    t, p = rng.integers(0, 3, 40), rng.integers(0, 4, 40)
    both = predicted = true = 0
    for i, j in itertools.combinations(range(40), 2):
        same_p, same_t = p[i] == p[j], t[i] == t[j]
        both += same_p and same_t
        predicted += same_p
        true += same_t
    got = metrics.pairwise_scores(t, p)
    assert got["precision"] == pytest.approx(both / predicted)
    assert got["recall"] == pytest.approx(both / true)
    prec, rec = both / predicted, both / true
    assert got["f1"] == pytest.approx(2 * prec * rec / (prec + rec))
    assert metrics.pairwise_scores(t, t)["f1"] == pytest.approx(1.0)


def test_graph_without_edges_and_bad_input() -> None:
    a = np.zeros((4, 4))
    labels = np.array([0, 0, 1, 1])
    assert metrics.modularity(a, labels) == 0.0
    assert metrics.conductance(a, labels) == 0.0
    with pytest.raises(ValueError, match=r"`labels` must have shape \(4,\); got \(3,\)"):
        metrics.modularity(a, labels[:3])
    with pytest.raises(ValueError, match=r"`adj` must be square \(N, N\); got shape \(3, 4\)"):
        metrics.modularity(np.zeros((3, 4)), labels[:3])


def test_labels_and_weights_must_be_finite() -> None:
    a = np.ones((3, 3))
    with pytest.raises(ValueError, match=r"`labels` must be finite integers or strings"):
        metrics.modularity(a, np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match=r"`adj` holds NaN or Inf weights"):
        metrics.modularity(a * np.nan, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"`adj` holds a negative weight"):
        metrics.conductance(-a, np.array([0, 1, 1]))


@pytest.mark.parametrize("weighted", [False, True])
def test_directed_graphs_are_scored_as_networkx_scores_a_digraph(weighted: bool) -> None:
    """An asymmetric matrix is a directed graph: modularity, coverage and each cluster's
    conductance equal networkx's on a `DiGraph` (the undirected formula gave 0.347 where
    networkx's directed modularity is 0.367 in issue 24's report)."""
    rng = np.random.default_rng(3)
    n = 30
    labels = rng.integers(0, 3, n)
    a = (rng.random((n, n)) < np.where(labels[:, None] == labels[None, :], 0.3, 0.05)) * 1.0
    np.fill_diagonal(a, 0)
    if weighted:
        a *= rng.uniform(0.5, 2.0, (n, n))
    assert not np.allclose(a, a.T)
    g = nx.from_numpy_array(a, create_using=nx.DiGraph)
    comms = _communities(labels)
    for gamma in (1.0, 0.5):
        assert metrics.modularity(sparse.csr_matrix(a), labels, resolution=gamma) == (
            pytest.approx(nx.community.modularity(g, comms, weight="weight", resolution=gamma))
        )
    inside = sum(a[i, j] for i in range(n) for j in range(n) if labels[i] == labels[j])
    assert metrics.coverage(a, labels) == pytest.approx(inside / a.sum(), rel=1e-12)
    per_cluster = [nx.conductance(g, c, weight="weight") for c in comms]
    assert metrics.average_conductance(a, labels) == pytest.approx(np.mean(per_cluster))
    # the undirected value differs: the directed formula is not the symmetric one
    sym = metrics.modularity((a + a.T) / 2, labels)
    assert abs(sym - metrics.modularity(a, labels)) > 1e-6


def test_labels_must_be_cluster_ids_not_probabilities() -> None:
    a = np.ones((3, 3))
    with pytest.raises(ValueError, match=r"`labels` must be integer cluster ids; got the non-int"):
        metrics.modularity(a, np.array([0.2, 0.5, 0.3]))
    assert metrics.modularity(a, np.array([0.0, 1.0, 1.0])) == metrics.modularity(a, [0, 1, 1])
