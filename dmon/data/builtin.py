"""Graphs from other libraries' objects (networkx, SciPy) and the embedded graphs: the
default stochastic block model and Zachary's karate club."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from dmon.data.graph import Graph, GraphFormatError, finish


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


def karate_club() -> Graph:
    """Zachary's karate club (34 nodes, 78 edges) from networkx, labelled by club."""
    import networkx as nx

    return from_networkx(nx.karate_club_graph(), label_attribute="club", weight=None)


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
