"""Sparse adjacency: the `SparseGraph` type and its conversion, once, at the boundary.

A sparse adjacency reaches the core as a backend's fastest spmm form plus the node degrees
(`SparseAdjacency`); the core only calls `ops.spmm(matrix, dense)`. Nothing `N × N` is
formed: memory is `O(E + N·C + N·F)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from dmon.ops import FLOATING, Array, ArrayOps
from dmon.validation import _fmt

_INTEGER = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


class SparseGraph:
    """A sparse adjacency in PyTorch Geometric's convention, for any backend.

    Args:
        edge_index: `(2, E)` integer array of `(source, target)` node ids; entry
            `A[source, target] = edge_weight`. List both directions for an undirected
            graph, as PyG does. Duplicate edges are summed.
        edge_weight: optional `(E,)` floating weights (default 1). Gradients flow to them.
        batch: optional `(N,)` sorted graph id of every node, for several graphs in one
            block-diagonal `edge_index` (PyG's `Batch.batch`).
        num_graphs: number of graphs `B`; needed under `jax.jit`/`tf.function` with a
            `batch` (values are unknown there), else `max(batch) + 1`.
        max_num_nodes: size of the largest graph; needed with `batch` under `jit`, else
            computed.
        num_nodes: optional `N`, checked against the node features.

    Value checks (ids in range, non-negative, `batch` sorted) run when the arrays are
    concrete (eager); inside compiled code only shapes and dtypes are checked.

    The first call with a graph remembers what it derived from `edge_index` (that the ids
    are in range, and torch's CSR index), so later calls with the same graph skip that
    work. Assigning a new `edge_index` or `batch` forgets it; changing the array's values
    in place does not, so build a new `SparseGraph` for new edges. Weights are never
    remembered: they may change (and be trained) between calls.
    """

    __slots__ = (
        "_cache",
        "batch",
        "edge_index",
        "edge_weight",
        "max_num_nodes",
        "num_graphs",
        "num_nodes",
    )

    def __init__(
        self,
        edge_index: Array,
        edge_weight: Array | None = None,
        batch: Array | None = None,
        num_graphs: int | None = None,
        max_num_nodes: int | None = None,
        num_nodes: int | None = None,
    ) -> None:
        self.edge_index = edge_index
        self.edge_weight = edge_weight
        self.batch = batch
        self.num_graphs = num_graphs
        self.max_num_nodes = max_num_nodes
        self.num_nodes = num_nodes
        # Index structures a backend derives from edge_index (e.g. torch's CSR row
        # pointer), reused across calls with this graph. Never weights.
        self._cache: dict[str, Any] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        # What the cache holds was derived from edge_index (and checked with batch).
        if name in ("edge_index", "batch") and hasattr(self, "_cache"):
            self._cache.clear()
        object.__setattr__(self, name, value)

    def map_arrays(self, fn: Callable[[Any], Any]) -> SparseGraph:
        """A copy with `fn` applied to every array field."""
        return SparseGraph(
            fn(self.edge_index),
            None if self.edge_weight is None else fn(self.edge_weight),
            None if self.batch is None else fn(self.batch),
            self.num_graphs,
            self.max_num_nodes,
            self.num_nodes,
        )

    def __repr__(self) -> str:
        shape = getattr(self.edge_index, "shape", "?")
        return f"SparseGraph(edge_index={tuple(shape)}, weighted={self.edge_weight is not None}, batched={self.batch is not None})"


def remembered(cache: dict[str, Any] | None, key: str, build: Callable[[], Any]) -> Any:
    """`cache[key]`, built by `build()` on first use; just `build()` without a cache.

    For the index structures a backend derives from a `SparseGraph`'s `edge_index` (see
    `ArrayOps.sparse_matrix`); never for weights.
    """
    if cache is None:
        return build()
    if key not in cache:
        cache[key] = build()
    return cache[key]


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


def is_sparse(ops: ArrayOps, adj: object) -> bool:
    return isinstance(adj, SparseGraph) or ops.is_sparse(adj)


def to_adjacency(ops: ArrayOps, where: str, adj: Any, n: int, dtype: str) -> SparseAdjacency:
    """Check a `SparseGraph` or native sparse matrix against `n` nodes and convert it."""
    batch = slots = None
    num_graphs, max_nodes = 1, n
    row, col, weight = edges(ops, where, adj, n)
    if isinstance(adj, SparseGraph) and adj.batch is not None:
        batch, num_graphs, max_nodes = _check_batch(ops, where, adj, n)
        # position of each node within its graph: its index minus its graph's first index
        counts = ops.segment_sum(ops.ones_like(batch), batch, num_graphs)
        starts = ops.cumsum(counts) - counts
        position = ops.arange(n, like=batch) - ops.take(starts, batch)
        slots = batch * max_nodes + position
    weight = ops.astype(weight, dtype)
    cache = adj._cache if isinstance(adj, SparseGraph) else None
    return SparseAdjacency(
        ops.sparse_matrix(row, col, weight, n, cache), batch, slots, num_graphs, max_nodes
    )


def edges(ops: ArrayOps, where: str, adj: Any, n: int) -> tuple[Array, Array, Array]:
    """Checked `(row, col, weight)` of a `SparseGraph` or native sparse matrix of `n` nodes."""
    if isinstance(adj, SparseGraph):
        return _check_edges(ops, where, adj, n)
    row, col, weight, size = ops.sparse_coo(adj)
    if size != n:
        raise ValueError(
            f"{where}: the sparse `adj` is {size} x {size} but the graph has N = {n} nodes"
        )
    if ops.dtype_name(weight) not in FLOATING:
        raise TypeError(
            f"{where}: the sparse `adj` must hold floating values; got dtype {ops.dtype_name(weight)}"
        )
    return row, col, weight


def _check_edges(ops: ArrayOps, where: str, g: SparseGraph, n: int) -> tuple[Array, Array, Array]:
    ei = g.edge_index
    shape, dtype = ops.shape(ei), ops.dtype_name(ei)
    if len(shape) != 2 or shape[0] != 2:
        raise ValueError(f"{where}: `edge_index` must have shape (2, E); got shape {_fmt(shape)}")
    if dtype not in _INTEGER:
        raise TypeError(f"{where}: `edge_index` must be an integer array; got dtype {dtype}")
    if g.num_nodes is not None and g.num_nodes != n:
        raise ValueError(
            f"{where}: the SparseGraph has num_nodes = {g.num_nodes} but `x` has N = {n} nodes"
        )
    # The range check reads all 2E ids: once per graph and node count (see SparseGraph).
    checked = f"ids-in-range-{n}"
    values = None if checked in g._cache else ops.to_numpy(ei)
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
            f"{where}: `edge_weight` must have shape (E,) = {_fmt((shape[1],))}; got shape {_fmt(wshape)}"
        )
    if wdtype not in FLOATING:
        raise TypeError(f"{where}: `edge_weight` must be floating; got dtype {wdtype}")
    return row, col, g.edge_weight


def _check_batch(ops: ArrayOps, where: str, g: SparseGraph, n: int) -> tuple[Array, int, int]:
    batch = g.batch
    shape, dtype = ops.shape(batch), ops.dtype_name(batch)
    if len(shape) != 1 or (shape[0] is not None and shape[0] != n):
        raise ValueError(f"{where}: `batch` must have shape (N,) = ({n},); got shape {_fmt(shape)}")
    if dtype not in _INTEGER:
        raise TypeError(f"{where}: `batch` must be an integer array; got dtype {dtype}")
    num_graphs, max_nodes = g.num_graphs, g.max_num_nodes
    values = ops.to_numpy(batch)
    if values is not None and values.size:
        import numpy as np

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
    return batch, int(num_graphs), int(max_nodes)


def pad(ops: ArrayOps, adj: SparseAdjacency, values: Array) -> Array:
    """`(N, K)` node values → `(B, M, K)` zero-padded per graph (PyG's `to_dense_batch`)."""
    k = ops.shape(values)[-1]
    if adj.slots is None:
        return ops.expand_dims(values, 0)
    flat = ops.segment_sum(values, adj.slots, adj.num_graphs * adj.max_nodes)
    return ops.reshape(flat, (adj.num_graphs, adj.max_nodes, k))  # type: ignore[arg-type]
