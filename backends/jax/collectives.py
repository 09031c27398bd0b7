"""JAX's side of node sharding: the collectives inside `jax.shard_map`, a partition
placed on a `Mesh`, and arrays fetched back across processes."""

from __future__ import annotations

from typing import Any

import numpy as np

from dmon.distributed import Shard
from dmon.partition import Partition, slotted

AXIS = "nodes"
"""The mesh axis the nodes are split over."""


class JaxCollectives:
    """Collectives over the mesh axis `axis_name`, for code inside `jax.shard_map`."""

    def __init__(self, axis_name: str = AXIS) -> None:
        import jax

        self.axis_name = axis_name
        self._lax = jax.lax

    def all_gather(self, x: Any) -> Any:
        return self._lax.all_gather(x, self.axis_name, tiled=True)

    def all_sum(self, x: Any) -> Any:
        return self._lax.psum(x, self.axis_name)

    def exchange(self, x: Any, send: Any, splits: Any = None) -> Any:
        """`lax.all_to_all` of `(P, H, K)` chunks (`dmon.halo`'s padded layout: XLA's
        collectives take equal chunks); autodiff transposes it to the reverse one."""
        del splits
        chunks = x[send]
        got = self._lax.all_to_all(chunks, self.axis_name, 0, 0, tiled=True)
        return got.reshape(-1, *x.shape[1:])

    def sum_gradients(self, params: list[Any]) -> None:
        del params  # JAX's autodiff of the collectives already sums them


_registered = False


def register_shard_pytree() -> None:
    """Let a `Shard` cross `jax.shard_map` and `jax.jit`: its arrays are leaves, its sizes
    and flags static; its cache is left behind (rebuilt per trace)."""
    global _registered
    if _registered:
        return
    import jax

    def unflatten(aux: tuple[int, bool, int, bool], arrays: tuple[Any, ...]) -> Shard:
        row, col, weight, valid, batch, *send = arrays
        return Shard(row, col, weight, valid, batch, *aux, send=send[0] if send else None)

    jax.tree_util.register_pytree_node(
        Shard,
        lambda s: (s.arrays(), (s.num_graphs, s.symmetric, s.slots, s.padded)),
        unflatten,
    )
    _registered = True


def shard_spec(shard: Shard, axis_name: str = AXIS) -> Shard:
    """The `in_specs` entry for `shard` in `jax.shard_map`: every array split over
    `axis_name` on its first axis."""
    from jax.sharding import PartitionSpec

    p = PartitionSpec(axis_name)
    send = None if shard.send is None else p
    return Shard(
        p, p, p, p, p, shard.num_graphs, shard.symmetric, shard.slots, shard.padded, send=send
    )


def jax_shards(
    part: Partition,
    mesh: Any,
    axis_name: str = AXIS,
    dtype: Any = None,
    *,
    slots: bool = False,
    plan: tuple[int, int] | None = None,
) -> Shard:
    """`part` as one `Shard` of global JAX arrays split over `mesh`'s `axis_name`, whose
    size must equal `part.parts`. Works across processes: each process places only the
    blocks of its own devices (`jax.make_array_from_callback`).

    `slots`: lay the edges out in slot order (`dmon.partition.slotted`), which makes the
    forward product `A H` several times faster on CPU but its gradient with respect to
    `H` slower; for a graph whose products are not differentiated with respect to the
    dense operand (`shard_pool` of a symmetric graph). `plan`: `slotted`'s, for a
    partition of which this process holds only its own shards."""
    import jax.numpy as jnp

    register_shard_pytree()
    size = mesh.shape[axis_name]
    if size != part.parts:
        raise ValueError(
            f"dmon.backends.jax.collectives.jax_shards: the mesh axis {axis_name!r} has {size} "
            f"devices; the partition has {part.parts} shards"
        )
    if slots:
        part = slotted(part, plan)
    return Shard(
        jax_put(part.row, mesh, axis_name),
        jax_put(part.col, mesh, axis_name),
        jax_put(part.weight.astype(dtype or jnp.float32), mesh, axis_name),
        jax_put(part.valid, mesh, axis_name),
        jax_put(part.batch, mesh, axis_name),
        part.num_graphs,
        slots=part.slots,
        padded=part.padded,
        send=None if part.send is None else jax_put(part.send, mesh, axis_name),
    )


def jax_put(stacked: np.ndarray, mesh: Any, axis_name: str = AXIS) -> Any:
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
