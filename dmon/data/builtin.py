"""Graphs from other libraries' objects (networkx, SciPy) and the embedded graphs: the
default stochastic block model and Zachary's karate club."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import sparse

from dmon.data.graph import Graph, GraphFormatError, finish
from dmon.sparse_graph import SparseGraph


def from_networkx(
    g: Any, *, label_attribute: str | None = None, weight: str | None = "weight", **prep: bool
) -> Graph:
    """A networkx graph (nodes in `g.nodes` order); optional node attribute as labels.

    Raises:
        TypeError: `g` is not a networkx graph.
        GraphFormatError: no nodes, or weights that are not finite non-negative numbers.
    """
    import networkx as nx

    if not isinstance(g, nx.Graph):
        raise TypeError(f"from_networkx: `g` must be a networkx graph; got {type(g).__name__}")
    name = getattr(g, "name", "") or "networkx"
    if g.number_of_nodes() == 0:
        raise GraphFormatError(f"{name}: the graph has no nodes")
    try:
        a = nx.to_scipy_sparse_array(g, weight=weight, format="csr", dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise GraphFormatError(f"{name}: edge weights `{weight}` are not numbers ({err})") from None
    labels = None
    if label_attribute is not None:
        raw = [d.get(label_attribute) for _, d in g.nodes(data=True)]
        if any(v is None for v in raw):
            raise GraphFormatError(f"{name}: a node has no `{label_attribute}` attribute")
        labels = np.unique(np.asarray(raw, dtype=str), return_inverse=True)[1]
    return finish(a, None, labels, name, prep)


def from_scipy(
    adjacency: Any, features: Any = None, labels: Any = None, name: str = "graph", **prep: bool
) -> Graph:
    """A SciPy sparse (or dense NumPy) adjacency with optional features and labels,
    checked like a file (`GraphFormatError` naming `name`)."""
    return finish(adjacency, features, labels, name, prep)


def from_pyg(data: Any, name: str = "pyg", **prep: bool) -> Graph:
    """A PyTorch Geometric `Data` (or any object with its fields): `edge_index` `(2, E)`,
    optional `x` `(N, F)` features, `edge_weight` `(E,)` (or a one-column `edge_attr`)
    weights, `y` `(N,)` node classes (a `y` of another length, such as a graph's label,
    is not used), `num_nodes`. Nothing of PyG is imported; tensors are read to NumPy.

    Raises:
        TypeError: `data` has no `edge_index`.
        GraphFormatError: fields that do not fit together (naming `name`).
    """
    edge_index = getattr(data, "edge_index", None)
    if edge_index is None:
        raise TypeError(
            f"from_pyg: `data` must have an `edge_index` (a torch_geometric Data); got {type(data).__name__}"
        )
    ei = _numpy(edge_index)
    if ei.ndim != 2 or ei.shape[0] != 2 or ei.dtype.kind not in "iu":
        raise GraphFormatError(
            f"{name}: edge_index must be (2, E) integers; got {ei.shape} {ei.dtype}"
        )
    x = None if getattr(data, "x", None) is None else _numpy(data.x)
    n = getattr(data, "num_nodes", None)
    n = int(n) if n is not None else (x.shape[0] if x is not None else int(ei.max(initial=-1)) + 1)
    w = SparseGraph.from_pyg(data).edge_weight  # dmon.pool's reading of the weights
    weights = np.ones(ei.shape[1]) if w is None else _numpy(w).astype(np.float64).reshape(-1)
    if weights.shape[0] != ei.shape[1]:
        raise GraphFormatError(f"{name}: {weights.shape[0]} edge weights for {ei.shape[1]} edges")
    if ei.size and (ei.min() < 0 or ei.max() >= n):
        raise GraphFormatError(f"{name}: edge_index holds ids outside [0, {n})")
    a = sparse.csr_matrix((weights, (ei[0], ei[1])), shape=(n, n))
    y = getattr(data, "y", None)
    labels = None
    if y is not None:
        y = _numpy(y).reshape(-1)
        labels = y.astype(np.int64) if y.shape[0] == n and y.dtype.kind in "iu" else None
    return finish(a, x, labels, name, prep)


def _numpy(v: Any) -> np.ndarray:
    """A tensor of any framework (on any device) or array, as NumPy."""
    for method in ("detach", "cpu"):
        if hasattr(v, method):
            v = getattr(v, method)()
    return np.asarray(v)


def karate_club() -> Graph:
    """Zachary's karate club (34 nodes, 78 edges) from networkx, labelled by club."""
    import networkx as nx

    return from_networkx(nx.karate_club_graph(), label_attribute="club", weight=None)


