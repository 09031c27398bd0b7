"""DMoN pooling and its three losses, written once against `dmon.ops.ArrayOps`.

Notation, per graph of a batch: `S ∈ [0, 1]^(N×C)` the soft assignment, `A ∈ ℝ^(N×N)` the
adjacency, `X ∈ ℝ^(N×F)` the features, `M ∈ {0, 1}^N` the node mask, `d = (A 1) ⊙ M` the
degrees and `2m = Σᵢ dᵢ`.

Nothing here imports a framework or branches on the backend.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from dmon.constants import EPS
from dmon.dispatch import resolve
from dmon.ops import Array, ArrayOps
from dmon.sparse import SparseAdjacency, is_sparse, pad, to_adjacency
from dmon.sparse_graph import SparseGraph
from dmon.symmetric import node_sums, row_products
from dmon.validation import check_non_negative, check_symmetric, fmt_shape, prepare


class DMoNOutput(NamedTuple):
    """What `pool` returns; unpacks like PyTorch Geometric's 6-tuple."""

    s: Array
    """`(B, N, C)` soft assignment `softmax(logits) * mask`."""
    x: Array
    """`(B, C, F)` pooled features `selu(Sᵀ X)`."""
    adj: Array
    """`(B, C, C)` pooled adjacency `D^-1/2 (SᵀAS with zero diagonal) D^-1/2`."""
    spectral_loss: Array
    """Scalar: `-(Tr(SᵀAS) - γ‖Sᵀd‖²/2m) / 2m` (`γ` the resolution, default 1), mean
    over the batch."""
    ortho_loss: Array
    """Scalar: `‖SᵀS/‖SᵀS‖_F - I/√C‖_F`, mean over the batch."""
    cluster_loss: Array
    """Scalar: `‖Σᵢ Sᵢ‖ √C / n - 1` per graph (`n` valid nodes), mean over the batch."""


# --- helpers that keep degenerate graphs finite, values and gradients alike -------------


def _safe_div(ops: ArrayOps, num: Array, den: Array) -> Array:
    """`num / den`, and 0 where `den == 0`; the gradient is finite there too.

    The guard tests the degenerate case itself (`den == 0`), not `den > 0`, which would
    also turn a NaN or negative `den` into a plausible 0. The inner `where` keeps the
    unused branch from producing inf/NaN, which would leak into the gradient of the outer
    one (the "double where" trick).
    """
    zero = den == 0
    return ops.where(zero, 0.0, num / ops.where(zero, 1.0, den))


def _safe_sqrt(ops: ArrayOps, v: Array) -> Array:
    """`sqrt(v)`, and 0 with gradient 0 (not inf) at `v == 0`, as torch.norm. NaN stays
    NaN."""
    zero = v == 0
    return ops.where(zero, 0.0, ops.sqrt(ops.where(zero, 1.0, v)))


def _frobenius(ops: ArrayOps, v: Array, axis: int | tuple[int, ...]) -> Array:
    return _safe_sqrt(ops, ops.sum(v * v, axis=axis))


def _any_negative(ops: ArrayOps, v: Array) -> Array:
    """`(B,)` whether any entry of a graph's `(B, K)` degrees or volumes is negative."""
    return ops.sum(ops.where(v < 0, v, 0.0), axis=-1) < 0


# --- the pieces, per graph (B,) -------------------------------------------------------


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


def _spectral_per_graph(
    ops: ArrayOps, out_adj: Array, s_d: Array, two_m: Array, negative: Array, resolution: float
) -> Array:
    """`-(Tr(SᵀAS)/2m - γ Σ_c ((Sᵀd)_c / 2m)²)`: the paper's `-(Tr(SᵀAS) - γ‖Sᵀd‖²/2m)/2m`
    (`γ` the resolution) with every term divided by `2m` before it is squared or summed,
    so that the loss is
    as scale-invariant in floating point as it is in exact arithmetic (float32 weights of
    1e-30 or 1e20 neither underflow nor overflow). 0 for a graph with no edges
    (`2m = 0`); NaN for a graph with negative degrees (`negative`, `(B,)`), whose
    modularity is undefined."""
    trace = ops.sum(ops.diagonal(out_adj), axis=-1)
    share = _safe_div(ops, s_d, ops.expand_dims(two_m, -1))  # (B, C): vol_c / 2m
    loss = resolution * ops.sum(share * share, axis=-1) - _safe_div(ops, trace, two_m)
    return ops.where(negative, float("nan"), loss)


