"""Which backend serves a call, and its inputs in that backend's framework.

Every public function of the core starts here: required inputs are present, every input
(each array of a `SparseGraph` too) is an array of one installed framework, and an
explicit `backend=` converts them all. Errors name the argument, what it got and what
was expected, before any framework sees the value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dmon.ops import ArrayOps, backend_by_name, get_backend, type_name
from dmon.sparse_graph import SparseGraph

_ARRAY_TYPES = (
    "a numpy.ndarray, torch.Tensor, tf.Tensor or jax.Array "
    "(or a native sparse matrix, scipy.sparse, or a dmon.SparseGraph for an adjacency)"
)


def resolve(
    where: str,
    arrays: dict[str, object],
    backend: str | None = None,
    required: Iterable[str] = (),
) -> tuple[ArrayOps, dict[str, Any]]:
    """Pick the backend for a call and return it with the arrays in its framework.

    `arrays` maps argument names to inputs; `None` entries are passed through unless the
    name is in `required`. Without `backend`, all inputs (a `SparseGraph`'s arrays
    included) must belong to one framework; with it, every input is converted to that
    framework.

    Raises:
        TypeError: a required input is `None`; an input that is not an array; inputs of
            two frameworks and no `backend` (the message names both arguments).
        ValueError: an unknown `backend` name; inputs on two devices (torch).
    """
    for key in required:
        if arrays.get(key) is None:
            raise TypeError(f"{where}: `{key}` is required; got None")
    leaves = dict(_leaves(where, arrays))
    if not leaves:
        raise TypeError(f"{where}: needs at least one array input")
    if backend is not None:
        try:
            ops = backend_by_name(backend)
        except (ValueError, ImportError) as err:
            raise type(err)(f"{where}: {err}") from None
        converted = {
            k: (None if v is None else _convert(where, k, ops, v)) for k, v in arrays.items()
        }
        _one_device(where, ops, dict(_leaves(where, converted)))
        return ops, converted
    chosen: tuple[str, ArrayOps] | None = None
    for key, value in leaves.items():
        try:
            ops = get_backend(value)
        except TypeError:
            raise TypeError(
                f"{where}: `{key}` must be {_ARRAY_TYPES}; got {type_name(value)}"
            ) from None
        if chosen is None:
            chosen = (key, ops)
        elif ops is not chosen[1]:
            first = chosen[0]
            raise TypeError(
                f"{where}: inputs come from different frameworks: `{first}` is "
                f"{type_name(leaves[first])} but `{key}` is {type_name(value)}; pass "
                "arrays of one framework, or backend=... to convert them"
            )
    assert chosen is not None
    _one_device(where, chosen[1], leaves)
    return chosen[1], dict(arrays)


def _one_device(where: str, ops: ArrayOps, leaves: dict[str, Any]) -> None:
    """Inputs must share a device where the framework never moves an array to another
    device for an operation (torch; `ops.device` is `None` where it does): its own error
    comes from deep inside the call and names no argument.

    Raises:
        ValueError: two inputs on different devices (the message names both).
    """
    first: tuple[str, str] | None = None
    for key, value in leaves.items():
        device = ops.device(value)
        if device is None:
            continue
        if first is None:
            first = (key, device)
        elif device != first[1]:
            raise ValueError(
                f"{where}: `{first[0]}` is on {first[1]} but `{key}` is on {device}; put every "
                "input on one device (`.to(device)`)"
            )


def _leaves(where: str, arrays: dict[str, object]) -> Iterable[tuple[str, object]]:
    """`(name, array)` of every given input; a `SparseGraph` gives its arrays as
    `adj.edge_index`, `adj.edge_weight`, `adj.batch`."""
    for key, value in arrays.items():
        if value is None:
            continue
        if isinstance(value, SparseGraph):
            if value.edge_index is None:
                raise TypeError(f"{where}: `{key}.edge_index` is required; got None")
            for field in ("edge_index", "edge_weight", "batch"):
                member = getattr(value, field)
                if member is not None:
                    yield f"{key}.{field}", member
        else:
            yield key, value


def _convert(where: str, key: str, ops: ArrayOps, value: Any) -> Any:
    if isinstance(value, SparseGraph):
        return value.map_arrays(ops.asarray)
    if ops.is_sparse(value):  # already this backend's sparse type (scipy for NumPy)
        return value
    if hasattr(value, "tocoo"):  # scipy.sparse to another backend
        if value.shape[0] != value.shape[1]:
            raise ValueError(
                f"{where}: the sparse `{key}` must be square (N, N); got shape {tuple(value.shape)}"
            )
        import numpy

        coo = value.tocoo()
        edge_index = numpy.stack([coo.row, coo.col]).astype(numpy.int64)
        return SparseGraph(
            ops.asarray(edge_index), ops.asarray(coo.data), num_nodes=int(coo.shape[0])
        )
    try:
        return ops.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{where}: `{key}` cannot be converted to a {ops.name} array ({type_name(value)}: {err})"
        ) from None
