"""DMoN's objective, in one place: every output and loss of `dmon.pool` from the sums
over each graph's nodes (`GraphSums`). The dense, dense-symmetric, sparse and sharded
paths compute the sums their own way and all end in `outputs`, so a formula changes in
one edit and a sharded graph's numbers are one device's by construction.

Per graph, with `S` the soft assignment (0 on masked rows), `A` the adjacency, `X` the
features, `d = (A 1) ⊙ M` the degrees and `2m = Σᵢ dᵢ`:

    spectral  -(Tr(SᵀAS)/2m - γ Σ_c ((Sᵀd)_c / 2m)²)      (-modularity for a one-hot S)
    ortho     ‖SᵀS/‖SᵀS‖_F - I/√C‖_F
    cluster   ‖Σᵢ Sᵢ‖ √C / n - 1                          (n valid nodes of this graph)
    x'        selu(SᵀX)
    adj'      D^-1/2 offdiag(SᵀAS) D^-1/2

each loss the mean over the batch. Nothing here imports a framework.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from dmon.constants import EPS
from dmon.ops import Array, ArrayOps


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


class GraphSums(NamedTuple):
    """The per-graph sums over nodes that every output and loss is a function of."""

    pooled: Array
    """`(B, C, C)` `SᵀAS`."""
    volumes: Array
    """`(B, C)` `Sᵀd`, the clusters' volumes."""
    two_m: Array
    """`(B,)` `2m = Σᵢ dᵢ`."""
    gram: Array
    """`(B, C, C)` `SᵀS`."""
    sizes: Array
    """`(B, C)` `Σᵢ Sᵢ`, the clusters' sizes."""
    features: Array
    """`(B, C, F)` `SᵀX`."""
    negative: Array
    """`(B,)` whether the graph's modularity is undefined: a negative degree, or a
    broken `symmetric=True` promise; its spectral loss is NaN."""
    n_valid: Array | None
    """`(B,)` valid nodes per graph; `None`: every graph has its `n_static` nodes."""
    n_static: int | None


def from_node_sums(
    ops: ArrayOps, sums: Array, n_valid: Array | None, n_static: int | None
) -> GraphSums:
    """`GraphSums` from the node sums `Sᵀ [AS | d | S | X]` `(B, C, 2C + 1 + F)` of one
    device (`dmon.node_sums`) or all-reduced over shards (`dmon.distributed.shard_pool`).
    The rows of `S` sum to 1 (0 on masked rows), so `Σᵢ Sᵢ = SᵀS 1` and
    `2m = Σ_c (Sᵀd)_c`."""
    c = ops.shape(sums)[-2]
    assert c is not None  # the number of clusters is static on every backend
    s_d, gram = sums[..., c], sums[..., c + 1 : 2 * c + 1]
    return GraphSums(
        pooled=sums[..., :c],
        volumes=s_d,
        two_m=ops.sum(s_d, axis=-1),
        gram=gram,
        sizes=ops.sum(gram, axis=-1),
        features=sums[..., 2 * c + 1 :],
        negative=any_negative(ops, s_d),
        n_valid=n_valid,
        n_static=n_static,
    )


def outputs(
    ops: ArrayOps,
    s: Array,
    sums: GraphSums,
    resolution: float,
    dtype: str,
    *,
    losses_only: bool = False,
) -> DMoNOutput:
    """Every output of `dmon.pool` from `sums`, with `s` returned as given; `s`, `x` and
    `adj` cast to `dtype` (the losses stay in the compute dtype). `losses_only`: what a
    training step reads, `s` and the spectral and cluster losses; `x`, `adj` and the
    orthogonality loss are `None`."""
    spectral = ops.mean(
        spectral_per_graph(ops, sums.pooled, sums.volumes, sums.two_m, sums.negative, resolution)
    )
    cluster = ops.mean(cluster_per_graph(ops, sums.sizes, sums.n_valid, sums.n_static))
    if losses_only:
        return DMoNOutput(s, None, None, spectral, None, cluster)
    ortho = ops.mean(ortho_per_graph(ops, sums.gram))
    out = (s, ops.selu(sums.features), normalized_pooled_adj(ops, sums.pooled))
    if ops.dtype_name(s) != dtype:
        out = tuple(ops.astype(v, dtype) for v in out)
    return DMoNOutput(*out, spectral, ortho, cluster)


