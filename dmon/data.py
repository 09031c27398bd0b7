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


def _finish(
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


def _array(path: Path, z: Any, key: str, ndim: int, kinds: str) -> np.ndarray:
    """`z[key]` with the expected rank and dtype kind (`i` integer, `f` float, ...)."""
    v = z[key]
    if v.ndim != ndim or v.dtype.kind not in kinds:
        want = {"iu": "integer", "biuf": "real"}.get(kinds, kinds)
        raise GraphFormatError(
            f"{path}: `{key}` must be a {ndim}-D {want} array; got shape {v.shape}, dtype {v.dtype}"
        )
    return v


def _read_csr(path: Path, z: Any, prefix: str) -> Any:
    """The CSR matrix stored as `{prefix}_data/_indices/_indptr/_shape`, every part
    checked before SciPy sees it: SciPy trusts `indices` and `indptr`, and an id past
    the last column reads or writes outside the arrays (a crash, not an error)."""
    shape = _array(path, z, f"{prefix}_shape", 1, "iu")
    if shape.shape != (2,) or shape.min() < 0:
        raise GraphFormatError(
            f"{path}: `{prefix}_shape` must hold two non-negative sizes; got {shape.tolist()}"
        )
    rows, cols = int(shape[0]), int(shape[1])
    indptr = _array(path, z, f"{prefix}_indptr", 1, "iu").astype(np.int64)
    indices = _array(path, z, f"{prefix}_indices", 1, "iu")
    data = _array(path, z, f"{prefix}_data", 1, "biuf")
    if indptr.shape[0] != rows + 1:
        raise GraphFormatError(
            f"{path}: `{prefix}_indptr` has {indptr.shape[0]} entries; a {rows}-row matrix needs {rows + 1}"
        )
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise GraphFormatError(f"{path}: `{prefix}_indptr` must start at 0 and never decrease")
    if indptr[-1] != indices.shape[0] or indices.shape[0] != data.shape[0]:
        raise GraphFormatError(
            f"{path}: `{prefix}_indptr` ends at {indptr[-1]} but there are {indices.shape[0]} "
            f"indices and {data.shape[0]} values; the three must agree"
        )
    if indices.size and (indices.min() < 0 or indices.max() >= cols):
        bad = int(indices.min()) if indices.min() < 0 else int(indices.max())
        raise GraphFormatError(
            f"{path}: `{prefix}_indices` holds column {bad}, out of range for {cols} columns"
        )
    if rows > MAX_NODES or (prefix == "attr" and rows * cols > MAX_DENSE_FEATURES):
        raise GraphFormatError(
            f"{path}: `{prefix}_shape` {rows} x {cols} is too large (dense features are limited "
            f"to {MAX_DENSE_FEATURES} entries, graphs to {MAX_NODES} nodes)"
        )
    return sparse.csr_matrix((data, indices.astype(np.int64), indptr), shape=(rows, cols))


def load_npz(path: str | Path, **prep: bool) -> Graph:
    """A graph in the gnn-benchmark `.npz` format (keys `adj_data, adj_indices,
    adj_indptr, adj_shape`, optional `attr_*` features in the same CSR form or a dense
    `attr_matrix`, optional `labels`), as Cora and CiteSeer of the paper. Read without
    `allow_pickle`."""
    path = Path(path)
    _check_file(path)
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
            a = _read_csr(path, z, "adj")
            features = None
            if {"attr_data", "attr_indices", "attr_indptr", "attr_shape"} <= keys:
                features = _read_csr(path, z, "attr")
            elif "attr_matrix" in keys:
                features = _array(path, z, "attr_matrix", 2, "biuf")
            labels = _array(path, z, "labels", 1, "biuUS") if "labels" in keys else None
    except GraphFormatError:
        raise
    except ValueError as err:  # includes "Object arrays cannot be loaded when allow_pickle=False"
        raise GraphFormatError(f"{path}: cannot read as .npz without unpickling: {err}") from None
    except Exception as err:  # zipfile/OSError: not an npz at all
        raise GraphFormatError(
            f"{path}: not a readable .npz file ({type(err).__name__}: {err})"
        ) from None
    return _finish(a, features, labels, path.stem, prep, source=path)


def _check_file(path: Path) -> None:
    """A readable regular file, or a `GraphFormatError` that says what it is instead."""
    if not path.exists():
        raise GraphFormatError(f"{path}: no such file")
    if path.is_dir():
        raise GraphFormatError(f"{path}: is a folder, not a file")
    if not path.is_file():
        raise GraphFormatError(f"{path}: not a regular file")


def load_edgelist(path: str | Path, *, num_nodes: int | None = None, **prep: bool) -> Graph:
    """An edge list: one edge per line, `src dst [weight]`, separated by a comma, tab or
    spaces; an optional header line; `#` comments.

    When every node name is a non-negative integer, it is the node's index (`N` = largest
    id + 1, or `num_nodes` when given, so ids without edges are isolated nodes, and rows
    of a features file line up with ids, as in PyG). Ids implying far more nodes than
    appear (`> 2·seen + ISOLATED_SLACK`) are refused unless `num_nodes` is given: they are
    names, not indices. Otherwise names may be any strings, numbered in order of first
    appearance; `Graph.node_names` keeps them. Structure only: default features (see
    `load_features` to attach some). Weights must be finite and non-negative."""
    path = Path(path)
    _check_file(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise GraphFormatError(f"{path}: not a text edge list") from None
    except OSError as err:
        raise GraphFormatError(f"{path}: cannot read ({err.strerror or err})") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise GraphFormatError(f"{path}: no edges")
    delimiter = "," if "," in lines[0] else ("\t" if "\t" in lines[0] else None)
    try:
        rows = [
            r
            for r in csv.reader(
                io.StringIO("\n".join(lines)), delimiter=delimiter or " ", skipinitialspace=True
            )
        ]
    except csv.Error as err:
        raise GraphFormatError(f"{path}: not a delimited edge list ({err})") from None
    if delimiter is None:  # runs of spaces separate one field
        rows = [[c for c in r if c != ""] for r in rows]
    for lineno, r in enumerate(rows, start=1):
        if "" in (c.strip() for c in r):
            raise GraphFormatError(f"{path}: line {lineno} has an empty field ({r})")
    if len(rows[0]) >= 2 and _is_header(rows[0], rows[1] if len(rows) > 1 else None):
        rows = rows[1:]
    if not rows:
        raise GraphFormatError(f"{path}: no edges")
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
    if all(name.isascii() and name.isdigit() for name in ids):  # integer ids: the id is the index
        values = [int(name) for name in ids]
        largest = max(values)
        if largest >= MAX_NODES:
            raise GraphFormatError(
                f"{path}: node id {largest} is too large (ids are indices below {MAX_NODES})"
            )
        n = largest + 1 if num_nodes is None else int(num_nodes)
        if largest >= n:
            raise GraphFormatError(f"{path}: node id {largest} is out of range for num_nodes = {n}")
        if num_nodes is None and n > 2 * len(values) + ISOLATED_SLACK:
            raise GraphFormatError(
                f"{path}: node id {largest} implies {n} nodes but only {len(values)} ids appear; "
                "integer ids are node indices 0..N-1: renumber them, or give the node count "
                "(num_nodes=, or a features file with one row per node)"
            )
        index = np.array(values, dtype=np.int64)
        src, dst = index[src].tolist(), index[dst].tolist()
        names = None
    else:
        n = len(ids)
        if num_nodes is not None and num_nodes != n:
            raise GraphFormatError(
                f"{path}: {n} named nodes but num_nodes = {num_nodes} (named nodes are numbered "
                "in order of first appearance)"
            )
    a = sparse.csr_matrix((wts, (src, dst)), shape=(n, n))
    graph = _finish(a, None, None, path.stem, prep, source=path)
    graph.node_names = names
    return graph


def load_features(path: str | Path, num_nodes: int | None = None) -> np.ndarray:
    """A `(N, F)` feature matrix from `.npy` (read without unpickling) or a delimited text
    file (`.csv`, `.tsv`, `.txt`; one row per node, in node order). Finite real numbers
    only; `num_nodes`, when given, must equal `N`."""
    path = Path(path)
    _check_file(path)
    try:
        if path.suffix == ".npy":
            f = np.load(path, allow_pickle=False)
        elif path.suffix in (".csv", ".tsv", ".txt"):
            f = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2)
        else:
            raise GraphFormatError(
                f"{path}: unknown features format {path.suffix!r}; expected .npy, .csv, .tsv or .txt"
            )
    except GraphFormatError:
        raise
    except (ValueError, UnicodeDecodeError) as err:
        raise GraphFormatError(f"{path}: not a numeric feature matrix ({err})") from None
    except OSError as err:
        raise GraphFormatError(f"{path}: cannot read ({err.strerror or err})") from None
    f = np.asarray(f)
    if f.ndim != 2 or (num_nodes is not None and f.shape[0] != num_nodes):
        want = "N" if num_nodes is None else f"N = {num_nodes} nodes"
        raise GraphFormatError(
            f"{path}: features must have shape (N, F) with {want}; got {f.shape}"
        )
    if f.dtype.kind not in "biuf" or not np.all(np.isfinite(f)):
        raise GraphFormatError(f"{path}: features must be finite real numbers; got dtype {f.dtype}")
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
    return _finish(a, None, labels, name, prep)


def from_scipy(
    adjacency: Any, features: Any = None, labels: Any = None, name: str = "graph", **prep: bool
) -> Graph:
    """A SciPy sparse (or dense NumPy) adjacency with optional features and labels,
    checked like a file (`GraphFormatError` naming `name`)."""
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


def load(path_or_name: str, *, num_nodes: int | None = None, **prep: bool) -> Graph:
    """Load by file suffix (`.npz`; `.csv`/`.tsv`/`.txt`/`.edges`/`.edgelist`) or built-in
    name (`sbm`, `karate`). `num_nodes` goes to `load_edgelist`."""
    if path_or_name == "sbm":
        return synthetic_sbm()
    if path_or_name == "karate":
        return karate_club()
    path = Path(path_or_name)
    if not path.exists():
        raise GraphFormatError(f"{path}: no such file (built-in graphs: sbm, karate)")
    _check_file(path)
    if path.suffix == ".npz":
        return load_npz(path, **prep)
    if path.suffix in (".csv", ".tsv", ".txt", ".edges", ".edgelist", ""):
        return load_edgelist(path, num_nodes=num_nodes, **prep)
    raise GraphFormatError(
        f"{path}: unknown format {path.suffix!r}; expected .npz or an edge list (.csv, .tsv, .txt)"
    )
