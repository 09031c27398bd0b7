"""`SparseGraph` as a JAX pytree, so that a graph can be a `jax.jit` argument."""

from __future__ import annotations

from typing import Any

from dmon.sparse_graph import SparseGraph

_registered = False


def register_sparse_graph() -> None:
    """Let a `SparseGraph` be a `jax.jit` argument: its arrays are leaves, its sizes
    (`num_graphs`, `max_num_nodes`, `num_nodes`) and `symmetric` static. Done when the
    JAX backend starts and when a graph is made in a process that has imported JAX."""
    global _registered
    if _registered:
        return
    import jax

    def flatten(g: SparseGraph) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return (g.edge_index, g.edge_weight, g.batch), (
            g.num_graphs,
            g.max_num_nodes,
            g.num_nodes,
            g.symmetric,
        )

    def unflatten(aux: tuple[Any, ...], children: tuple[Any, ...]) -> SparseGraph:
        return SparseGraph(*children, *aux)

    jax.tree_util.register_pytree_node(SparseGraph, flatten, unflatten)
    _registered = True
