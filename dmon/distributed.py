"""DMoN on a graph sharded by nodes over devices and processes, on the engines users run:
JAX SPMD (`jax.shard_map` over a `Mesh`, one process or many after
`jax.distributed.initialize`) and `torch.distributed` (torchrun; gloo, NCCL).

Every DMoN quantity is a sum over nodes. Shard `p` holds its nodes' rows (`dmon.partition`)
and per step:

    S_p  = softmax(logits_p)                        local
    S    = all_gather(S_p)                          (N, C) on every shard
    [AS | d]_p = A_p [S | 1]                        local rows, global columns
    SᵀAS, Sᵀd, SᵀS, SᵀX = all_sum(S_pᵀ [AS | d | S | X]_p)   (C, ·) sums

and the losses follow from the sums alone (`dmon.pooling.reduced_losses`, the code of the
one-device pool). Gradients flow through the collectives by autodiff (the transpose of an
all-gather is a reduce-scatter). Nothing here imports a framework at module level.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from dmon.ops import Array, get_backend
from dmon.partition import Partition, partition, slotted
from dmon.pooling import DMoNOutput, check_resolution, outputs_from_sums, with_ones
from dmon.sparse_graph import SparseGraph
from dmon.symmetric import node_sums

__all__ = [
    "Collectives",
    "JaxCollectives",
    "LocalCollectives",
    "Partition",
    "Shard",
    "TorchCollectives",
    "gcn_partition",
    "gcn_propagate",
    "jax_shards",
    "partition",
    "shard_pool",
    "shard_spmm",
    "tf_shard",
    "torch_shard",
]


class Collectives(Protocol):
    """The two collectives DMoN needs, differentiable, over the shards of one graph."""

    def all_gather(self, x: Array) -> Array:
        """`(block, K)` on every shard → `(P * block, K)`, shard by shard, on every shard."""
        ...

    def all_sum(self, x: Array) -> Array:
        """Elementwise sum over the shards, on every shard."""
        ...


class JaxCollectives:
    """Collectives over the mesh axis `axis_name`, for code inside `jax.shard_map`."""

    def __init__(self, axis_name: str = "nodes") -> None:
        import jax

        self.axis_name = axis_name
        self._lax = jax.lax

    def all_gather(self, x: Array) -> Array:
        return self._lax.all_gather(x, self.axis_name, tiled=True)

    def all_sum(self, x: Array) -> Array:
        return self._lax.psum(x, self.axis_name)


class TorchCollectives:
    """Collectives over a `torch.distributed` process group, with autograd.

    `all_gather` is `torch.distributed.nn.functional.all_gather` (its backward sums the
    gradients of every rank's copy: a reduce-scatter). `all_sum` is an all-reduce whose
    backward passes the gradient through unchanged, as JAX's `psum` of a value every
    device then uses alike: every rank computes the same loss from the sum, so each
    rank's upstream gradient already is the full one (torch's own `all_reduce` backward
    would sum the `P` equal copies and scale every gradient by `P`). Hence: use the
    output of `all_sum` identically on every rank, and sum the ranks' parameter
    gradients (`sum_gradients`)."""

    def __init__(self, group: Any = None) -> None:
        import torch.distributed as dist
        import torch.distributed.nn.functional as fn

        self.group = group
        self._dist, self._fn = dist, fn

    def all_gather(self, x: Array) -> Array:
        import warnings

        import torch

        with warnings.catch_warnings():
            # deprecated in favour of a private module (torch 2.13); its backward is the
            # reduce-scatter (alltoall on gloo) this needs
            warnings.simplefilter("ignore", FutureWarning)
            parts = self._fn.all_gather(x, group=self.group)
        return torch.cat(parts, dim=0)

    def all_sum(self, x: Array) -> Array:
        return _replicated_sum().apply(x, self.group)

    def sum_gradients(self, params: list[Any]) -> None:
        """Replace every `p.grad` by its sum over the ranks (each rank holds the part of
        the gradient from its own nodes), in one all-reduce of all of them."""
        import torch

        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._dist.all_reduce(flat, group=self.group)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


_REPLICATED_SUM: Any = None


def _replicated_sum() -> Any:
    global _REPLICATED_SUM
    if _REPLICATED_SUM is None:
        import torch
        import torch.distributed as dist

        class ReplicatedSum(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: Any, group: Any) -> Any:
                out = x.clone(memory_format=torch.contiguous_format)
                dist.all_reduce(out, group=group)
                return out

            @staticmethod
            def backward(ctx: Any, grad: Any) -> Any:
                return grad, None

        _REPLICATED_SUM = ReplicatedSum
    return _REPLICATED_SUM


class LocalCollectives:
    """One shard holds the whole graph: both collectives are the identity."""

    def all_gather(self, x: Array) -> Array:
        return x

    def all_sum(self, x: Array) -> Array:
        return x

    def sum_gradients(self, params: list[Any]) -> None:
        del params


class Shard:
    """One shard's graph: its edges (local source row, target row of the gathered array,
    weight), its valid rows and their graph ids, as arrays of one framework.

    With JAX, a `Shard` of global arrays (`jax_shards`) is passed to `jax.shard_map`
    with `in_specs=shard.spec(axis)`; inside, each device sees its own block."""

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
    ) -> None:
        self.row, self.col, self.weight = row, col, weight
        self.valid, self.batch, self.num_graphs = valid, batch, int(num_graphs)
        # index structures a backend derives from the edges (torch's CSR and its
        # transpose, TensorFlow's indices), built on first use; not part of the pytree
        self.cache: dict[str, Any] = {}
        # the whole graph's A = Aᵀ (the caller's promise, as SparseGraph's): shard_pool
        # then differentiates by dmon.symmetric's rule, and on one device the backward
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
        return (self.row, self.col, self.weight, self.valid, self.batch)

    def spec(self, axis_name: str = "nodes") -> Shard:
        """The `in_specs` entry for this `Shard` in `jax.shard_map`: every array split
        over `axis_name` on its first axis."""
        from jax.sharding import PartitionSpec

        p = PartitionSpec(axis_name)
        return Shard(p, p, p, p, p, self.num_graphs, self.symmetric, self.slots, self.padded)


_registered = False


def _register_shard_pytree() -> None:
    global _registered
    if _registered:
        return
    import jax

    jax.tree_util.register_pytree_node(
        Shard,
        lambda s: (s.arrays(), (s.num_graphs, s.symmetric, s.slots, s.padded)),
        _unflatten_shard,
    )
    _registered = True


def _unflatten_shard(aux: tuple[int, bool, int, bool], arrays: tuple[Any, ...]) -> Shard:
    row, col, weight, valid, batch = arrays
    return Shard(row, col, weight, valid, batch, *aux)


def shard_spmm(shard: Shard, h: Array, comm: Collectives) -> Array:
    """`A_p H`: this shard's rows of `A H` with `H = all_gather(h)`.

    Args:
        shard: this shard's graph (for a GCN layer, a partition of
            `dmon.graph.gcn_normalize_sparse`'s graph, whose self-loops are edges).
        h: `(block, K)` this shard's rows of `H`.
        comm: the collectives of the engine (`JaxCollectives`, `TorchCollectives`).

    Returns:
        `(block, K)`.
    """
    ops = get_backend(h)
    full = comm.all_gather(h)
    block, cols = _static(ops.shape(h)[0]), _static(ops.shape(full)[0])
    matrix = ops.sparse_matrix(
        shard.row,
        shard.col,
        ops.astype(shard.weight, ops.dtype_name(h)),
        block,
        shard.cache,
        cols,
        symmetric=shard.symmetric and block == cols,
        constant=shard.constant,
        slots=shard.slots,
    )
    return ops.spmm(matrix, full)


def shard_pool(
    x: Array, shard: Shard, logits: Array, comm: Collectives, *, resolution: float = 1.0
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

    Returns:
        `DMoNOutput` with `s` this shard's `(block, C)` rows (0 on padding) and the
        pooled `x` `(B, C, F)`, `adj` `(B, C, C)` and the three losses of the whole
        batch of `B` graphs, identical on every shard.

    Communication per call: one all-gather of `(N, C)` and one all-reduce of
    `B·C·(2C + F + 1) + B` numbers (`docs/distributed.md`).
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
    s, xs = ops.softmax(logits), ops.astype(x, dtype)
    if shard.padded:
        valid = ops.expand_dims(shard.valid, -1)
        s, xs = ops.where(valid, s, 0.0), ops.where(valid, xs, 0.0)
    c = _static(ops.shape(s)[-1])
    b = shard.num_graphs
    symmetric = shard.symmetric and b == 1
    # [A S | d]: the degrees from the same pass over the edges as A S. For a symmetric A,
    # from a constant S: dmon.symmetric's rule then gives S its whole gradient from this
    # shard's own rows, so the backward has no sparse product and no collective
    s1 = with_ones(ops, s)
    prod = shard_spmm(shard, ops.stop_gradient(s1) if symmetric else s1, comm)
    if b == 1:  # dmon.symmetric's rules, as in dmon.pool's sparse path
        one = [ops.expand_dims(v, 0) for v in (s, prod, xs)]  # a batch of one graph
        local = node_sums(ops, *one, symmetric=symmetric)[0]
    else:  # (block, B·C): row i holds S_i in its graph's C columns: one product per graph
        ids = ops.arange(b, like=shard.batch)
        own = ops.expand_dims(ops.expand_dims(shard.batch, -1) == ops.expand_dims(ids, 0), -1)
        s_graph = ops.reshape(ops.where(own, ops.expand_dims(s, 1), 0.0), (block, b * c))
        local = ops.matmul(ops.transpose(s_graph), ops.concat([prod, s, xs], axis=-1))
    counts = ops.segment_sum(ops.astype(shard.valid, dtype), shard.batch, b)
    # one all-reduce for every sum (latency, not bandwidth, dominates these few numbers)
    width = _static(ops.shape(local)[-1])
    total = comm.all_sum(ops.concat([ops.reshape(local, (b * c * width,)), counts], axis=0))
    sums = ops.reshape(total[: b * c * width], (b, c, width))
    n_valid = total[b * c * width :]
    return outputs_from_sums(ops, s, sums, n_valid, None, gamma, dtype)


def _static(size: int | None) -> int:
    """A size known at trace time (every shard's block is)."""
    if size is None:
        raise ValueError("dmon.distributed: array sizes must be known statically")
    return int(size)


def _normalized(part: Partition, edge_index: Any, edge_weight: Any) -> tuple[Any, Any]:
    """`Â`'s edges (self-loops included) and float64 weights, by
    `dmon.graph.gcn_normalize_sparse` on the NumPy backend."""
    from dmon.graph import gcn_normalize_sparse

    w = None if edge_weight is None else np.asarray(edge_weight, dtype=np.float64)
    a_hat = gcn_normalize_sparse(
        SparseGraph(np.asarray(edge_index), w), part.num_nodes, dtype="float64", backend="numpy"
    )
    return np.asarray(a_hat.edge_index), np.asarray(a_hat.edge_weight)


def gcn_partition(part: Partition, edge_index: Any, edge_weight: Any = None) -> Partition:
    """The normalised adjacency `Â = D^-1/2 (A + I) D^-1/2` of a GCN
    (`dmon.graph.gcn_normalize_sparse`, its self-loops as edges), split into the blocks
    of `part`: for `shard_spmm(shard, h, comm)` = this shard's rows of `Â H`."""
    ei, w = _normalized(part, edge_index, edge_weight)
    return partition(ei, part.num_nodes, part.parts, w, like=part)


def gcn_propagate(part: Partition, x: Any, edge_index: Any, edge_weight: Any = None) -> np.ndarray:
    """`Â X` with `Â = D^-1/2 (A + I) D^-1/2` (`dmon.graph.gcn_normalize_sparse`), in
    float64, sharded: `(P, block, F)`, padding rows zero.

    A GCN's first layer is `Â X W`: when `X` is a constant, `Â X` is computed once per
    fit and the layer needs no communication per step."""
    import scipy.sparse as sp

    (row, col), w = _normalized(part, edge_index, edge_weight)
    matrix = sp.csr_matrix((w, (row, col)), shape=(part.num_nodes, part.num_nodes))
    return part.scatter(matrix @ np.asarray(x, dtype=np.float64))


def torch_shard(part: Partition, rank: int, device: Any = None, dtype: Any = None) -> Shard:
    """Shard `rank` of `part` as torch tensors (for a process of a torchrun job)."""
    import torch

    a = part.shard(rank)
    return Shard(
        torch.as_tensor(a["row"], dtype=torch.int64, device=device),
        torch.as_tensor(a["col"], dtype=torch.int64, device=device),
        torch.as_tensor(a["weight"], dtype=dtype or torch.float32, device=device),
        torch.as_tensor(a["valid"], device=device),
        torch.as_tensor(a["batch"], dtype=torch.int64, device=device),
        part.num_graphs,
        padded=part.padded,
    )


def tf_shard(part: Partition, rank: int = 0) -> Shard:
    """Shard `rank` of `part` as TensorFlow tensors."""
    import tensorflow as tf

    a = part.shard(rank)
    return Shard(
        tf.constant(a["row"], tf.int64),
        tf.constant(a["col"], tf.int64),
        tf.constant(a["weight"], tf.float32),
        tf.constant(a["valid"]),
        tf.constant(a["batch"], tf.int64),
        part.num_graphs,
        padded=part.padded,
    )


def jax_shards(
    part: Partition,
    mesh: Any,
    axis_name: str = "nodes",
    dtype: Any = None,
    *,
    slots: bool = False,
) -> Shard:
    """`part` as one `Shard` of global JAX arrays split over `mesh`'s `axis_name`, whose
    size must equal `part.parts`. Works across processes: each process places only the
    blocks of its own devices (`jax.make_array_from_callback`).

    `slots`: lay the edges out in slot order (`dmon.partition.slotted`), which makes the
    forward product `A H` several times faster on CPU but its gradient with respect to
    `H` slower; for a graph whose products are not differentiated with respect to the
    dense operand (`shard_pool` of a symmetric graph)."""
    import jax.numpy as jnp

    _register_shard_pytree()
    size = mesh.shape[axis_name]
    if size != part.parts:
        raise ValueError(
            f"dmon.distributed.jax_shards: the mesh axis {axis_name!r} has {size} devices; the "
            f"partition has {part.parts} shards"
        )
    if slots:
        part = slotted(part)
    return Shard(
        jax_put(part.row, mesh, axis_name),
        jax_put(part.col, mesh, axis_name),
        jax_put(part.weight.astype(dtype or jnp.float32), mesh, axis_name),
        jax_put(part.valid, mesh, axis_name),
        jax_put(part.batch, mesh, axis_name),
        part.num_graphs,
        slots=part.slots,
        padded=part.padded,
    )


def jax_put(stacked: np.ndarray, mesh: Any, axis_name: str = "nodes") -> Any:
    """A `(P, block, ...)` NumPy array (every shard's block, as `Partition.scatter`
    gives) as a global `(P * block, ...)` JAX array split over `axis_name`."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    flat = np.ascontiguousarray(stacked.reshape(-1, *stacked.shape[2:]))
    sharding = NamedSharding(mesh, PartitionSpec(axis_name))
    return jax.make_array_from_callback(flat.shape, sharding, lambda index: flat[index])


def jax_fetch(x: Any) -> np.ndarray:
    """A global JAX array as NumPy on every process (an all-gather across processes when
    the array spans several)."""
    import jax

    if jax.process_count() == 1 or x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
