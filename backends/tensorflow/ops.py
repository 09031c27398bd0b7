"""TensorFlow backend (eager, ``tf.function`` and ``jit_compile=True``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dmon.backends.tensorflow import csr

from dmon.sparse_graph import Edges


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

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any:
        return self.tf.reshape(x, shape)

    def ones_like(self, x: Any) -> Any:
        return self.tf.ones_like(x)

    def eye(self, n: int, like: Any) -> Any:
        return self.tf.eye(n, dtype=like.dtype)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return self.tf.concat(list(xs), axis=axis)

    def matmul(self, a: Any, b: Any) -> Any:
        return self.tf.linalg.matmul(a, b)

    def matmul_sum(self, pairs: Sequence[tuple[Any, Any]]) -> Any:
        return self.tf.add_n([self.tf.linalg.matmul(a, b) for a, b in pairs])

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

    def norm(self, x: Any, axis: int | tuple[int, ...]) -> Any:
        # the double where: sqrt's infinite slope at 0 stays out of the gradient
        tf = self.tf
        total = tf.reduce_sum(x * x, axis=axis)
        zero = total == 0
        return tf.where(
            zero, tf.zeros_like(total), tf.sqrt(tf.where(zero, tf.ones_like(total), total))
        )

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        # tf.where wants tensors of one dtype; a Python number takes the other's dtype.
        dtype = a.dtype if hasattr(a, "dtype") else b.dtype
        return self.tf.where(cond, self.tf.cast(a, dtype), self.tf.cast(b, dtype))

    def softmax(self, x: Any) -> Any:
        return self.tf.nn.softmax(x, axis=-1)

    def selu(self, x: Any) -> Any:
        return self.tf.nn.selu(x)

    def stop_gradient(self, x: Any) -> Any:
        return self.tf.stop_gradient(x)

    def with_gradient(self, forward: Any, backward: Any, *args: Any) -> Any:
        tf = self.tf

        @tf.custom_gradient
        def fn(*a: Any) -> Any:
            out, residuals = forward(*a)
            # TensorFlow cannot say which gradients are wanted: a tf.function prunes the
            # unused ones from its graph
            return out, lambda g: list(backward(residuals, g, (True,) * len(a)))

        return fn(*args)

    # --- sparse ----------------------------------------------------------------------

    def is_sparse(self, x: object) -> bool:
        return isinstance(x, self.tf.SparseTensor)

    def sparse_coo(self, x: Any) -> tuple[Any, Any, Any, tuple[int, ...]]:
        return (
            x.indices[:, 0],
            x.indices[:, 1],
            x.values,
            tuple(
                int(x.dense_shape[i]) if x.shape[i] is None else int(x.shape[i]) for i in range(2)
            ),
        )

    def sparse_matrix(self, edges: Edges) -> Any:
        return csr.build(self.tf, edges)

    def spmm(self, matrix: Any, dense: Any) -> Any:
        if isinstance(matrix, tuple):
            row, col, weight, n = matrix
            msgs = self.tf.gather(dense, col) * weight[:, None]
            return self.tf.math.unsorted_segment_sum(msgs, row, n)
        return matrix.product(self.tf, dense)  # a csr.Csr or csr.ConstantCsr

    def segment_sum(self, values: Any, ids: Any, num_segments: int) -> Any:
        return self.tf.math.unsorted_segment_sum(values, ids, num_segments)

    def take(self, x: Any, index: Any) -> Any:
        return self.tf.gather(x, index)

    def arange(self, n: int, like: Any) -> Any:
        return self.tf.range(n, dtype=like.dtype)

    def cumsum(self, x: Any) -> Any:
        return self.tf.cumsum(x, axis=0)

    def device(self, x: Any) -> str | None:
        return None  # TensorFlow copies operands between devices itself

    def on_accelerator(self, x: Any) -> bool:
        device = getattr(x, "device", "") if self.tf.executing_eagerly() else ""
        return ":GPU:" in device or ":TPU:" in device

    def version(self, x: Any) -> int | None:
        return None if isinstance(x, self.tf.Variable) else 0

    def to_numpy(self, x: Any) -> Any:
        return x.numpy() if self.tf.executing_eagerly() else None
