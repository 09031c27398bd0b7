"""TensorFlow's CSR products: `CSRSparseMatrix` built from row-ordered indices kept with
the graph, and a product with its own backward (TensorFlow's transposes the matrix on
every step)."""

from __future__ import annotations

from typing import Any

from dmon.sparse_graph import Edges


def build(tf: Any, edges: Edges) -> Any:
    """`edges` as a `Csr` (a `ConstantCsr` for a constant matrix kept with its graph),
    or the COO triple where only a segment sum works."""
    row, col, weight, n, m = edges.row, edges.col, edges.weight, edges.n, edges.width
    cache, symmetric, constant = edges.cache, edges.symmetric, edges.constant
    if _in_xla_context(tf) or n == 0 or row.shape[0] == 0:
        # the CSR product has no XLA kernel, and crashes (SIGFPE) on an empty matrix
        return (row, col, weight, n)
    # A CSR matrix (TensorFlow's CSRSparseMatrix): its product is far faster than a
    # SparseTensor's (sparse_dense_matmul, single-threaded) or a segment sum
    # (docs/benchmarks.md, "Design measurements"); differentiable in the values and the dense operand. Its entries must be in row
    # order: the order (a sort of the (E, 2) indices) is built once and cached on the
    # SparseGraph. Only eager tensors are stored (a traced tensor must not outlive its
    # graph); a traced function reads a stored one as a constant.
    key = f"tf-csr-{n}-{m}"
    built = f"tf-csr-matrix-{n}-{m}-{symmetric}-{weight.dtype.name}"
    if constant and cache is not None and built in cache:
        return cache[built]  # a trainer's constant graph: converted once per fit
    if cache is not None and key in cache:
        index = cache[key]
    else:
        r, c = tf.cast(row, "int64"), tf.cast(col, "int64")
        order = tf.argsort(r * m + c, stable=True)
        # the permutation and its inverse (where each edge goes), for the weights
        inverse = tf.scatter_nd(order[:, None], tf.range(tf.size(order)), tf.shape(order))
        permutation: tuple[Any, Any] | None = (order, inverse)
        if tf.executing_eagerly() and bool(tf.reduce_all(inverse == tf.range(tf.size(inverse)))):
            permutation = None  # already in row order (PyG's coalesced edge_index is)
        index = CsrIndex(tf.gather(tf.stack([r, c], axis=1), order), permutation, (n, m))
        if cache is not None and tf.executing_eagerly():
            cache[key] = index
    permutation = index.permutation
    values = weight if permutation is None else _permuted(tf, weight, *permutation)
    converted = None
    if not constant and cache is not None and _eager_tensor(tf, weight):
        # the converted matrices of the same tensor as on the last call still hold:
        # TensorFlow's tensors are immutable (a graph reused across calls)
        key_weights = f"tf-csr-converted-{n}-{m}"
        converted = cache.get(key_weights)
        if converted is None or converted.weight is not weight:
            converted = cache[key_weights] = _Converted(weight)
    matrix = Csr(index, values, symmetric and n == m, converted)
    if constant and cache is not None and tf.executing_eagerly():
        # converted once, and its transpose too: TensorFlow's gradient of a CSR product
        # would transpose the matrix on every step (twice the product's time)
        cache[built] = ConstantCsr(
            _to_csr(tf, index.indices, values, index.shape),
            None if matrix.symmetric else index.transposed_matrix(tf, values),
        )
        return cache[built]
    return matrix


def _eager_tensor(tf: Any, x: Any) -> bool:
    """An eager tensor (immutable), not a variable or a traced value."""
    return tf.executing_eagerly() and isinstance(x, tf.Tensor)


def _in_xla_context(tf: Any) -> bool:
    try:  # private, but the only way to know; if it moves, the segment sum works everywhere
        from tensorflow.python.ops import control_flow_util

        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except (ImportError, AttributeError):
        return True


class CsrIndex:
    """A CSR matrix's `(E, 2)` indices in row-major order, the permutation of the edges
    into it and its inverse (`None`: already in order), and, built on first use, its
    transpose's indices with the permutation of this order into the transpose's."""

    __slots__ = ("_transpose", "indices", "permutation", "shape")

    def __init__(
        self, indices: Any, permutation: tuple[Any, Any] | None, shape: tuple[int, int]
    ) -> None:
        self.indices, self.permutation, self.shape = indices, permutation, shape
        self._transpose: tuple[Any, Any] | None = None

    def transpose(self, tf: Any) -> tuple[Any, Any]:
        if self._transpose is not None:
            return self._transpose
        r, c = self.indices[:, 0], self.indices[:, 1]
        order = tf.argsort(c * self.shape[0] + r, stable=True)
        out = (tf.gather(tf.stack([c, r], axis=1), order), order)
        if tf.executing_eagerly():  # a traced tensor must not outlive its graph
            self._transpose = out
        return out

    def transposed_matrix(self, tf: Any, values: Any) -> Any:
        """`Aᵀ` for `values` in this index's order, as a `CSRSparseMatrix`: the
        transpose's index with the values gathered into its order."""
        indices, order = self.transpose(tf)
        n, m = self.shape
        return _to_csr(tf, indices, tf.gather(values, order), (m, n))


