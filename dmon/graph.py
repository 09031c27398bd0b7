"""Adjacency forms and transforms, written once against `dmon.ops.ArrayOps`."""

from __future__ import annotations

from dmon.ops import Array, resolve
from dmon.validation import prepare


def gcn_normalize(adj: Array, *, add_self_loops: bool = True, backend: str | None = None) -> Array:
    """Symmetric GCN normalisation `D^-1/2 (A + I) D^-1/2` (Kipf & Welling, 2017).

    `D` is the diagonal of the row sums of `A + I`. This is the graph the DMoN paper's GCN
    encoder propagates over (google-research `utils.normalize_graph`). A node whose row
    sum is 0 (possible only without self-loops) gets a zero row and column.

    Args:
        adj: `(B, N, N)` or `(N, N)` dense adjacency with non-negative weights.
        add_self_loops: add `I` before normalising.
        backend: override the backend chosen by input type.

    Returns:
        The normalised adjacency, same shape and dtype as `adj` (half precision is
        computed in float32).
    """
    ops, args = resolve({"adj": adj}, backend)
    batch = prepare(ops, "dmon.gcn_normalize", adj=args["adj"])
    a = batch.arrays["adj"]
    if add_self_loops:
        a = a + ops.eye(ops.shape(a)[-1], like=a)  # type: ignore[arg-type]
    deg = ops.sum(a, axis=-1)
    ok = deg > 0
    inv_sqrt = ops.where(ok, 1.0 / ops.sqrt(ops.where(ok, deg, 1.0)), 0.0)
    out = a * ops.expand_dims(inv_sqrt, -1) * ops.expand_dims(inv_sqrt, -2)
    if len(ops.shape(args["adj"])) == 2:  # one graph in, one graph out
        out = out[0]
    return out if batch.compute_dtype == batch.dtype else ops.astype(out, batch.dtype)
