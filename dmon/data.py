"""Graphs for clustering: loaders (gnn-benchmark `.npz`, edge lists, networkx, SciPy),
the paper's preprocessing, and the embedded default graphs. NumPy/SciPy only; files are
never unpickled.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

IDENTITY_FEATURES_MAX_NODES = 4096
"""Structure-only graphs up to this size get identity features (one-hot node ids, as
GCN papers do for featureless graphs); larger ones get degree features."""


class GraphFormatError(ValueError):
    """A graph file that cannot be read; the message names the file and the problem."""


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


def _finish(adjacency: Any, features: Any, labels: Any, name: str, prep: dict[str, bool]) -> Graph:
    a, f = preprocess(adjacency, features, **prep)
    notes = []
    if f is None:
        f = default_features(a)
        notes.append(
            "identity features" if a.shape[0] <= IDENTITY_FEATURES_MAX_NODES else "degree features"
        )
    f = f.toarray() if sparse.issparse(f) else np.asarray(f)
    lab = None if labels is None else np.asarray(labels)
    return Graph(a.tocsr(), f.astype(np.float32), lab, name, notes)


def load_npz(path: str | Path, **prep: bool) -> Graph:
    """A graph in the gnn-benchmark `.npz` format (keys `adj_data, adj_indices,
    adj_indptr, adj_shape`, optional `attr_*` features in the same CSR form or a dense
    `attr_matrix`, optional `labels`), as Cora and CiteSeer of the paper. Read without
    `allow_pickle`."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"PK":
                raise GraphFormatError(f"{path}: not a .npz (zip) file")
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            need = {"adj_data", "adj_indices", "adj_indptr", "adj_shape"}
            if not need <= keys:
                raise GraphFormatError(
                    f"{path}: not a gnn-benchmark graph: missing keys {sorted(need - keys)}"
                )
            a = sparse.csr_matrix(
                (z["adj_data"], z["adj_indices"], z["adj_indptr"]), shape=tuple(z["adj_shape"])
            )
            features = None
            if {"attr_data", "attr_indices", "attr_indptr", "attr_shape"} <= keys:
                features = sparse.csr_matrix(
                    (z["attr_data"], z["attr_indices"], z["attr_indptr"]),
                    shape=tuple(z["attr_shape"]),
                )
            elif "attr_matrix" in keys:
                features = z["attr_matrix"]
            labels = z["labels"] if "labels" in keys else None
    except GraphFormatError:
        raise
    except FileNotFoundError:
        raise GraphFormatError(f"{path}: no such file") from None
    except ValueError as err:  # includes "Object arrays cannot be loaded when allow_pickle=False"
        raise GraphFormatError(f"{path}: cannot read as .npz without unpickling: {err}") from None
    except Exception as err:  # zipfile/OSError: not an npz at all
        raise GraphFormatError(
            f"{path}: not a readable .npz file ({type(err).__name__}: {err})"
        ) from None
    if a.shape[0] != a.shape[1]:
        raise GraphFormatError(f"{path}: adjacency must be square; got {a.shape}")
    if features is not None and features.shape[0] != a.shape[0]:
        raise GraphFormatError(f"{path}: {features.shape[0]} feature rows for {a.shape[0]} nodes")
    if labels is not None and labels.shape[0] != a.shape[0]:
        raise GraphFormatError(f"{path}: {labels.shape[0]} labels for {a.shape[0]} nodes")
    return _finish(a, features, labels, path.stem, prep)


