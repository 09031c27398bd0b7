"""Keras 3 layers under the backend in KERAS_BACKEND (nox runs one session per backend).

Oracles: `dmon.pool` in float64 NumPy on the layer's own weights; a loop-free NumPy GCN;
the layer's symbolic call; the saved-and-loaded model.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from oracle import random_batch

keras = pytest.importorskip("keras")
_fw = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}[keras.backend.backend()]
pytest.importorskip(_fw)

from keras_helpers import TOL32, np32, reference, sbm_batch, to_np  # noqa: E402

import dmon  # noqa: E402
from dmon.layers.keras import DMoNLossLogger, DMoNPooling, GCNConv  # noqa: E402

BACKEND = keras.backend.backend()


@pytest.mark.parametrize("mlp_units", [(), (8,)])
@pytest.mark.parametrize("masked", [False, True])
def test_layer_equals_dmon_pool(mlp_units, masked: bool) -> None:
    x, a, _, mask = random_batch(0, b=3, n=10, f=5, c=4, masked=masked)
    layer = DMoNPooling(
        4, mlp_units=mlp_units, spectral_weight=0.5, collapse_regularization=2.0, ortho_weight=0.25
    )
    inputs = np32(x, a) + ([mask] if masked else [])
    s, xp, ap = layer(inputs)
    want = reference(layer, x, a, mask)
    for got, ref in zip((s, xp, ap), want[:3], strict=True):
        np.testing.assert_allclose(to_np(got), ref, **TOL32)
    assert len(layer.losses) == 3
    weights = (0.5, 2.0, 0.25)
    refs = (want.spectral_loss, want.cluster_loss, want.ortho_loss)
    for value, w, ref in zip(layer.losses, weights, refs, strict=True):
        np.testing.assert_allclose(to_np(value), w * ref, **TOL32)
    for key, ref in zip(("spectral", "cluster", "ortho"), refs, strict=True):
        np.testing.assert_allclose(to_np(layer.last_losses[key]), ref, **TOL32)


def test_one_graph_without_batch_axis() -> None:
    x, a, _, _ = random_batch(1, b=1, n=7, f=3, c=3)
    layer = DMoNPooling(3)
    s, xp, _ = layer(np32(x[0], a[0]))
    assert tuple(s.shape) == (1, 7, 3) and tuple(xp.shape) == (1, 3, 3)
    np.testing.assert_allclose(to_np(s), reference(layer, x, a).s, **TOL32)


def test_gcnconv_equals_formula() -> None:
    x, a, _, _ = random_batch(2, b=2, n=8, f=4, c=2)
    conv = GCNConv(6)
    out = conv(np32(x, a))
    conv.skip_weight.assign(np.linspace(0.5, 1.5, 6).astype(np.float32))
    out = to_np(conv(np32(x, a)))
    w, b, skip = to_np(conv.kernel), to_np(conv.bias), to_np(conv.skip_weight)
    a_hat = a + np.eye(8)
    d = a_hat.sum(-1)
    a_hat = a_hat / np.sqrt(d)[:, :, None] / np.sqrt(d)[:, None, :]
    h = x @ w
    pre = h * skip + a_hat @ h + b
    selu = 1.0507009873554805 * np.where(
        pre > 0, pre, 1.6732632423543772 * np.expm1(np.minimum(pre, 0))
    )
    np.testing.assert_allclose(out, selu, **TOL32)
    no_skip = GCNConv(6, skip_connection=False, activation=None)
    no_skip(np32(x, a))
    no_skip.kernel.assign(w.astype(np.float32))
    np.testing.assert_allclose(to_np(no_skip(np32(x, a))), a_hat @ h, **TOL32)


def _model(n: int, f: int, k: int = 4, masked: bool = False, **kw) -> keras.Model:
    x_in, a_in = keras.Input((n, f)), keras.Input((n, n))
    inputs = [x_in, a_in]
    if masked:
        inputs.append(keras.Input((n,), dtype="bool"))
    h = GCNConv(16)([x_in, a_in])
    outs = DMoNPooling(k, **kw)([h, *inputs[1:]])
    return keras.Model(inputs, list(outs))


def test_symbolic_and_eager_calls_agree() -> None:
    x, a = sbm_batch(0, b=4)
    model = _model(24, 3)
    eager = [to_np(v) for v in model([x, a])]
    predicted = model.predict([x, a], verbose=0)
    for e, p in zip(eager, predicted, strict=True):
        np.testing.assert_allclose(e, p, **TOL32)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 24, 4), (None, 4, 16), (None, 4, 4)]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_reduces_the_loss(jit_compile: bool) -> None:
    if jit_compile and BACKEND == "torch":
        pytest.skip(
            "Keras' torch backend compiles with torch.compile: slow and not needed for correctness here"
        )
    keras.utils.set_random_seed(0)
    x, a = sbm_batch(1)
    model = _model(24, 3, k=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=jit_compile)
    before = model.evaluate([x, a], verbose=0, batch_size=16)
    history = model.fit([x, a], epochs=40, batch_size=16, verbose=0, callbacks=[DMoNLossLogger()])
    after = model.evaluate([x, a], verbose=0, batch_size=16)
    assert after < before - 0.05, (before, after)
    logged = history.history[f"{model.layers[-1].name}/spectral_loss"]
    assert len(logged) == 40 and logged[-1] < logged[0]


def test_masked_model_fits() -> None:
    keras.utils.set_random_seed(0)
    x, a = sbm_batch(2, b=8)
    mask = np.ones((8, 24), dtype=bool)
    mask[::2, 18:] = False
    a = a * mask[:, :, None] * mask[:, None, :]
    model = _model(24, 3, k=3, masked=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.evaluate([x, a, mask], verbose=0)
    model.fit([x, a, mask], epochs=20, verbose=0)
    assert model.evaluate([x, a, mask], verbose=0) < before
    s = model.predict([x, a, mask], verbose=0)[0]
    assert np.all(s[::2, 18:] == 0)


def test_save_and_load_keras_file(tmp_path) -> None:
    x, a = sbm_batch(3, b=4)
    model = _model(24, 3, mlp_units=(8,), dropout=0.3, ortho_weight=0.1)
    want = model.predict([x, a], verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    got = loaded.predict([x, a], verbose=0)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    pool_layer = loaded.layers[-1]
    assert isinstance(pool_layer, DMoNPooling)
    assert pool_layer.get_config() == model.layers[-1].get_config()


def test_config_round_trip_and_unknown_keys() -> None:
    layer = DMoNPooling(5, mlp_units=[16, 8], dropout=0.1, collapse_regularization=0.5, name="pool")
    config = layer.get_config()
    clone = DMoNPooling.from_config(config)
    assert clone.get_config() == config
    assert keras.saving.serialize_keras_object(layer)["registered_name"] == "dmon>DMoNPooling"
    with pytest.raises(
        ValueError, match=r"DMoNPooling.from_config: unknown config keys \['colapse'\]"
    ):
        DMoNPooling.from_config({**config, "colapse": 1.0})
    with pytest.raises(ValueError, match=r"GCNConv.from_config: unknown config keys \['unit'\]"):
        GCNConv.from_config({**GCNConv(4).get_config(), "unit": 3})


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy: str) -> None:
    keras.config.set_dtype_policy(policy)
    try:
        x, a = sbm_batch(4, b=2)
        a = a * 40.0  # large degree sums: would lose precision in half arithmetic
        model = _model(24, 3)
        s, xp, ap = model([x, a])
        pool_layer = model.layers[-1]
        compute = policy.split("_")[1]
        for out in (s, xp, ap):
            assert keras.backend.standardize_dtype(out.dtype) == compute
            assert np.all(np.isfinite(to_np(out)))
        assert len(pool_layer.losses) == 3
        for value in pool_layer.losses:
            assert keras.backend.standardize_dtype(value.dtype) == "float32"
            assert np.isfinite(to_np(value))
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize(
    "inputs,pattern",
    [
        (
            lambda x, a: [x],
            r"`inputs` must be a list \[x, adj\] or \[x, adj, mask or edge_weight\]; got 1 inputs",
        ),
        (lambda x, a: x, r"`inputs` must be a list .*; got one input of shape \(2, 6, 3\)"),
        (lambda x, a: [x, a, a[..., 0], a], r"got 4 inputs"),
        (lambda x, a: [x[0, 0], a], r"`x` must have shape \(B, N, F\) or \(N, F\)"),
        (lambda x, a: [x, a[:, :5]], r"`adj` must be square"),
        (lambda x, a: [x[:, :5], a], r"node counts N differ"),
    ],
)
def test_bad_input(inputs, pattern) -> None:
    x, a, _, _ = random_batch(0, b=2, n=6, f=3, c=2)
    with pytest.raises(ValueError, match=pattern):
        DMoNPooling(2)(inputs(*np32(x, a)))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"`k` \(number of clusters\) must be an int >= 2; got 1"):
        DMoNPooling(1)
    with pytest.raises(ValueError, match=r"`dropout` must be a number in \[0, 1\)"):
        DMoNPooling(3, dropout=1.0)
    with pytest.raises(ValueError, match=r"`collapse_regularization` must be a finite number >= 0"):
        DMoNPooling(3, collapse_regularization=-1.0)
    with pytest.raises(ValueError, match=r"GCNConv: `units` must be a positive int"):
        GCNConv(0)


def test_from_torch_and_back() -> None:
    torch = pytest.importorskip("torch")
    from dmon.layers.torch import DMoNPooling as TorchDMoN

    torch.manual_seed(0)
    module = TorchDMoN([5, 12], 4).eval()
    layer = DMoNPooling.from_torch(module, ortho_weight=1.0)
    x, a, _, mask = random_batch(5, b=3, n=10, f=5, c=4, masked=True)
    want = module(*(torch.from_numpy(v) for v in np32(x, a)), torch.from_numpy(mask))
    got = layer([*np32(x, a), mask])
    for g, w in zip(got, want[:3], strict=True):
        np.testing.assert_allclose(to_np(g), w.detach().numpy(), rtol=1e-5, atol=1e-6)
    losses = [to_np(v) for v in layer.losses]  # spectral, cluster, ortho (all weights 1)
    for g, w in zip(losses, (want[3], want[5], want[4]), strict=True):
        np.testing.assert_allclose(g, w.detach().numpy(), rtol=1e-5, atol=1e-6)
    back = layer.to_torch()
    for p, q in zip(back.state_dict().values(), module.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q)


def test_gcn_and_pooling_graph_is_differentiable_end_to_end() -> None:
    """Gradients reach the GCN kernel through the pooled outputs and the losses."""
    x, a = sbm_batch(6, b=2)
    model = _model(24, 3)
    grads = _gradients(model, [x, a])
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert max(float(np.abs(g).max()) for g in grads) > 0


def _gradients(model: keras.Model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            outs = model(inputs, training=True)
            total = sum(model.losses) + tf.reduce_sum(outs[1])
        return [g.numpy() for g in tape.gradient(total, model.trainable_variables)]
    if BACKEND == "torch":
        outs = model(inputs, training=True)
        total = sum(model.losses) + outs[1].sum()
        total.backward()
        return [v.value.grad.numpy() for v in model.trainable_variables]
    import jax

    def f(tv):
        outs, _, losses = model.stateless_call(
            tv, [v.value for v in model.non_trainable_variables], inputs, return_losses=True
        )
        return sum(losses) + outs[1].sum()

    return [np.asarray(g) for g in jax.grad(f)([v.value for v in model.trainable_variables])]


def test_float64_policy_matches_reference_tightly() -> None:
    keras.config.set_dtype_policy("float64")
    try:
        if BACKEND == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
        x, a, _, mask = random_batch(8, b=2, n=9, f=4, c=3, masked=True)
        layer = DMoNPooling(3)
        # explicit float64 tensors: Keras' torch backend turns float64 NumPy into floatx
        xt, at = (keras.ops.convert_to_tensor(v, dtype="float64") for v in (x, a))
        s, xp, ap = layer([xt, at, mask])
        # logits from the layer's own Dense: Keras' torch matmul rounds float64 products
        # to ~1e-8 (a Keras matter); what is checked here is dmon's float64 math after it.
        logits = to_np(layer.mlp[0](xt))
        want = dmon.pool(x, a, logits, mask)
        for g, w in zip((s, xp, ap), want[:3], strict=True):
            np.testing.assert_allclose(to_np(g), w, rtol=1e-10, atol=1e-12)
        assert math.isclose(float(to_np(layer.losses[0])), float(want.spectral_loss), rel_tol=1e-10)
    finally:
        keras.config.set_dtype_policy("float32")


def test_from_pyg_module() -> None:
    torch = pytest.importorskip("torch")
    pyg_nn = pytest.importorskip("torch_geometric.nn")
    torch.manual_seed(1)
    module = pyg_nn.DMoNPooling([5, 16], 3).eval()
    layer = DMoNPooling.from_torch(module)
    x, a, _, _ = random_batch(6, b=4, n=12, f=5, c=3)
    want = module(*(torch.from_numpy(v) for v in np32(x, a)))
    got = layer(np32(x, a))
    for g, w in zip(got, want[:3], strict=True):
        np.testing.assert_allclose(to_np(g), w.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        to_np(layer.losses[0]), want[3].detach().numpy(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        to_np(layer.losses[1]), want[5].detach().numpy(), rtol=1e-5, atol=1e-6
    )
    assert list(layer.to_torch().state_dict()) == list(module.state_dict())


# --- sparse adjacency ------------------------------------------------------------------


def test_nan_padding_reaches_neither_outputs_nor_gradients() -> None:
    """Masked rows of `x` are zeroed before the MLP: NaN padding gives the outputs and
    the weight gradients of zero padding."""
    x, a, _, mask = random_batch(4, b=2, n=8, f=3, c=3, masked=True)
    x_nan = np.where(mask[..., None], x, np.nan).astype(np.float32)
    x_zero = np.where(mask[..., None], x, 0.0).astype(np.float32)
    layer = DMoNPooling(3, ortho_weight=1.0)
    layer([x_zero, a.astype(np.float32), mask])
    for got, want in zip(
        layer([x_nan, a.astype(np.float32), mask]),
        layer([x_zero, a.astype(np.float32), mask]),
        strict=True,
    ):
        assert np.all(np.isfinite(to_np(got)))
        np.testing.assert_allclose(to_np(got), to_np(want), **TOL32)
    inputs = keras.Input((8, 3)), keras.Input((8, 8)), keras.Input((8,), dtype="bool")
    model = keras.Model(list(inputs), layer(list(inputs))[0])
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    model.fit([x_nan, a.astype(np.float32), mask], epochs=2, batch_size=2, verbose=0)
    for w in layer.trainable_weights:
        assert np.all(np.isfinite(to_np(w))), w.path


def test_none_adjacency_is_named() -> None:
    x, _, _, _ = random_batch(0, b=1, n=4, f=3, c=2)
    with pytest.raises(TypeError, match=r"DMoNPooling: `adj` is required; got None"):
        DMoNPooling(2)([x[0].astype(np.float32), None])
    with pytest.raises(TypeError, match=r"GCNConv: `adj` is required; got None"):
        GCNConv(2)([x[0].astype(np.float32), None])


def test_resolution_reaches_the_loss_and_the_config() -> None:
    """`resolution` is in the config, survives a round trip, and changes the spectral
    loss exactly as `dmon.pool(..., resolution=γ)` on the layer's own logits."""
    x, a, _, mask = random_batch(6, b=2, n=9, f=4, c=3, masked=True)
    layer = DMoNPooling(3, resolution=0.5)
    assert layer.get_config()["resolution"] == 0.5
    assert DMoNPooling.from_config(layer.get_config()).resolution == 0.5
    layer([*np32(x, a), mask])
    h = x.astype(np.float64)
    for dense in layer.mlp:
        h = h @ to_np(dense.kernel) + to_np(dense.bias)
    want = dmon.pool(x, a, h, mask, resolution=0.5).spectral_loss
    np.testing.assert_allclose(to_np(layer.losses[0]), want, **TOL32)
    with pytest.raises(ValueError, match=r"`resolution` must be a finite number >= 0"):
        DMoNPooling(3, resolution=-1.0)


