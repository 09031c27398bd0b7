"""TensorFlow backend (eager, ``tf.function`` and ``jit_compile=True``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dmon.sparse_graph import remembered


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

    def sparse_matrix(
        self,
        row: Any,
        col: Any,
        weight: Any,
        n: int,
        cache: dict[str, Any] | None = None,
        cols: int | None = None,
    ) -> Any:
        if _in_xla_context(self.tf):  # sparse_dense_matmul has no XLA kernel
            return (row, col, weight, n)
        # ~10x faster than a segment sum outside XLA; differentiable in the values.
        # The (E, 2) int64 indices cost about a quarter of the product to build; cached on
        # the SparseGraph, but only eagerly (a traced tensor must not outlive its graph).
        indices = remembered(
            cache if self.tf.executing_eagerly() else None,
            f"tf-indices-{n}-{cols}",
            lambda: self.tf.stack([self.tf.cast(row, "int64"), self.tf.cast(col, "int64")], axis=1),
        )
        # No reorder: the product is a scatter-add and needs no canonical order (a sort
        # per call would cost more than the product).
        return self.tf.SparseTensor(indices, weight, [n, n if cols is None else cols])

    def spmm(self, matrix: Any, dense: Any) -> Any:
        if isinstance(matrix, tuple):
            row, col, weight, n = matrix
            msgs = self.tf.gather(dense, col) * weight[:, None]
            return self.tf.math.unsorted_segment_sum(msgs, row, n)
        return self.tf.sparse.sparse_dense_matmul(matrix, dense)

    def segment_sum(self, values: Any, ids: Any, num_segments: int) -> Any:
        return self.tf.math.unsorted_segment_sum(values, ids, num_segments)

    def take(self, x: Any, index: Any) -> Any:
        return self.tf.gather(x, index)

    def arange(self, n: int, like: Any) -> Any:
        return self.tf.range(n, dtype=like.dtype)

    def cumsum(self, x: Any) -> Any:
        return self.tf.cumsum(x, axis=0)

    def to_numpy(self, x: Any) -> Any:
        return x.numpy() if self.tf.executing_eagerly() else None


def _in_xla_context(tf: Any) -> bool:
    try:  # private, but the only way to know; if it moves, the segment sum works everywhere
        from tensorflow.python.ops import control_flow_util

        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except (ImportError, AttributeError):
        return True