def _check_sbm(
    sizes: Any,
    p_in: Any,
    p_out: Any,
    degree_correction: Any,
    num_features: Any,
    feature_signal: Any,
    seed: Any,
) -> None:
    """Every argument of `synthetic_sbm` in its range, named in one line."""

    def real(v: Any) -> bool:
        return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)

    def count(v: Any) -> bool:
        return isinstance(v, int | np.integer) and not isinstance(v, bool)

    where = "dmon.data.synthetic_sbm"
    if (
        not isinstance(sizes, tuple | list)
        or not sizes
        or not all(count(v) and v >= 1 for v in sizes)
    ):
        raise ValueError(f"{where}: `sizes` must be community sizes, ints >= 1; got {sizes!r}")
    for name, v in (("p_in", p_in), ("p_out", p_out)):
        if not real(v) or not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{where}: `{name}` must be a probability in [0, 1]; got {v!r}")
    for name, v in (("degree_correction", degree_correction), ("feature_signal", feature_signal)):
        if not real(v) or not (math.isfinite(float(v)) and float(v) >= 0):
            raise ValueError(f"{where}: `{name}` must be a finite number >= 0; got {v!r}")
    if not count(num_features) or num_features < 1:
        raise ValueError(f"{where}: `num_features` must be an int >= 1; got {num_features!r}")
    if not count(seed) or not 0 <= seed < 2**32:
        raise ValueError(f"{where}: `seed` must be an int in [0, 2**32); got {seed!r}")


def synthetic_sbm(
    sizes: tuple[int, ...] = (60, 60, 60, 60),
    p_in: float = 0.15,
    p_out: float = 0.01,
    *,
    degree_correction: float = 0.0,
    num_features: int = 32,
    feature_signal: float = 1.0,
    seed: int = 0,
) -> Graph:
    """An attributed stochastic block model, seeded.

    Nodes of community `k` connect with probability `p_in·θᵢθⱼ` inside and `p_out·θᵢθⱼ`
    across, with `θ` degree-correction weights drawn from a log-normal of spread
    `degree_correction` (0: plain SBM), normalised to mean 1 per community. Features are
    `feature_signal ·` (the community's random centroid) plus standard normal noise, so they
    correlate with the communities. Labels are the communities.
    """
    _check_sbm(sizes, p_in, p_out, degree_correction, num_features, feature_signal, seed)
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    n = labels.size
    theta = np.exp(degree_correction * rng.normal(size=n)) if degree_correction > 0 else np.ones(n)
    for k in range(len(sizes)):
        theta[labels == k] /= theta[labels == k].mean()
    p = np.where(labels[:, None] == labels[None, :], p_in, p_out) * np.outer(theta, theta)
    upper = np.triu(rng.random((n, n)) < np.clip(p, 0, 1), 1)
    a = sparse.csr_matrix(upper + upper.T, dtype=np.float64)
    centroids = rng.normal(size=(len(sizes), num_features))
    features = feature_signal * centroids[labels] + rng.normal(size=(n, num_features))
    return Graph(a, features.astype(np.float32), labels, f"sbm-{len(sizes)}x{sizes[0]}-seed{seed}")
