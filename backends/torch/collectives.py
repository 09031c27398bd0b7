"""torch's side of node sharding: collectives over a `torch.distributed` process group
(torchrun; gloo on CPU, NCCL on GPU) and a shard of a partition as tensors."""

from __future__ import annotations

from typing import Any

from dmon.distributed import Shard
from dmon.halo import exact_layout
from dmon.partition import Partition


class TorchCollectives:
    """Collectives over a `torch.distributed` process group, with autograd.

    `all_gather` is `torch.distributed.nn.functional.all_gather` (its backward sums the
    gradients of every rank's copy: a reduce-scatter). `all_sum` is an all-reduce whose
    backward passes the gradient through unchanged, as JAX's `psum` of a value every
    device then uses alike: every rank computes the same loss from the sum, so each
    rank's upstream gradient already is the full one (torch's own `all_reduce` backward
    would sum the `P` equal copies and scale every gradient by `P`). Hence: use the
    output of `all_sum` identically on every rank, and sum the ranks' parameter
    gradients (`sum_gradients`)."""

    def __init__(self, group: Any = None) -> None:
        import torch.distributed as dist
        import torch.distributed.nn.functional as fn

        self.group = group
        self._dist, self._fn = dist, fn

    def all_gather(self, x: Any) -> Any:
        import warnings

        import torch

        with warnings.catch_warnings():
            # deprecated in favour of a private module (torch 2.13); its backward is the
            # reduce-scatter (alltoall on gloo) this needs
            warnings.simplefilter("ignore", FutureWarning)
            parts = self._fn.all_gather(x, group=self.group)
        return torch.cat(parts, dim=0)

    def all_sum(self, x: Any) -> Any:
        from dmon.backends.torch.collective_functions import ReplicatedSum

        return ReplicatedSum.apply(x, self.group)

    def exchange(self, x: Any, send: Any, splits: Any = None) -> Any:
        """`all_to_all_single` with per-peer counts (the exact layout of `dmon.halo`);
        its backward sends the gradient rows back the same way, and `index_select`'s
        adds them onto the rows sent."""
        if splits is None:
            raise ValueError("dmon.backends.torch: the halo exchange needs per-peer splits")
        from dmon.backends.torch.collective_functions import AllToAll

        sent, received = splits
        return AllToAll.apply(x.index_select(0, send), sent, received, self.group)

    def sum_gradients(self, params: list[Any]) -> None:
        """Replace every `p.grad` by its sum over the ranks (each rank holds the part of
        the gradient from its own nodes), in one all-reduce of all of them."""
        import torch

        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._dist.all_reduce(flat, group=self.group)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def torch_shard(part: Partition, rank: int, device: Any = None, dtype: Any = None) -> Shard:
    """Shard `rank` of `part` as torch tensors (for a process of a torchrun job); a halo
    exchange in `dmon.halo`'s exact layout (per-peer counts, no padding rows)."""
    import torch

    a = part.shard(rank)
    col, send, splits = a["col"], None, None
    if part.send is not None and part.send_counts is not None:
        rows, sent, received, col = exact_layout(col, part.send, part.send_counts, part.block, rank)
        send = torch.as_tensor(rows, dtype=torch.int64, device=device)
        splits = (sent, received)
    return Shard(
        torch.as_tensor(a["row"], dtype=torch.int64, device=device),
        torch.as_tensor(col, dtype=torch.int64, device=device),
        torch.as_tensor(a["weight"], dtype=dtype or torch.float32, device=device),
        torch.as_tensor(a["valid"], device=device),
        torch.as_tensor(a["batch"], dtype=torch.int64, device=device),
        part.num_graphs,
        padded=part.padded,
        send=send,
        splits=splits,
    )
