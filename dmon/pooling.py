"""DMoN pooling and its three losses, the public functions, written once against
`dmon.ops.ArrayOps`.

Notation, per graph of a batch: `S ∈ [0, 1]^(N×C)` the soft assignment, `A ∈ ℝ^(N×N)` the
adjacency, `X ∈ ℝ^(N×F)` the features, `M ∈ {0, 1}^N` the node mask, `d = (A 1) ⊙ M` the
degrees and `2m = Σᵢ dᵢ`. Each path (dense, dense symmetric, sparse) computes the sums
over nodes its own way, in one pass over `A`, and ends in `dmon.objective.outputs`.

Nothing here imports a framework or branches on the backend.
"""

from __future__ import annotations

import math
from typing import Any

from dmon.checks import check_resolution
from dmon.dispatch import resolve
from dmon.node_sums import node_sums, row_products
from dmon.objective import (
    DMoNOutput,
    GraphSums,
    any_negative,
    cluster_per_graph,
    from_node_sums,
    ortho_per_graph,
    outputs,
    spectral_per_graph,
    with_ones,
)
from dmon.ops import Array, ArrayOps
from dmon.sparse import SparseAdjacency, is_sparse_adjacency, pad, to_adjacency
from dmon.sparse_graph import SparseGraph
from dmon.validation import batch_inputs, check_non_negative, check_symmetric, fmt_shape

__all__ = [
    "DMoNOutput",
    "cluster_loss",
    "orthogonality_loss",
    "pool",
    "spectral_loss",
    "zero_masked_rows",
]


def zero_masked_rows(x: Array, mask: Array, *, backend: str | None = None) -> Array:
    """`x` with the rows of masked-out nodes set to 0: `where(mask, x, 0)`.

    For the layers' MLPs, which run before `pool`: selecting (not multiplying, since
    `0 · NaN = NaN`) keeps NaN padding out of the logits and of the MLP's gradients.

    Args:
        x: `(B, N, F)` or `(N, F)` node values.
        mask: `(B, N)` (or `(N,)`) boolean/0-1 mask; any non-zero entry is valid.

    Returns:
        An array of the shape and dtype of `x`.
    """
    where = "dmon.zero_masked_rows"
    ops, args = resolve(where, {"x": x, "mask": mask}, backend, required=("x", "mask"))
    batch = batch_inputs(ops, where, x=args["x"], mask=args["mask"])
    out = _select(ops, _padding(batch.arrays["mask"]), batch.arrays["x"])
    if len(ops.shape(args["x"])) == 2:
        out = out[0]
    return out if batch.compute_dtype == batch.dtype else ops.astype(out, batch.dtype)


