"""`Graph`, the checks every graph passes before clustering, and the paper's
preprocessing. NumPy/SciPy only."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

IDENTITY_FEATURES_MAX_NODES = 4096
"""Structure-only graphs up to this size get identity features (one-hot node ids, as
GCN papers do for featureless graphs); larger ones get degree features."""


MAX_NODES = 2**31 - 1
"""Node ids are int32 in training on every backend."""

MAX_DENSE_FEATURES = 2**31
"""Largest `N·F` a feature matrix may have once dense (8 GiB of float32): a file whose
declared shape implies more is refused before anything is allocated."""

ISOLATED_SLACK = 1024
"""An edge list with integer ids has `N = largest id + 1` nodes; more than
`2 · (ids seen) + ISOLATED_SLACK` of them means the ids are not indices (one id of 10⁸
would ask for gigabytes of isolated nodes): refused unless `num_nodes` says so."""


class GraphFormatError(ValueError):
    """A graph file or object that cannot be read; the message names the file (or
    source) and the problem."""


@dataclass
class Graph:
    """An attributed graph ready for clustering.

    Attributes:
        adjacency: `(N, N)` SciPy CSR, non-negative weights.
        features: `(N, F)` float32 dense features.
        labels: optional `(N,)` integer ground-truth classes (for NMI/F1).
        name: for reports.
    """

    adjacency: Any
    features: np.ndarray
    labels: np.ndarray | None = None
    name: str = "graph"
    notes: list[str] = field(default_factory=list)
    node_names: list[str] | None = None
    """Original node names when an edge list used non-integer names (else ids = index)."""

    @property
    def num_nodes(self) -> int:
        return int(self.adjacency.shape[0])

    @property
    def num_edges(self) -> int:
        """Undirected edges (stored entries off the diagonal, halved, plus self-loops)."""
        a = self.adjacency
        loops = int(np.count_nonzero(a.diagonal()))
        return (a.nnz - loops) // 2 + loops

    def edge_index(self) -> tuple[np.ndarray, np.ndarray]:
        """`(2, E)` int64 ids and `(E,)` float32 weights, both directions, rows sorted."""
        coo = self.adjacency.tocsr().tocoo()
        return np.stack([coo.row, coo.col]).astype(np.int64), coo.data.astype(np.float32)


def preprocess(
    adjacency: Any,
    features: Any = None,
    *,
    symmetrize: bool = True,
    drop_self_loops: bool = True,
    binarize_features: bool = True,
) -> tuple[Any, Any]:
    """The paper's preprocessing, each step optional: `A ← max(A, Aᵀ)` (weights kept),
    zero diagonal, features `≠ 0 → 1`."""
    a = sparse.csr_matrix(adjacency, dtype=np.float64)
    if symmetrize:
        a = a.maximum(a.T).tocsr()
    if drop_self_loops:
        a.setdiag(0)
    a.eliminate_zeros()
    if features is not None and binarize_features:
        features = (
            (sparse.csr_matrix(features) != 0).astype(np.float32)
            if sparse.issparse(features)
            else (np.asarray(features) != 0).astype(np.float32)
        )
    return a, features


def default_features(adjacency: Any) -> np.ndarray:
    """Features for a structure-only graph: identity up to `IDENTITY_FEATURES_MAX_NODES`
    nodes, else a one-hot of `floor(log2(1 + degree))` (32 buckets)."""
    n = adjacency.shape[0]
    if n <= IDENTITY_FEATURES_MAX_NODES:
        return np.eye(n, dtype=np.float32)
    deg = np.asarray(adjacency.sum(axis=1)).ravel()
    bucket = np.minimum(np.floor(np.log2(1 + deg)).astype(int), 31)
    return np.eye(32, dtype=np.float32)[bucket]


def finish(
    adjacency: Any,
    features: Any,
    labels: Any,
    name: str,
    prep: dict[str, bool],
    source: str | Path | None = None,
) -> Graph:
    """A checked, preprocessed `Graph`; errors name `source` (the file), else `name`."""
    source = str(source or name)
    try:
        a = sparse.csr_matrix(adjacency)
        if features is not None and not sparse.issparse(features):
            features = np.asarray(features)
    except (TypeError, ValueError) as err:
        raise GraphFormatError(f"{source}: not a matrix ({err})") from None
    check_graph(source, a, features, labels)
    a, f = preprocess(a, features, **prep)
    notes = []
    if f is None:
        f = default_features(a)
        notes.append(
            "identity features" if a.shape[0] <= IDENTITY_FEATURES_MAX_NODES else "degree features"
        )
    f = f.toarray() if sparse.issparse(f) else np.asarray(f)
    lab = None if labels is None else np.asarray(labels)
    return Graph(a.tocsr(), f.astype(np.float32), lab, name, notes)


def check_graph(source: str, a: Any, features: Any, labels: Any) -> None:
    """Every loader's graph, before preprocessing (and `dmon.cluster`'s): a square
    SciPy adjacency of at least one node with finite, non-negative, real weights;
    features `(N, F)` finite and real; labels `(N,)`. `O(E + N·F)`.

    Raises:
        GraphFormatError: naming `source` and the problem.
    """
    if not sparse.issparse(a):
        raise GraphFormatError(
            f"{source}: the adjacency must be a SciPy sparse matrix; got {type(a).__name__}"
        )
    n = a.shape[0]
    if a.shape[0] != a.shape[1]:
        raise GraphFormatError(f"{source}: the adjacency must be square; got shape {a.shape}")
    if n == 0:
        raise GraphFormatError(f"{source}: the graph has no nodes")
    if n > MAX_NODES:
        raise GraphFormatError(f"{source}: {n} nodes; at most {MAX_NODES} are supported")
    _check_values(source, "edge weights", a.data, non_negative=True)
    if features is not None:
        if features.ndim != 2 or features.shape[0] != n:
            raise GraphFormatError(
                f"{source}: features must have shape (N, F) with N = {n} nodes; got {features.shape}"
            )
        if features.shape[1] < 1:
            raise GraphFormatError(
                f"{source}: features have no columns (shape {features.shape}); F >= 1"
            )
        _check_values(source, "features", features.data if sparse.issparse(features) else features)
    if labels is not None:
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.shape[0] != n:
            raise GraphFormatError(
                f"{source}: labels must have shape (N,) = ({n},); got {lab.shape}"
            )
        if lab.dtype.kind not in "biuUS":
            raise GraphFormatError(
                f"{source}: labels must be integers or strings; got dtype {lab.dtype}"
            )


def _check_values(source: str, what: str, values: Any, *, non_negative: bool = False) -> None:
    v = np.asarray(values)
    if v.dtype.kind not in "biuf":
        raise GraphFormatError(f"{source}: {what} must be real numbers; got dtype {v.dtype}")
    if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
        raise GraphFormatError(f"{source}: {what} hold NaN or Inf")
    if non_negative and v.size and v.min() < 0:
        raise GraphFormatError(f"{source}: {what} must be non-negative; found {v.min()}")
