"""The backends' sparse products and what they keep with a graph: the product of a
constant matrix and its gradient, torch's CSR index dtypes, an unweighted graph's kept
matrix, and TensorFlow's converted matrix of the same weights, each against the dense
product or autodiff of the dense pool."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    AUTODIFF,
    compiled,
    edges,
    gradient,
    pool_objective,
    require,
    to_backend,
    to_numpy,
)
from oracle import random_batch

import dmon
from dmon.ops import Edges


@pytest.mark.parametrize("fw", AUTODIFF)
@pytest.mark.parametrize("symmetric", [False, True])
def test_constant_matrix_product_and_its_gradient(fw: str, symmetric: bool) -> None:
    """`sparse_matrix(constant=True)` (a trainer's graph, kept whole in the cache, with
    TensorFlow's transpose built once): `A D` and its gradient `Aᵀ G` against NumPy, for a
    rectangular matrix and a symmetric one, eager and inside a traced function."""
    require(fw)
    from dmon.ops import backend_by_name

    ops = backend_by_name(fw)
    rng = np.random.default_rng(5)
    n, m = (6, 6) if symmetric else (5, 8)
    a = (rng.random((n, m)) < 0.4) * rng.uniform(0.5, 2.0, (n, m))
    if symmetric:
        a = a + a.T
    row, col = np.nonzero(a)
    d, g = rng.normal(size=(m, 3)), rng.normal(size=(n, 3))
    cache: dict = {}

    def product(dense):
        matrix = ops.sparse_matrix(Edges(
            to_backend(fw, row), to_backend(fw, col), to_backend(fw, a[row, col]), n,
            m, cache, symmetric=symmetric, constant=True,
        ))  # fmt: skip
        return ops.sum(ops.spmm(matrix, dense) * to_backend(fw, g), axis=(0, 1))

    for fn in (product, compiled(fw, product) if fw != "tensorflow" else None):
        if fn is None:  # TensorFlow: a tf.function without XLA (the CSR product's form)
            import tensorflow as tf

            fn = tf.function(product)
        value = fn(to_backend(fw, d))
        (grad,) = gradient(fw, fn, to_backend(fw, d))
        np.testing.assert_allclose(float(to_numpy(value)), float(np.sum((a @ d) * g)), rtol=1e-10)
        np.testing.assert_allclose(grad, a.T @ g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("rows", "cols"), [("int32", "int32"), ("int64", "int64"), ("int32", "int64")]
)
def test_torch_csr_row_pointer_and_columns_share_a_dtype(rows: str, cols: str) -> None:
    """The CSR is built with its invariants unchecked, so its row pointer and column
    indices must have one dtype: on CUDA an int64 pointer with Keras' int32 columns read
    out of bounds (an illegal memory access on an H200). It is int32 wherever the indices
    fit (MKL's kernels take 32-bit ones; int64 would be converted on every product), else
    int64. Checked on the matrix and on its transpose (the general backward), and the
    product against the dense one."""
    torch = require("torch")
    from dmon.backends.torch.csr import Csr, index_dtype

    assert index_dtype(torch, 2**31 - 1, 2**31 - 1) == torch.int32
    assert index_dtype(torch, 2**31, 10) == torch.int64  # too many edges
    assert index_dtype(torch, 10, 2**31) == torch.int64  # too many nodes

    from dmon.ops import backend_by_name

    rng = np.random.default_rng(5)
    a = (rng.random((1, 11, 11)) < 0.3) * rng.uniform(0.5, 2.0, (1, 11, 11))  # directed
    ei, _ = edges(a[0])
    ei = ei[:, rng.permutation(ei.shape[1])]  # unsorted: sorted inside
    w = a[0][ei[0], ei[1]]
    ops = backend_by_name("torch")
    row = torch.from_numpy(ei[0]).to(getattr(torch, rows))
    col = torch.from_numpy(ei[1]).to(getattr(torch, cols))
    csr = ops.sparse_matrix(Edges(row, col, torch.from_numpy(w), 11))
    index, perm = csr.index.transpose(torch)
    matrices = [csr.matrix(torch, csr.weight), Csr(index, None).matrix(torch, csr.weight[perm])]
    for m, want in zip(matrices, (a[0], a[0].T), strict=True):
        assert m.crow_indices().dtype == m.col_indices().dtype
        assert m.crow_indices().dtype == torch.int32
        dense = np.random.default_rng(1).normal(size=(11, 3))
        np.testing.assert_allclose(
            (m @ torch.from_numpy(dense)).numpy(), want @ dense, rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize("fw", AUTODIFF)
def test_an_unweighted_graph_keeps_its_matrix_and_stays_exact(fw: str) -> None:
    """A `SparseGraph` without `edge_weight` keeps the matrix of its ones across calls
    (torch: the weights of the transpose; TensorFlow: the converted matrix and its
    transpose). Gradients of a directed graph equal autodiff of the dense pool on every
    call, in each dtype in turn, and after weights are given to the same graph object."""
    require(fw)
    rng = np.random.default_rng(7)
    n = 12
    a = (rng.random((n, n)) < 0.3).astype(np.float64)
    np.fill_diagonal(a, 0)  # directed: a != a.T
    assert not np.array_equal(a, a.T)
    ei, _ = edges(a)
    x, _, logits, _ = random_batch(4, b=1, n=n)
    graph = dmon.SparseGraph(to_backend(fw, ei))
    weights = rng.uniform(0.5, 2.0, ei.shape[1])

    def check(dtype: str, dense: np.ndarray) -> None:
        tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-4, "atol": 1e-5}
        lg, xx = to_backend(fw, logits[0], dtype), to_backend(fw, x[0], dtype)
        want = gradient(
            fw, lambda lg_, xx_: pool_objective(xx_, to_backend(fw, dense, dtype), lg_), lg, xx
        )
        got = gradient(fw, lambda lg_, xx_: pool_objective(xx_, graph, lg_), lg, xx)
        for g_, w_ in zip(got, want, strict=True):
            np.testing.assert_allclose(g_, w_, **tol)

    for dtype in ("float64", "float64", "float32", "float64"):
        check(dtype, a)
    if fw in ("torch", "tensorflow"):  # the matrix of the ones was kept
        assert any("weights" in key or "matrix" in key for key in graph._cache)
    graph.edge_weight = to_backend(fw, weights)  # now weighted: the kept ones are not used
    weighted = np.zeros_like(a)
    weighted[ei[0], ei[1]] = weights
    check("float64", weighted)


@pytest.mark.parametrize("shuffled", [False, True])
def test_tensorflow_keeps_the_converted_matrix_of_the_same_weights(
    shuffled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weighted `SparseGraph` reused across eager TensorFlow calls converts its matrix
    and its transpose once (TensorFlow's tensors are immutable, so the same tensor holds
    the same weights). On every call the gradients with respect to the logits, `x` and
    the watched weights equal autodiff of the dense pool on the same directed graph
    (edges in row order and shuffled); weights assigned to the graph are converted anew."""
    tf = require("tensorflow")
    import dmon.backends.tensorflow.csr as tf_backend

    conversions = []
    to_csr = tf_backend._to_csr
    monkeypatch.setattr(tf_backend, "_to_csr", lambda *a: conversions.append(a[3]) or to_csr(*a))
    rng = np.random.default_rng(21)
    n = 12
    a = (rng.random((n, n)) < 0.3) * rng.uniform(0.5, 2.0, (n, n))
    np.fill_diagonal(a, 0)
    ei, w = edges(a)
    if shuffled:
        order = rng.permutation(ei.shape[1])
        ei, w = ei[:, order], w[order]
    x, _, logits, _ = random_batch(8, b=1, n=n)
    graph = dmon.SparseGraph(tf.constant(ei), tf.constant(w))

    def check(dense: np.ndarray) -> None:
        lg, xx, dense_t = (tf.Variable(v) for v in (logits[0], x[0], dense))
        with tf.GradientTape() as tape:
            tape.watch(graph.edge_weight)
            got = pool_objective(xx, graph, lg)
        with tf.GradientTape() as tape_dense:
            want = pool_objective(xx, dense_t, lg)
        grads = tape.gradient(got, [lg, xx, graph.edge_weight])
        wants = tape_dense.gradient(want, [lg, xx, dense_t])
        np.testing.assert_allclose(float(got), float(want), rtol=1e-10)
        for g, expected in zip(grads[:2], wants[:2], strict=True):
            np.testing.assert_allclose(g.numpy(), expected.numpy(), rtol=1e-10, atol=1e-12)
        # the weight of edge (i, j) enters as A_ij: its gradient is the dense one there
        np.testing.assert_allclose(
            grads[2].numpy(), wants[2].numpy()[ei[0], ei[1]], rtol=1e-10, atol=1e-12
        )

    for _ in range(3):
        check(a)
    assert conversions == [(n, n), (n, n)]  # A and Aᵀ, on the first call only
    w2 = rng.uniform(0.5, 2.0, w.shape)
    graph.edge_weight = tf.constant(w2)
    a2 = np.zeros_like(a)
    a2[ei[0], ei[1]] = w2
    check(a2)
    check(a2)
    assert len(conversions) == 4  # the new weights: converted once more, then kept