def pool(
    x: Array,
    adj: Array,
    logits: Array,
    mask: Array | None = None,
    *,
    resolution: float = 1.0,
    symmetric: bool = False,
    backend: str | None = None,
) -> DMoNOutput:
    """DMoN pooling of a batch of graphs given the cluster-assignment logits.

    Computes, per graph, `S = softmax(logits) ⊙ M`, `X' = selu(Sᵀ (X ⊙ M))`,
    `A' = D^-1/2 offdiag(SᵀAS) D^-1/2` (with `D` the row sums of `offdiag(SᵀAS)`) and the
    three losses of `DMoNOutput` (each the mean over the batch), exactly as
    `torch_geometric.nn.DMoNPooling.forward` after its MLP, except that the cluster loss
    divides by each graph's own node count, and degenerate graphs (no edges, no valid
    node, `N = 0`) give finite values and gradients: every loss of such a graph is 0.

    Masked-out rows of `x` and `logits` are never read (NaN padding stays out of every
    output). NaN or Inf in the valid part of the inputs comes back as NaN, never as a
    finite loss. Negative edge weights raise `ValueError` when the values are known
    (eager); under `jit`/`tf.function`/`torch.compile` such a graph's spectral loss is
    NaN (see docs/reliability.md).

    Args:
        x: `(B, N, F)` or `(N, F)` node features.
        adj: `(B, N, N)` or `(N, N)` dense adjacency (non-negative weights); or a sparse
            one: a `dmon.SparseGraph` (PyG's `edge_index`, optional `edge_weight` and
            `batch`) or a native sparse `(N, N)` matrix (torch sparse COO/CSR,
            `tf.SparseTensor`, JAX `BCOO`, `scipy.sparse`). With a sparse `adj`, `x` and
            `logits` are node-level `(N, ·)` and `s` comes back `(N, C)`; `x`/`adj`
            pooled are `(B, C, F)`/`(B, C, C)` with `B` graphs (1 without `batch`).
        logits: `(B, N, C)` or `(N, C)` assignment logits (before the softmax).
        mask: optional `(B, N)` (or `(N,)`) boolean/0-1 mask of the valid nodes;
            any non-zero entry counts as valid. Dense `adj` only.
        resolution: `γ` of the generalized modularity the spectral loss maximises,
            `-(Tr(SᵀAS) - γ‖Sᵀd‖²/2m)/2m` (default 1, Newman's; google-research's
            loss is half of it at `γ = ½`).
        symmetric: the caller's promise that every dense `adj` is symmetric (an
            undirected graph). The gradient with respect to `S` then comes from
            `SᵀA`, which the forward computes, instead of a second pass over `A`
            (`dmon.node_sums`; forward+backward about half the cost at large `N`).
            Gradients with respect to `adj` stay exact. Checked for free when eager
            (`check_symmetric`: row and column cluster volumes must agree). For a
            sparse `adj`, `SparseGraph(symmetric=True)` says the same.
            A PyTorch Geometric `Data` or `Batch` is taken as its `SparseGraph`
            (`SparseGraph.from_pyg`).
        backend: `"numpy"`, `"torch"`, `"tensorflow"` or `"jax"` to override the
            choice by input type; inputs are then converted to that framework.

    Returns:
        `DMoNOutput` `(s, x, adj, spectral_loss, ortho_loss, cluster_loss)` in the
        caller's framework, device and dtype; always batched (`B = 1` for 2-D input).
        For float16/bfloat16 input the work is done in float32; `s`, `x`, `adj` come
        back in the input dtype and the losses stay float32.

    Raises:
        TypeError: a missing (`None`) or non-array input, inputs of two frameworks,
            non-floating `x`/`adj`/`logits`.
        ValueError: shapes that do not fit together, out-of-range or cross-graph edges
            of a `SparseGraph`, negative edge weights (eager).
    """
    where = "dmon.pool"
    gamma = check_resolution(where, resolution)
    adj = _from_graph_object(adj)
    ops, args = resolve(
        where,
        {"x": x, "adj": adj, "logits": logits, "mask": mask},
        backend,
        required=("x", "adj", "logits"),
    )
    if is_sparse_adjacency(ops, args["adj"]):
        return _pool_sparse(ops, args, gamma)
    batch = batch_inputs(ops, where, **args)
    a = batch.arrays
    mask_ = a.get("mask")
    padding = _padding(mask_)
    s = _select(ops, padding, ops.softmax(_select(ops, padding, a["logits"])))
    xs = _select(ops, padding, a["x"])
    if symmetric:
        return _pool_symmetric(ops, where, a["adj"], s, xs, mask_, gamma, batch.dtype)

    out_adj, s_d, col_degrees = _coarsen(ops, a["adj"], s)
    # S ≥ 0, so a negative cluster volume (Sᵀd)_c means a negative degree: checked here,
    # from what is already computed, instead of by a pass over A.
    check_non_negative(ops, where, "adj", s_d, col_degrees)
    s_t = ops.transpose(s)
    sums = GraphSums(
        pooled=out_adj,
        volumes=s_d,
        # Each row of S sums to its mask value (softmax, then the 0/1 mask), so
        # 2m = Σᵢ mᵢ dᵢ = Σ_c (Sᵀd)_c: no second pass over A for the degrees.
        two_m=ops.sum(s_d, axis=-1),
        gram=ops.matmul(s_t, s),
        sizes=ops.sum(s, axis=1),
        features=ops.matmul(s_t, xs),
        negative=any_negative(ops, s_d),
        n_valid=_n_valid(ops, s, mask_),
        n_static=ops.shape(s)[1],
    )
    return outputs(ops, s, sums, gamma, batch.dtype)


