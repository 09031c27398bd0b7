"""`dmon.parity`'s verdict: float32 results judged against a float64 run, so that
rounding is never a divergence and a real difference always is.

Oracles: float64 NumPy (a sum rounded in float32 two ways is rounding; a 1e-3 skew or a
half-precision copy is not); the elementwise tolerances of the old verdict, which must
cry wolf on the trained Cora model of issue 24 where the new one agrees; layers written
to differ under one backend (in float32 only, or by 1e-3 relative).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import DATASETS
from helpers import importable_module, installed

from dmon.parity import verdict

INSTALLED = [b for b in ("jax", "tensorflow", "torch") if installed(b)]
needs_backends = pytest.mark.skipif(
    not installed("keras") or len(INSTALLED) < 2 or "torch" not in INSTALLED,
    reason="needs keras, torch and another backend (parity session)",
)


def _sums(cancel: bool, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Row sums of 4,000 terms (that cancel to ~0, or positive ones): float64, and
    float32 two ways."""
    rng = np.random.default_rng(seed)
    terms = rng.normal(size=(64, 4000))
    if cancel:  # heavy cancellation, as in a softmax's gradient
        terms -= terms.mean(axis=1, keepdims=True)
    else:
        terms = np.abs(terms)
    t32 = terms.astype(np.float32)
    q64 = t32.astype(np.float64).sum(axis=1)
    sequential = np.zeros(64, np.float32)
    for j in range(t32.shape[1]):
        sequential += t32[:, j]
    pairwise = t32.sum(axis=1, dtype=np.float32)  # NumPy sums pairwise
    return q64, {"sequential": sequential, "pairwise": pairwise}


def test_rounding_passes_and_real_differences_do_not() -> None:
    q64, rounded = _sums(cancel=True)
    # elementwise, the rounding is large: what the old verdict flagged
    rel = np.abs(rounded["sequential"] - q64) / np.abs(q64)
    assert rel.max() > 1e-3
    noise = verdict.measure(rounded, q64)
    assert noise is not None and verdict.agree("sequential", "pairwise", noise)[0]
    # where rounding is small, a backend that sums in float16, or is 1e-3 off, is far
    # beyond it (in the cancelling sums the same changes are below the rounding)
    q64, rounded = _sums(cancel=False)
    noise = verdict.measure(rounded, q64)
    assert noise is not None and verdict.agree("sequential", "pairwise", noise)[0]
    for name, value in {
        "half": q64.astype(np.float16).astype(np.float32),
        "skewed": (rounded["pairwise"] * np.float32(1.001)),
    }.items():
        q32 = {"pairwise": rounded["pairwise"], name: value}
        measured = verdict.measure(q32, q64)
        passed, explained, farther = verdict.agree("pairwise", name, measured)
        assert not passed and farther > verdict.MARGIN * explained, name
    # a NaN where the reference has a number, or in another place, never agrees
    nan = rounded["pairwise"].copy()
    nan[3] = np.nan
    assert verdict.measure({"a": nan, "b": rounded["pairwise"]}, q64) is None
    both = q64.copy()
    both[3] = np.nan
    measured = verdict.measure({"a": nan, "b": nan}, both)
    assert measured is not None and verdict.agree("a", "b", measured)[0]


def test_a_quantity_rounded_exactly_by_one_backend_is_not_a_divergence() -> None:
    """One backend may round a scalar exactly; the other a few units off still agrees."""
    q64 = np.float64(0.1) * np.ones(())
    exact = np.float32(0.1) * np.ones((), np.float32)  # the reference's own rounding
    off = np.nextafter(np.nextafter(exact, np.float32(1)), np.float32(1))  # two units up
    measured = verdict.measure({"a": exact, "b": off}, q64)
    assert measured is not None and verdict.agree("a", "b", measured)[0]


LAYERS = textwrap.dedent(
    '''
    import keras


    @keras.saving.register_keras_serializable(package="precision")
    class HalfUnderTorch(keras.layers.Layer):
        """float32 rounded through float16 under torch: the same in float64."""

        def call(self, x):
            wide = keras.backend.standardize_dtype(x.dtype) == "float64"
            if keras.backend.backend() == "torch" and not wide:
                return keras.ops.cast(keras.ops.cast(x, "float16"), "float32")
            return x


    @keras.saving.register_keras_serializable(package="precision")
    class Skew3(keras.layers.Layer):
        """1e-3 relative more under torch."""

        def call(self, x):
            return x * 1.001 if keras.backend.backend() == "torch" else x
    '''
)


@pytest.fixture(scope="module")
def precision_module(tmp_path_factory: pytest.TempPathFactory) -> str:
    return importable_module(tmp_path_factory.mktemp("precisionlayers"), "precisionlayers", LAYERS)


