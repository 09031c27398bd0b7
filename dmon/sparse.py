"""Sparse adjacency at the boundary: a `SparseGraph` or native sparse matrix checked and
converted, once, into what the backend multiplies fastest.

A sparse adjacency reaches the core as a backend's fastest spmm form plus the node degrees
(`SparseAdjacency`); the core only calls `ops.spmm(matrix, dense)`. Nothing `N × N` is
formed: memory is `O(E + N·C + N·F)`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from dmon.ops import FLOATING, Array, ArrayOps, Edges
from dmon.sparse_graph import SparseGraph
from dmon.validation import fmt_shape
from dmon.value_checking import read, value_checks_enabled

_INTEGER = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


class SparseAdjacency(NamedTuple):
    """A sparse adjacency after the boundary: what the core works with."""

    matrix: Any
    """The backend's spmm form (`ops.sparse_matrix`)."""
    batch: Array | None
    """`(N,)` graph id of each node; `None` for one graph."""
    slots: Array | None
    """`(N,)` each node's row in the flat `(B·M, ·)` padded batch (`batch·M + position`),
    computed once here for every `pad` of the call; `None` for one graph."""
    num_graphs: int
    max_nodes: int


def is_sparse_adjacency(ops: ArrayOps, adj: object) -> bool:
    """A `SparseGraph` or a native sparse matrix of `ops`' framework (or SciPy's)."""
    return isinstance(adj, SparseGraph) or ops.is_sparse(adj)


def to_adjacency(
    ops: ArrayOps, where: str, adj: Any, n: int, dtype: str, *, non_negative: bool = False
) -> SparseAdjacency:
    """Check a `SparseGraph` or native sparse matrix against `n` nodes and convert it.

    `non_negative`: the weights must be non-negative (DMoN's losses; a plain `spmm` takes
    any), checked when their values are known, `O(E)`.
    """
    batch = slots = None
    num_graphs, max_nodes = 1, n
    row, col, weight = edges(ops, where, adj, n)
    if non_negative and not (isinstance(adj, SparseGraph) and adj.edge_weight is None):
        _check_weights(ops, where, adj, weight)
    if isinstance(adj, SparseGraph) and adj.batch is not None:
        batch, num_graphs, max_nodes = _check_batch(ops, where, adj, n)
        _check_edges_within_graphs(ops, where, adj, n)
        # position of each node within its graph: its index minus its graph's first index
        counts = ops.segment_sum(ops.ones_like(batch), batch, num_graphs)
        starts = ops.cumsum(counts) - counts
        position = ops.arange(n, like=batch) - ops.take(starts, batch)
        slots = batch * max_nodes + position
    weight = ops.astype(weight, dtype)
    cache = adj._cache if isinstance(adj, SparseGraph) else None
    symmetric = isinstance(adj, SparseGraph) and adj.symmetric
    if symmetric:
        _check_symmetric_edges(ops, where, adj, n)
    # an unweighted graph's weights are ones on every call: a backend may keep the matrix
    # built from them, with its transpose (nothing to differentiate)
    constant = isinstance(adj, SparseGraph) and adj.edge_weight is None
    return SparseAdjacency(
        ops.sparse_matrix(
            Edges(row, col, weight, n, cache=cache, symmetric=symmetric, constant=constant)
        ),
        batch,
        slots,
        num_graphs,
        max_nodes,
    )


def edges(ops: ArrayOps, where: str, adj: Any, n: int) -> tuple[Array, Array, Array]:
    """Checked `(row, col, weight)` of a `SparseGraph` or native sparse matrix of `n` nodes."""
    if isinstance(adj, SparseGraph):
        return _check_edges(ops, where, adj, n)
    row, col, weight, shape = ops.sparse_coo(adj)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(
            f"{where}: a sparse `adj` must be square (N, N); got shape {fmt_shape(shape)}"
        )
    if shape[0] != n:
        raise ValueError(
            f"{where}: the sparse `adj` is {shape[0]} x {shape[1]} but the graph has N = {n} nodes"
        )
    if ops.dtype_name(weight) not in FLOATING:
        raise TypeError(
            f"{where}: the sparse `adj` must hold floating values; got dtype {ops.dtype_name(weight)}"
        )
    return row, col, weight


