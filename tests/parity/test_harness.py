"""`dmon.parity` and `dmon parity MODEL.keras`: a user's Keras model run on every backend,
each in its own process, outputs, losses and gradients compared pair by pair, and a
divergence localised to its first layer.

Oracles: a custom layer written to differ under one backend (in its forward, or only in
its backward) must be caught and named; the weights' hash is computed here from the
model itself; float64 agreement must be tighter than float32 could give. Needs keras and
at least two of jax, tensorflow, torch (the parity session).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import importable_module, installed, subprocess_env

INSTALLED = [b for b in ("jax", "tensorflow", "torch") if installed(b)]
pytestmark = pytest.mark.skipif(
    not installed("keras") or len(INSTALLED) < 2 or "torch" not in INSTALLED,
    reason="needs keras, torch and another backend (parity session)",
)

LAYERS = textwrap.dedent(
    '''
    """Layers that behave differently under the torch backend, on purpose."""
    import keras


    @keras.saving.register_keras_serializable(package="skew")
    class Skew(keras.layers.Layer):
        """1 % more under torch, in the forward pass."""

        def call(self, x):
            return x * 1.01 if keras.backend.backend() == "torch" else x


    @keras.saving.register_keras_serializable(package="skew")
    class GradSkew(keras.layers.Layer):
        """The same forward everywhere; under torch no gradient reaches its weight."""

        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],), initializer="ones", name="w")

        def call(self, x):
            w = keras.ops.stop_gradient(self.w) if keras.backend.backend() == "torch" else self.w
            return x * w
    '''
)


@pytest.fixture(scope="module")
def skew_module(tmp_path_factory: pytest.TempPathFactory) -> str:
    return importable_module(tmp_path_factory.mktemp("userlayers"), "skewlayers", LAYERS)


def _inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 8, 4)).astype(np.float32)
    a = (rng.random((3, 8, 8)) < 0.4).astype(np.float32)
    return x, np.maximum(a, a.transpose(0, 2, 1))


def _model(middle: str | None = None):
    """GCNConv → (a user layer) → DMoNPooling → Dense, with DMoN's losses."""
    import keras

    from dmon.layers.keras import DMoNPooling, GCNConv

    x_in, a_in = keras.Input((8, 4), name="x"), keras.Input((8, 8), name="adj")
    h = GCNConv(16, name="gcn")([x_in, a_in])
    if middle is not None:
        import skewlayers

        h = getattr(skewlayers, middle)(name="user_layer")(h)
    s, x_pool, _ = DMoNPooling(3, ortho_weight=1.0, name="pool")([h, a_in])
    y = keras.layers.Dense(2, name="head")(keras.layers.Flatten(name="flat")(x_pool))
    return keras.Model([x_in, a_in], [y, s])


def test_clean_model_agrees_on_every_backend_with_identical_weights(tmp_path: Path) -> None:
    import keras

    from dmon import parity

    model = _model()
    x, a = _inputs()
    report = parity.compare_backends(model, {"adj": a, "x": x})  # by name, any order
    assert report.backends == INSTALLED and report.skipped == {}
    assert report.agree and report.first_divergence is None, str(report)
    kinds = {c.kind for c in report.comparisons}
    assert kinds == {"output", "loss", "gradient"}
    pairs = len(INSTALLED) * (len(INSTALLED) - 1) // 2
    assert len([c for c in report.comparisons if c.kind == "gradient"]) == pairs * len(
        model.trainable_weights
    )
    assert len([c for c in report.comparisons if c.kind == "loss"]) == pairs * 3  # DMoN's
    # the weights each process loaded are the model's own, bit for bit
    import hashlib

    h = hashlib.sha256()  # written out here: not dmon's own helper
    for w in model.weights:
        v = np.ascontiguousarray(keras.ops.convert_to_numpy(w))
        h.update(f"{v.dtype.str}{v.shape}".encode())
        h.update(v.tobytes())
    want = h.hexdigest()
    assert set(report.weights_sha256.values()) == {want}
    assert "agree" in str(report) and report.seconds["total"] < 120
    assert report.max_abs_diff < 1e-4


def test_inputs_by_order_without_gradients(tmp_path: Path) -> None:
    from dmon import parity

    x, a = _inputs(1)
    report = parity.compare_backends(_model(), [x, a], backends=["jax", "torch"], grads=False)
    assert report.agree and {c.kind for c in report.comparisons} == {"output", "loss"}
    # an .npz whose keys are not the input names is matched by order too
    np.savez(tmp_path / "in.npz", first=x, second=a)
    model_path = tmp_path / "m.keras"
    _model().save(model_path)
    with pytest.raises(
        parity.ParityUsageError, match=r"input 'x' must have shape \(None, 8, 4\); got \(3, 8, 8\)"
    ):
        parity.compare_backends(model_path, [a, x], backends=["jax", "torch"], grads=False)