def _cora_model(layers: int, extra: str | None = None):
    """`layers` GCNConv → (a user layer) → DMoNPooling(7) on Cora's edge_index."""
    import keras

    from dmon.data import load_npz
    from dmon.layers.keras import DMoNPooling, GCNConv

    path = DATASETS / "cora.npz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    g = load_npz(path)
    coo = g.adjacency.tocoo()
    ei = np.stack([coo.row, coo.col]).astype("int32")[None]
    x = g.features.astype("float32")[None]
    x_in = keras.Input(x.shape[1:], batch_size=1, name="x")
    e_in = keras.Input(ei.shape[1:], batch_size=1, dtype="int32", name="edge_index")
    h = x_in
    for i in range(layers):
        h = GCNConv(64, name=f"gcn_{i}")([h, e_in])
    if extra is not None:
        import precisionlayers

        h = getattr(precisionlayers, extra)(name="user_layer")(h)
    s, _, _ = DMoNPooling(7, name="pool")([h, e_in])
    return keras.Model([x_in, e_in], s), [x, ei]


def _trained(layers: int, epochs: int, tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    import keras

    keras.utils.set_random_seed(0)
    model, inputs = _cora_model(layers)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(inputs, np.zeros((1,)), epochs=epochs, verbose=0, batch_size=1)
    path = tmp_path / f"cora_{layers}.keras"
    model.save(path)
    return path, inputs


@needs_backends
def test_trained_models_agree_where_tolerances_cry_wolf(tmp_path: Path) -> None:
    """Issue 24's model: GCNConv → DMoNPooling(7) trained 200 epochs on Cora, whose
    float32 gradients are ~1e-2 off float64 on every backend; and a deeper stack."""
    from dmon import parity

    path, inputs = _trained(1, 200, tmp_path)
    control = parity.compare_backends(path, inputs, rtol=1e-4, atol=1e-5)
    assert not control.agree  # the false alarm of elementwise tolerances
    report = parity.compare_backends(path, inputs)
    assert report.agree and report.method == "reference", str(report)
    assert report.reference in ("tensorflow", "jax")
    assert report.float32_noise is not None and report.float32_noise > 1e-3
    assert f"float32 noise: up to {report.float32_noise:.1e}" in str(report)
    deep, inputs = _trained(4, 50, tmp_path)
    report = parity.compare_backends(deep, inputs)
    assert report.agree, str(report)


@needs_backends
@pytest.mark.parametrize("layer", ["Skew3", "HalfUnderTorch"])
def test_a_real_difference_is_named_at_its_first_layer(precision_module: str, layer: str) -> None:
    """1e-3 relative in one layer under torch, or float32 rounded through float16 there
    (its float64 run is exact): the verdict says DIFFERS and names the layer."""
    from dmon import parity

    model, inputs = _cora_model(1, layer)
    other = next(b for b in INSTALLED if b != "torch")
    report = parity.compare_backends(model, inputs, backends=[other, "torch"])
    assert not report.agree, str(report)
    assert report.first_divergence is not None
    assert report.first_divergence["layer"] == "user_layer", str(report)
    assert "torch" in report.first_divergence["backends"]
    differs = [c for c in report.comparisons if not c.passed]
    assert all("torch" in c.backends for c in differs)
    assert "output" in {c.kind for c in differs}


def test_a_small_result_of_large_terms_is_judged_by_how_far_rounding_carries() -> None:
    """A loss that cancels to 1e-3 of its terms: one backend rounds it exactly by luck,
    another sums one by one, thousands of the result's units off but a few of the
    terms'. Judged by the result's units that is a divergence; the float32 sum of the
    terms one unit off moves as far, so it agrees."""
    rng = np.random.default_rng(1)
    terms = rng.normal(size=1000).astype(np.float32)
    terms[-1] -= np.float32(terms.astype(np.float64).sum() - 1e-3)  # total 1e-3
    q64 = np.asarray(terms.astype(np.float64).sum())
    exact = np.asarray(np.float32(q64))
    off = np.asarray(np.cumsum(terms, dtype=np.float32)[-1])  # summed one by one
    assert abs(float(off) - float(q64)) > 1e4 * 2.0**-24 * 1e-3  # thousands of its units
    measured = verdict.measure({"a": exact, "b": off}, q64)
    assert measured is not None and not verdict.agree("a", "b", measured)[0]
    away = np.where(rng.random(1000) < 0.5, np.inf, -np.inf).astype(np.float32)
    nudged = np.nextafter(terms, away)
    moved = np.asarray(nudged.sum(dtype=np.float32))
    measured = verdict.measure({"a": exact, "b": off}, q64, ("a", moved))
    assert measured is not None and verdict.agree("a", "b", measured)[0]