def _check_weights(ops: ArrayOps, where: str, adj: Any, weight: Array) -> None:
    """No negative edge weight (eager only; NaN passes). Counted where the weights are,
    and only a failure brings them to the host: on a GPU, copying every weight to the host
    on every call was the largest cost of torch's sparse forward (docs/benchmarks.md, "Design measurements")."""
    if not ops.shape(weight)[0] or not value_checks_enabled(ops, weight):
        return
    # A SparseGraph's weights are checked once until they change (a torch tensor counts
    # its in-place changes; JAX and TensorFlow arrays cannot change).
    version = ops.version(weight)
    key = ("weights-checked", id(weight), version)
    cache = adj._cache if isinstance(adj, SparseGraph) and version is not None else None
    if cache is not None and cache.get("weights") == key:
        return
    count = read(ops, ops.sum(ops.astype(weight < 0, ops.dtype_name(weight)), axis=0))
    if count is None:  # traced, values unknown
        return
    if not count > 0:
        if cache is not None:
            cache["weights"] = key
        return
    values = ops.to_numpy(weight)
    negative = np.flatnonzero(np.asarray(values, dtype=np.float64) < 0)
    if negative.size:
        name = "adj.edge_weight" if isinstance(adj, SparseGraph) else "adj"
        raise ValueError(
            f"{where}: `{name}` holds a negative weight ({float(values[negative[0]])} at entry "
            f"{int(negative[0])}); DMoN's modularity needs non-negative weights"
        )