def test_default_layer_names_read_as_the_layers() -> None:
    """Keras would derive `d_mo_n_pooling` from the class name; the default is
    `dmon_pooling`, numbered as Keras numbers its own, and a given name is kept."""
    import re

    first, second = DMoNPooling(3), DMoNPooling(3)
    assert re.fullmatch(r"dmon_pooling(_\d+)?", first.name), first.name
    assert re.fullmatch(r"dmon_pooling_\d+", second.name) and second.name != first.name
    assert DMoNPooling(3, name="pool").name == "pool"
    assert DMoNPooling.loss_names == ("spectral_loss", "cluster_loss", "ortho_loss")


def test_layer_arguments_of_the_wrong_kind_are_named() -> None:
    with pytest.raises(TypeError, match=r"DMoNPooling: `mlp_units` must be a list of hidden sizes"):
        DMoNPooling(3, mlp_units=8)
    for name in ("spectral_weight", "collapse_regularization", "ortho_weight"):
        with pytest.raises(ValueError, match=rf"DMoNPooling: `{name}` must be a finite number"):
            DMoNPooling(3, **{name: float("inf")})
        with pytest.raises(TypeError, match=rf"DMoNPooling: `{name}` must be a finite number"):
            DMoNPooling(3, **{name: "1"})


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_the_layer_builds_and_pools_in_half_precision(dtype: str) -> None:
    """The orthogonal initializer's QR runs in float32 and is rounded: the half-precision
    layer's weights are the float32 layer's, rounded, and its outputs follow the float32
    layer's to half-precision accuracy."""
    x, a, _, _ = random_batch(7, b=2, n=8, f=4, c=3)
    keras.utils.set_random_seed(0)
    wide = DMoNPooling(3, name="wide")
    s32, _, _ = wide(np32(x, a))
    keras.utils.set_random_seed(0)
    half = DMoNPooling(3, dtype=dtype, name="half")
    s16, _, _ = half(np32(x, a))
    for w16, w32 in zip(half.mlp[0].weights, wide.mlp[0].weights, strict=True):
        assert keras.backend.standardize_dtype(w16.dtype) == dtype
        want = keras.ops.convert_to_numpy(keras.ops.cast(w32, dtype)).astype(np.float32)
        assert np.array_equal(to_np(keras.ops.cast(w16, "float32")), want)
    got = to_np(keras.ops.cast(s16, "float32"))
    assert np.allclose(got, to_np(s32), atol=3e-2), np.abs(got - to_np(s32)).max()