def _pool_symmetric(
    ops: ArrayOps,
    where: str,
    adj: Array,
    s: Array,
    xs: Array,
    mask: Array | None,
    resolution: float,
    dtype: str,
) -> DMoNOutput:
    """`pool` for a symmetric dense `adj`: one pass over it, `U = Sᵀ A`, whose transpose
    is `A S`; with the degrees that gives `P = [AS | d]` and every sum from
    `dmon.node_sums`."""
    c = int(ops.shape(s)[-1])  # type: ignore[arg-type]  # static on every backend
    s_t = ops.transpose(ops.stop_gradient(s))
    if mask is not None:  # a row of ones: d = 1ᵀA also counts edges to masked nodes
        s_t = ops.concat([s_t, ops.ones_like(s_t[:, :1])], axis=1)
    u = row_products(ops, s_t, adj)  # (B, C or C + 1, N)
    # 1ᵀA = A 1, the degrees; without a mask every row of S sums to 1, so they are the
    # column sums of SᵀA and U needs no extra row
    d = ops.sum(u, axis=1) if mask is None else u[:, c]
    p = ops.concat([ops.transpose(u[:, :c]), ops.expand_dims(d, -1)], axis=-1)
    sums = node_sums(ops, s, p, xs)
    rows, cols = ops.sum(u[:, :c], axis=-1), sums[..., c]
    check_non_negative(ops, where, "adj", cols, d)
    check_symmetric(ops, where, "adj", rows, cols)
    totals = from_node_sums(ops, sums, _n_valid(ops, s, mask), ops.shape(s)[1])
    # without the eager check (switched off, or compiled) a broken promise gives NaN
    totals = totals._replace(negative=totals.negative | _asymmetric(ops, rows, cols, c))
    return outputs(ops, s, totals, resolution, dtype)


def _asymmetric(ops: ArrayOps, rows: Array, cols: Array, c: int) -> Array:
    """`(B,)` whether a graph's cluster volumes by rows and by columns differ beyond what
    `check_symmetric` lets pass (an L2 bound `√C` times its per-cluster bound, so a graph
    the eager check accepts is never flagged), on the device: no read."""
    scale = ops.sum(rows, axis=-1) + ops.sum(cols, axis=-1)  # volumes are >= 0 (else NaN)
    return ops.norm(rows - cols, -1) > (1e-3 * math.sqrt(c)) * scale


# --- the sums of each path ---------------------------------------------------------


def _coarsen(ops: ArrayOps, adj: Array, s: Array) -> tuple[Array, Array, Array]:
    """`SᵀAS`, `Sᵀd` and the column degrees `Σᵢ mᵢ A_ij` from one pass over A.

    With `d = (A 1) ⊙ M` and `S` already masked, `Sᵀd = (SᵀA) 1`: the degrees are
    never formed, so A is read once (PyTorch Geometric reads it a second time for a row
    sum). `SᵀA` is also the product the CPU BLAS runs fastest (see docs/benchmarks.md).
    The column degrees (`Σ_c (SᵀA)_cj`, `O(B·C·N)`) serve only the eager check for
    negative weights, which may not read A again.
    """
    s_t_a = ops.matmul(ops.transpose(s), adj)  # (B, C, N)
    return ops.matmul(s_t_a, s), ops.sum(s_t_a, axis=-1), ops.sum(s_t_a, axis=1)


def _from_graph_object(adj: Any) -> Any:
    """A PyTorch Geometric `Data`/`Batch` as `adj` (it has an `edge_index`) means its
    sparse adjacency (`SparseGraph.from_pyg`); anything else is passed on as given."""
    if isinstance(adj, SparseGraph) or getattr(adj, "edge_index", None) is None:
        return adj
    return SparseGraph.from_pyg(adj)


def _n_valid(ops: ArrayOps, s: Array, mask: Array | None) -> Array | None:
    """`(B,)` number of valid nodes per graph; `None` when every graph has all its `N`
    nodes and `N > 0` is known statically (the common case, no per-graph guard needed)."""
    if mask is not None:
        return ops.sum(ops.astype(mask, ops.dtype_name(s)), axis=(1, 2))
    n = ops.shape(s)[1]
    if n is not None and n > 0:
        return None
    return ops.sum(ops.ones_like(s[..., 0]), axis=-1)  # N = 0 (or unknown): count


def _padding(mask: Array | None) -> Array | None:
    """The masked-out nodes, `~mask`, negated once per call for every `_select`."""
    return None if mask is None else ~mask


def _select(ops: ArrayOps, padding: Array | None, v: Array) -> Array:
    """`v` on valid nodes, 0 on masked ones (`padding`, `_padding(mask)`). A mask
    selects, it does not multiply: `0 * NaN` would let NaN padding through."""
    return v if padding is None else ops.where(padding, 0.0, v)