def check_resolution(where: str, resolution: object) -> float:
    """The modularity resolution `γ` as a float: a finite real number `>= 0`."""
    if isinstance(resolution, bool) or not isinstance(resolution, int | float):
        try:  # a NumPy scalar, a 0-d array
            resolution = float(resolution)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise TypeError(
                f"{where}: `resolution` must be a real number >= 0; got {type(resolution).__name__}"
            ) from None
    value = float(resolution)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{where}: `resolution` must be a finite number >= 0; got {resolution!r}")
    return value


def _ortho_per_graph(ops: ArrayOps, gram: Array, n_valid: Array | None) -> Array:
    """`‖SᵀS / ‖SᵀS‖_F - I_C / √C‖_F` from the Gram matrix `gram = SᵀS` `(B, C, C)`, and
    0 for a graph with no valid node."""
    c = ops.shape(gram)[-1]
    norm = ops.expand_dims(ops.expand_dims(_frobenius(ops, gram, (1, 2)), -1), -1)
    eye = ops.eye(c, like=gram) / math.sqrt(c)  # type: ignore[arg-type]
    loss = _frobenius(ops, _safe_div(ops, gram, norm) - eye, (1, 2))
    return loss if n_valid is None else ops.where(n_valid > 0, loss, 0.0)


def _cluster_per_graph(
    ops: ArrayOps, sums: Array, n_valid: Array | None, n_static: int | None
) -> Array:
    """`‖Σᵢ Sᵢ‖ √C / n - 1` from the cluster sizes `sums = Σᵢ Sᵢ` `(B, C)`, with `n` the
    number of valid nodes of *that* graph (PyTorch Geometric divides by every graph's
    `n`, pytorch_geometric#10148), and 0 for a graph with no valid node. `n_valid is
    None` means every graph has its `n_static > 0` nodes."""
    c = ops.shape(sums)[-1]
    sizes = _frobenius(ops, sums, -1)
    if n_valid is None:
        return sizes * (math.sqrt(c) / n_static) - 1.0  # type: ignore[arg-type, operator]
    return ops.where(n_valid > 0, _safe_div(ops, sizes * math.sqrt(c), n_valid) - 1.0, 0.0)  # type: ignore[arg-type]


def _n_valid(ops: ArrayOps, s: Array, mask: Array | None) -> Array | None:
    """`(B,)` number of valid nodes per graph; `None` when every graph has all its `N`
    nodes and `N > 0` is known statically (the common case, no per-graph guard needed)."""
    if mask is not None:
        return ops.sum(ops.astype(mask, ops.dtype_name(s)), axis=(1, 2))
    n = ops.shape(s)[1]
    if n is not None and n > 0:
        return None
    return ops.sum(ops.ones_like(s[..., 0]), axis=-1)  # N = 0 (or unknown): count


def _normalized_pooled_adj(ops: ArrayOps, out_adj: Array) -> Array:
    """Zero the diagonal of `SᵀAS`, then `D^-1/2 A' D^-1/2` with `EPS` added to
    `sqrt(d)` (PyTorch Geometric's form; a cluster of degree 0 gives a zero row)."""
    c = ops.shape(out_adj)[-1]
    out_adj = out_adj * (1.0 - ops.eye(c, like=out_adj))  # type: ignore[arg-type]
    root = _safe_sqrt(ops, ops.sum(out_adj, axis=-1)) + EPS  # (B, C)
    return (out_adj / ops.expand_dims(root, 1)) / ops.expand_dims(root, 2)


def _select(ops: ArrayOps, mask: Array | None, v: Array) -> Array:
    """`v` on valid nodes, 0 on masked ones. A mask selects, it does not multiply:
    `0 * NaN` would let NaN padding through."""
    return v if mask is None else ops.where(mask, v, 0.0)


