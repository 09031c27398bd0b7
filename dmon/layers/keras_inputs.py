"""How the Keras layers read their inputs: a list `[x, adj]` or `[x, adj, mask or
edge_weight]` whose adjacency is dense, an `edge_index` or a native sparse tensor, for
Keras' symbolic tensors and real ones alike; and their configs."""

from __future__ import annotations

from typing import Any

import keras

from dmon.ops import get_backend
from dmon.sparse_graph import SparseGraph


def dense_shapes(where: str, input_shape: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """`x` and dense `adj` shapes, checked against each other."""
    x_shape = feature_shape(where, input_shape, (2, 3))
    a_shape = tuple(input_shape[1])
    if len(a_shape) not in (2, 3):
        raise ValueError(f"{where}: `adj` must have shape (B, N, N) or (N, N); got {a_shape}")
    n_x, n_a1, n_a2 = x_shape[-2], a_shape[-2], a_shape[-1]
    if n_a1 is not None and n_a2 is not None and n_a1 != n_a2:
        raise ValueError(f"{where}: `adj` must be square; got shape {a_shape}")
    if n_x is not None and n_a1 is not None and n_x != n_a1:
        raise ValueError(
            f"{where}: `x` has shape {x_shape} and `adj` has shape {a_shape}: their node counts N differ"
        )
    return x_shape, a_shape


def feature_shape(where: str, input_shape: Any, allowed: tuple[int, ...]) -> tuple[Any, ...]:
    """Check the number of inputs and the rank of `x` (build time); the rest is checked
    by dmon at call time, where the adjacency's form (dense, edge_index, sparse) is known."""
    if (
        not isinstance(input_shape, list | tuple)
        or not input_shape
        or not isinstance(input_shape[0], list | tuple)
    ):
        raise ValueError(
            f"{where}: `inputs` must be a list {names(allowed)}; got one input of shape {input_shape}"
        )
    if len(input_shape) not in allowed:
        raise ValueError(
            f"{where}: `inputs` must be a list {names(allowed)}; got {len(input_shape)} inputs"
        )
    x_shape = tuple(input_shape[0])
    if len(x_shape) not in (2, 3):
        raise ValueError(f"{where}: `x` must have shape (B, N, F) or (N, F); got {x_shape}")
    if x_shape[-1] is None:
        raise ValueError(
            f"{where}: the feature size F (last axis of `x`) must be known; got {x_shape}"
        )
    return x_shape


def names(allowed: tuple[int, ...]) -> str:
    return " or ".join({2: "[x, adj]", 3: "[x, adj, mask or edge_weight]"}[n] for n in allowed)


def input_list(where: str, inputs: Any, allowed: tuple[int, ...]) -> list[Any]:
    if not isinstance(inputs, list | tuple) or len(inputs) not in allowed:
        got = (
            f"{len(inputs)} inputs"
            if isinstance(inputs, list | tuple)
            else f"a single {type(inputs).__name__}"
        )
        raise ValueError(f"{where}: `inputs` must be a list {names(allowed)}; got {got}")
    return list(inputs)


def adjacency_kind(where: str, adj: Any) -> str:
    """`"dense"`, `"edge_index"` or `"sparse"` (a native sparse tensor: `tf.SparseTensor`,
    JAX `BCOO`), for Keras' symbolic tensors and real ones.

    An `edge_index` is an integer array of shape `(2, E)` (or `(1, 2, E)`, one graph as
    one Keras sample), as in PyG. Any other integer or boolean array is a dense
    adjacency: an integer `(N, N)` matrix must not be read as edge ids. (A 2-node
    integer `(2, 2)` matrix is ambiguous and is read as an `edge_index`, as PyG would;
    pass a floating dense adjacency to mean the matrix.)
    """
    if adj is None:
        raise TypeError(f"{where}: `adj` is required; got None")
    if isinstance(adj, keras.KerasTensor):
        if adj.sparse:
            return "sparse"
    else:
        try:
            ops = get_backend(adj)
        except TypeError:
            raise TypeError(
                f"{where}: `adj` must be a tensor (dense, edge_index or sparse); got {type(adj).__name__}"
            ) from None
        if ops.is_sparse(adj):
            return "sparse"
    dtype = keras.backend.standardize_dtype(adj.dtype)
    if "int" not in dtype:
        return "dense"
    shape = tuple(adj.shape)
    edge_shaped = (len(shape) == 2 and shape[0] == 2) or (
        len(shape) == 3 and shape[0] in (1, None) and shape[1] == 2
    )
    return "edge_index" if edge_shaped else "dense"


def sparse_inputs(where: str, x: Any, adj: Any, rest: list[Any]) -> tuple[Any, Any, bool]:
    """Node-level `x` `(N, F)` and a `SparseGraph`/native sparse adjacency from the layer
    inputs. A leading axis of 1 (`(1, N, F)`, `(1, 2, E)`, `(1, E)`: one graph as one Keras
    sample, so that `fit` can take it) is dropped; the flag says to restore it."""
    lead = len(x.shape) == 3
    if lead:
        if x.shape[0] not in (1, None):
            raise ValueError(
                f"{where}: with a sparse adjacency, `x` is node-level (N, F) or (1, N, F); got {tuple(x.shape)}"
            )
        x = x[0]
    if adjacency_kind(where, adj) == "sparse":
        if rest:
            raise ValueError(
                f"{where}: with a sparse adjacency tensor, `inputs` is [x, adj]; got {2 + len(rest)} inputs"
            )
        return x, adj, lead
    edge_index = adj[0] if len(adj.shape) == 3 else adj
    weight = rest[0] if rest else None
    if weight is not None and len(weight.shape) == 2:
        weight = weight[0]
    return x, SparseGraph(edge_index, weight), lead


def check_config_keys(cls: type, config: dict[str, Any]) -> None:
    import inspect

    allowed = set(inspect.signature(cls).parameters) - {"kwargs"}
    allowed |= {"name", "trainable", "dtype"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"{cls.__name__}.from_config: unknown config keys {unknown}; expected some of {sorted(allowed)}"
        )
