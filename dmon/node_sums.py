"""DMoN's node sums and their hand-written gradients; for a symmetric adjacency, a
gradient that never reads `A`.

Every DMoN output is a function of the per-graph sums over nodes

    Sᵀ [P | S | X],   P = A [S | 1] = [AS | d]      (B, C, 2C + 1 + F)

that is `[SᵀAS | Sᵀd | SᵀS | SᵀX]`. With the cotangent `G = [G_a | g_d | G_s | G_x]`
of the sums and `P` taken as an input,

    ∂/∂S = [P | S | X] H,   H = [G_aᵀ ; g_dᵀ ; G_s + G_sᵀ ; G_xᵀ]   (W × C)
    ∂/∂P = S [G_a | g_d]
    ∂/∂X = S G_x

(`node_sums(..., symmetric=False)`): autodiff's gradient, with the three products of
`∂/∂S` accumulated into one result (no `N × W` copy, no `N × C` temporaries), and
`∂/∂P` going back through the product `P = A [S | 1]`: `Aᵀ (S G_a)`, a second pass over
a dense `N × N` matrix or a sparse product over the edges (with `Aᵀ` built first).

For `A = Aᵀ` that term is `A S G_a = P_S G_a`, which the forward already holds: then
(`symmetric=True`) `P` is built from `stop_gradient([S | 1])`, `H`'s first block is
`G_a + G_aᵀ`, and the backward never reads `A`. `P` stays differentiable in `A` (through
`∂/∂P` above), so a gradient with respect to the adjacency (its weights) is still exact.

The symmetric rule is right only for a symmetric `A`, which is the caller's promise
(`dmon.pool(..., symmetric=True)`, `SparseGraph(symmetric=True)`);
`dmon.validation.check_symmetric` catches most broken promises from sums already
computed.
"""

from __future__ import annotations

from dmon.ops import Array, ArrayOps, get_backend


def node_sums(
    ops: ArrayOps, s: Array, p: Array, xs: Array | None, *, symmetric: bool = True
) -> Array:
    """`(B, C, 2C + 1 + F)` `Sᵀ [P | S | X]` with the gradients above (`F = 0` without
    `xs`: a training step that reads no pooled features).

    Args:
        ops: the backend of the arrays.
        s: `(B, N, C)` assignment (0 on masked or padding rows).
        p: `(B, N, C + 1)` `A [S | 1]`; for `symmetric`, computed from
            `ops.stop_gradient` of `[S | 1]` (differentiable in `A` only).
        xs: `(B, N, F)` node features (0 on masked or padding rows), or `None`.
        symmetric: `A = Aᵀ`: the gradient with respect to `S` is whole without going
            back through `p`.
    """
    backward = _backward_symmetric if symmetric else _backward_general
    return ops.with_gradient(_forward, backward, s, p, *(() if xs is None else (xs,)))


def _forward(s: Array, p: Array, *xs: Array) -> tuple[Array, tuple[Array, ...]]:
    ops = get_backend(s)
    s_t = ops.transpose(s)
    # products into a (B, C, W) result rather than one over a concatenated (B, N, W)
    # copy: the same work, without writing N·W numbers
    out = ops.concat([ops.matmul(s_t, v) for v in (p, s, *xs)], axis=-1)
    return out, (s, p, *xs)


def _backward_symmetric(
    residuals: tuple[Array, ...], g: Array, needs: tuple[bool, ...]
) -> tuple[Array | None, ...]:
    return _backward(residuals, g, needs, symmetric=True)


def _backward_general(
    residuals: tuple[Array, ...], g: Array, needs: tuple[bool, ...]
) -> tuple[Array | None, ...]:
    return _backward(residuals, g, needs, symmetric=False)


def _backward(
    residuals: tuple[Array, ...], g: Array, needs: tuple[bool, ...], symmetric: bool
) -> tuple[Array | None, ...]:
    s, p = residuals[:2]
    xs = residuals[2] if len(residuals) > 2 else None
    ops = get_backend(g)
    c = ops.shape(s)[-1]
    assert c is not None
    t = ops.transpose
    g_p, g_s, g_x = g[..., : c + 1], g[..., c + 1 : 2 * c + 1], g[..., 2 * c + 1 :]
    grad_s = grad_p = grad_x = None
    if needs[0]:  # [P | S | X] H, block by block (P = [AS | d] is one block)
        h_p = t(g_p)  # (C + 1, C): [G_aᵀ ; g_dᵀ]
        if symmetric:  # and + G_a: the term A S G_a that would come back through P
            g_a = g_p[..., :c]
            h_p = ops.concat([t(g_a) + g_a, t(g_p[..., c:])], axis=-2)
        pairs = [(p, h_p), (s, t(g_s) + g_s)]
        grad_s = ops.matmul_sum(pairs if xs is None else [(xs, t(g_x)), *pairs])
    if needs[1]:  # through P = A [S | 1]: to S (general) and to the weights of A
        grad_p = ops.matmul(s, g_p)
    if xs is None:
        return grad_s, grad_p
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
