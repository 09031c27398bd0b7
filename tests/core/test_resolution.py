"""Generalized modularity (resolution γ) and the correspondence with google-research's
DMoN, against independent oracles: networkx's `modularity(..., resolution=γ)`, and
google-research's formulas written out here with loops (their code is TensorFlow 1/2
with absl; these are its equations, not dmon's)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import to_backend, to_numpy

import dmon
from dmon import metrics

RESOLUTIONS = (0.0, 0.5, 1.0, 2.0)


def _graph(seed: int = 0, n: int = 30, k: int = 4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    p = np.where(labels[:, None] == labels[None, :], 0.4, 0.05)
    a = np.triu(rng.random((n, n)) < p, 1) * rng.uniform(0.5, 2.0, (n, n))
    return a + a.T, labels


@pytest.mark.parametrize("gamma", RESOLUTIONS)
def test_spectral_loss_is_minus_networkx_modularity_at_any_resolution(backend, gamma) -> None:
    nx = pytest.importorskip("networkx")
    a, labels = _graph()
    one_hot = np.eye(4)[labels]
    want = nx.community.modularity(
        nx.from_numpy_array(a),
        [set(np.flatnonzero(labels == c)) for c in range(4)],
        resolution=gamma,
    )
    assert metrics.modularity(a, labels, resolution=gamma) == pytest.approx(want, abs=1e-12)
    t = lambda v: to_backend(backend, v)  # noqa: E731
    dense = dmon.spectral_loss(t(a), t(one_hot), resolution=gamma)
    edges = np.array(np.nonzero(a)).astype(np.int64)
    sparse = dmon.spectral_loss(
        dmon.SparseGraph(t(edges), t(a[edges[0], edges[1]])), t(one_hot), resolution=gamma
    )
    for got in (dense, sparse):
        assert -float(to_numpy(got)) == pytest.approx(want, abs=1e-10)
    # pool with near one-hot logits (softmax error ~e^-60): the same number
    out = dmon.pool(t(np.ones((30, 2))), t(a), t(60.0 * one_hot), resolution=gamma)
    assert -float(to_numpy(out.spectral_loss)) == pytest.approx(want, abs=1e-10)


def test_resolution_is_checked() -> None:
    a, labels = _graph()
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(
            ValueError, match=r"dmon.pool: `resolution` must be a finite number >= 0"
        ):
            dmon.pool(np.ones((30, 2)), a, np.zeros((30, 3)), resolution=bad)
    with pytest.raises(TypeError, match=r"dmon.spectral_loss: `resolution` must be a real number"):
        dmon.spectral_loss(a, np.eye(4)[labels], resolution="half")
    # a 0-d NumPy array is its value; a torch tensor that requires a gradient is refused
    # (float() would cut the gradient without a word)
    s = np.eye(4)[labels]
    assert float(dmon.spectral_loss(a, s, resolution=np.array(0.5))) == pytest.approx(
        float(dmon.spectral_loss(a, s, resolution=0.5)), rel=1e-15
    )
    torch = pytest.importorskip("torch")
    gamma = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match=r"`resolution` is a constant of the loss; got a tensor"):
        dmon.spectral_loss(torch.from_numpy(a), torch.from_numpy(s), resolution=gamma)
    plain = dmon.spectral_loss(
        torch.from_numpy(a), torch.from_numpy(s), resolution=torch.tensor(0.5)
    )
    assert float(plain) == pytest.approx(float(dmon.spectral_loss(a, s, resolution=0.5)))


# --- google-research's DMoN, as equations --------------------------------------------


def _selu(v: np.ndarray) -> np.ndarray:
    return 1.0507009873554805 * np.where(v > 0, v, 1.6732632423543772 * np.expm1(np.minimum(v, 0)))


def google_research_layer(
    x: np.ndarray, a: np.ndarray, s: np.ndarray
) -> tuple[float, float, np.ndarray]:
    """google-research `dmon.DMoN.call` on one graph, given the soft assignment `s`:
    degrees are the column sums of `A`, "number_of_edges" is their total `Σd` (= 2m),
    spectral = -Tr(SᵀAS - SᵀddᵀS / 2 / Σd) / 2 / Σd, collapse = ‖ΣS‖ / n · √k − 1, pooled
    features = selu((S / cluster sizes)ᵀ X). Loops, no matrix products."""
    n, k = s.shape
    d = [sum(a[i, j] for i in range(n)) for j in range(n)]
    total = sum(d)
    pooled = [
        [sum(s[i, p] * a[i, j] * s[j, q] for i in range(n) for j in range(n)) for q in range(k)]
        for p in range(k)
    ]
    left = [sum(s[i, p] * d[i] for i in range(n)) for p in range(k)]
    trace = sum(pooled[p][p] - left[p] * left[p] / 2 / total for p in range(k))
    spectral = -trace / 2 / total
    sizes = [sum(s[i, p] for i in range(n)) for p in range(k)]
    collapse = math.sqrt(sum(v * v for v in sizes)) / n * math.sqrt(k) - 1
    feats = np.array(
        [
            [sum(s[i, p] / sizes[p] * x[i, f] for i in range(n)) for f in range(x.shape[1])]
            for p in range(k)
        ]
    )
    return spectral, collapse, _selu(feats)


def test_google_research_loss_is_half_of_dmon_at_resolution_one_half() -> None:
    a, _ = _graph(1, n=12)
    rng = np.random.default_rng(1)
    x, logits = rng.normal(size=(12, 3)), rng.normal(size=(12, 4))
    out = dmon.pool(x, a, logits)
    s = out.s[0]
    spectral, collapse, feats = google_research_layer(x, a, s)
    assert spectral == pytest.approx(
        0.5 * float(dmon.spectral_loss(a, s, resolution=0.5)), abs=1e-13
    )
    assert spectral == pytest.approx(
        0.5 * float(dmon.pool(x, a, logits, resolution=0.5).spectral_loss), abs=1e-13
    )
    assert collapse == pytest.approx(float(out.cluster_loss), abs=1e-13)
    # their pooled features are cluster means: SᵀX divided by each cluster's size
    np.testing.assert_allclose(feats, _selu((s.T @ x) / s.sum(0)[:, None]), rtol=1e-12)


def google_research_f1(true: np.ndarray, pred: np.ndarray) -> float:
    """google-research `metrics.pairwise_precision`/`pairwise_recall`, by loops over the
    contingency table: each class and cluster counts only its largest overlap."""
    classes, clusters = np.unique(true), np.unique(pred)
    table = [[int(np.sum((true == c) & (pred == q))) for q in clusters] for c in classes]
    tp = fp = fn = 0
    for row in table:
        best = max(row)
        tp += best * (best - 1)
        fp += 2 * best * (sum(row) - best)
    for col in zip(*table, strict=True):
        best = max(col)
        fn += 2 * best * (sum(col) - best)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall)


def google_research_graph_metrics(a: np.ndarray, clusters: np.ndarray) -> tuple[float, float]:
    """Their `metrics.modularity` and `metrics.conductance`, by loops."""
    n = a.shape[0]
    d = [sum(a[i, j] for i in range(n)) for j in range(n)]
    total = sum(d)
    q = 0.0
    cut = inside = 0.0
    for c in np.unique(clusters):
        members = [i for i in range(n) if clusters[i] == c]
        q += (
            sum(a[i, j] for i in members for j in members) - sum(d[i] for i in members) ** 2 / total
        )
        inside += sum(a[i, j] for i in members for j in members)
        cut += sum(a[i, j] for i in members for j in range(n) if clusters[j] != c)
    return q / total, cut / (inside + cut)


@pytest.mark.parametrize("seed", range(4))
def test_google_research_metrics(seed) -> None:
    a, labels = _graph(seed, n=40, k=5)
    pred = np.random.default_rng(seed).integers(0, 6, 40)
    q, conductance = google_research_graph_metrics(a, pred)
    assert metrics.modularity(a, pred) == pytest.approx(q, abs=1e-12)
    assert metrics.conductance(a, pred) == pytest.approx(conductance, abs=1e-12)
    theirs = metrics.pairwise_scores(labels, pred, method="max_overlap")["f1"]
    assert theirs == pytest.approx(google_research_f1(labels, pred), abs=1e-12)
    exact = metrics.pairwise_scores(labels, pred)["f1"]
    assert abs(theirs - exact) > 1e-3  # the shortcut is not a pair count
    with pytest.raises(ValueError, match=r"method must be 'pairs' or 'max_overlap'"):
        metrics.pairwise_scores(labels, pred, method="other")


def test_cluster_colours_are_far_apart_for_neighbouring_ids() -> None:
    import colorsys

    from dmon.plots import cluster_colors

    for k in (2, 4, 16, 64):
        colours = cluster_colors(k)
        assert len(set(colours)) == k
        hues = [colorsys.rgb_to_hls(*c)[0] for c in colours]
        for i in range(k - 1):
            gap = abs(hues[i] - hues[i + 1])
            assert min(gap, 1 - gap) > 0.3, (k, i)
