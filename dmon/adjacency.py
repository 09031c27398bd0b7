"""Adjacency forms and transforms, written once against `dmon.ops.ArrayOps`."""

from __future__ import annotations

import operator
from typing import Any

from dmon.dispatch import resolve
from dmon.ops import FLOATING, HALF, Array
from dmon.sparse import edges, to_adjacency
from dmon.sparse_graph import SparseGraph
from dmon.validation import batch_inputs, fmt_shape


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
    ops, args = resolve("dmon.gcn_normalize", {"adj": adj}, backend, required=("adj",))
    batch = batch_inputs(ops, "dmon.gcn_normalize", adj=args["adj"])
    a = batch.arrays["adj"]
    if add_self_loops:
        a = a + ops.eye(ops.shape(a)[-1], like=a)  # type: ignore[arg-type]
    deg = ops.sum(a, axis=-1)
    # guard the degenerate case itself: a NaN or negative degree must not become 0
    zero = deg == 0
    inv_sqrt = ops.where(zero, 0.0, 1.0 / ops.sqrt(ops.where(zero, 1.0, deg)))
    out = a * ops.expand_dims(inv_sqrt, -1) * ops.expand_dims(inv_sqrt, -2)
    if len(ops.shape(args["adj"])) == 2:  # one graph in, one graph out
        out = out[0]
    return out if batch.compute_dtype == batch.dtype else ops.astype(out, batch.dtype)


def gcn_normalize_sparse(
    adj: Any, num_nodes: int, *, dtype: str | None = None, backend: str | None = None
) -> SparseGraph:
    """`D^-1/2 (A + I) D^-1/2` of a sparse adjacency, as a new `SparseGraph`.

    Self-loops are appended as extra edges (weight `1/dᵢ`); existing edges get
    `w_ij / sqrt(dᵢ dⱼ)` with `d = A 1 + 1`. Differentiable in the edge weights; `O(E)`.

    Args:
        adj: a `dmon.SparseGraph` or native sparse `(N, N)` matrix.
        num_nodes: `N`.
        dtype: floating dtype of the new weights (default: the weights' own; float32 for
            an unweighted graph). Half precision is computed in float32.
        backend: override the backend chosen by input type.
    """
    where = "dmon.gcn_normalize_sparse"
    try:
        n = operator.index(num_nodes) if not isinstance(num_nodes, bool) else -1
    except TypeError:
        n = -1
    if n < 0:
        raise ValueError(f"{where}: `num_nodes` must be an int >= 0; got {num_nodes!r}")
    num_nodes = n
    ops, args = resolve(where, {"adj": adj}, backend, required=("adj",))
    g = args["adj"]
    row, col, weight = edges(ops, where, g, num_nodes)
    if dtype is not None:
        weight = ops.astype(weight, dtype)
    if ops.dtype_name(weight) in HALF:
        weight = ops.astype(weight, "float32")
    inv_sqrt = 1.0 / ops.sqrt(ops.segment_sum(weight, row, num_nodes) + 1.0)
    loops = ops.arange(num_nodes, like=row)
    edge_index = ops.concat(
        [ops.concat([row, loops], 0)[None], ops.concat([col, loops], 0)[None]], 0
    )
    weight = ops.concat(
        [weight * ops.take(inv_sqrt, row) * ops.take(inv_sqrt, col), inv_sqrt * inv_sqrt], 0
    )
    out = SparseGraph(edge_index, weight, num_nodes=num_nodes)
    if isinstance(g, SparseGraph):  # keep the batch of a block-diagonal graph
        out.batch, out.num_graphs, out.max_num_nodes = g.batch, g.num_graphs, g.max_num_nodes
    return out


def spmm(adj: Any, dense: Array, *, backend: str | None = None) -> Array:
    """`A @ dense` for a sparse adjacency: `(N, N) @ (N, K) -> (N, K)` over the edges.

    Args:
        adj: a `dmon.SparseGraph` or native sparse `(N, N)` matrix.
        dense: `(N, K)` floating array.
        backend: override the backend chosen by input type.
    """
    ops, args = resolve(
        "dmon.spmm", {"adj": adj, "dense": dense}, backend, required=("adj", "dense")
    )
    shape = ops.shape(args["dense"])
    if len(shape) != 2 or shape[0] is None:
        raise ValueError(f"dmon.spmm: `dense` must have shape (N, K); got shape {fmt_shape(shape)}")
    if ops.dtype_name(args["dense"]) not in FLOATING:
        raise TypeError(
            f"dmon.spmm: `dense` must be floating; got dtype {ops.dtype_name(args['dense'])}"
        )
    a = to_adjacency(ops, "dmon.spmm", args["adj"], shape[0], ops.dtype_name(args["dense"]))
    return ops.spmm(a.matrix, args["dense"])
