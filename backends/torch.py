"""PyTorch backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TorchOps:
    name = "torch"
    framework = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch

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

    def ones_like(self, x: Any) -> Any:
        return self.torch.ones_like(x)

    def eye(self, n: int, like: Any) -> Any:
        return self.torch.eye(n, dtype=like.dtype, device=like.device)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return self.torch.cat(list(xs), dim=axis)

    def matmul(self, a: Any, b: Any) -> Any:
        return self.torch.matmul(a, b)

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
        return self.torch.where(cond, a, b)

    def softmax(self, x: Any) -> Any:
        return self.torch.softmax(x, dim=-1)

    def selu(self, x: Any) -> Any:
        return self.torch.nn.functional.selu(x)
