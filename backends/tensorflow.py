"""TensorFlow backend (eager, ``tf.function`` and ``jit_compile=True``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TensorFlowOps:
    name = "tensorflow"
    framework = "tensorflow"

    def __init__(self) -> None:
        import tensorflow

        self.tf = tensorflow

    def is_array(self, x: object) -> bool:
        return isinstance(x, self.tf.Tensor | self.tf.Variable)

    def asarray(self, x: object) -> Any:
        if isinstance(x, self.tf.Tensor | self.tf.Variable):
            return x
        import numpy

        if hasattr(x, "detach"):  # torch: leave autograd and the device first
            x = x.detach().cpu()
        return self.tf.convert_to_tensor(numpy.asarray(x))

    def shape(self, x: Any) -> tuple[int | None, ...]:
        return tuple(x.shape.as_list()) if x.shape.rank is not None else ()

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype.name)

    def astype(self, x: Any, dtype: str) -> Any:
        return self.tf.cast(x, dtype)

    def expand_dims(self, x: Any, axis: int) -> Any:
        return self.tf.expand_dims(x, axis)

    def ones_like(self, x: Any) -> Any:
        return self.tf.ones_like(x)

    def eye(self, n: int, like: Any) -> Any:
        return self.tf.eye(n, dtype=like.dtype)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return self.tf.concat(list(xs), axis=axis)

    def matmul(self, a: Any, b: Any) -> Any:
        return self.tf.linalg.matmul(a, b)

    def transpose(self, x: Any) -> Any:
        return self.tf.linalg.matrix_transpose(x)

    def diagonal(self, x: Any) -> Any:
        return self.tf.linalg.diag_part(x)

    def sum(self, x: Any, axis: int | tuple[int, ...], keepdims: bool = False) -> Any:
        return self.tf.reduce_sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x: Any) -> Any:
        return self.tf.reduce_mean(x)

    def sqrt(self, x: Any) -> Any:
        return self.tf.sqrt(x)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        # tf.where wants tensors of one dtype; a Python number takes the other's dtype.
        dtype = a.dtype if hasattr(a, "dtype") else b.dtype
        return self.tf.where(cond, self.tf.cast(a, dtype), self.tf.cast(b, dtype))

    def softmax(self, x: Any) -> Any:
        return self.tf.nn.softmax(x, axis=-1)

    def selu(self, x: Any) -> Any:
        return self.tf.nn.selu(x)
