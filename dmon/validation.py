"""Input checks and batching, done once before any framework op sees the arrays.

Two kinds of check (docs/reliability.md):

- shape and dtype checks read only static shapes and dtypes, so they run unchanged
  under `jax.jit`, `tf.function` and `torch.compile` (a dimension unknown at trace time
  is skipped);
- value checks read values only when they are known (eager; `ops.to_numpy` returns
  `None` while tracing) and switched on (`dmon.value_checks`), and only arrays of size
  `O(E + N·F + N·C)`: never a dense `N × N` adjacency, whose problems are read off
  quantities already computed from it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from dmon.ops import FLOATING, HALF, Array, ArrayOps
from dmon.value_checking import read, value_checks_enabled


class Batched(NamedTuple):
    """Inputs promoted to a batch, in the compute dtype."""

    arrays: dict[str, Array]
    """Each given input with a leading batch axis: `(B, N, ·)`; the mask is `(B, N, 1)`."""
    dtype: str
    """The callers' floating dtype, to cast the node-level outputs back to."""
    compute_dtype: str
    """float32 for half-precision inputs (no overflow of degree sums), else `dtype`."""


def fmt_shape(shape: tuple[int | None, ...]) -> str:
    return (
        "("
        + ", ".join("?" if d is None else str(d) for d in shape)
        + ("," if len(shape) == 1 else "")
        + ")"
    )