def load_edgelist(path: str | Path, **prep: bool) -> Graph:
    """An edge list: one edge per line, `src dst [weight]`, separated by a comma, tab or
    spaces; an optional header line; `#` comments.

    When every node name is a non-negative integer, it is the node's index (`N` = largest
    id + 1, so ids without edges are isolated nodes, and rows of a features file line up
    with ids, as in PyG). Otherwise names may be any strings, numbered in order of first
    appearance; `Graph.node_names` keeps them. Structure only: default features (see
    `load_features` to attach some)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise GraphFormatError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise GraphFormatError(f"{path}: not a text edge list") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise GraphFormatError(f"{path}: no edges")
    delimiter = "," if "," in lines[0] else ("\t" if "\t" in lines[0] else None)
    rows = [
        r
        for r in csv.reader(
            io.StringIO("\n".join(lines)), delimiter=delimiter or " ", skipinitialspace=True
        )
    ]
    rows = [[c for c in r if c != ""] for r in rows]
    if len(rows[0]) >= 2 and _is_header(rows[0], rows[1] if len(rows) > 1 else None):
        rows = rows[1:]
    ids: dict[str, int] = {}
    src, dst, wts = [], [], []
    for lineno, r in enumerate(rows, start=1):
        if len(r) not in (2, 3):
            raise GraphFormatError(
                f"{path}: edge {lineno} has {len(r)} fields ({r}); expected src, dst[, weight]"
            )
        try:
            w = float(r[2]) if len(r) == 3 else 1.0
        except ValueError:
            raise GraphFormatError(
                f"{path}: edge {lineno}: weight {r[2]!r} is not a number"
            ) from None
        if not np.isfinite(w) or w < 0:
            raise GraphFormatError(
                f"{path}: edge {lineno}: weight {w} must be finite and non-negative"
            )
        src.append(ids.setdefault(r[0], len(ids)))
        dst.append(ids.setdefault(r[1], len(ids)))
        wts.append(w)
    names: list[str] | None = list(ids)
    if all(name.isdigit() for name in ids):  # integer ids: the id is the index
        index = np.array([int(name) for name in ids])
        src, dst = index[src].tolist(), index[dst].tolist()
        n, names = int(index.max()) + 1, None
    else:
        n = len(ids)
    a = sparse.csr_matrix((wts, (src, dst)), shape=(n, n))
    graph = _finish(a, None, None, path.stem, prep)
    graph.node_names = names
    return graph


def load_features(path: str | Path, num_nodes: int) -> np.ndarray:
    """A `(N, F)` feature matrix from `.npy` (read without unpickling) or a delimited text
    file (`.csv`, `.tsv`, `.txt`; one row per node, in node order)."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            f = np.load(path, allow_pickle=False)
        else:
            f = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2)
    except FileNotFoundError:
        raise GraphFormatError(f"{path}: no such file") from None
    except ValueError as err:
        raise GraphFormatError(f"{path}: not a numeric feature matrix ({err})") from None
    f = np.asarray(f)
    if f.ndim != 2 or f.shape[0] != num_nodes:
        raise GraphFormatError(
            f"{path}: features must have shape (N, F) with N = {num_nodes} nodes; got {f.shape}"
        )
    if not np.issubdtype(f.dtype, np.number) or not np.all(np.isfinite(f)):
        raise GraphFormatError(f"{path}: features must be finite numbers")
    return f.astype(np.float32)


_HEADER_WORDS = {"src", "source", "from", "head", "node1", "node_1", "start", "id1", "sender"}


def _is_header(row: list[str], second: list[str] | None) -> bool:
    """A header is a first line naming the columns: a known source-column word
    (`src`, `source`, `from`, ...), or a non-numeric third field above numeric weights.
    (Node names themselves may be any strings.)"""

    def number(v: str) -> bool:
        try:
            float(v)
            return True
        except ValueError:
            return False

    if row[0].strip().lower() in _HEADER_WORDS:
        return True
    return (
        len(row) == 3
        and not number(row[2])
        and second is not None
        and len(second) == 3
        and number(second[2])
    )


def from_networkx(
    g: Any, *, label_attribute: str | None = None, weight: str | None = "weight", **prep: bool
) -> Graph:
    """A networkx graph (nodes in `g.nodes` order); optional node attribute as labels."""
    import networkx as nx

    a = nx.to_scipy_sparse_array(g, weight=weight, format="csr")
    labels = None
    if label_attribute is not None:
        raw = [d.get(label_attribute) for _, d in g.nodes(data=True)]
        labels = np.unique(np.asarray(raw, dtype=str), return_inverse=True)[1]
    return _finish(a, None, labels, getattr(g, "name", "") or "networkx", prep)


def from_scipy(
    adjacency: Any, features: Any = None, labels: Any = None, name: str = "graph", **prep: bool
) -> Graph:
    """A SciPy sparse (or dense NumPy) adjacency with optional features and labels."""
    return _finish(adjacency, features, labels, name, prep)


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


def load(path_or_name: str, **prep: bool) -> Graph:
    """Load by file suffix (`.npz`; `.csv`/`.tsv`/`.txt`/`.edges`/`.edgelist`) or built-in
    name (`sbm`, `karate`)."""
    if path_or_name == "sbm":
        return synthetic_sbm()
    if path_or_name == "karate":
        return karate_club()
    path = Path(path_or_name)
    if not path.exists():
        raise GraphFormatError(f"{path}: no such file (built-in graphs: sbm, karate)")
    if path.suffix == ".npz":
        return load_npz(path, **prep)
    if path.suffix in (".csv", ".tsv", ".txt", ".edges", ".edgelist", ""):
        return load_edgelist(path, **prep)
    raise GraphFormatError(
        f"{path}: unknown format {path.suffix!r}; expected .npz or an edge list (.csv, .tsv, .txt)"
    )
