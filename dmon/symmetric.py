"""DMoN's node sums for a symmetric adjacency, with a gradient that never reads `A`.

Every DMoN output is a function of the per-graph sums over nodes

    Sᵀ [P | S | X],   P = A [S | 1] = [AS | d]      (B, C, 2C + 1 + F)

that is `[SᵀAS | Sᵀd | SᵀS | SᵀX]`. Autodiff differentiates `SᵀAS` through both of its
`S` factors, and the right one goes back through `A`: `Aᵀ (S G)`, a second pass over a
dense `N × N` matrix or a sparse product over the edges (with `Aᵀ` built first). For
`A = Aᵀ` that term is `A S G = P_S G`, which the forward already holds, so with the
cotangent `G = [G_a | g_d | G_s | G_x]` of the sums

    ∂/∂S = [P | S | X] H,   H = [G_a + G_aᵀ ; g_dᵀ ; G_s + G_sᵀ ; G_xᵀ]   (W × C)
    ∂/∂X = S G_x

the work of one `(N × W)(W × C)` product (done block by block, without an `N × W`
copy), where autodiff takes five products plus the pass over `A`. `P` is
built from `stop_gradient([S | 1])` (its `S`-dependence is in the rule above) but stays
differentiable in `A`: `∂/∂P = S [G_a | g_d]`, so a gradient with respect to the
adjacency (its weights) is still exact.

The rule is right only for a symmetric `A`, which is the caller's promise
(`dmon.pool(..., symmetric=True)`, `SparseGraph(symmetric=True)`);
`dmon.validation.check_symmetric` catches most broken promises from sums already
computed.
"""

from __future__ import annotations

from dmon.ops import Array, ArrayOps, get_backend


def node_sums(ops: ArrayOps, s: Array, p: Array, xs: Array) -> Array:
    """`(B, C, 2C + 1 + F)` `Sᵀ [P | S | X]` with the symmetric-`A` gradient above.

    Args:
        ops: the backend of the arrays.
        s: `(B, N, C)` assignment (0 on masked or padding rows).
        p: `(B, N, C + 1)` `A [S | 1]`, computed from `ops.stop_gradient` of `[S | 1]`
            (differentiable in `A` only).
        xs: `(B, N, F)` node features (0 on masked or padding rows).
    """
    return ops.with_gradient(_forward, _backward, s, p, xs)


def _forward(s: Array, p: Array, xs: Array) -> tuple[Array, tuple[Array, ...]]:
    ops = get_backend(s)
    s_t = ops.transpose(s)
    # three products into a (B, C, W) result rather than one over a concatenated
    # (B, N, W) copy: the same work, without writing N·W numbers
    out = ops.concat([ops.matmul(s_t, p), ops.matmul(s_t, s), ops.matmul(s_t, xs)], axis=-1)
    return out, (s, p, xs)


def _backward(
    residuals: tuple[Array, ...], g: Array, needs: tuple[bool, ...]
) -> tuple[Array | None, ...]:
    s, p, xs = residuals
    ops = get_backend(g)
    c = ops.shape(s)[-1]
    assert c is not None
    g_a, g_d, g_s, g_x = (
        g[..., :c],
        g[..., c : c + 1],
        g[..., c + 1 : 2 * c + 1],
        g[..., 2 * c + 1 :],
    )
    t, mm = ops.transpose, ops.matmul
    grad_s = grad_p = grad_x = None
    if needs[0]:  # [P | S | X] H, block by block
        grad_s = (
            mm(p[..., :c], t(g_a) + g_a)
            + mm(p[..., c:], t(g_d))
            + mm(s, t(g_s) + g_s)
            + mm(xs, t(g_x))
        )
    if needs[1]:  # only for a gradient with respect to A
        grad_p = ops.matmul(s, g[..., : c + 1])
    if needs[2]:
        grad_x = ops.matmul(s, g_x)
    return grad_s, grad_p, grad_x


def row_products(ops: ArrayOps, s1_t: Array, adj: Array) -> Array:
    """`(B, K, N)` `U = s1ᵀ A` for a symmetric dense `adj` `(B, N, N)` and a constant
    `s1_t = s1ᵀ` `(B, K, N)`, differentiated as `s1ᵀ Aᵀ` (equal for `A = Aᵀ`).

    `s1ᵀ A` with `s1ᵀ` contiguous is the product the CPU BLAS runs fastest (~30% faster
    than `A s1`); `Uᵀ` is then `P = A s1` as a function of `A` too, so the gradient with
    respect to `adj` is the plain formula's (not its transpose). No gradient flows to
    `s1` (callers pass `stop_gradient([S | 1])ᵀ`).
    """
    return ops.with_gradient(_rows_forward, _rows_backward, s1_t, adj)


def _rows_forward(s1_t: Array, adj: Array) -> tuple[Array, tuple[Array, ...]]:
    return get_backend(s1_t).matmul(s1_t, adj), (s1_t,)


def _rows_backward(
    residuals: tuple[Array, ...], g: Array, needs: tuple[bool, ...]
) -> tuple[Array | None, ...]:
    (s1_t,) = residuals
    ops = get_backend(g)
    grad_adj = ops.matmul(ops.transpose(g), s1_t) if needs[1] else None
    return None, grad_adj
