"""The switch for eager value checks (`dmon.value_checking`): on, off, the default, the
environment variable; with checks off invalid values give NaN (never a plausible finite
number), as under `jit`, on every backend. The expected values are definitions (NaN,
the error), not dmon's output.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from helpers import sparse_graph, subprocess_env, to_backend, to_numpy

import dmon

RNG = np.random.default_rng(3)
N, F, C = 12, 5, 3


def _graph(negative: bool = False, directed: bool = False) -> np.ndarray:
    a = (RNG.random((N, N)) < 0.4).astype(np.float64)
    a = np.triu(a, 1)
    a = a + a.T
    if directed:  # every edge out of node 0 heavier than its way back
        a[0, :] *= 5.0
    if negative:  # every degree, so every cluster volume, is negative
        a = -a
    return a


def _inputs(backend: str, a: np.ndarray) -> tuple:
    x, logits = RNG.normal(size=(N, F)), RNG.normal(size=(N, C))
    return to_backend(backend, x), to_backend(backend, a), to_backend(backend, logits)


def test_negative_weights_raise_with_checks_on_and_give_nan_off(backend: str) -> None:
    x, a, logits = _inputs(backend, _graph(negative=True))
    with dmon.value_checks(True), pytest.raises(ValueError, match="negative"):
        dmon.pool(x, a, logits)
    with dmon.value_checks(False):
        out = dmon.pool(x, a, logits)
    assert math.isnan(float(to_numpy(out.spectral_loss)))
    # the other outputs are defined for any weights
    assert np.isfinite(to_numpy(out.cluster_loss)) and np.isfinite(to_numpy(out.ortho_loss))


def test_sparse_negative_weights_raise_on_and_give_nan_off(backend: str) -> None:
    a = _graph(negative=True)
    x, _, logits = _inputs(backend, a)
    with dmon.value_checks(True), pytest.raises(ValueError, match="negative weight"):
        dmon.pool(x, sparse_graph(backend, a), logits)
    with dmon.value_checks(False):
        out = dmon.pool(x, sparse_graph(backend, a), logits)
    assert math.isnan(float(to_numpy(out.spectral_loss)))


def test_a_broken_symmetric_promise_raises_on_and_gives_nan_off(backend: str) -> None:
    x, a, logits = _inputs(backend, _graph(directed=True))
    with dmon.value_checks(True), pytest.raises(ValueError, match="not symmetric"):
        dmon.pool(x, a, logits, symmetric=True)
    with dmon.value_checks(False):
        out = dmon.pool(x, a, logits, symmetric=True)
    assert math.isnan(float(to_numpy(out.spectral_loss)))
    # a kept promise is untouched by the device-side test: the general path's value
    x, a, logits = _inputs(backend, _graph())
    with dmon.value_checks(False):
        kept = float(to_numpy(dmon.pool(x, a, logits, symmetric=True).spectral_loss))
    assert kept == pytest.approx(float(to_numpy(dmon.pool(x, a, logits).spectral_loss)), rel=1e-6)


def test_nan_features_give_nan_pooled_features_with_checks_off(backend: str) -> None:
    x, a, logits = _inputs(backend, _graph())
    bad = np.array(to_numpy(x))
    bad[4, 2] = np.nan
    with dmon.value_checks(False):
        out = dmon.pool(to_backend(backend, bad), a, logits)
    pooled = to_numpy(out.x)
    assert np.isnan(pooled[0, :, 2]).all() and np.isfinite(np.delete(pooled, 2, axis=-1)).all()


def test_a_float_mask_with_nan_raises_only_with_checks_on(backend: str) -> None:
    x, a, logits = _inputs(backend, _graph())
    mask = np.ones((1, N))
    mask[0, 3] = np.nan
    with dmon.value_checks(True), pytest.raises(ValueError, match="NaN or Inf"):
        dmon.pool(x, a, logits, to_backend(backend, mask))
    with dmon.value_checks(False):  # as under jit: non-zero, so valid
        off = dmon.pool(x, a, logits, to_backend(backend, mask))
        on = dmon.pool(x, a, logits, to_backend(backend, np.ones((1, N))))
    np.testing.assert_allclose(to_numpy(off.spectral_loss), to_numpy(on.spectral_loss))


def test_the_context_manager_restores_the_setting_and_the_default_is_auto() -> None:
    assert dmon.value_checks_enabled()  # host arrays: on by default
    with dmon.value_checks(False):
        assert not dmon.value_checks_enabled()
        with dmon.value_checks(True):
            assert dmon.value_checks_enabled()
        assert not dmon.value_checks_enabled()
    assert dmon.value_checks_enabled()
    with pytest.raises(TypeError, match="set_value_checks: `enabled` must be True, False or None"):
        dmon.set_value_checks("no")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"), [("0", "off"), ("off", "off"), ("1", "on"), ("auto", "on")]
)
def test_the_environment_variable(value: str, expected: str) -> None:
    code = (
        "import numpy as np, dmon\n"
        "a = -np.ones((4, 4)); x = np.ones((4, 2)); l = np.zeros((4, 2))\n"
        "try:\n    dmon.pool(x, a, l); print('off')\n"
        "except ValueError:\n    print('on')\n"
    )
    env = subprocess_env(DMON_VALUE_CHECKS=value)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == expected, out.stderr


def test_a_bad_environment_value_is_named() -> None:
    code = "import numpy as np, dmon\ndmon.pool(np.ones((4, 2)), np.ones((4, 4)), np.zeros((4, 2)))"
    env = subprocess_env(DMON_VALUE_CHECKS="maybe")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "DMON_VALUE_CHECKS must be 0, 1 or auto; got 'maybe'" in out.stderr