def _check_symmetric_edges(ops: ArrayOps, where: str, g: SparseGraph, n: int) -> None:
    """A `symmetric=True` promise holds edge by edge: every edge `i -> j` has its `j -> i`
    of the same total weight (duplicates summed), `O(E log E)` on the host, once per graph
    and weights (eager, value checks on). A broken promise gave gradients off by ~1."""
    weight = g.edge_weight
    version = None if weight is None else ops.version(weight)
    key = ("symmetric-checked", n, None if weight is None else (id(weight), version))
    if g._cache.get("symmetric") == key or not value_checks_enabled(ops, g.edge_index):
        return
    ei = read(ops, g.edge_index)
    w = None if weight is None else read(ops, weight)
    if ei is None or (weight is not None and w is None):  # traced: values unknown
        return
    row, col = ei[0].astype(np.int64), ei[1].astype(np.int64)
    w = np.ones(row.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    forward, f_at = np.unique(row * n + col, return_inverse=True)
    backward, b_at = np.unique(col * n + row, return_inverse=True)
    if forward.shape != backward.shape or not np.array_equal(forward, backward):
        missing = np.setdiff1d(forward, backward)[:1]
        i, j = (int(missing[0]) // n, int(missing[0]) % n) if missing.size else (-1, -1)
        raise ValueError(
            f"{where}: the SparseGraph is not symmetric although symmetric=True: edge "
            f"{i} -> {j} has no {j} -> {i}; pass symmetric=False for a directed graph"
        )
    wf, wb = np.bincount(f_at, weights=w), np.bincount(b_at, weights=w)
    off = np.abs(wf - wb) > 1e-5 * np.maximum(np.abs(wf), np.abs(wb))
    if off.any():
        k = int(np.flatnonzero(off)[0])
        i, j = int(forward[k]) // n, int(forward[k]) % n
        raise ValueError(
            f"{where}: the SparseGraph is not symmetric although symmetric=True: edge "
            f"{i} -> {j} weighs {wf[k]:.6g} but {j} -> {i} weighs {wb[k]:.6g}; pass "
            "symmetric=False for a directed graph"
        )
    if weight is None or version is not None:
        g._cache["symmetric"] = key


def _check_edges_within_graphs(ops: ArrayOps, where: str, g: SparseGraph, n: int) -> None:
    """Every edge joins two nodes of one graph of the `batch`: an edge across graphs would
    be counted in both (`O(E)`, once per graph object, eager only)."""
    key = f"edges-within-graphs-{n}"
    if key in g._cache:
        return
    ei, batch = read(ops, g.edge_index), read(ops, g.batch)
    if ei is None or batch is None:
        return

    crossing = np.flatnonzero(batch[ei[0]] != batch[ei[1]])
    if crossing.size:
        e = int(crossing[0])
        i, j = int(ei[0, e]), int(ei[1, e])
        raise ValueError(
            f"{where}: edge {e} ({i} -> {j}) joins node {i} of graph {int(batch[i])} and node "
            f"{j} of graph {int(batch[j])}; the edges of a batch must stay within their graph"
        )
    g._cache[key] = True


def _check_edges(ops: ArrayOps, where: str, g: SparseGraph, n: int) -> tuple[Array, Array, Array]:
    ei = g.edge_index
    shape, dtype = ops.shape(ei), ops.dtype_name(ei)
    if len(shape) != 2 or shape[0] != 2:
        raise ValueError(
            f"{where}: `edge_index` must have shape (2, E); got shape {fmt_shape(shape)}"
        )
    if dtype not in _INTEGER:
        raise TypeError(f"{where}: `edge_index` must be an integer array; got dtype {dtype}")
    if g.num_nodes is not None and g.num_nodes != n:
        raise ValueError(
            f"{where}: the SparseGraph has num_nodes = {g.num_nodes} but `x` has N = {n} nodes"
        )
    # The range check reads all 2E ids: once per graph and node count (see SparseGraph).
    checked = f"ids-in-range-{n}"
    values = None if checked in g._cache else read(ops, ei)
    if values is not None and values.size:
        lo, hi = int(values.min()), int(values.max())
        if lo < 0:
            raise ValueError(
                f"{where}: `edge_index` holds a negative node id ({lo}); ids must be in [0, {n})"
            )
        if hi >= n:
            raise ValueError(
                f"{where}: `edge_index` holds node id {hi}, out of range for N = {n} nodes (ids must be in [0, {n}))"
            )
    if values is not None:
        g._cache[checked] = True
    row, col = ei[0], ei[1]
    if g.edge_weight is None:
        return row, col, ops.astype(ops.ones_like(row), "float32")
    wshape, wdtype = ops.shape(g.edge_weight), ops.dtype_name(g.edge_weight)
    if len(wshape) != 1 or (
        wshape[0] is not None and shape[1] is not None and wshape[0] != shape[1]
    ):
        raise ValueError(
            f"{where}: `edge_weight` must have shape (E,) = {fmt_shape((shape[1],))}; got shape {fmt_shape(wshape)}"
        )
    if wdtype not in FLOATING:
        raise TypeError(f"{where}: `edge_weight` must be floating; got dtype {wdtype}")
    return row, col, g.edge_weight


def _check_batch(ops: ArrayOps, where: str, g: SparseGraph, n: int) -> tuple[Array, int, int]:
    batch = g.batch
    shape, dtype = ops.shape(batch), ops.dtype_name(batch)
    if len(shape) != 1 or (shape[0] is not None and shape[0] != n):
        raise ValueError(
            f"{where}: `batch` must have shape (N,) = ({n},); got shape {fmt_shape(shape)}"
        )
    if dtype not in _INTEGER:
        raise TypeError(f"{where}: `batch` must be an integer array; got dtype {dtype}")
    num_graphs, max_nodes = g.num_graphs, g.max_num_nodes
    for name, size, least in (("num_graphs", num_graphs, 1), ("max_num_nodes", max_nodes, 0)):
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int | np.integer) or size < least
        ):
            raise ValueError(
                f"{where}: SparseGraph `{name}` must be an int >= {least}; got {size!r}"
            )
    # B and M come from the values unless given; either way read once per graph object
    key = f"batch-{n}"
    if key in g._cache:
        return batch, *g._cache[key]
    known = num_graphs is not None and max_nodes is not None
    values = None if known and not value_checks_enabled(ops, batch) else ops.to_numpy(batch)
    if values is not None and not values.size:  # N = 0: one empty graph unless told
        num_graphs, max_nodes = num_graphs or 1, max_nodes or 0
    elif values is not None:
        if int(values.min()) < 0:
            raise ValueError(f"{where}: `batch` holds a negative graph id ({int(values.min())})")
        if np.any(np.diff(values) < 0):
            i = int(np.flatnonzero(np.diff(values) < 0)[0])
            raise ValueError(
                f"{where}: `batch` must be sorted (nodes of one graph together, in order); batch[{i}] = {values[i]} > batch[{i + 1}] = {values[i + 1]}"
            )
        seen = int(values.max()) + 1
        if num_graphs is not None and num_graphs < seen:
            raise ValueError(
                f"{where}: num_graphs = {num_graphs} but `batch` holds graph id {seen - 1}"
            )
        num_graphs = seen if num_graphs is None else num_graphs
        largest = int(np.bincount(values, minlength=num_graphs).max())
        if max_nodes is not None and max_nodes < largest:
            raise ValueError(
                f"{where}: max_num_nodes = {max_nodes} but a graph of the batch has {largest} nodes"
            )
        max_nodes = largest if max_nodes is None else max_nodes
    if num_graphs is None or max_nodes is None:
        raise ValueError(
            f"{where}: with a `batch` vector inside jit/tf.function/torch.compile, pass SparseGraph(..., num_graphs=B, max_num_nodes=M): the values are not known there"
        )
    if values is not None:
        g._cache[key] = (int(num_graphs), int(max_nodes))
    return batch, int(num_graphs), int(max_nodes)


def pad(ops: ArrayOps, adj: SparseAdjacency, values: Array) -> Array:
    """`(N, K)` node values → `(B, M, K)` zero-padded per graph (PyG's `to_dense_batch`)."""
    k = ops.shape(values)[-1]
    if adj.slots is None:
        return ops.expand_dims(values, 0)
    flat = ops.segment_sum(values, adj.slots, adj.num_graphs * adj.max_nodes)
    return ops.reshape(flat, (adj.num_graphs, adj.max_nodes, k))  # type: ignore[arg-type]