# --- public API ----------------------------------------------------------------------


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
    batch = prepare(ops, where, x=args["x"], mask=args["mask"])
    out = _select(ops, batch.arrays["mask"], batch.arrays["x"])
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
            (`dmon.symmetric`; forward+backward about half the cost at large `N`).
            Gradients with respect to `adj` stay exact. Checked for free when eager
            (`check_symmetric`: row and column cluster volumes must agree). For a
            sparse `adj`, `SparseGraph(symmetric=True)` says the same.
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
    ops, args = resolve(
        where,
        {"x": x, "adj": adj, "logits": logits, "mask": mask},
        backend,
        required=("x", "adj", "logits"),
    )
    if is_sparse(ops, args["adj"]):
        return _pool_sparse(ops, args, gamma)
    batch = prepare(ops, where, **args)
    a = batch.arrays
    mask_ = a.get("mask")
    s = _select(ops, mask_, ops.softmax(_select(ops, mask_, a["logits"])))
    xs = _select(ops, mask_, a["x"])
    if symmetric:
        return _pool_symmetric(ops, where, a["adj"], s, xs, mask_, gamma, batch.dtype)

    out_adj, s_d, col_degrees = _coarsen(ops, a["adj"], s)
    out_x = ops.selu(ops.matmul(ops.transpose(s), xs))
    # Each row of S sums to its mask value (softmax, then the 0/1 mask), so
    # 2m = Σᵢ mᵢ dᵢ = Σ_c (Sᵀd)_c: no second pass over A for the degrees.
    two_m = ops.sum(s_d, axis=-1)
    # S ≥ 0, so a negative cluster volume (Sᵀd)_c means a negative degree: checked here,
    # from what is already computed, instead of by a pass over A.
    check_non_negative(ops, where, "adj", s_d, col_degrees)
    losses, out_adj = _losses_and_pooled_adj(
        ops, s, out_adj, s_d, two_m, _any_negative(ops, s_d), _n_valid(ops, s, mask_), gamma
    )
    if batch.compute_dtype != batch.dtype:
        s, out_x, out_adj = (ops.astype(v, batch.dtype) for v in (s, out_x, out_adj))
    return DMoNOutput(s, out_x, out_adj, *losses)


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
    `dmon.symmetric`."""
    c = ops.shape(s)[-1]
    s_t = ops.transpose(ops.stop_gradient(s))
    if mask is not None:  # a row of ones: d = 1ᵀA also counts edges to masked nodes
        s_t = ops.concat([s_t, ops.ones_like(s_t[:, :1])], axis=1)
    u = row_products(ops, s_t, adj)  # (B, C or C + 1, N)
    # 1ᵀA = A 1, the degrees; without a mask every row of S sums to 1, so they are the
    # column sums of SᵀA and U needs no extra row
    d = ops.sum(u, axis=1) if mask is None else u[:, c]
    p = ops.concat([ops.transpose(u[:, :c]), ops.expand_dims(d, -1)], axis=-1)
    sums = node_sums(ops, s, p, xs)
    check_non_negative(ops, where, "adj", sums[..., c], d)
    check_symmetric(ops, where, "adj", ops.sum(u[:, :c], axis=-1), sums[..., c])
    return outputs_from_sums(
        ops, s, sums, _n_valid(ops, s, mask), ops.shape(s)[1], resolution, dtype
    )


def with_ones(ops: ArrayOps, s: Array) -> Array:
    """`[S | 1]`: one product with it gives `A S` and the degrees `A 1` together."""
    return ops.concat([s, ops.ones_like(s[..., :1])], axis=-1)


def outputs_from_sums(
    ops: ArrayOps,
    s: Array,
    sums: Array,
    n_valid: Array | None,
    n_static: int | None,
    resolution: float,
    dtype: str,
) -> DMoNOutput:
    """The pool's outputs from the node sums `Sᵀ [AS | d | S | X]` `(B, C, 2C + 1 + F)`
    (of one device, or all-reduced over shards: `dmon.distributed.shard_pool`), with `s`
    returned as given and cast to `dtype`. The rows of `S` sum to 1 (0 on masked rows),
    so `Σᵢ Sᵢ = SᵀS 1` and `2m = Σ_c (Sᵀd)_c`."""
    c = ops.shape(s)[-1]
    assert c is not None  # the number of clusters is static on every backend
    out_adj, s_d = sums[..., :c], sums[..., c]
    gram, sx = sums[..., c + 1 : 2 * c + 1], sums[..., 2 * c + 1 :]
    losses, adj = reduced_losses(
        ops,
        gram,
        ops.sum(gram, axis=-1),
        out_adj,
        s_d,
        ops.sum(s_d, axis=-1),
        _any_negative(ops, s_d),
        n_valid,
        n_static,
        resolution,
    )
    out = (s, ops.selu(sx), adj)
    if ops.dtype_name(s) != dtype:
        out = tuple(ops.astype(v, dtype) for v in out)
    return DMoNOutput(*out, *losses)


def _losses_and_pooled_adj(
    ops: ArrayOps,
    s: Array,
    out_adj: Array,
    s_d: Array,
    two_m: Array,
    negative: Array,
    n_valid: Array | None,
    resolution: float,
) -> tuple[tuple[Array, Array, Array], Array]:
    """The three batch-mean losses and the normalised pooled adjacency, from the
    per-graph products (`s` `(B, N, C)`, `out_adj = SᵀAS`, `s_d = Sᵀd`, `2m`)."""
    return reduced_losses(
        ops,
        ops.matmul(ops.transpose(s), s),
        ops.sum(s, axis=1),
        out_adj,
        s_d,
        two_m,
        negative,
        n_valid,
        ops.shape(s)[1],
        resolution,
    )


def reduced_losses(
    ops: ArrayOps,
    gram: Array,
    sums: Array,
    out_adj: Array,
    s_d: Array,
    two_m: Array,
    negative: Array,
    n_valid: Array | None,
    n_static: int | None,
    resolution: float,
) -> tuple[tuple[Array, Array, Array], Array]:
    """`(spectral, ortho, cluster)` batch-mean losses and the normalised pooled adjacency
    from the per-graph sums over nodes alone: `gram = SᵀS` `(B, C, C)`, `sums = Σᵢ Sᵢ`
    `(B, C)`, `out_adj = SᵀAS` `(B, C, C)`, `s_d = Sᵀd` `(B, C)`, `two_m` `(B,)`,
    `negative` `(B,)` (negative degrees), `n_valid` `(B,)` (or `None`: every graph has
    `n_static` nodes).

    Every DMoN loss is a function of these sums, which is why a graph sharded by nodes
    needs only their all-reduce (`dmon.distributed`)."""
    spectral = ops.mean(_spectral_per_graph(ops, out_adj, s_d, two_m, negative, resolution))
    ortho = ops.mean(_ortho_per_graph(ops, gram, n_valid))
    cluster = ops.mean(_cluster_per_graph(ops, sums, n_valid, n_static))
    return (spectral, ortho, cluster), _normalized_pooled_adj(ops, out_adj)


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
    batch = prepare(ops, where, **{k: args[k] for k in keys})
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
    # function of the node sums Sᵀ [A S | d | S | X], differentiated by dmon.symmetric's
    # rules: for a symmetric A from a constant S (the backward has no sparse product),
    # otherwise through the product (one sparse product back, with Aᵀ).
    symmetric = isinstance(args["adj"], SparseGraph) and args["adj"].symmetric
    s1 = with_ones(ops, s)
    prod = pad(ops, adj, ops.spmm(adj.matrix, ops.stop_gradient(s1) if symmetric else s1))
    s_p = pad(ops, adj, s)
    sums = node_sums(ops, s_p, prod, pad(ops, adj, a["x"]), symmetric=symmetric)
    n_valid = _n_valid_sparse(ops, adj, s, s_p)
    out = outputs_from_sums(ops, s_p, sums, n_valid, ops.shape(s_p)[1], resolution, dtype)
    return out._replace(s=s if compute == dtype else ops.astype(s, dtype))


def _assignments(
    where: str, arrays: dict[str, Any], backend: str | None
) -> tuple[ArrayOps, dict[str, Array]]:
    ops, args = resolve(where, arrays, backend, required=("s",))
    a = prepare(ops, where, **{k: v for k, v in args.items() if v is not None}).arrays
    a["s"] = _select(ops, a.get("mask"), a["s"])
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
    if is_sparse(ops, args["adj"]):
        a, sp, _, _ = _sparse_inputs(ops, where, args, ("s",))
        out_adj, s_d, degrees = _sparse_spectral_terms(ops, sp, a["s"])
        # any s is allowed here (rows need not sum to 1): 2m comes from the degrees
        two_m = ops.sum(degrees, axis=-1)
        return ops.mean(
            _spectral_per_graph(ops, out_adj, s_d, two_m, _any_negative(ops, degrees), gamma)
        )
    ops, a = _assignments(where, args, None)
    out_adj, s_d, _ = _coarsen(ops, a["adj"], a["s"])
    # Any s is allowed here (rows need not sum to 1), so 2m comes from the degrees.
    deg = _select(ops, None if "mask" not in a else a["mask"][..., 0], ops.sum(a["adj"], axis=-1))
    check_non_negative(ops, where, "adj", deg)
    return ops.mean(
        _spectral_per_graph(
            ops, out_adj, s_d, ops.sum(deg, axis=-1), _any_negative(ops, deg), gamma
        )
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
    return ops.mean(_ortho_per_graph(ops, gram, _n_valid(ops, a["s"], a.get("mask"))))


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
    return ops.mean(_cluster_per_graph(ops, ops.sum(a["s"], axis=1), n_valid, ops.shape(a["s"])[1]))
