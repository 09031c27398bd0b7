"""The dense ops that NumPy and ``jax.numpy`` spell the same way, written once.

`NumpyApiOps` holds them against ``self.np``, the array namespace: ``numpy`` for the
NumPy backend, ``jax.numpy`` for the JAX one. Each backend subclass sets it and adds
what differs (conversion, dtype handling, softmax/SELU, sparse products).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class NumpyApiOps:
    np: Any  # the array namespace, set by the subclass

    def shape(self, x: Any) -> tuple[int | None, ...]:
        return tuple(x.shape)

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype.name)

    def astype(self, x: Any, dtype: str) -> Any:
        return x.astype(dtype)

    def expand_dims(self, x: Any, axis: int) -> Any:
        return self.np.expand_dims(x, axis)

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any:
        return self.np.reshape(x, shape)

    def ones_like(self, x: Any) -> Any:
        return self.np.ones_like(x)

    def eye(self, n: int, like: Any) -> Any:
        return self.np.eye(n, dtype=like.dtype)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return self.np.concatenate(list(xs), axis=axis)

    def device(self, x: Any) -> str | None:
        return None  # NumPy: the host; JAX places and moves arrays itself

    def matmul(self, a: Any, b: Any) -> Any:
        return self.np.matmul(a, b)

    def matmul_sum(self, pairs: Sequence[tuple[Any, Any]]) -> Any:
        # under jit XLA fuses the additions; eager NumPy/JAX add the products
        return sum((self.matmul(a, b) for a, b in pairs[1:]), self.matmul(*pairs[0]))

    def transpose(self, x: Any) -> Any:
        return self.np.swapaxes(x, -1, -2)

    def diagonal(self, x: Any) -> Any:
        return self.np.diagonal(x, axis1=-2, axis2=-1)

    def sum(self, x: Any, axis: int | tuple[int, ...], keepdims: bool = False) -> Any:
        return self.np.sum(x, axis=axis, keepdims=keepdims)

    def sqrt(self, x: Any) -> Any:
        return self.np.sqrt(x)

    def norm(self, x: Any, axis: int | tuple[int, ...]) -> Any:
        # the double where: sqrt's infinite slope at 0 stays out of the gradient
        total = self.np.sum(x * x, axis=axis)
        zero = total == 0
        return self.np.where(zero, 0.0, self.np.sqrt(self.np.where(zero, 1.0, total))).astype(
            total.dtype
        )

    def take(self, x: Any, index: Any) -> Any:
        return self.np.take(x, index, axis=0)

    def arange(self, n: int, like: Any) -> Any:
        return self.np.arange(n, dtype=like.dtype)

    def cumsum(self, x: Any) -> Any:
        return self.np.cumsum(x, axis=0)