def _sparse_spectral_terms(
    ops: ArrayOps, adj: SparseAdjacency, s: Array
) -> tuple[Array, Array, Array]:
    """`SᵀAS` `(B, C, C)`, `Sᵀd` `(B, C)` and the padded degrees `(B, M)` of a flat
    `(N, C)` assignment whose rows may sum to anything: one sparse product `A [S | 1]`
    over the edges, then one `(C, M) x (M, C + 1)` product per graph on the zero-padded
    batch (`B = 1`, no padding, for one graph)."""
    c = ops.shape(s)[-1]
    prod = pad(ops, adj, ops.spmm(adj.matrix, with_ones(ops, s)))
    both = ops.matmul(ops.transpose(pad(ops, adj, s)), prod)  # (B, C, C + 1)
    return both[..., :c], both[..., c], prod[..., c]


def _n_valid_sparse(ops: ArrayOps, adj: SparseAdjacency, s: Array, s_p: Array) -> Array | None:
    """`(B,)` nodes per graph of a sparse batch (`None` for one graph of known size)."""
    if adj.batch is None:
        return _n_valid(ops, s_p, None)
    return ops.segment_sum(ops.ones_like(s[:, 0]), adj.batch, adj.num_graphs)


def _sparse_inputs(
    ops: ArrayOps, where: str, args: dict[str, Any], keys: tuple[str, ...]
) -> tuple[dict[str, Array], SparseAdjacency, str, str]:
    """Checks of the node-level `(N, ·)` inputs of the sparse path, and the boundary
    conversion of the adjacency."""
    if args.get("mask") is not None:
        raise ValueError(
            f"{where}: `mask` is for dense batches; with a sparse `adj`, put several graphs in "
            "one dmon.SparseGraph with a `batch` vector"
        )
    for key in keys:
        shape = ops.shape(args[key])
        if len(shape) != 2:
            raise ValueError(
                f"{where}: with a sparse `adj`, `{key}` must be node-level (N, ·), as in PyG; got shape {fmt_shape(shape)}"
            )
    batch = batch_inputs(ops, where, **{k: args[k] for k in keys})
    arrays = {}
    for key, value in batch.arrays.items():  # (a loop: autograph miscalls it in a comprehension)
        arrays[key] = _first(ops, value)
    n = ops.shape(arrays[keys[0]])[0]
    if n is None:
        raise ValueError(
            f"{where}: with a sparse `adj`, the node count N (first axis of `{keys[0]}`) must be known statically"
        )
    adj = to_adjacency(ops, where, args["adj"], n, batch.compute_dtype, non_negative=True)
    return arrays, adj, batch.dtype, batch.compute_dtype


def _first(ops: ArrayOps, v: Array) -> Array:
    """`v[0]` of a `(1, ...)` array, as a reshape where the shape is static: torch's
    backward of an index writes a zero array of the whole input's size."""
    shape = ops.shape(v)[1:]
    if any(d is None for d in shape):
        return v[0]
    return ops.reshape(v, tuple(int(d) for d in shape))  # type: ignore[arg-type]


def _pool_sparse(ops: ArrayOps, args: dict[str, Any], resolution: float) -> DMoNOutput:
    where = "dmon.pool"
    a, adj, dtype, compute = _sparse_inputs(ops, where, args, ("x", "logits"))
    s = ops.softmax(a["logits"])
    # A [S | 1]: A S and the degrees from one pass over the edges. Every output is a
    # function of the node sums Sᵀ [A S | d | S | X], differentiated by dmon.node_sums's
    # rules: for a symmetric A from a constant S (the backward has no sparse product),
    # otherwise through the product (one sparse product back, with Aᵀ).
    symmetric = isinstance(args["adj"], SparseGraph) and args["adj"].symmetric
    s1 = with_ones(ops, s)
    prod = pad(ops, adj, ops.spmm(adj.matrix, ops.stop_gradient(s1) if symmetric else s1))
    s_p = pad(ops, adj, s)
    sums = node_sums(ops, s_p, prod, pad(ops, adj, a["x"]), symmetric=symmetric)
    n_valid = _n_valid_sparse(ops, adj, s, s_p)
    out = outputs(
        ops, s_p, from_node_sums(ops, sums, n_valid, ops.shape(s_p)[1]), resolution, dtype
    )
    return out._replace(s=s if compute == dtype else ops.astype(s, dtype))


# --- the losses alone --------------------------------------------------------------


