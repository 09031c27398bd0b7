"""Keras 3 layers on a sparse adjacency (`edge_index`, a native sparse tensor) under the
backend in KERAS_BACKEND, against the same layers on the dense adjacency."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import edges
from oracle import random_batch

keras = pytest.importorskip("keras")
_fw = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}[keras.backend.backend()]
pytest.importorskip(_fw)

from keras_helpers import TOL32, np32, sbm_batch, to_np  # noqa: E402

import dmon  # noqa: E402
from dmon.layers.keras import DMoNPooling, GCNConv  # noqa: E402

BACKEND = keras.backend.backend()


def test_edge_index_inputs_equal_dense_inputs() -> None:
    """The same layers called with [x, edge_index, edge_weight] and with [x, adj]."""
    x, a, _, _ = random_batch(9, b=1, n=14, f=5, c=3)
    x, a = np32(x[0], a[0])
    ei, w = edges(a, "float32")
    conv, pool_layer = GCNConv(8), DMoNPooling(3, ortho_weight=1.0)
    h_dense = conv([x, a])
    h_sparse = conv([x, ei, w])
    np.testing.assert_allclose(to_np(h_sparse), to_np(h_dense), **TOL32)
    dense_out = [to_np(v) for v in pool_layer([to_np(h_dense).astype(np.float32), a])]
    dense_losses = [to_np(v) for v in pool_layer.losses]
    sparse_out = [to_np(v) for v in pool_layer([to_np(h_dense).astype(np.float32), ei, w])]
    np.testing.assert_allclose(sparse_out[0], dense_out[0][0], **TOL32)  # s is node-level
    for g, d in zip(sparse_out[1:], dense_out[1:], strict=True):
        np.testing.assert_allclose(g, d, **TOL32)
    for g, d in zip((to_np(v) for v in pool_layer.losses), dense_losses, strict=True):
        np.testing.assert_allclose(g, d, **TOL32)
    # unweighted edge_index: weights of one
    np.testing.assert_allclose(
        to_np(conv([x, ei])), to_np(conv([x, (a > 0).astype(np.float32)])), **TOL32
    )


def test_native_sparse_tensor_inputs() -> None:
    if BACKEND == "torch":
        pytest.skip("Keras' torch backend has no sparse tensors: use [x, edge_index, edge_weight]")
    x, a, _, _ = random_batch(10, b=1, n=12, f=4, c=3)
    x, a = np32(x[0], a[0])
    if BACKEND == "tensorflow":
        import tensorflow as tf

        sparse_a = tf.sparse.from_dense(a)
    else:
        from jax.experimental import sparse

        sparse_a = sparse.BCOO.fromdense(a)
    conv, pool_layer = GCNConv(6), DMoNPooling(3)
    np.testing.assert_allclose(to_np(conv([x, sparse_a])), to_np(conv([x, a])), **TOL32)
    got, want = pool_layer([x, sparse_a]), pool_layer([x, a])
    np.testing.assert_allclose(to_np(got[0]), to_np(want[0])[0], **TOL32)
    np.testing.assert_allclose(to_np(got[2]), to_np(want[2]), **TOL32)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_sparse_model_fits_one_large_graph(jit_compile: bool) -> None:
    """The paper's setting: one graph, full batch, as one Keras sample (leading axis 1)."""
    if jit_compile and BACKEND == "torch":
        pytest.skip(
            "Keras' torch backend compiles with torch.compile: slow and not needed for correctness here"
        )
    keras.utils.set_random_seed(0)
    x, a = sbm_batch(11, b=1, n=60)
    ei, w = edges(a[0], "float32")
    n, e = 60, ei.shape[1]
    x_in = keras.Input((n, 3), batch_size=1)
    ei_in = keras.Input((2, e), batch_size=1, dtype="int64")
    w_in = keras.Input((e,), batch_size=1)
    h = GCNConv(16)([x_in, ei_in, w_in])
    s, xp, ap = DMoNPooling(3)([h, ei_in, w_in])
    model = keras.Model([x_in, ei_in, w_in], [s, xp, ap])
    assert [tuple(o.shape) for o in model.outputs] == [(1, n, 3), (1, 3, 16), (1, 3, 3)]
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=jit_compile)
    data = [x, ei[None], w[None]]
    before = model.evaluate(data, verbose=0, batch_size=1)
    model.fit(data, epochs=60, batch_size=1, verbose=0)
    after = model.evaluate(data, verbose=0, batch_size=1)
    assert after < before - 0.1, (before, after)
    s_out = model.predict(data, verbose=0, batch_size=1)[0][0]
    labels = np.repeat(np.arange(3), 20)
    modularity = -float(dmon.spectral_loss(a[0].astype(np.float64), np.eye(3)[s_out.argmax(-1)]))
    truth = -float(dmon.spectral_loss(a[0].astype(np.float64), np.eye(3)[labels]))
    assert modularity > 0.5 * truth, (modularity, truth)


def test_integer_dense_adjacency_is_not_read_as_edge_index() -> None:
    """An integer 0/1 `(N, N)` matrix (and a boolean one) is a dense adjacency: the same
    outputs as the floating one. Only an integer `(2, E)` is an `edge_index`."""
    x, a, _, _ = random_batch(2, b=1, n=7, f=3, c=3)
    a = (a > 0).astype(np.float64)  # 0/1, so that the integer copies are the same matrix
    layer = DMoNPooling(3)
    want = layer(np32(x[0], a[0]))
    for adj in (a[0].astype(np.int32), a[0].astype(np.int64), a[0] > 0):
        got = layer([x[0].astype(np.float32), adj])
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(to_np(g), to_np(w), **TOL32)
    gcn = GCNConv(4)
    np.testing.assert_allclose(
        to_np(gcn([x[0].astype(np.float32), a[0].astype(np.int32)])),
        to_np(gcn(np32(x[0], a[0]))),
        **TOL32,
    )
