"""Counting what a piece of torch code costs a GPU beyond its arithmetic: the kernels it
launches (dispatched compute ops), the times it waits for the device (host reads) and
the autograd nodes it records. On the CPU these counts are exact and the same as on a
GPU, so they can be measured and tested where no GPU is (`benchmarks/bench_launches.py`).

    with count_ops() as tally:
        loss = dmon.pool(x, adj, logits).spectral_loss
        loss.backward()
    tally.ops, tally.host_reads
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# ops that launch no kernel: they allocate or describe memory without touching it
_FREE = {
    "empty",
    "empty_like",
    "empty_strided",
    "new_empty",
    "new_empty_strided",
    "detach",
    "lift_fresh",
    "_unsafe_view",
    "alias",
    "set_",
    "resize_",
    "_reshape_alias",
    "_local_scalar_dense",
    # the profiler's markers (torch.optim wraps each step in one)
    "_record_function_enter_new",
    "_record_function_exit",
}


@dataclass
class Tally:
    """What one `count_ops` block dispatched."""

    ops: int = 0
    """Compute ops: dispatched aten ops that launch a kernel (not views, not allocations,
    not reads to the host)."""
    host_reads: int = 0
    """Reads of a value back to the host: `.item()`, `bool(t)`, `.tolist()`, `.numpy()`
    (on the CPU) and copies from a device to the CPU (on a GPU)."""
    by_op: collections.Counter = field(default_factory=collections.Counter)
    """Compute ops by name."""


class _Mode(TorchDispatchMode):
    def __init__(self, tally: Tally) -> None:
        super().__init__()
        self.tally = tally

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name == "_local_scalar_dense" or (
            name in ("_to_copy", "copy_") and _device_to_host(name, args, kwargs)
        ):
            self.tally.host_reads += 1
        elif not func.is_view and name not in _FREE:
            self.tally.ops += 1
            self.tally.by_op[name] += 1
        return func(*args, **kwargs)


def _device_to_host(name: str, args: Any, kwargs: Any) -> bool:
    if name == "_to_copy":
        src, dst = args[0], kwargs.get("device")
        return dst is not None and torch.device(dst).type == "cpu" and src.device.type != "cpu"
    dst, src = args[0], args[1]
    return dst.device.type == "cpu" and src.device.type != "cpu"


@contextlib.contextmanager
def count_ops() -> Iterator[Tally]:
    """Count the compute ops and host reads of the block (eager torch; a compiled
    function's kernels are not dispatched one by one: count those with
    `count_compiled_kernels`)."""
    tally = Tally()
    originals = {name: getattr(torch.Tensor, name) for name in ("numpy", "tolist")}

    def reading(name: str) -> Any:
        original = originals[name]

        def read(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if self.device.type == "cpu":  # elsewhere the copy to the CPU was counted
                tally.host_reads += 1
            return original(self, *args, **kwargs)

        return read

    try:
        for name in originals:
            setattr(torch.Tensor, name, reading(name))
        with _Mode(tally):
            yield tally
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def autograd_nodes(*outputs: torch.Tensor) -> int:
    """The autograd nodes behind `outputs` (the backward's Python-side work)."""
    seen: set[Any] = set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return len(seen)


def count_compiled_kernels(fn: Any, *args: Any, backward: bool = False) -> int:
    """Kernels one call of `torch.compile(fn, fullgraph=True)(*args)` runs (with the
    backward of the sum of its floating outputs when `backward`): the generated, fused
    kernels and the library calls (matrix products) of the compiled graphs, read from
    the profiler (on the CPU, inductor's kernels are profiled when asked at compile
    time)."""
    import torch._inductor.config as inductor
    from torch.profiler import ProfilerActivity, profile

    compiled = torch.compile(fn, fullgraph=True)

    def call() -> None:
        out = compiled(*args)
        if backward:
            floating = [v for v in _tensors(out) if v.is_floating_point() and v.requires_grad]
            torch.stack([v.sum() for v in floating]).sum().backward()

    with inductor.patch({"cpp.enable_kernel_profile": True}):
        for _ in range(2):  # compile, then settle
            call()
        with profile(activities=[ProfilerActivity.CPU, *_gpu(args)]) as prof:
            call()
    graphs = [e for e in prof.events() if "CompiledFxGraph" in e.name]
    return sum(1 for e in prof.events() if e.cpu_parent is not None and e.cpu_parent in graphs)


def _tensors(out: Any) -> list[torch.Tensor]:
    return [
        v for v in (out if isinstance(out, tuple | list) else (out,)) if isinstance(v, torch.Tensor)
    ]


def _gpu(args: Any) -> list[Any]:
    from torch.profiler import ProfilerActivity

    on_gpu = any(isinstance(a, torch.Tensor) and a.is_cuda for a in args)
    return [ProfilerActivity.CUDA] if on_gpu else []
