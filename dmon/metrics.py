"""Clustering quality, NumPy/SciPy only, sparse-aware.

Graph metrics take an adjacency (`scipy.sparse` matrix or dense NumPy array,
non-negative weights) and hard cluster labels `(N,)`; label metrics take two label
vectors. A symmetric matrix is an undirected graph; any other is directed, and scored
with the directed formulas (Leicht and Newman's modularity, networkx's directed cut and
volume): the same values as networkx on a `DiGraph`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "average_conductance",
    "cluster_weights",
    "conductance",
    "coverage",
    "graph_scores",
    "modularity",
    "nmi",
    "pairwise_scores",
]


def _csr(adj: Any) -> Any:
    from scipy import sparse

    try:
        a = sparse.csr_matrix(adj, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`adj` must be a matrix (scipy.sparse or NumPy); got {type(adj).__name__} ({err})"
        ) from None
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"`adj` must be square (N, N); got shape {a.shape}")
    if a.nnz and not np.all(np.isfinite(a.data)):
        raise ValueError("`adj` holds NaN or Inf weights")
    if a.nnz and a.data.min() < 0:
        raise ValueError(f"`adj` holds a negative weight ({a.data.min()}); weights must be >= 0")
    return a


def _labels(labels: Any, n: int | None = None, name: str = "labels") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise ValueError(
            f"`{name}` must have shape ({n if n is not None else 'N'},); got {arr.shape}"
        )
    if arr.dtype.kind not in "biufUS" or (arr.dtype.kind == "f" and not np.all(np.isfinite(arr))):
        raise ValueError(f"`{name}` must be finite integers or strings; got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and np.any(arr != np.round(arr)):
        bad = arr[arr != np.round(arr)][0]
        raise ValueError(
            f"`{name}` must be integer cluster ids; got the non-integer {bad!r} "
            "(for probabilities, pass their argmax)"
        )
    _, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64)


def _one_hot(codes: np.ndarray) -> Any:
    from scipy import sparse

    n = codes.shape[0]
    return sparse.csr_matrix(
        (np.ones(n), (np.arange(n), codes)), shape=(n, int(codes.max()) + 1 if n else 0)
    )


class _Sums:
    """A hard clustering's sums: weight inside each cluster `L_c` (each undirected edge
    in both directions), out- and in-volume per cluster, total weight `W = Σ A_ij`."""

    def __init__(self, between: np.ndarray, directed: bool) -> None:
        self.intra = np.diag(between).copy()
        self.out_vol = between.sum(axis=1)
        self.in_vol = between.sum(axis=0)
        self.total = float(between.sum())
        self.directed = directed

    @classmethod
    def of(cls, adj: Any, labels: Any) -> _Sums:
        a = _csr(adj)
        p = _one_hot(_labels(labels, a.shape[0]))
        between = (p.T @ a @ p).toarray()  # (K, K) weight from cluster to cluster
        return cls(between, (a != a.T).nnz > 0)

    @property
    def cut(self) -> np.ndarray:
        """Weight crossing each cluster's border: once per undirected edge; arcs out of
        and into it for a directed graph (networkx's `cut_size`)."""
        if self.directed:
            return self.out_vol + self.in_vol - 2 * self.intra
        return self.out_vol - self.intra


def cluster_weights(
    src: np.ndarray, dst: np.ndarray, weight: np.ndarray, labels: np.ndarray, k: int
) -> np.ndarray:
    """`(k, k)` float64 edge weight from cluster to cluster over the edges given, for
    cluster ids `labels` in `[0, k)`: sums over disjoint sets of edges (a graph's shards)
    add up to the whole graph's, which `graph_scores` scores."""
    cells = labels[src].astype(np.int64) * k + labels[dst]
    return np.bincount(cells, weights=weight, minlength=k * k).reshape(k, k)


def graph_scores(between: np.ndarray, directed: bool, resolution: float = 1.0) -> dict[str, float]:
    """`modularity` (at `resolution`), `conductance`, `average_conductance` and
    `coverage` of a clustering from `cluster_weights` of all its edges (`directed`: the
    adjacency is not symmetric), as the functions of the same names compute them from
    the adjacency; clusters without nodes must be left out of `between` first."""
    s = _Sums(np.asarray(between, np.float64), directed)
    if s.total == 0:
        return dict.fromkeys(("modularity", "conductance", "average_conductance", "coverage"), 0.0)
    return {
        "modularity": _modularity(s, resolution),
        "conductance": float((s.total - s.intra.sum()) / s.total),
        "average_conductance": _average_conductance(s),
        "coverage": float(s.intra.sum() / s.total),
    }


def _modularity(s: _Sums, resolution: float) -> float:
    return float(np.sum(s.intra / s.total - resolution * s.out_vol * s.in_vol / s.total**2))


def _average_conductance(s: _Sums) -> float:
    denom = np.minimum(s.out_vol, s.total - s.out_vol)
    cut = s.cut
    phi = np.divide(cut, denom, out=np.zeros_like(cut), where=denom > 0)
    return float(phi.mean()) if phi.size else 0.0


def modularity(adj: Any, labels: Any, resolution: float = 1.0) -> float:
    """Newman's (weighted) modularity of the matrix `A`,
    `Q = Σ_c [ L_c / W - γ · out_c · in_c / W² ]`.

    `L_c = Σ_{i,j ∈ c} A_ij`, `out_c` and `in_c` the cluster's row and column sums,
    `W = Σ_ij A_ij`. For an undirected graph (`A` symmetric: each edge in both
    directions, `W = 2m`) this is `Σ_c [ L_c / 2m - γ (vol_c / 2m)² ]`; for a directed
    one it is Leicht and Newman's directed modularity (networkx's on a `DiGraph`). A
    graph with no edges gives 0.

    Self-loops: the entry `A_ii` counts once, in `dᵢ` and in `L_c`, exactly as in DMoN's
    spectral loss (`-dmon.spectral_loss(A, one_hot(labels))` equals this), PyTorch
    Geometric and google-research. `networkx.algorithms.community.modularity` counts a
    self-loop twice (its degree convention); without self-loops the two agree, and with
    them `modularity(A + diag(A), labels)` is networkx's value. See docs/reliability.md.
    """
    s = _Sums.of(adj, labels)
    return 0.0 if s.total == 0 else _modularity(s, resolution)


def conductance(adj: Any, labels: Any) -> float:
    """The DMoN paper's (global) conductance: the fraction of edge weight that leaves its
    cluster, `1 - Σ_c L_c / W` (google-research `metrics.conductance`; for a directed
    graph, the fraction of arc weight between clusters). 0 for a graph with no edges."""
    s = _Sums.of(adj, labels)
    return 0.0 if s.total == 0 else float((s.total - s.intra.sum()) / s.total)


def coverage(adj: Any, labels: Any) -> float:
    """Graph coverage: the fraction of edge weight inside clusters, `1 - conductance`
    (networkx `partition_quality`'s coverage)."""
    s = _Sums.of(adj, labels)
    return 0.0 if s.total == 0 else float(s.intra.sum() / s.total)


def average_conductance(adj: Any, labels: Any) -> float:
    """Mean over clusters of `φ(c) = cut(c) / min(vol(c), vol(V∖c))` (networkx
    `conductance` per cluster: on a directed graph the cut counts arcs both ways and the
    volume is the out-degree); a cluster with zero volume on either side counts as 0."""
    return _average_conductance(_Sums.of(adj, labels))


def _contingency(true: Any, pred: Any) -> np.ndarray:
    t = _labels(true, name="labels_true")
    p = _labels(pred, t.shape[0], name="labels_pred")
    table = np.zeros((t.max() + 1 if t.size else 0, p.max() + 1 if p.size else 0))
    np.add.at(table, (t, p), 1)
    return table


def nmi(labels_true: Any, labels_pred: Any) -> float:
    """Normalised mutual information `I(T; P) / mean(H(T), H(P))` (arithmetic mean, as
    scikit-learn's default). 1 for identical partitions up to renaming; 1 when both have
    a single cluster."""
    table = _contingency(labels_true, labels_pred)
    n = table.sum()
    if n == 0:
        return 0.0
    pt, pp, pj = table.sum(1) / n, table.sum(0) / n, table / n
    nz = pj > 0
    mi = float(np.sum(pj[nz] * np.log(pj[nz] / np.outer(pt, pp)[nz])))
    h_t = -float(np.sum(pt[pt > 0] * np.log(pt[pt > 0])))
    h_p = -float(np.sum(pp[pp > 0] * np.log(pp[pp > 0])))
    if h_t == 0 and h_p == 0:
        return 1.0
    denom = (h_t + h_p) / 2
    return float(max(mi, 0.0) / denom) if denom > 0 else 0.0


def pairwise_scores(
    labels_true: Any, labels_pred: Any, *, method: str = "pairs"
) -> dict[str, float]:
    """Pairwise precision, recall and F1.

    `method="pairs"` (default) counts node pairs: a pair is predicted-positive when both
    nodes share a predicted cluster and truly positive when they share a true class;
    precision = |both| / |predicted|, recall = |both| / |true|.

    `method="max_overlap"` is google-research's DMoN code (`metrics.pairwise_precision`
    and `pairwise_recall`, the paper's F1): with the contingency table `C` (true classes
    × clusters), `tᵢ = maxⱼ C_ij` and `pⱼ = maxᵢ C_ij`, it counts
    `TP = Σᵢ tᵢ(tᵢ − 1)`, `FP = Σᵢ 2 tᵢ (nᵢ − tᵢ)`, `FN = Σⱼ 2 pⱼ (mⱼ − pⱼ)` (`nᵢ`, `mⱼ`
    the row and column sums): only each class's and cluster's largest overlap counts,
    so it is not a pair count and can differ much from `"pairs"`.
    """
    if method not in ("pairs", "max_overlap"):
        raise ValueError(f"method must be 'pairs' or 'max_overlap'; got {method!r}")
    table = _contingency(labels_true, labels_pred)
    if method == "max_overlap":
        t, p = table.max(axis=1), table.max(axis=0)
        tp = float(np.sum(t * (t - 1)))
        fp = float(np.sum(2 * t * (table.sum(axis=1) - t)))
        fn = float(np.sum(2 * p * (table.sum(axis=0) - p)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
    else:

        def pairs(v: np.ndarray) -> float:
            return float(np.sum(v * (v - 1) / 2))

        both, predicted, true = pairs(table), pairs(table.sum(0)), pairs(table.sum(1))
        precision = both / predicted if predicted else 0.0
        recall = both / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