def _same(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


def batch_inputs(
    ops: ArrayOps,
    where: str,
    x: Array | None = None,
    adj: Array | None = None,
    logits: Array | None = None,
    s: Array | None = None,
    mask: Array | None = None,
) -> Batched:
    """Check shapes and dtypes, add the batch axis to 2-D inputs, upcast half precision.

    Node tensors (`x` `(N, F)`/`(B, N, F)`, `logits`/`s` `(N, C)`/`(B, N, C)`)
    and `adj` (`(N, N)`/`(B, N, N)`) may each be given with or without the batch axis,
    as in PyTorch Geometric. `mask` is `(B, N)` (or `(N,)` for one graph), boolean or
    numeric.

    Raises:
        ValueError: wrong rank, non-square `adj`, mismatched `B` or `N`, `C < 1`.
        TypeError: a non-floating `x`/`adj`/`logits`/`s`, or floating inputs of
            different dtypes.
    """
    given = {
        k: v for k, v in (("x", x), ("adj", adj), ("logits", logits), ("s", s)) if v is not None
    }
    shapes = {k: ops.shape(v) for k, v in given.items()}
    dtypes = {k: ops.dtype_name(v) for k, v in given.items()}

    for key, shape in shapes.items():
        expected = (
            "(B, N, N) or (N, N)"
            if key == "adj"
            else f"(B, N, {'F' if key == 'x' else 'C'}) or (N, {'F' if key == 'x' else 'C'})"
        )
        if len(shape) not in (2, 3):
            raise ValueError(
                f"{where}: `{key}` must have shape {expected}; got {len(shape)}-D shape {fmt_shape(shape)}"
            )
        if dtypes[key] not in FLOATING:
            raise TypeError(
                f"{where}: `{key}` must be a floating array (float16, bfloat16, float32 or "
                f"float64); got dtype {dtypes[key]}"
            )
    if "adj" in shapes and not _same(shapes["adj"][-1], shapes["adj"][-2]):
        raise ValueError(
            f"{where}: `adj` must be square, (B, N, N) or (N, N); got shape {fmt_shape(shapes['adj'])}"
        )
    for key in ("logits", "s"):
        if key in shapes and shapes[key][-1] is not None and shapes[key][-1] < 1:  # type: ignore[operator]
            raise ValueError(
                f"{where}: `{key}` needs C >= 1 clusters in its last axis; got shape {fmt_shape(shapes[key])}"
            )

    first = next(iter(given))
    for key in given:
        if dtypes[key] != dtypes[first]:
            raise TypeError(
                f"{where}: `{first}` has dtype {dtypes[first]} but `{key}` has dtype "
                f"{dtypes[key]}; pass floating inputs of one dtype"
            )
        # node axis: -2 for node tensors, both of the last two for adj.
        n_first, n_key = shapes[first][-2], shapes[key][-2]
        if not _same(n_first, n_key):
            raise ValueError(
                f"{where}: `{first}` has shape {fmt_shape(shapes[first])} and `{key}` has shape "
                f"{fmt_shape(shapes[key])}: their node counts N differ ({n_first} vs {n_key})"
            )
        b_first = shapes[first][0] if len(shapes[first]) == 3 else 1
        b_key = shapes[key][0] if len(shapes[key]) == 3 else 1
        if not _same(b_first, b_key):
            raise ValueError(
                f"{where}: `{first}` has shape {fmt_shape(shapes[first])} and `{key}` has shape "
                f"{fmt_shape(shapes[key])}: their batch sizes B differ ({b_first} vs {b_key})"
            )

    ref_shape = shapes[first]
    batch = ref_shape[0] if len(ref_shape) == 3 else 1
    if batch == 0:
        raise ValueError(
            f"{where}: `{first}` has shape {fmt_shape(ref_shape)}: a batch needs at least one graph (B >= 1)"
        )
    n_nodes = ref_shape[-2]
    arrays: dict[str, Any] = {
        k: (ops.expand_dims(v, 0) if len(shapes[k]) == 2 else v) for k, v in given.items()
    }

    dtype = dtypes[first]
    compute = "float32" if dtype in HALF else dtype
    if compute != dtype:
        arrays = {k: ops.astype(v, compute) for k, v in arrays.items()}

    if mask is not None:
        mshape = ops.shape(mask)
        mdtype = ops.dtype_name(mask)
        ok_rank = len(mshape) == 2 or (len(mshape) == 1 and batch == 1)
        if (
            not ok_rank
            or not _same(mshape[-1], n_nodes)
            or (len(mshape) == 2 and not _same(mshape[0], batch))
        ):
            raise ValueError(
                f"{where}: `mask` must have shape (B, N) = {fmt_shape((batch, n_nodes))}; got shape {fmt_shape(mshape)}"
            )
        if mdtype.startswith("complex") or mdtype in ("str", "object", "string"):
            raise TypeError(f"{where}: `mask` must be boolean or real; got dtype {mdtype}")
        values = read(ops, mask) if mdtype in FLOATING else None  # a bool mask: never read
        if values is not None and not _all_finite(values):
            raise ValueError(f"{where}: `mask` holds NaN or Inf; it must be boolean or 0/1")
        if len(mshape) == 1:
            mask = ops.expand_dims(mask, 0)
        # Non-zero means valid. Binarising keeps Σ_c S_ic = m_i ∈ {0, 1}, which the core
        # uses; a boolean mask selects (`where`), so NaN padding cannot leak through.
        mask = mask if mdtype == "bool" else ops.astype(mask, compute) != 0
        arrays["mask"] = ops.expand_dims(mask, -1)
    return Batched(arrays, dtype, compute)


def _all_finite(values: Any) -> bool:
    import numpy as np

    return bool(np.all(np.isfinite(np.asarray(values, dtype=np.float64))))


def check_non_negative(ops: ArrayOps, where: str, name: str, *volumes: Array) -> None:
    """Raise `ValueError` if any of a graph's `(B, K)` degrees or cluster volumes is
    negative, when the values are known (eager). NaN passes: it propagates to the
    outputs instead.

    With `S ≥ 0`, a negative cluster volume `(Sᵀd)_c` or column degree proves a
    negative weight, so this reads sums already computed instead of re-reading a dense
    `A`. (A negative weight whose degrees all stay non-negative is not seen.)
    """
    import numpy as np

    if not volumes or not value_checks_enabled(ops, volumes[0]):
        return
    # one read for all: a (B, ·) array of every volume
    values = read(ops, _joined(ops, volumes))
    if values is None:
        return
    negative = np.asarray(values, dtype=np.float64) < 0
    if negative.any():
        graph = int(np.flatnonzero(negative.reshape(negative.shape[0], -1).any(-1))[0])
        raise ValueError(
            f"{where}: `{name}` has negative edge weights (graph {graph} of the batch has a "
            "negative degree); DMoN's modularity needs non-negative weights"
        )


def check_symmetric(ops: ArrayOps, where: str, name: str, rows: Array, cols: Array) -> None:
    """Raise `ValueError` if a graph's cluster volumes by rows, `Sᵀ (A 1)`, and by
    columns, `Sᵀ (Aᵀ 1)` (both `(B, C)`), differ by more than float32 rounding (1e-3 of
    the graph's volume), when the values are known (eager).

    The cheap test of a `symmetric=True` promise: for `A = Aᵀ` they are equal, and both
    come from products the pool computes anyway, so no pass over `A` is added. A
    directed graph whose every node has equal in- and out-degree is not seen.
    """
    import numpy as np

    if not value_checks_enabled(ops, rows):
        return
    both = read(ops, _joined(ops, (rows, cols)))  # one read
    if both is None:
        return
    both = np.asarray(both, dtype=np.float64)
    r, c = np.split(both, 2, axis=-1)
    scale = np.abs(r).sum(-1, keepdims=True) + np.abs(c).sum(-1, keepdims=True)
    broken = np.abs(r - c) > 1e-3 * scale  # NaN compares False: it propagates instead
    if broken.any():
        graph, cluster = (int(i) for i in np.argwhere(broken)[0])
        raise ValueError(
            f"{where}: `{name}` is not symmetric although symmetric=True (graph {graph}: cluster "
            f"{cluster} has volume {r[graph, cluster]:.6g} by rows and {c[graph, cluster]:.6g} "
            "by columns); pass symmetric=False for a directed graph"
        )


def _joined(ops: ArrayOps, arrays: tuple[Array, ...]) -> Array:
    """`(B, ·)` arrays side by side, outside autodiff: one read for a check."""
    if len(arrays) == 1:
        return arrays[0]
    return ops.concat([ops.stop_gradient(a) for a in arrays], axis=-1)
