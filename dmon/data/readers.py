"""Graph files: gnn-benchmark `.npz`, edge lists and feature files. Files are never
unpickled, and every index and size is checked before a structure is built from it."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from dmon.data.graph import (
    ISOLATED_SLACK,
    MAX_DENSE_FEATURES,
    MAX_NODES,
    Graph,
    GraphFormatError,
    finish,
)


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
    check_file(path)
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
    return finish(a, features, labels, path.stem, prep, source=path)


def check_file(path: Path) -> None:
    """A readable regular file, or a `GraphFormatError` that says what it is instead."""
    if not path.exists():
        raise GraphFormatError(f"{path}: no such file")
    if path.is_dir():
        raise GraphFormatError(f"{path}: is a folder, not a file")
    if not path.is_file():
        raise GraphFormatError(f"{path}: not a regular file")


def load_edgelist(path: str | Path, *, num_nodes: int | None = None, **prep: bool) -> Graph:
    """An edge list: one edge per line, `src dst [weight]`, separated by a comma, tab or
    spaces; an optional header line (`src,dst`, `u v`, `from_node,to_node`, ...); `#` and
    `%` comment lines (SNAP, KONECT); UTF-8, with or without a byte-order mark; spaces
    around fields ignored.

    Node ids are of one kind per file. When every id is a non-negative integer, it is the
    node's index (`N` = largest id + 1, or `num_nodes` when given, so ids without edges
    are isolated nodes, and rows of a features file line up with ids, as in PyG). Ids
    implying far more nodes than appear (`> 2·seen + ISOLATED_SLACK`) are refused unless
    `num_nodes` is given: they are names, not indices. When no id is such an integer, ids
    are names, numbered in order of first appearance; `Graph.node_names` keeps them (and
    `assignments.csv` shows them). A file that mixes the two (`2` and `2.0`, `-1`) is
    refused rather than renumbered. An edge listed more than once counts once, with its
    largest weight, as `preprocess` joins the two directions of an undirected edge.
    Structure only: default features (see `load_features` to attach some). Weights must
    be finite and non-negative."""
    path = Path(path)
    check_file(path)
    if num_nodes is not None and (
        isinstance(num_nodes, bool) or not isinstance(num_nodes, int | np.integer) or num_nodes < 0
    ):
        raise GraphFormatError(f"{path}: num_nodes must be an int >= 0; got {num_nodes!r}")
    rows = _text_rows(path, "edge list", "edges")
    if len(rows[0]) >= 2 and _is_header(rows[0], rows[1:]):
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
    integers = [name for name in ids if _is_index(name)]
    if integers and len(integers) < len(ids):
        other = next(name for name in ids if not _is_index(name))
        raise GraphFormatError(
            f"{path}: node ids mix integer indices (such as {integers[0]!r}) and other names "
            f"(such as {other!r}); use one kind: indices 0..N-1, or names"
        )
    if integers:  # integer ids: the id is the index
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
    a = _largest_weight_per_edge(np.asarray(src), np.asarray(dst), np.asarray(wts), n)
    graph = finish(a, None, None, path.stem, prep, source=path)
    graph.node_names = names
    return graph


def _text_rows(path: Path, what: str, items: str) -> list[list[str]]:
    """The fields of a delimited text file's lines (comma, tab or spaces, by the first
    line), without `#`/`%` comment lines, a byte-order mark or spaces around fields."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError:
        raise GraphFormatError(f"{path}: not a text {what} (not UTF-8)") from None
    except OSError as err:
        raise GraphFormatError(f"{path}: cannot read ({err.strerror or err})") from None
    if "\x00" in text:
        raise GraphFormatError(f"{path}: not a text {what} (it holds NUL bytes)")
    lines = [
        ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "%"))
    ]
    if not lines:
        raise GraphFormatError(f"{path}: no {items}")
    delimiter = "," if "," in lines[0] else ("\t" if "\t" in lines[0] else None)
    try:
        rows = list(
            csv.reader(
                io.StringIO("\n".join(lines)), delimiter=delimiter or " ", skipinitialspace=True
            )
        )
    except csv.Error as err:
        raise GraphFormatError(f"{path}: not a delimited {what} ({err})") from None
    if delimiter is None:  # runs of spaces separate one field
        rows = [[c for c in r if c != ""] for r in rows]
    rows = [[c.strip() for c in r] for r in rows]
    for lineno, r in enumerate(rows, start=1):
        if "" in r:
            raise GraphFormatError(f"{path}: line {lineno} has an empty field ({r})")
    return rows


