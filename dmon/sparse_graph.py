"""`SparseGraph`, a sparse adjacency in PyTorch Geometric's convention, the helper
that remembers what a backend derives from its `edge_index`, and `Edges`, the entries
of a sparse matrix as a backend receives them (`dmon.ops.ArrayOps.sparse_matrix`).

A leaf module: it imports nothing from dmon, so the backends (loaded by `dmon.ops`) can
import it without an import cycle; its JAX pytree registration is loaded by name
(`dmon.backends.jax.pytree`) when JAX is already imported.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

Array = Any


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
        symmetric: the caller's promise that `A = Aᵀ` (an undirected graph listed in
            both directions, as `dmon.data.load` makes it). The backward of `A @ S`
            then multiplies by `A` itself instead of building `Aᵀ` (a sort of the edges
            on torch; an adjoint product on TensorFlow). Not checked: a check would cost
            that sort.

    Value checks (ids in range, non-negative, `batch` sorted) run when the arrays are
    concrete (eager); inside compiled code only shapes and dtypes are checked.

    The first call with a graph remembers what it derived from `edge_index` (that the ids
    are in range, and torch's CSR index), so later calls with the same graph skip that
    work. Assigning a new `edge_index` or `batch` forgets it; changing the array's values
    in place does not, so build a new `SparseGraph` for new edges. `edge_weight` is never
    remembered: it may change (and be trained) between calls. An unweighted graph's
    weights are ones on every call, so the matrix built from them is remembered too
    (torch's weights of the transpose, TensorFlow's converted CSR matrix and its
    transpose): its backward then has no per-call gather or conversion.
    """

    __slots__ = (
        "_cache",
        "batch",
        "edge_index",
        "edge_weight",
        "max_num_nodes",
        "num_graphs",
        "num_nodes",
        "symmetric",
    )

    def __init__(
        self,
        edge_index: Array,
        edge_weight: Array | None = None,
        batch: Array | None = None,
        num_graphs: int | None = None,
        max_num_nodes: int | None = None,
        num_nodes: int | None = None,
        symmetric: bool = False,
    ) -> None:
        self.edge_index = edge_index
        self.edge_weight = edge_weight
        self.batch = batch
        self.num_graphs = num_graphs
        self.max_num_nodes = max_num_nodes
        self.num_nodes = num_nodes
        self.symmetric = bool(symmetric)
        # Index structures a backend derives from edge_index (e.g. torch's CSR row
        # pointer), reused across calls with this graph. Never weights.
        self._cache: dict[str, Any] = {}
        if "jax" in sys.modules:  # a jax.jit argument before any dmon call made with JAX
            register_jax_pytree()

    def __setattr__(self, name: str, value: Any) -> None:
        # What the cache holds was derived from edge_index (and checked with batch).
        if name in ("edge_index", "batch") and hasattr(self, "_cache"):
            self._cache.clear()
        elif name == "edge_weight" and hasattr(self, "_cache"):
            self._cache.pop("weights", None)  # checked weights (dmon.sparse)
        object.__setattr__(self, name, value)

    @classmethod
    def from_pyg(cls, data: Any, symmetric: bool = False) -> SparseGraph:
        """The adjacency of a PyTorch Geometric `Data` or `Batch` (or any object with
        their fields): `edge_index`, `edge_weight` (or a one-column `edge_attr`) and, for
        a batch, `batch` and `num_graphs`. `dmon.pool` takes such an object as `adj`
        directly. Nothing of PyG is imported."""
        weight = getattr(data, "edge_weight", None)
        attr = getattr(data, "edge_attr", None)
        if weight is None and attr is not None and (attr.ndim == 1 or attr.shape[-1] == 1):
            weight = attr.reshape(-1)  # one value an edge: its weight
        batch = getattr(data, "batch", None)
        return cls(
            data.edge_index,
            weight,
            batch=batch,
            num_graphs=None if batch is None else getattr(data, "num_graphs", None),
            num_nodes=getattr(data, "num_nodes", None),
            symmetric=symmetric,
        )

    def map_arrays(self, fn: Callable[[Any], Any]) -> SparseGraph:
        """A copy with `fn` applied to every array field."""
        return SparseGraph(
            fn(self.edge_index),
            None if self.edge_weight is None else fn(self.edge_weight),
            None if self.batch is None else fn(self.batch),
            self.num_graphs,
            self.max_num_nodes,
            self.num_nodes,
            self.symmetric,
        )

    def __repr__(self) -> str:
        shape = getattr(self.edge_index, "shape", "?")
        return f"SparseGraph(edge_index={tuple(shape)}, weighted={self.edge_weight is not None}, batched={self.batch is not None})"


def register_jax_pytree() -> None:
    """Let a `SparseGraph` be a `jax.jit` argument (`dmon.backends.jax.pytree`). The one
    place the core names a framework: JAX needs the class registered before a graph
    crosses `jit`, which may happen before any dmon call has used JAX."""
    importlib.import_module("dmon.backends.jax.pytree").register_sparse_graph()


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


class Edges(NamedTuple):
    """A sparse `(n, width)` matrix as its entries, and what a backend may assume and keep
    when it builds its own form of it (`ArrayOps.sparse_matrix`)."""

    row: Array
    """`(E,)` integer row of every entry."""
    col: Array
    """`(E,)` integer column of every entry."""
    weight: Array
    """`(E,)` floating values; duplicates are summed. Differentiable unless `constant`."""
    n: int
    """Rows."""
    cols: int | None = None
    """Columns (default `n`): a shard holds `n` rows of a graph of `cols` nodes."""
    cache: dict[str, Any] | None = None
    """A `SparseGraph`'s (or `Shard`'s) own store: index structures derived from `row` and
    `col` may be kept there across calls (`dmon.sparse_graph.remembered`), only for
    concrete (not traced) arrays; weights only when `constant`."""
    symmetric: bool = False
    """The caller promises `A = Aᵀ`: a backward may multiply by `A` instead of `Aᵀ`."""
    constant: bool = False
    """The weights are constants that never need a gradient (a trainer's graph, the ones
    of an unweighted `SparseGraph`): the whole matrix, weights included, may be kept in
    `cache` (TensorFlow keeps its `CSRSparseMatrix` and its transpose; torch the weights
    in CSR order and in its transpose's)."""
    slots: int = 0
    """The first `slots · n` entries are in slot order (`dmon.partition.slotted`); a
    backend may multiply them as `slots` gathers (JAX does)."""

    @property
    def width(self) -> int:
        """Columns: `cols`, else `n`."""
        return self.n if self.cols is None else self.cols
