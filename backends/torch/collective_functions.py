"""The autograd Functions of torch's collectives (`dmon.backends.torch.collectives`),
in a module of their own that imports torch: `collectives` itself imports without it."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


class ReplicatedSum(torch.autograd.Function):
    """An all-reduce whose result every rank uses alike: its backward passes the
    gradient through (`TorchCollectives.all_sum`)."""

    @staticmethod
    def forward(ctx: Any, x: Any, group: Any) -> Any:
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        return grad, None


class AllToAll(torch.autograd.Function):
    """`all_to_all_single` with per-peer counts; its backward sends the gradient rows
    back the same way (`TorchCollectives.exchange`)."""

    @staticmethod
    def forward(ctx: Any, x: Any, sent: list[int], received: list[int], group: Any) -> Any:
        ctx.sent, ctx.received, ctx.group = sent, received, group
        out = x.new_empty((sum(received), *x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), received, sent, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        back = grad.new_empty((sum(ctx.sent), *grad.shape[1:]))
        dist.all_to_all_single(back, grad.contiguous(), ctx.sent, ctx.received, group=ctx.group)
        return back, None, None, None
