"""DMoN on a graph sharded by nodes over devices and processes, on the engines users run:
JAX SPMD (`jax.shard_map` over a `Mesh`, one process or many after
`jax.distributed.initialize`) and `torch.distributed` (torchrun; gloo, NCCL).

Every DMoN quantity is a sum over nodes. Shard `p` holds its nodes' rows (`dmon.partition`)
and per step:

    S_p  = softmax(logits_p)                        local
    S    = all_gather(S_p)                          (N, C) on every shard, or
    S    = [S_p; halo rows of other shards]         an all-to-all (`dmon.halo`)
    [AS | d]_p = A_p [S | 1]                        local rows, global columns
    SᵀAS, Sᵀd, SᵀS, SᵀX = all_sum(S_pᵀ [AS | d | S | X]_p)   (C, ·) sums

and the losses follow from the sums alone (`dmon.objective.outputs`, the code of the
one-device pool). Gradients flow through the collectives by autodiff (the transpose of an
all-gather is a reduce-scatter, of an all-to-all the reverse all-to-all). Nothing here imports a framework: each backend's
collectives and placement of a partition are in `dmon.backends.<name>.collectives`.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from dmon.checks import check_resolution
from dmon.node_sums import node_sums
from dmon.objective import DMoNOutput, from_node_sums, outputs, with_ones
from dmon.ops import Array, Edges, get_backend
from dmon.partition import Partition, partition
from dmon.sparse_graph import SparseGraph

__all__ = [
    "Collectives",
    "LocalCollectives",
    "Partition",
    "Shard",
    "gcn_partition",
    "gcn_propagate",
    "partition",
    "shard_pool",
    "shard_spmm",
]


class Collectives(Protocol):
    """The two collectives DMoN needs, differentiable, over the shards of one graph."""

    def all_gather(self, x: Array) -> Array:
        """`(block, K)` on every shard → `(P * block, K)`, shard by shard, on every shard."""
        ...

    def all_sum(self, x: Array) -> Array:
        """Elementwise sum over the shards, on every shard."""
        ...

    def exchange(self, x: Array, send: Array, splits: Any = None) -> Array:
        """The halo exchange (`dmon.halo`): rows `send` of `(block, K)` `x` go to their
        peers; returns the rows received, peer by peer. `send` is `(P, H)` (padded
        layout, `splits` `None`) or the rows for every peer in one vector with
        `splits = (rows sent to each peer, rows received from each)` (exact layout)."""
        ...

    def sum_gradients(self, params: list[Any]) -> None:
        """Sum every parameter's `.grad` over the shards, where autodiff leaves each
        shard its own part (torch); nothing where autodiff of the collectives already
        did (JAX)."""
        ...


class LocalCollectives:
    """One shard holds the whole graph: both collectives are the identity."""

    def all_gather(self, x: Array) -> Array:
        return x

    def all_sum(self, x: Array) -> Array:
        return x

    def exchange(self, x: Array, send: Array, splits: Any = None) -> Array:
        raise ValueError("dmon.distributed: one shard has no halo to exchange")

    def sum_gradients(self, params: list[Any]) -> None:
        del params


class Shard:
    """One shard's graph: its edges (local source row, target row of the gathered array
    or, with `send`, of `[own rows; received halo]`, weight), its valid rows and their
    graph ids, as arrays of one framework.

    Each backend places one (`dmon.backends.<name>.collectives`); with JAX, a `Shard` of
    global arrays (`jax_shards`) is passed to `jax.shard_map` with
    `in_specs=shard_spec(shard)`, and inside each device sees its own block."""

    def __init__(
        self,
        row: Array,
        col: Array,
        weight: Array,
        valid: Array,
        batch: Array,
        num_graphs: int,
        symmetric: bool = False,
        slots: int = 0,
        padded: bool = True,
        send: Array | None = None,
        splits: tuple[list[int], list[int]] | None = None,
    ) -> None:
        self.row, self.col, self.weight = row, col, weight
        # the halo exchange (Collectives.exchange) in place of the all-gather: the rows
        # to send, and for the exact layout the counts sent to and received from each peer
        self.send, self.splits = send, splits
        self.valid, self.batch, self.num_graphs = valid, batch, int(num_graphs)
        # index structures a backend derives from the edges (torch's CSR and its
        # transpose, TensorFlow's indices), built on first use; not part of the pytree
        self.cache: dict[str, Any] = {}
        # the whole graph's A = Aᵀ (the caller's promise, as SparseGraph's): shard_pool
        # then differentiates by dmon.node_sums's rule, and on one device the backward
        # of A S multiplies by A itself
        self.symmetric = bool(symmetric)
        # the first slots · block edges are in slot order (dmon.partition.slotted)
        self.slots = int(slots)
        # some block has padding rows (valid False); without any, shard_pool skips
        # masking its (block, ·) arrays, which costs as much as an element-wise layer
        self.padded = bool(padded)
        # the weights are constants (a trainer's graph; no gradient with respect to
        # them): a backend may keep its whole sparse matrix in `cache`
        self.constant = False

    def arrays(self) -> tuple[Array, ...]:
        base = (self.row, self.col, self.weight, self.valid, self.batch)
        return base if self.send is None else (*base, self.send)


def shard_spmm(shard: Shard, h: Array, comm: Collectives) -> Array:
    """`A_p H`: this shard's rows of `A H` with `H = all_gather(h)`, or with
    `H = [h; the halo rows received]` when `shard.send` is set.

    Args:
        shard: this shard's graph (for a GCN layer, a partition of
            `dmon.adjacency.gcn_normalize_sparse`'s graph, whose self-loops are edges).
        h: `(block, K)` this shard's rows of `H`.
        comm: the collectives of the engine (`JaxCollectives`, `TorchCollectives`).

    Returns:
        `(block, K)`.
    """
    ops = get_backend(h)
    if shard.send is None:
        full = comm.all_gather(h)
    else:
        full = ops.concat([h, comm.exchange(h, shard.send, shard.splits)], axis=0)
    block, cols = _static(ops.shape(h)[0]), _static(ops.shape(full)[0])
    weight = ops.astype(shard.weight, ops.dtype_name(h))
    symmetric = shard.symmetric and block == cols
    matrix = ops.sparse_matrix(
        Edges(
            shard.row,
            shard.col,
            weight,
            block,
            cols,
            shard.cache,
            symmetric,
            shard.constant,
            shard.slots,
        )
    )
    return ops.spmm(matrix, full)


def shard_pool(
    x: Array,
    shard: Shard,
    logits: Array,
    comm: Collectives,
    *,
    resolution: float = 1.0,
    losses_only: bool = False,
) -> DMoNOutput:
    """DMoN pooling of a node-sharded graph: this shard's part of `dmon.pool`.

    Every shard calls it with its own rows; all get the same pooled graph and losses,
    equal to `dmon.pool` of the whole graph (sparse path: `x`, `logits` node-level).

    Args:
        x: `(block, F)` this shard's node features (padding rows are ignored).
        shard: this shard's graph (`torch_shard`, or inside `jax.shard_map` a block of
            `jax_shards`).
        logits: `(block, C)` this shard's assignment logits.
        comm: the engine's collectives.
        resolution: `γ` of the spectral loss (as `dmon.pool`).
        losses_only: compute what a training step reads, `s` and the spectral and
            cluster losses; the pooled `x`, `adj` and the orthogonality loss are `None`
            (`x` is then not read).

    Returns:
        `DMoNOutput` with `s` this shard's `(block, C)` rows (0 on padding) and the
        pooled `x` `(B, C, F)`, `adj` `(B, C, C)` and the three losses of the whole
        batch of `B` graphs, identical on every shard.

    Communication per call: one all-gather of `(N, C)` (or the halo exchange of the
    rows this shard's edges reference) and one all-reduce of `B·C·(2C + F + 1) + B`
    numbers (`docs/distributed.md`).
    """
    where = "dmon.distributed.shard_pool"
    gamma = check_resolution(where, resolution)
    ops = get_backend(logits)
    block = _static(ops.shape(shard.valid)[0])
    for name, v in (("x", x), ("logits", logits)):
        shape = ops.shape(v)
        if len(shape) != 2 or shape[0] != block:
            raise ValueError(
                f"{where}: `{name}` must have shape (block, ·) = ({block}, ·), this shard's rows; got {shape}"
            )
        if ops.dtype_name(v) not in ("float32", "float64"):
            raise TypeError(
                f"{where}: `{name}` must be float32 or float64; got {ops.dtype_name(v)}"
            )
    dtype = ops.dtype_name(logits)
    s = ops.softmax(logits)
    xs = None if losses_only else ops.astype(x, dtype)
    if shard.padded:
        padding = ~ops.expand_dims(shard.valid, -1)
        s = ops.where(padding, 0.0, s)
        xs = None if xs is None else ops.where(padding, 0.0, xs)
    c = _static(ops.shape(s)[-1])
    b = shard.num_graphs
    symmetric = shard.symmetric and b == 1
    # [A S | d]: the degrees from the same pass over the edges as A S. For a symmetric A,
    # from a constant S: dmon.node_sums's rule then gives S its whole gradient from this
    # shard's own rows, so the backward has no sparse product and no collective
    s1 = with_ones(ops, s)
    prod = shard_spmm(shard, ops.stop_gradient(s1) if symmetric else s1, comm)
    if b == 1:  # dmon.node_sums's rules, as in dmon.pool's sparse path
        one = [None if v is None else ops.expand_dims(v, 0) for v in (s, prod, xs)]
        local = node_sums(ops, *one, symmetric=symmetric)  # a batch of one graph
    else:  # (block, B·C): row i holds S_i in its graph's C columns: one product per graph
        ids = ops.arange(b, like=shard.batch)
        own = ops.expand_dims(ops.expand_dims(shard.batch, -1) == ops.expand_dims(ids, 0), -1)
        s_graph = ops.reshape(ops.where(own, ops.expand_dims(s, 1), 0.0), (block, b * c))
        columns = [prod, s] if xs is None else [prod, s, xs]
        local = ops.matmul(ops.transpose(s_graph), ops.concat(columns, axis=-1))
        local = ops.reshape(local, (b, c, _static(ops.shape(local)[-1])))
    if isinstance(comm, LocalCollectives):  # one device: nothing to reduce
        n_valid = None if b == 1 and not shard.padded else _counts(ops, shard, dtype)
        sums = from_node_sums(ops, local, n_valid, block)
    else:
        # one all-reduce for every sum (latency, not bandwidth, dominates these numbers)
        size = b * c * _static(ops.shape(local)[-1])
        packed = ops.concat([ops.reshape(local, (size,)), _counts(ops, shard, dtype)], axis=0)
        total = comm.all_sum(packed)
        sums = from_node_sums(ops, ops.reshape(total[:size], ops.shape(local)), total[size:], None)  # type: ignore[arg-type]
    return outputs(ops, s, sums, gamma, dtype, losses_only=losses_only)


def _counts(ops: Any, shard: Shard, dtype: str) -> Array:
    """`(B,)` valid nodes of each graph on this shard."""
    return ops.segment_sum(ops.astype(shard.valid, dtype), shard.batch, shard.num_graphs)


def _static(size: int | None) -> int:
    """A size known at trace time (every shard's block is)."""
    if size is None:
        raise ValueError("dmon.distributed: array sizes must be known statically")
    return int(size)


def _normalized(part: Partition, edge_index: Any, edge_weight: Any) -> tuple[Any, Any]:
    """`Â`'s edges (self-loops included) and float64 weights, by
    `dmon.adjacency.gcn_normalize_sparse` on the NumPy backend."""
    from dmon.adjacency import gcn_normalize_sparse

    w = None if edge_weight is None else np.asarray(edge_weight, dtype=np.float64)
    a_hat = gcn_normalize_sparse(
        SparseGraph(np.asarray(edge_index), w), part.num_nodes, dtype="float64", backend="numpy"
    )
    return np.asarray(a_hat.edge_index), np.asarray(a_hat.edge_weight)


def gcn_partition(part: Partition, edge_index: Any, edge_weight: Any = None) -> Partition:
    """The normalised adjacency `Â = D^-1/2 (A + I) D^-1/2` of a GCN
    (`dmon.adjacency.gcn_normalize_sparse`, its self-loops as edges), split into the blocks
    of `part`: for `shard_spmm(shard, h, comm)` = this shard's rows of `Â H`."""
    ei, w = _normalized(part, edge_index, edge_weight)
    return partition(ei, part.num_nodes, part.parts, w, like=part)


def gcn_propagate(part: Partition, x: Any, edge_index: Any, edge_weight: Any = None) -> np.ndarray:
    """`Â X` with `Â = D^-1/2 (A + I) D^-1/2` (`dmon.adjacency.gcn_normalize_sparse`), in
    float64, sharded: `(P, block, F)`, padding rows zero.

    A GCN's first layer is `Â X W`: when `X` is a constant, `Â X` is computed once per
    fit and the layer needs no communication per step."""
    import scipy.sparse as sp

    (row, col), w = _normalized(part, edge_index, edge_weight)
    matrix = sp.csr_matrix((w, (row, col)), shape=(part.num_nodes, part.num_nodes))
    return part.scatter(matrix @ np.asarray(x, dtype=np.float64))