def load_labels(path: str | Path, graph: Graph) -> np.ndarray:
    """`(N,)` int64 ground-truth classes of `graph`'s nodes from a text file of
    `node,label` lines (comma, tab or spaces; an optional `node,label` header; `#`/`%`
    comments), for NMI and F1 on a graph of your own. `node` names a node as the edge
    list did (its index, or its name); labels are kept when every one is a non-negative
    integer, else numbered in order of first appearance. Every node needs one label."""
    path = Path(path)
    check_file(path)
    rows = _text_rows(path, "labels file", "labels")
    if rows[0][0].lower() in ("node", "id", "node_id", "name") and len(rows) > 1:
        rows = rows[1:]
    names = graph.node_names
    index = {name: i for i, name in enumerate(names)} if names is not None else None
    n = graph.num_nodes
    given: dict[int, str] = {}
    for lineno, r in enumerate(rows, start=1):
        if len(r) != 2:
            raise GraphFormatError(
                f"{path}: line {lineno} has {len(r)} fields ({r}); expected node, label"
            )
        node, label = r
        i = index.get(node) if index is not None else (int(node) if _is_index(node) else None)
        if i is None or not 0 <= i < n:
            kind = "a node of the graph" if index is not None else f"a node index in [0, {n})"
            raise GraphFormatError(f"{path}: line {lineno}: node {node!r} is not {kind}")
        if given.setdefault(i, label) != label:
            raise GraphFormatError(
                f"{path}: line {lineno}: node {node!r} has two labels ({given[i]!r}, {label!r})"
            )
    if len(given) < n:
        missing = next(i for i in range(n) if i not in given)
        name = missing if names is None else names[missing]
        raise GraphFormatError(
            f"{path}: {n - len(given)} of {n} nodes have no label (the first: {name!r})"
        )
    labels = [given[i] for i in range(n)]
    if all(_is_index(v) for v in labels):
        return np.array([int(v) for v in labels], dtype=np.int64)
    classes: dict[str, int] = {}
    return np.array([classes.setdefault(v, len(classes)) for v in labels], dtype=np.int64)


def load_features(path: str | Path, num_nodes: int | None = None) -> np.ndarray:
    """A `(N, F)` feature matrix from `.npy` (read without unpickling) or a delimited text
    file (`.csv`, `.tsv`, `.txt`; one row per node, in node order). Finite real numbers
    only; `num_nodes`, when given, must equal `N`."""
    path = Path(path)
    check_file(path)
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
        if path.suffix == ".npy" and "allow_pickle" in str(err):  # NumPy's words mislead
            with path.open("rb") as fh:
                npy = fh.read(6) == b"\x93NUMPY"
            raise GraphFormatError(
                f"{path}: not a numeric feature matrix (it holds pickled Python objects, "
                "which dmon never loads)"
                if npy
                else f"{path}: not a NumPy .npy array file (no .npy header; a text file? "
                "name it .csv, .tsv or .txt)"
            ) from None
        raise GraphFormatError(f"{path}: not a numeric feature matrix ({err})") from None
    except OSError as err:
        raise GraphFormatError(f"{path}: cannot read ({err.strerror or err})") from None
    f = np.asarray(f)
    if f.ndim == 2 and f.shape[1] == 0:
        raise GraphFormatError(f"{path}: features have no columns (shape {f.shape}); F >= 1")
    if f.ndim != 2 or (num_nodes is not None and f.shape[0] != num_nodes):
        want = "N" if num_nodes is None else f"N = {num_nodes} nodes"
        raise GraphFormatError(
            f"{path}: features must have shape (N, F) with {want}; got {f.shape}"
        )
    if f.dtype.kind not in "biuf" or not np.all(np.isfinite(f)):
        raise GraphFormatError(f"{path}: features must be finite real numbers; got dtype {f.dtype}")
    return f.astype(np.float32)


_HEADER_WORDS = {
    "src", "source", "from", "from_node", "fromnodeid", "from_id", "source_id", "src_id",
    "head", "node1", "node_1", "node_a", "start", "id1", "id_1", "sender", "u", "origin",
}  # fmt: skip


def _is_index(name: str) -> bool:
    """A node id that is a node index: a non-negative decimal integer."""
    return name.isascii() and name.isdigit()


def _largest_weight_per_edge(src: np.ndarray, dst: np.ndarray, w: np.ndarray, n: int) -> Any:
    """The `(n, n)` CSR matrix of the edges, an edge listed more than once taking its
    largest weight (not their sum)."""
    key = src.astype(np.int64) * max(n, 1) + dst
    order = np.argsort(key, kind="stable")
    unique, first = np.unique(key[order], return_index=True)
    weight = np.maximum.reduceat(w[order], first) if len(order) else w
    return sparse.csr_matrix((weight, (unique // max(n, 1), unique % max(n, 1))), shape=(n, n))


def _is_header(row: list[str], rest: list[list[str]]) -> bool:
    """A header is a first line naming the columns: a known source-column word
    (`src`, `source`, `from`, `u`, ...), a first line of names above lines of integer
    indices, or a non-numeric third field above numeric weights. (Node names
    themselves may be any strings.)"""
    second = rest[0] if rest else None

    def number(v: str) -> bool:
        try:
            float(v)
            return True
        except ValueError:
            return False

    if row[0].strip().lower() in _HEADER_WORDS:
        return True
    names_over_indices = not (_is_index(row[0]) or _is_index(row[1])) and all(
        len(r) >= 2 and _is_index(r[0]) and _is_index(r[1]) for r in rest
    )
    if rest and names_over_indices:
        return True
    return (
        len(row) == 3
        and not number(row[2])
        and second is not None
        and len(second) == 3
        and number(second[2])
    )
