"""Sparse adjacency on every backend: equal to the dense path (same graphs densified) for
all six outputs and for gradients w.r.t. logits, x and edge weights; several graphs in
one sparse batch; compiled; bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    AUTODIFF,
    TORCH_DEVICE,
    assert_close,
    compiled,
    edges,
    gradient,
    require,
    sparse_graph,
    to_backend,
    to_numpy,
)
from oracle import random_batch

import dmon
from dmon.ops import Edges


def _native(backend: str, a: np.ndarray, form: str):
    if backend == "numpy":
        sp = pytest.importorskip("scipy.sparse")
        return {"csr": sp.csr_matrix, "coo": sp.coo_matrix}[form](a)
    if backend == "torch":
        t = require("torch").from_numpy(a).to(TORCH_DEVICE).to_sparse()
        return t if form == "coo" else t.to_sparse_csr()
    if backend == "tensorflow":
        return require("tensorflow").sparse.from_dense(a)
    from jax.experimental import sparse

    return sparse.BCOO.fromdense(a)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_edge_index_equals_dense(backend: str, dtype: str) -> None:
    x, a, logits, _ = random_batch(0, b=1, n=15)
    want = dmon.pool(x, a, logits)
    got = dmon.pool(
        to_backend(backend, x[0], dtype),
        sparse_graph(backend, a[0], dtype),
        to_backend(backend, logits[0], dtype),
    )
    assert to_numpy(got.s).shape == (15, 4)
    assert_close(got.s, to_numpy(want.s)[0], dtype, "s")
    for name in ("x", "adj", "spectral_loss", "ortho_loss", "cluster_loss"):
        assert_close(getattr(got, name), getattr(want, name), dtype, name)


@pytest.mark.parametrize("form", ["coo", "csr"])
def test_native_sparse_equals_dense(backend: str, form: str) -> None:
    if form == "csr" and backend in ("tensorflow", "jax"):
        pytest.skip(f"{backend} has one native sparse format")
    x, a, logits, _ = random_batch(1, b=1, n=13)
    want = dmon.pool(x, a, logits)
    got = dmon.pool(
        to_backend(backend, x[0]), _native(backend, a[0], form), to_backend(backend, logits[0])
    )
    assert_close(got.s, to_numpy(want.s)[0], "float64")
    for g, w in zip(got[1:], want[1:], strict=True):
        assert_close(g, w, "float64")


def _block_diagonal(seed: int):
    """Three graphs of 9, 14 and 11 nodes: one sparse batch and the same graphs padded."""
    rng = np.random.default_rng(seed)
    sizes = [9, 14, 11]
    n_max, total = max(sizes), sum(sizes)
    x_pad, a_pad, l_pad, mask = (
        np.zeros((3, n_max, 5)),
        np.zeros((3, n_max, n_max)),
        np.zeros((3, n_max, 4)),
        np.zeros((3, n_max), bool),
    )
    a_big = np.zeros((total, total))
    start = 0
    for g, n in enumerate(sizes):
        _, a, _, _ = random_batch(seed + g, b=1, n=n)
        a_pad[g, :n, :n] = a[0]
        a_big[start : start + n, start : start + n] = a[0]
        mask[g, :n] = True
        start += n
    x_pad[mask] = rng.normal(size=(total, 5))
    l_pad[mask] = 2 * rng.normal(size=(total, 4))
    batch = np.repeat(np.arange(3), sizes)
    return (x_pad, a_pad, l_pad, mask), (x_pad[mask], a_big, l_pad[mask], batch)


def test_batch_of_graphs_equals_dense_masked_path(backend: str) -> None:
    dense, (x, a, logits, batch) = _block_diagonal(3)
    want = dmon.pool(*dense)
    ei, w = edges(a)
    graph = dmon.SparseGraph(
        to_backend(backend, ei), to_backend(backend, w), batch=to_backend(backend, batch)
    )
    got = dmon.pool(to_backend(backend, x), graph, to_backend(backend, logits))
    assert_close(got.s, to_numpy(want.s)[dense[3]], "float64", "s")
    for name in ("x", "adj", "spectral_loss", "ortho_loss", "cluster_loss"):
        assert_close(getattr(got, name), getattr(want, name), "float64", name)
    # the loss functions take the same sparse batch
    assert_close(dmon.spectral_loss(graph, got.s), want.spectral_loss, "float64")


def _objective(x, adj, logits):
    out = dmon.pool(x, adj, logits)
    ops = dmon.get_backend(out.s)
    r = to_backend(ops.name, np.linspace(-1.0, 1.0, 4), ops.dtype_name(out.s))
    s = out.s if len(ops.shape(out.s)) == 2 else out.s[0]
    return (
        ops.sum(s * r, axis=(0, 1))
        + ops.sum(out.x * 0.3, axis=(0, 1, 2))
        + ops.sum(out.adj, axis=(0, 1, 2))
        + out.spectral_loss
        + 0.5 * out.ortho_loss
        + 0.7 * out.cluster_loss
    )


def test_unsorted_and_duplicate_edges(backend: str) -> None:
    """Edges in any order; a repeated (i, j) adds its weights, as a sparse matrix does."""
    x, a, logits, _ = random_batch(8, b=1, n=11)
    ei, w = edges(a[0])
    rng = np.random.default_rng(0)
    dup = rng.choice(ei.shape[1], size=5, replace=False)
    ei2 = np.concatenate([ei, ei[:, dup]], axis=1)
    w2 = np.concatenate([w, w[dup]])
    order = rng.permutation(ei2.shape[1])
    a2 = a[0].copy()
    np.add.at(a2, (ei[0, dup], ei[1, dup]), w[dup])
    want = dmon.pool(x, a2[None], logits)
    got = dmon.pool(
        to_backend(backend, x[0]),
        dmon.SparseGraph(to_backend(backend, ei2[:, order]), to_backend(backend, w2[order])),
        to_backend(backend, logits[0]),
    )
    for g, v in zip(got[1:], want[1:], strict=True):
        assert_close(g, v, "float64")


@pytest.mark.parametrize("fw", AUTODIFF)
@pytest.mark.parametrize("shuffled", [False, True])
def test_gradients_equal_dense(fw: str, shuffled: bool) -> None:
    require(fw)
    x, a, logits, _ = random_batch(4, b=1, n=12)
    ei, w = edges(a[0])
    if shuffled:  # unsorted rows: the torch CSR path sorts them (and the weights' grads follow)
        order = np.random.default_rng(1).permutation(ei.shape[1])
        ei, w = ei[:, order], w[order]
    eib = to_backend(fw, ei)
    sparse = gradient(
        fw,
        lambda lg, xx, ww: _objective(xx, dmon.SparseGraph(eib, ww), lg),
        to_backend(fw, logits[0]),
        to_backend(fw, x[0]),
        to_backend(fw, w),
    )
    dense = gradient(
        fw,
        lambda lg, xx, aa: _objective(xx, aa, lg),
        to_backend(fw, logits[0]),
        to_backend(fw, x[0]),
        to_backend(fw, a[0]),
    )
    np.testing.assert_allclose(sparse[0], dense[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sparse[1], dense[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        sparse[2], dense[2][ei[0], ei[1]], rtol=1e-10, atol=1e-12
    )  # d/d edge weight
    assert np.abs(sparse[2]).max() > 1e-3


@pytest.mark.parametrize("fw", AUTODIFF)
@pytest.mark.parametrize("batched", [False, True])
def test_compiled_sparse(fw: str, batched: bool) -> None:
    require(fw)
    dense, (x, a, logits, batch) = _block_diagonal(5)
    if not batched:
        x, a, logits, batch = x[:9], a[:9, :9], logits[:9], None
        want = dmon.pool(x, a, logits)
    else:
        want = dmon.pool(*dense)
    ei, w = edges(a)
    args = [to_backend(fw, v) for v in (x, ei, w, logits)]
    b = None if batch is None else to_backend(fw, batch)

    def fn(x, ei, w, lg, b=b):
        graph = dmon.SparseGraph(
            ei,
            w,
            batch=b,
            num_graphs=None if b is None else 3,
            max_num_nodes=None if b is None else 14,
        )
        return tuple(dmon.pool(x, graph, lg))

    got = compiled(fw, fn)(*args)
    for name, g, v in zip(dmon.DMoNOutput._fields[1:], got[1:], want[1:], strict=True):
        assert_close(g, v, "float64", name)


def test_tf_function_without_xla_uses_sparse_matmul() -> None:
    tf = require("tensorflow")
    x, a, logits, _ = random_batch(6, b=1, n=10)
    want = dmon.pool(x, a, logits)
    ei, w = edges(a[0])
    fn = tf.function(lambda x, ei, w, lg: tuple(dmon.pool(x, dmon.SparseGraph(ei, w), lg)))
    got = fn(*(tf.constant(v) for v in (x[0], ei, w, logits[0])))
    for g, v in zip(got[1:], want[1:], strict=True):
        assert_close(g, v, "float64")


@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_graph_captured_by_tf_function_and_used_eagerly(jit_compile: bool) -> None:
    """One SparseGraph used eagerly (which caches its indices) and inside a tf.function
    that captures it, in either order: all equal to the dense path (the cache is neither
    read nor written while tracing, so no traced tensor escapes its graph)."""
    tf = require("tensorflow")
    x, a, logits, _ = random_batch(8, b=1, n=10)
    want = dmon.pool(x, a, logits)
    ei, w = edges(a[0])
    xt, lt = tf.constant(x[0]), tf.constant(logits[0])
    for traced_first in (True, False):
        g = dmon.SparseGraph(tf.constant(ei), tf.constant(w))
        fn = tf.function(lambda x, lg, g=g: tuple(dmon.pool(x, g, lg)), jit_compile=jit_compile)
        calls = [lambda fn=fn: fn(xt, lt), lambda g=g: dmon.pool(xt, g, lt)] * 2
        for call in calls if traced_first else calls[::-1]:
            for u, v in zip(call()[1:], want[1:], strict=True):
                assert_close(u, v, "float64")


def test_jax_jit_takes_a_sparse_graph_argument() -> None:
    jax = require("jax")
    dense, (x, a, logits, batch) = _block_diagonal(7)
    ei, w = edges(a)
    graph = dmon.SparseGraph(
        jax.numpy.asarray(ei),
        jax.numpy.asarray(w),
        batch=jax.numpy.asarray(batch),
        num_graphs=3,
        max_num_nodes=14,
    )
    got = jax.jit(lambda x, g, lg: dmon.pool(x, g, lg).spectral_loss)(
        jax.numpy.asarray(x), graph, jax.numpy.asarray(logits)
    )
    assert_close(got, dmon.pool(*dense).spectral_loss, "float64")


def test_large_sparse_graph_forms_nothing_quadratic() -> None:
    """N = 200,000 nodes: a dense N x N float64 would be 320 GB."""
    import tracemalloc

    n = 200_000
    rng = np.random.default_rng(0)
    src = np.arange(n)
    ei = np.concatenate([np.stack([src, (src + 1) % n]), np.stack([(src + 1) % n, src])], axis=1)
    x, logits = rng.normal(size=(n, 4)), rng.normal(size=(n, 8))
    tracemalloc.start()
    out = dmon.pool(x, dmon.SparseGraph(ei), logits)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e6, peak  # O(E + N·C + N·F): tens of MB here
    assert np.isfinite(out.spectral_loss)
    # a ring: every node has degree 2, 2m = 2N
    want = -(
        np.trace(out.s.T @ (np.roll(out.s, 1, 0) + np.roll(out.s, -1, 0)))
        - np.sum((2 * out.s.sum(0)) ** 2) / (2 * n)
    ) / (2 * n)
    np.testing.assert_allclose(out.spectral_loss, want, rtol=1e-10)


X, A, LOGITS, _ = random_batch(0, b=1, n=6)
EI, W = edges(A[0])


@pytest.mark.parametrize(
    "graph,kw,exc,pattern",
    [
        (
            lambda: dmon.SparseGraph(EI[:, :3] + 10),
            {},
            ValueError,
            r"`edge_index` holds node id 1[0-9], out of range for N = 6",
        ),
        (
            lambda: dmon.SparseGraph(EI - 1),
            {},
            ValueError,
            r"`edge_index` holds a negative node id \(-1\)",
        ),
        (
            lambda: dmon.SparseGraph(EI.T),
            {},
            ValueError,
            r"`edge_index` must have shape \(2, E\); got shape",
        ),
        (
            lambda: dmon.SparseGraph(EI.astype(np.float64)),
            {},
            TypeError,
            r"`edge_index` must be an integer array; got dtype float64",
        ),
        (
            lambda: dmon.SparseGraph(EI, W[:-1]),
            {},
            ValueError,
            r"`edge_weight` must have shape \(E,\)",
        ),
        (
            lambda: dmon.SparseGraph(EI, W.astype(np.int64)),
            {},
            TypeError,
            r"`edge_weight` must be floating",
        ),
        (
            lambda: dmon.SparseGraph(EI, batch=np.array([0, 1, 0, 1, 1, 1])),
            {},
            ValueError,
            r"`batch` must be sorted .* batch\[1\] = 1 > batch\[2\] = 0",
        ),
        (
            lambda: dmon.SparseGraph(EI, batch=np.zeros(5, np.int64)),
            {},
            ValueError,
            r"`batch` must have shape \(N,\) = \(6,\)",
        ),
        (
            lambda: dmon.SparseGraph(
                EI, batch=np.zeros(6, np.int64), num_graphs=1, max_num_nodes=3
            ),
            {},
            ValueError,
            r"max_num_nodes = 3 but a graph of the batch has 6 nodes",
        ),
        (
            lambda: dmon.SparseGraph(EI, num_nodes=7),
            {},
            ValueError,
            r"num_nodes = 7 but `x` has N = 6",
        ),
        (
            lambda: dmon.SparseGraph(EI),
            {"mask": np.ones(6, bool)},
            ValueError,
            r"`mask` is for dense batches",
        ),
        (
            lambda: dmon.SparseGraph(EI),
            {"x": X},
            ValueError,
            r"with a sparse `adj`, `x` must be node-level",
        ),
    ],
)
def test_bad_sparse_input(graph, kw, exc, pattern) -> None:
    args = {"x": X[0], "logits": LOGITS[0], "mask": None, **kw}
    with pytest.raises(exc, match=pattern):
        dmon.pool(args["x"], graph(), args["logits"], args["mask"])


def test_batch_under_jit_needs_static_sizes() -> None:
    jax = require("jax")
    batch = jax.numpy.zeros(6, dtype=jax.numpy.int32)
    with pytest.raises(
        ValueError, match=r"pass SparseGraph\(\.\.\., num_graphs=B, max_num_nodes=M\)"
    ):
        jax.jit(
            lambda b: (
                dmon.pool(
                    jax.numpy.asarray(X[0]),
                    dmon.SparseGraph(jax.numpy.asarray(EI), batch=b),
                    jax.numpy.asarray(LOGITS[0]),
                ).spectral_loss
            )
        )(batch)


def test_a_reused_graph_is_checked_again_after_new_edges(backend: str) -> None:
    """What a graph remembers from its first call (ids checked, torch's CSR index) is
    dropped when a new edge_index is assigned: the new ids are checked and used."""
    a = A[0]
    x, logits = (to_backend(backend, v[0]) for v in (X, LOGITS))
    g = sparse_graph(backend, a)
    first = dmon.pool(x, g, logits)
    g.edge_index = to_backend(backend, EI + 10)
    with pytest.raises(ValueError, match=r"`edge_index` holds node id 1[0-9], out of range"):
        dmon.pool(x, g, logits)
    # A graph with the same edges but a new order: same result as the first call.
    ei, w = edges(a)
    order = np.random.default_rng(0).permutation(ei.shape[1])
    g.edge_index, g.edge_weight = to_backend(backend, ei[:, order]), to_backend(backend, w[order])
    again = dmon.pool(x, g, logits)
    for u, v in zip(first, again, strict=True):
        assert_close(to_numpy(v), to_numpy(u), "float64")


def test_sparse_spectral_loss_of_any_assignment(backend: str) -> None:
    """`spectral_loss` takes any `s` (rows need not sum to 1: a partial or scaled
    assignment), so 2m must come from the degrees, not from Σ Sᵀd. Checked against the
    formula written out in NumPy."""
    rng = np.random.default_rng(11)
    a = A[0]
    s = rng.random((a.shape[0], 3)) * (rng.random((a.shape[0], 1)) < 0.6)  # rows: 0 or ≠ 1
    d = a.sum(1)
    two_m = d.sum()
    want = -(np.trace(s.T @ a @ s) - np.sum((s.T @ d) ** 2) / two_m) / two_m
    got = dmon.spectral_loss(sparse_graph(backend, a), to_backend(backend, s))
    assert_close(got, np.asarray(want), "float64")


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


def test_a_jax_graph_is_a_jit_argument_before_any_dmon_call() -> None:
    """A fresh process: a `SparseGraph` of JAX arrays passed to `jax.jit` as the first
    thing dmon sees (the JAX backend not yet started) is a pytree, and the jitted spectral
    loss is the formula's."""
    require("jax")
    code = (
        "import jax, jax.numpy as jnp, numpy as np\n"
        "import dmon\n"
        "ei = jnp.asarray([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])\n"
        "g = dmon.SparseGraph(ei, symmetric=True)\n"
        "x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)\n"
        "s = jnp.asarray(np.random.default_rng(1).normal(size=(4, 2)), jnp.float32)\n"
        "f = jax.jit(lambda g, x, s: dmon.pool(x, g, s).spectral_loss)\n"
        "jitted = float(f(g, x, s))\n"
        # the oracle: -(Tr(SᵀAS) - ‖Sᵀd‖²/2m)/2m by hand, in float64 NumPy
        "a = np.zeros((4, 4)); a[np.asarray(ei[0]), np.asarray(ei[1])] = 1\n"
        "e = np.exp(np.asarray(s, np.float64)); sm = e / e.sum(1, keepdims=True)\n"
        "d = a.sum(1); m2 = d.sum(); vol = sm.T @ d\n"
        "print(jitted, -(np.trace(sm.T @ a @ sm) - vol @ vol / m2) / m2)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    jitted, want = map(float, out.stdout.split())
    np.testing.assert_allclose(jitted, want, rtol=1e-5)


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
            fw, lambda lg_, xx_: _objective(xx_, to_backend(fw, dense, dtype), lg_), lg, xx
        )
        got = gradient(fw, lambda lg_, xx_: _objective(xx_, graph, lg_), lg, xx)
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
            got = _objective(xx, graph, lg)
        with tf.GradientTape() as tape_dense:
            want = _objective(xx, dense_t, lg)
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