def _assignments(
    where: str, arrays: dict[str, Any], backend: str | None
) -> tuple[ArrayOps, dict[str, Array]]:
    ops, args = resolve(where, arrays, backend, required=("s",))
    a = batch_inputs(ops, where, **{k: v for k, v in args.items() if v is not None}).arrays
    a["s"] = _select(ops, _padding(a.get("mask")), a["s"])
    return ops, a


def spectral_loss(
    adj: Array,
    s: Array,
    mask: Array | None = None,
    *,
    resolution: float = 1.0,
    backend: str | None = None,
) -> Array:
    """Spectral (modularity) loss `-(Tr(SᵀAS) - γ‖Sᵀd‖² / 2m) / 2m`, mean over the batch.

    For a one-hot `s` this is exactly minus the generalized modularity `Q_γ` of the
    partition (`γ = resolution`; networkx's `modularity(..., resolution=γ)`), with a
    self-loop weight `A_ii` counted once in `dᵢ` and in `Tr(SᵀAS)`, as
    `dmon.metrics.modularity` (networkx counts a self-loop twice; see
    docs/reliability.md). A graph with no edges contributes 0; NaN in `adj` or `s` gives
    NaN; negative degrees raise `ValueError` (eager) or give NaN (compiled).

    Args:
        adj: `(B, N, N)` or `(N, N)` adjacency, or a sparse one (as `pool`).
        s: `(B, N, C)` or `(N, C)` assignment (already soft-maxed).
        mask: optional `(B, N)` valid-node mask; masked rows of `s` and their degrees
            are ignored.
        resolution: `γ ≥ 0` (default 1, Newman's modularity).

    Returns:
        A 0-d array (float32 for half-precision inputs).
    """
    where = "dmon.spectral_loss"
    gamma = check_resolution(where, resolution)
    ops, args = resolve(where, {"adj": adj, "s": s, "mask": mask}, backend, required=("adj", "s"))
    if is_sparse_adjacency(ops, args["adj"]):
        a, sp, _, _ = _sparse_inputs(ops, where, args, ("s",))
        out_adj, s_d, degrees = _sparse_spectral_terms(ops, sp, a["s"])
        # any s is allowed here (rows need not sum to 1): 2m comes from the degrees
        two_m = ops.sum(degrees, axis=-1)
        return ops.mean(
            spectral_per_graph(ops, out_adj, s_d, two_m, any_negative(ops, degrees), gamma)
        )
    ops, a = _assignments(where, args, None)
    out_adj, s_d, _ = _coarsen(ops, a["adj"], a["s"])
    # Any s is allowed here (rows need not sum to 1), so 2m comes from the degrees.
    deg = _select(
        ops, None if "mask" not in a else _padding(a["mask"][..., 0]), ops.sum(a["adj"], axis=-1)
    )
    check_non_negative(ops, where, "adj", deg)
    return ops.mean(
        spectral_per_graph(ops, out_adj, s_d, ops.sum(deg, axis=-1), any_negative(ops, deg), gamma)
    )


def orthogonality_loss(s: Array, mask: Array | None = None, *, backend: str | None = None) -> Array:
    """Orthogonality loss `‖SᵀS / ‖SᵀS‖_F - I_C / √C‖_F`, mean over the batch; in
    `[0, √2]`.

    Args:
        s: `(B, N, C)` or `(N, C)` assignment.
        mask: optional `(B, N)` valid-node mask. A graph with no valid node gives 0.

    Returns:
        A 0-d array.
    """
    ops, a = _assignments("dmon.orthogonality_loss", {"s": s, "mask": mask}, backend)
    gram = ops.matmul(ops.transpose(a["s"]), a["s"])
    return ops.mean(ortho_per_graph(ops, gram))


def cluster_loss(s: Array, mask: Array | None = None, *, backend: str | None = None) -> Array:
    """Cluster (collapse) loss `‖Σᵢ Sᵢ‖₂ √C / n - 1` per graph, with `n` that graph's
    number of valid nodes, mean over the batch; in `[0, √C - 1]`.

    Args:
        s: `(B, N, C)` or `(N, C)` assignment.
        mask: optional `(B, N)` valid-node mask. A graph with no valid node gives 0.

    Returns:
        A 0-d array.
    """
    ops, a = _assignments("dmon.cluster_loss", {"s": s, "mask": mask}, backend)
    n_valid = _n_valid(ops, a["s"], a.get("mask"))
    return ops.mean(cluster_per_graph(ops, ops.sum(a["s"], axis=1), n_valid, ops.shape(a["s"])[1]))
