"""torch's autograd Functions: the hand-written rules of `TorchOps.with_gradient` and
the CSR product whose backward stays sparse. A module of their own, imported with torch
when the backend is made, so that the classes exist before `torch.compile` traces a
call (it cannot trace the making of a class) while `dmon.backends.torch.ops` imports
without torch."""

from __future__ import annotations

from typing import Any

import torch
from dmon.backends.torch.csr import Csr, csr_times


class WithGradient(torch.autograd.Function):
    """The `torch.autograd.Function` behind `TorchOps.with_gradient`: the forward and
    backward rules travel as its first two (non-tensor) arguments. Defined with the
    module, not on first use: `torch.compile` cannot trace the making of a class."""

    @staticmethod
    def forward(ctx: Any, forward: Any, backward: Any, *args: Any) -> Any:
        out, residuals = forward(*args)
        ctx.backward_rule = backward
        ctx.save_for_backward(*residuals)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        rule = ctx.backward_rule
        saved = tuple(ctx.saved_tensors)
        needs = tuple(ctx.needs_input_grad[2:])
        grads = rule(saved, grad, needs)
        return (None, None, *grads)


class CsrSpmm(torch.autograd.Function):
    """`A @ dense` with a CSR forward and a backward that stays sparse.

    torch's own backward of a CSR product densifies (it asked for N² floats at N = 169k),
    so the gradients are written out: `∂/∂dense = Aᵀ G` (the transpose built by a stable
    sort on the columns, only when that gradient is needed) and
    `∂/∂w_e = ⟨G[row_e], dense[col_e]⟩`.
    """

    @staticmethod
    def forward(ctx: Any, weight: Any, dense: Any, csr: Csr) -> Any:
        ctx.csr = csr
        ctx.save_for_backward(weight, dense)
        return csr_times(torch, csr.matrix(torch, weight.detach()), dense)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        # unpacked for autograd's check that the weights were not changed in place:
        # the transpose's weights come from csr.weight (kept for a constant matrix)
        _weight, dense = ctx.saved_tensors
        csr = ctx.csr
        grad_weight = grad_dense = None
        if ctx.needs_input_grad[0]:
            i = csr.index
            grad_weight = (grad.index_select(0, i.row) * dense.index_select(0, i.col)).sum(-1)
        if ctx.needs_input_grad[1]:
            index, values = csr.transposed(torch)
            grad_dense = csr_times(torch, Csr(index, None).matrix(torch, values), grad)
        return grad_weight, grad_dense, None
