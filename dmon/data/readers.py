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
    spaces; an optional header line; `#` comments.

    When every node name is a non-negative integer, it is the node's index (`N` = largest
    id + 1, or `num_nodes` when given, so ids without edges are isolated nodes, and rows
    of a features file line up with ids, as in PyG). Ids implying far more nodes than
    appear (`> 2·seen + ISOLATED_SLACK`) are refused unless `num_nodes` is given: they are
    names, not indices. Otherwise names may be any strings, numbered in order of first
    appearance; `Graph.node_names` keeps them. Structure only: default features (see
    `load_features` to attach some). Weights must be finite and non-negative."""
    path = Path(path)
    check_file(path)
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
    graph = finish(a, None, None, path.stem, prep, source=path)
    graph.node_names = names
    return graph


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
