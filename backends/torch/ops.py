"""PyTorch backend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dmon.backends.torch import csr

from dmon.sparse_graph import Edges


class TorchOps:
    name = "torch"
    framework = "torch"

    def __init__(self) -> None:
        import torch

        # the autograd Functions, made when their module is imported: torch.compile
        # cannot trace the making of a class, but it runs an import statement
        from dmon.backends.torch import functions

        self.torch, self.functions = torch, functions

    def is_array(self, x: object) -> bool:
        return isinstance(x, self.torch.Tensor)

    def asarray(self, x: object) -> Any:
        if isinstance(x, self.torch.Tensor):
            return x
        import numpy

        return self.torch.from_numpy(numpy.array(x))

    def shape(self, x: Any) -> tuple[int | None, ...]:
        return tuple(x.shape)

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype).removeprefix("torch.")

    def astype(self, x: Any, dtype: str) -> Any:
        return x.to(getattr(self.torch, dtype))

    def expand_dims(self, x: Any, axis: int) -> Any:
        return x.unsqueeze(axis)

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any:
        return x.reshape(shape)

    def ones_like(self, x: Any) -> Any:
        return self.torch.ones_like(x)

    def eye(self, n: int, like: Any) -> Any:
        return self.torch.eye(n, dtype=like.dtype, device=like.device)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return self.torch.cat(list(xs), dim=axis)

    def matmul(self, a: Any, b: Any) -> Any:
        out = _large_cpu_result(self.torch, a, b)
        return self.torch.matmul(a, b) if out is None else self.torch.matmul(a, b, out=out)

    def matmul_sum(self, pairs: Sequence[tuple[Any, Any]]) -> Any:
        torch = self.torch
        out = self.matmul(*pairs[0])
        if torch.is_grad_enabled() and any(v.requires_grad for pair in pairs for v in pair):
            return sum((torch.matmul(a, b) for a, b in pairs[1:]), out)  # autograd records
        for a, b in pairs[1:]:  # accumulate into the first product: no (N, ·) temporaries
            if out.dim() == a.dim() == b.dim() == 3:
                out.baddbmm_(a, b)
            elif out.dim() == a.dim() == b.dim() == 2:
                out.addmm_(a, b)
            else:
                out.add_(torch.matmul(a, b))
        return out

    def transpose(self, x: Any) -> Any:
        return x.transpose(-1, -2)

    def diagonal(self, x: Any) -> Any:
        return self.torch.diagonal(x, dim1=-2, dim2=-1)

    def sum(self, x: Any, axis: int | tuple[int, ...], keepdims: bool = False) -> Any:
        return self.torch.sum(x, dim=axis, keepdim=keepdims)

    def mean(self, x: Any) -> Any:
        return self.torch.mean(x)

    def sqrt(self, x: Any) -> Any:
        return self.torch.sqrt(x)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        # a guard (one side a Python number) as one masked_fill, forward and backward,
        # where torch.where would first fill a 0-d tensor with the number, both ways
        tensor, bool_ = self.torch.Tensor, self.torch.bool
        if isinstance(a, int | float) and isinstance(b, tensor) and _fills(cond, b, bool_):
            return b.masked_fill(cond, a)
        if isinstance(b, int | float) and isinstance(a, tensor) and _fills(cond, a, bool_):
            return a.masked_fill(cond.logical_not(), b)
        return self.torch.where(cond, a, b)

    def norm(self, x: Any, axis: int | tuple[int, ...]) -> Any:
        return self.torch.linalg.vector_norm(x, dim=axis)

    def softmax(self, x: Any) -> Any:
        return self.torch.softmax(x, dim=-1)

    def selu(self, x: Any) -> Any:
        return self.torch.nn.functional.selu(x)

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def with_gradient(self, forward: Any, backward: Any, *args: Any) -> Any:
        if not (self.torch.is_grad_enabled() and any(a.requires_grad for a in args)):
            return forward(*args)[0]  # nothing to differentiate: no autograd node
        return self.functions.WithGradient.apply(forward, backward, *args)

    # --- sparse ----------------------------------------------------------------------

    def is_sparse(self, x: object) -> bool:
        return isinstance(x, self.torch.Tensor) and x.layout in (
            self.torch.sparse_coo,
            self.torch.sparse_csr,
        )

    def sparse_coo(self, x: Any) -> tuple[Any, Any, Any, tuple[int, ...]]:
        if x.layout == self.torch.sparse_csr:
            crow, col = x.crow_indices(), x.col_indices()
            row = self.torch.repeat_interleave(
                self.torch.arange(x.shape[0], device=x.device), crow.diff()
            )
            return row, col.long(), x.values(), tuple(x.shape)
        x = x.coalesce()
        return x.indices()[0], x.indices()[1], x.values(), tuple(x.shape)

    def sparse_matrix(self, edges: Edges) -> Any:
        return csr.build(self.torch, edges)

    def spmm(self, matrix: Any, dense: Any) -> Any:
        if isinstance(matrix, tuple):
            row, col, weight, n = matrix
            msgs = dense.index_select(0, col) * weight.unsqueeze(-1)
            return self.torch.zeros(
                n, dense.shape[-1], dtype=dense.dtype, device=dense.device
            ).index_add(0, row, msgs)
        return self.functions.CsrSpmm.apply(matrix.weight, dense, matrix)

    def segment_sum(self, values: Any, ids: Any, num_segments: int) -> Any:
        out = self.torch.zeros(
            (num_segments, *values.shape[1:]), dtype=values.dtype, device=values.device
        )
        return out.index_add(0, ids, values)

    def take(self, x: Any, index: Any) -> Any:
        return x.index_select(0, index)

    def arange(self, n: int, like: Any) -> Any:
        return self.torch.arange(n, dtype=like.dtype, device=like.device)

    def cumsum(self, x: Any) -> Any:
        return self.torch.cumsum(x, dim=0)

    def device(self, x: Any) -> str | None:
        return str(x.device)

    def on_accelerator(self, x: Any) -> bool:
        return bool(x.device.type != "cpu")

    def version(self, x: Any) -> int | None:
        return int(x._version)

    def to_numpy(self, x: Any) -> Any:
        if self.torch.compiler.is_compiling():
            return None
        x = x.detach().cpu()
        # NumPy has no bfloat16: read half precision as float32
        return (x.float() if x.dtype in (self.torch.bfloat16, self.torch.float16) else x).numpy()


# glibc serves a block over 32 MiB (the ceiling of its dynamic mmap threshold) as a fresh
# mapping and unmaps it when freed, so such a tensor is page-faulted in 4 KiB pages on
# every step, which costs as long as the product that writes it (docs/benchmarks.md, "Design measurements").
_LARGE_BYTES = 32 << 20


def _large_cpu_result(torch: Any, a: Any, b: Any) -> Any | None:
    """An empty CPU tensor for the product `a @ b` when it is large (see `_LARGE_BYTES`),
    allocated by NumPy, which asks Linux for transparent huge pages for large arrays
    (`madvise`; 512× fewer page faults); `None` (let torch allocate) otherwise: small,
    not on the CPU, mixed or non-float32/64 dtypes, shapes that broadcast, autograd
    recording (`out=` cannot be differentiated), compiling, tensor subclasses and
    `torch.func` transforms (no `out=` under `vmap`). Its storage, NumPy's, cannot be
    resized in place."""
    if torch.compiler.is_compiling():
        return None
    shape = (*a.shape[:-1], b.shape[-1])
    # the size next: nearly every product is small, and this runs on each one
    if math.prod(shape) * a.element_size() < _LARGE_BYTES:
        return None
    functorch = torch._C._functorch
    if (
        type(a) is not torch.Tensor
        or type(b) is not torch.Tensor
        or functorch.is_functorch_wrapped_tensor(a)
        or functorch.is_functorch_wrapped_tensor(b)
        or a.dtype not in (torch.float32, torch.float64)
        or a.dtype != b.dtype
        or a.device.type != "cpu"
        or b.device.type != "cpu"
        or a.dim() != b.dim()
        or a.dim() < 2
        or a.shape[:-2] != b.shape[:-2]
        or a.shape[-1] != b.shape[-2]
        or (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))
    ):
        return None
    import numpy

    dtype = numpy.float32 if a.dtype == torch.float32 else numpy.float64
    return torch.from_numpy(numpy.empty(shape, dtype))


def _fills(cond: Any, x: Any, bool_: Any) -> bool:
    """Whether `masked_fill` of `x` under `cond` has `where`'s shape (`cond` does not
    broadcast `x` up). By hand: `torch.broadcast_shapes` costs more than the op."""
    if cond.dtype != bool_ or cond.dim() > x.dim():
        return False
    shape = x.shape
    offset = x.dim() - cond.dim()
    return all(c == 1 or c == shape[offset + i] for i, c in enumerate(cond.shape))