class _Converted:
    """The `CSRSparseMatrix` of `A` and of `Aᵀ`, each built on first use. For one eager
    tensor of weights (`weight`) it is kept with the graph: both conversions (a large part
    of a call, docs/benchmarks.md, "Design measurements") are made once for every call that passes the same
    tensor; otherwise (`weight` None) it lives for
    one call."""

    __slots__ = ("forward", "transpose", "weight")

    def __init__(self, weight: Any) -> None:
        self.weight = weight
        self.forward: Any = None
        self.transpose: Any = None


class Csr:
    """A CSR matrix of this call: a (cached) index, its values in row order and its
    converted matrices (for the weights of an eager tensor, those kept with the graph)."""

    __slots__ = ("converted", "index", "symmetric", "values")

    def __init__(
        self, index: CsrIndex, values: Any, symmetric: bool, converted: _Converted | None
    ) -> None:
        self.index, self.values, self.symmetric = index, values, symmetric
        # a variable's or a traced value: converted for this call alone
        self.converted = converted if converted is not None else _Converted(None)

    def forward(self, tf: Any, values: Any) -> Any:
        """`A` as a `CSRSparseMatrix` (`values`: the tape's read of this call's values)."""
        kept = self.converted
        if kept.forward is None:
            kept.forward = _to_csr(tf, self.index.indices, values, self.index.shape)
        return kept.forward

    def transposed(self, tf: Any, values: Any) -> Any:
        """`Aᵀ` as a `CSRSparseMatrix`, for the gradient with respect to the dense operand."""
        kept = self.converted
        if kept.transpose is None:
            kept.transpose = self.index.transposed_matrix(tf, values)
        return kept.transpose

    def product(self, tf: Any, dense: Any) -> Any:
        """`A @ dense`, differentiated without TensorFlow's own gradient of the CSR
        product, which transposes the matrix in every backward (most of a step's time): `∂/∂dense = Aᵀ G` (`A` itself under the symmetric promise)
        and `∂/∂w_e = ⟨G[row_e], dense[col_e]⟩`, the latter only when a tape watches the
        weights (or inside a `tf.function`, whose graph drops it when unused)."""
        from tensorflow.python.eager import record
        from tensorflow.python.ops.linalg.sparse import sparse_csr_matrix_ops as csr

        index, symmetric = self.index, self.symmetric
        values = tf.convert_to_tensor(self.values)  # a variable's read, on the tape
        watched = not tf.executing_eagerly() or record.should_record_backprop([values])

        @tf.custom_gradient
        def product(values: Any, d: Any) -> Any:
            a = self.forward(tf, values)

            def grad(g: Any) -> tuple[Any, Any]:
                back = a if symmetric else self.transposed(tf, values)
                grad_values = None
                if watched:
                    rows, cols = index.indices[:, 0], index.indices[:, 1]
                    grad_values = tf.reduce_sum(tf.gather(g, rows) * tf.gather(d, cols), -1)
                return grad_values, csr.matmul(back, g)

            return csr.matmul(a, d), grad

        return product(values, dense)


def _permuted(tf: Any, weight: Any, order: Any, inverse: Any) -> Any:
    """`weight[order]` for a permutation `order`, differentiated as `g[inverse]`: two
    gathers. A scatter by `inverse` in the forward (dense gradient, unlike a gather's
    `IndexedSlices`) cost over half the forward (docs/benchmarks.md, "Design measurements")."""

    @tf.custom_gradient
    def fn(w: Any) -> Any:
        return tf.gather(w, order), lambda g: tf.gather(g, inverse)

    return fn(weight)


def _to_csr(tf: Any, indices: Any, values: Any, shape: tuple[int, int]) -> Any:
    from tensorflow.python.ops.linalg.sparse import sparse_csr_matrix_ops as csr

    return csr.CSRSparseMatrix(tf.SparseTensor(indices, values, shape))


class ConstantCsr:
    """A trainer's constant matrix as a converted `CSRSparseMatrix`, with its transpose
    (`None`: symmetric, the matrix itself) for the gradient with respect to the dense
    operand. No gradient flows to the weights (they are constants)."""

    __slots__ = ("forward", "transpose")

    def __init__(self, forward: Any, transpose: Any) -> None:
        self.forward, self.transpose = forward, transpose

    def product(self, tf: Any, dense: Any) -> Any:
        from tensorflow.python.ops.linalg.sparse import sparse_csr_matrix_ops as csr

        back = self.forward if self.transpose is None else self.transpose

        @tf.custom_gradient
        def product(d: Any) -> Any:
            return csr.matmul(self.forward, d), lambda g: csr.matmul(back, g)

        return product(dense)