def test_forward_divergence_is_localised_by_the_command(skew_module: str, tmp_path: Path) -> None:
    model_path = tmp_path / "skewed.keras"
    _model("Skew").save(model_path)
    x, a = _inputs(2)
    np.savez(tmp_path / "inputs.npz", x=x, adj=a)
    res = subprocess.run(
        [
            sys.executable, "-m", "dmon", "parity", str(model_path),
            "--inputs", str(tmp_path / "inputs.npz"),
            "--import", "skewlayers", "--backends", "jax,torch",
            "--json", str(tmp_path / "report.json"),
        ],
        env=subprocess_env(PYTHONPATH=skew_module),
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert res.returncode == 1, res.stdout + res.stderr
    assert "first divergence: layer 'user_layer' (Skew), jax vs torch" in res.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["agree"] is False and report["backends"] == ["jax", "torch"]
    d = report["first_divergence"]
    assert (d["layer"], d["class"], d["backends"]) == ("user_layer", "Skew", ["jax", "torch"])
    assert d["max_abs_diff"] > 1e-3 and report["max_abs_diff"] >= d["max_abs_diff"]
    assert any(not c["passed"] and c["kind"] == "output" for c in report["comparisons"])


def test_gradient_only_divergence_is_caught(skew_module: str) -> None:
    from dmon import parity

    x, a = _inputs(3)
    report = parity.compare_backends(_model("GradSkew"), [x, a], backends=["jax", "torch"])
    assert all(c.passed for c in report.comparisons if c.kind in ("output", "loss"))
    bad = [c for c in report.comparisons if not c.passed]
    assert [c.name for c in bad] == ["user_layer/w"] and bad[0].kind == "gradient"
    assert report.first_divergence == {
        "layer": "user_layer",
        "class": "GradSkew",
        "backends": ["jax", "torch"],
        "max_abs_diff": bad[0].max_abs_diff,
    }
    with pytest.raises(
        AssertionError, match=r"Keras backends disagree:(.|\n)*user_layer/w .*DIFFERS"
    ):
        parity.assert_backend_parity(_model("GradSkew"), [x, a], backends=["jax", "torch"])


@pytest.mark.skipif(
    not installed("tensorflow") or not installed("jax"), reason="jax and tensorflow"
)
def test_float64_mode() -> None:
    """Every layer and input in float64: JAX (with x64) and TensorFlow agree far below
    float32 resolution."""
    from dmon import parity

    x, a = _inputs(4)
    report = parity.compare_backends(
        _model(), [x, a], backends=["jax", "tensorflow"], dtype="float64"
    )
    assert report.agree and report.rtol == 1e-9, str(report)
    assert report.max_abs_diff < 1e-12
    assert any(c.max_abs_diff > 0 for c in report.comparisons)  # two real computations


def test_missing_backend_is_skipped_or_an_error(monkeypatch) -> None:
    from dmon import parity
    from dmon.parity import harness

    real = harness.importlib.util.find_spec
    missing = INSTALLED[0]
    monkeypatch.setattr(
        harness.importlib.util,
        "find_spec",
        lambda name, *a: None if name == missing else real(name, *a),
    )
    x, a = _inputs(5)
    with pytest.raises(
        parity.ParityUsageError,
        match=rf"backend {missing}: {missing} is not installed \(--require-all\)",
    ):
        parity.compare_backends(_model(), [x, a], require_all=True)
    if len(INSTALLED) == 3:
        report = parity.compare_backends(_model(), [x, a], grads=False)
        assert report.skipped == {missing: f"{missing} is not installed"} and report.agree
        assert f"skipped {missing}: {missing} is not installed" in str(report)
    with pytest.raises(parity.ParityUsageError, match=r"parity needs two installed backends"):
        parity.compare_backends(_model(), [x, a], backends=[missing, INSTALLED[1]])


def _custom_model():
    """A model with a layer class registered here only: the workers cannot know it."""
    import keras

    @keras.saving.register_keras_serializable(package="unregistered")
    class Unknown(keras.layers.Layer):
        def call(self, x):
            return x

    x_in, a_in = keras.Input((8, 4), name="x"), keras.Input((8, 8), name="adj")
    return keras.Model([x_in, a_in], Unknown()(x_in))


def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    x, a = _inputs()
    np.savez(tmp_path / "in.npz", x=x, adj=a)
    np.savez(tmp_path / "three.npz", x=x, adj=a, extra=a)
    model_path = tmp_path / "m.keras"
    _model().save(model_path)
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    (tmp_path / "empty.keras").write_bytes(b"")
    _custom_model().save(tmp_path / "custom.keras")
    data = bytearray(model_path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights member's data
    (tmp_path / "corrupt.keras").write_bytes(bytes(data))
    np.savez(tmp_path / "complex.npz", x=x.astype(np.complex64), adj=a)
    np.savez(tmp_path / "batches.npz", x=x, adj=a[:2])
    cases = [
        (
            [str(tmp_path / "none.keras"), "--inputs", str(tmp_path / "in.npz")],
            "no such model file",
        ),
        ([str(model_path)], "needs --inputs INPUTS.npz"),
        ([str(model_path), "--inputs", str(tmp_path / "none.npz")], "no such inputs file"),
        (
            [str(model_path), "--inputs", str(tmp_path / "in.npz"), "--backends", "jax,mxnet"],
            "unknown backend 'mxnet'",
        ),
        (
            [
                str(tmp_path / "broken.keras"),
                "--inputs",
                str(tmp_path / "in.npz"),
                "--backends",
                "jax,torch",
            ],
            "broken.keras: not a readable .keras archive (9 bytes",
        ),
        (
            [str(tmp_path / "custom.keras"), "--inputs", str(tmp_path / "in.npz")],
            "cannot load in safe mode: class 'Unknown' is not registered; --import",
        ),
        (
            [str(model_path), "--inputs", str(tmp_path / "three.npz"), "--backends", "jax,torch"],
            "inputs by name must name every model input",
        ),
        (
            [str(tmp_path / "empty.keras"), "--inputs", str(tmp_path / "in.npz")],
            "empty.keras: not a readable .keras archive (0 bytes",
        ),
        (
            [str(tmp_path / "corrupt.keras"), "--inputs", str(tmp_path / "in.npz")],
            "corrupt.keras: member",
        ),
        (
            [str(model_path), "--inputs", str(tmp_path / "complex.npz")],
            "complex.npz: input 'x' has dtype complex64; expected float, int or bool",
        ),
        (
            [str(model_path), "--inputs", str(tmp_path / "in.npz"), "--backends", "jax,jax"],
            "backend 'jax' given twice",
        ),
        (
            [str(model_path), "--inputs", str(tmp_path / "batches.npz"), "--backends", "jax,torch"],
            "the inputs' batch sizes differ (x 3, adj 2)",
        ),
    ]
    for argv, message in cases:
        res = subprocess.run(
            [sys.executable, "-m", "dmon", "parity", *argv],
            capture_output=True, text=True, check=False, timeout=600,
            env=subprocess_env(),
        )  # fmt: skip
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1 and message in lines[0], (argv, res.stderr)


CHECK_FULL_FLOAT32 = {
    "jax": "import jax; ok = jax.config.jax_default_matmul_precision == 'highest'",
    "tensorflow": "import tensorflow as tf; "
    "ok = not tf.config.experimental.tensor_float_32_execution_enabled()",
    "torch": "import torch; m, c = torch.backends.cuda.matmul, torch.backends.cudnn; "
    "ok = (m.fp32_precision, c.fp32_precision) == ('ieee', 'ieee') "
    "if hasattr(m, 'fp32_precision') else not (m.allow_tf32 or c.allow_tf32)",
}


@pytest.mark.parametrize("backend", sorted(CHECK_FULL_FLOAT32))
def test_parity_worker_turns_tf32_off(backend: str) -> None:
    """On an NVIDIA GPU, JAX and TensorFlow run float32 products in TF32 by default (and
    torch its cuDNN convolutions): an H200 showed errors near 1e-3, which a parity check
    would report as a divergence. Each worker turns that off for itself (in its own
    process, as here); the settings are what the frameworks read on a GPU."""
    if not installed(backend):
        pytest.skip(f"{backend} is not installed")
    code = (
        f"from dmon.backends.{backend}.hooks import full_float32_products\n"
        "full_float32_products()\n"
        f"{CHECK_FULL_FLOAT32[backend]}\n"
        "raise SystemExit(0 if ok else 1)\n"
    )
    env = subprocess_env()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