def with_ones(ops: ArrayOps, s: Array) -> Array:
    """`[S | 1]`: one product with it gives `A S` and the degrees `A 1` together."""
    return ops.concat([s, ops.ones_like(s[..., :1])], axis=-1)


# --- the formulas, per graph (B,) -------------------------------------------------------


def spectral_per_graph(
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
    # (B,) 1 / 2m, guarded once for both terms. Where 2m = 0 it is 1, not 0: with
    # non-negative weights both terms' numerators are then 0 (and negative ones give NaN)
    inverse = 1.0 / ops.where(two_m == 0, 1.0, two_m)
    share = s_d * ops.expand_dims(inverse, -1)  # (B, C): vol_c / 2m
    loss = resolution * ops.sum(share * share, axis=-1) - trace * inverse
    return ops.where(negative, float("nan"), loss)


def ortho_per_graph(ops: ArrayOps, gram: Array) -> Array:
    """`‖SᵀS / ‖SᵀS‖_F - I_C / √C‖_F` from the Gram matrix `gram = SᵀS` `(B, C, C)`, and
    0 for a graph with no valid node: the one graph whose `SᵀS` is 0 (a valid node's
    row of `S` is a softmax, positive), so one guard serves the division and the
    result."""
    c = ops.shape(gram)[-1]
    norm = ops.norm(gram, (1, 2))
    empty = norm == 0
    ratio = gram / ops.expand_dims(ops.expand_dims(ops.where(empty, 1.0, norm), -1), -1)
    eye = ops.eye(c, like=gram) / math.sqrt(c)  # type: ignore[arg-type]
    return ops.where(empty, 0.0, ops.norm(ratio - eye, (1, 2)))


def cluster_per_graph(
    ops: ArrayOps, sums: Array, n_valid: Array | None, n_static: int | None
) -> Array:
    """`‖Σᵢ Sᵢ‖ √C / n - 1` from the cluster sizes `sums = Σᵢ Sᵢ` `(B, C)`, with `n` the
    number of valid nodes of *that* graph (PyTorch Geometric divides by every graph's
    `n`, pytorch_geometric#10148), and 0 for a graph with no valid node. `n_valid is
    None` means every graph has its `n_static > 0` nodes."""
    c = ops.shape(sums)[-1]
    sizes = ops.norm(sums, -1)
    if n_valid is None:
        return sizes * (math.sqrt(c) / n_static) - 1.0  # type: ignore[arg-type, operator]
    empty = n_valid == 0  # one guard for the division and the result
    loss = sizes * math.sqrt(c) / ops.where(empty, 1.0, n_valid) - 1.0  # type: ignore[arg-type]
    return ops.where(empty, 0.0, loss)


def normalized_pooled_adj(ops: ArrayOps, out_adj: Array) -> Array:
    """Zero the diagonal of `SᵀAS`, then `D^-1/2 A' D^-1/2` with `EPS` added to
    `sqrt(d)` (PyTorch Geometric's form; a cluster of degree 0 gives a zero row)."""
    c = ops.shape(out_adj)[-1]
    out_adj = out_adj * (1.0 - ops.eye(c, like=out_adj))  # type: ignore[arg-type]
    root = safe_sqrt(ops, ops.sum(out_adj, axis=-1)) + EPS  # (B, C)
    return (out_adj / ops.expand_dims(root, 1)) / ops.expand_dims(root, 2)


# --- guards that keep degenerate graphs finite, values and gradients alike --------------
# Each guard tests the degenerate case itself (`x == 0`), not `x > 0`, which would also
# turn NaN into a plausible number, and replaces the operand before the operation, so
# that no inf/NaN of the unused branch leaks into the gradient (the "double where").


def safe_sqrt(ops: ArrayOps, v: Array) -> Array:
    """`sqrt(v)`, and 0 with gradient 0 (not inf) at `v == 0`, as torch.norm. NaN stays
    NaN."""
    zero = v == 0
    return ops.where(zero, 0.0, ops.sqrt(ops.where(zero, 1.0, v)))


def any_negative(ops: ArrayOps, v: Array) -> Array:
    """`(B,)` whether any entry of a graph's `(B, K)` degrees or volumes is negative."""
    return ops.sum(ops.astype(v < 0, ops.dtype_name(v)), axis=-1) > 0
