"""NumPy backend: the float64 reference the other backends are tested against."""

from __future__ import annotations

import sys
from typing import Any

from dmon.backends.array_api import NumpyApiOps

from dmon.constants import SELU_ALPHA, SELU_SCALE
from dmon.sparse_graph import Edges, remembered


class NumpyOps(NumpyApiOps):
    name = "numpy"
    framework = "numpy"

    def __init__(self) -> None:
        import numpy

        self.np = numpy

    def is_array(self, x: object) -> bool:
        return isinstance(x, self.np.ndarray | self.np.generic)

    def asarray(self, x: object) -> Any:
        if hasattr(x, "detach"):  # torch: leave autograd and the device first
            x = x.detach().cpu()
        return self.np.asarray(x)

    def mean(self, x: Any) -> Any:
        return self.np.asarray(self.np.mean(x))  # 0-d array, not a NumPy scalar

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return self.np.where(cond, a, b).astype(_result_dtype(a, b))

    def softmax(self, x: Any) -> Any:
        e = self.np.exp(x - self.np.max(x, axis=-1, keepdims=True))
        return e / self.np.sum(e, axis=-1, keepdims=True)

    def selu(self, x: Any) -> Any:
        # expm1 of the clipped value: no overflow warning from the unused branch.
        neg = SELU_ALPHA * self.np.expm1(self.np.minimum(x, 0))
        return (SELU_SCALE * self.np.where(x > 0, x, neg)).astype(x.dtype)

    def stop_gradient(self, x: Any) -> Any:
        return x

    def with_gradient(self, forward: Any, backward: Any, *args: Any) -> Any:
        return forward(*args)[0]  # NumPy has no gradients

    # --- sparse ----------------------------------------------------------------------

    def is_sparse(self, x: object) -> bool:
        # only look if SciPy is already imported: never import it to answer
        sparse = sys.modules.get("scipy.sparse")
        return sparse is not None and bool(sparse.issparse(x))

    def sparse_coo(self, x: Any) -> tuple[Any, Any, Any, tuple[int, ...]]:
        coo = x.tocoo()
        return (
            coo.row.astype(self.np.int64),
            coo.col.astype(self.np.int64),
            coo.data,
            tuple(int(d) for d in x.shape),
        )

    def sparse_matrix(self, edges: Edges) -> Any:
        from scipy import sparse

        # CSR straight from rows-sorted edges (a stable sort only if unsorted): SciPy's
        # COO route sorts every row's columns, which costs more than the product.
        # Duplicate entries are summed by the product. The index (row pointer, columns,
        # sort order) is cached on the SparseGraph, as in the torch backend; weights not.
        row, col, weight, n = edges.row, edges.col, edges.weight, edges.n

        def build() -> tuple[Any, Any, Any]:
            r, c, order = row, col, None
            if r.size > 1 and bool(self.np.any(r[1:] < r[:-1])):
                order = self.np.argsort(r, kind="stable")
                r, c = r[order], c[order]
            return self.np.searchsorted(r, self.np.arange(n + 1)), c, order

        indptr, col, order = remembered(edges.cache, f"scipy-csr-{n}", build)
        weight = weight if order is None else weight[order]
        return sparse.csr_matrix((weight, col, indptr), shape=(n, edges.width))

    def spmm(self, matrix: Any, dense: Any) -> Any:
        return self.np.asarray(matrix @ dense)

    def segment_sum(self, values: Any, ids: Any, num_segments: int) -> Any:
        if values.ndim == 1:  # bincount: far faster than np.add.at
            return self.np.bincount(ids, weights=values, minlength=num_segments).astype(
                values.dtype
            )
        out = self.np.zeros((num_segments, *values.shape[1:]), dtype=values.dtype)
        self.np.add.at(out, ids, values)
        return out

    def to_numpy(self, x: Any) -> Any:
        return self.np.asarray(x)

    def on_accelerator(self, x: Any) -> bool:
        return False

    def version(self, x: Any) -> int | None:
        return None  # NumPy arrays change in place unseen


def _result_dtype(a: Any, b: Any) -> Any:
    # np.where promotes a Python float to float64; keep the array's dtype instead.
    for v in (a, b):
        if hasattr(v, "dtype"):
            return v.dtype
    return "float64"
