"""Every backend against the float64 NumPy reference: all six outputs, float32 and
float64, eager and compiled; half precision; outputs stay in the caller's framework."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, compiled, to_backend, to_numpy
from oracle import random_batch

import dmon

CASES = [
    pytest.param(dict(seed=0), id="plain"),
    pytest.param(dict(seed=1, masked=True), id="masked"),
    pytest.param(dict(seed=2, b=2, n=64, f=16, c=8), id="n64"),
]


def _inputs(backend: str, dtype: str, case: dict):
    x, a, logits, mask = random_batch(**case)
    args = [to_backend(backend, v, dtype) for v in (x, a, logits)]
    m = None if mask is None else to_backend(backend, mask)
    return (x, a, logits, mask), args, m


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize("case", CASES)
def test_backend_matches_reference(backend: str, dtype: str, mode: str, case: dict) -> None:
    (x, a, logits, mask), args, m = _inputs(backend, dtype, case)
    want = dmon.pool(x, a, logits, mask)  # NumPy float64 reference
    fn = (
        (lambda x, a, lg, m: dmon.pool(x, a, lg, m))
        if mode == "eager"
        else compiled(backend, lambda x, a, lg, m: tuple(dmon.pool(x, a, lg, m)))
    )
    got = fn(*args, m)
    for name, g, w in zip(dmon.DMoNOutput._fields, got, want, strict=True):
        assert dmon.get_backend(g).name == backend, name
        assert to_numpy(g).dtype == np.dtype(dtype), name
        assert_close(g, w, dtype, f"{backend} {dtype} {mode}: {name}")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision(backend: str, dtype: str) -> None:
    if backend == "numpy" and dtype == "bfloat16":
        pytest.skip("NumPy has no bfloat16")
    x, a, logits, _ = random_batch(3, n=40, weighted=False)
    a = a * 30.0  # degree sums of ~360: large for float16 arithmetic, fine for float32
    out = dmon.pool(*(to_backend(backend, v, dtype) for v in (x, a, logits)))
    # oracle: the same rounded inputs, computed in float64
    rounded = [to_numpy(to_backend(backend, v, dtype)).astype(np.float64) for v in (x, a, logits)]
    want = dmon.pool(*rounded)
    for name, g, w in zip(out._fields, out, want, strict=True):
        expect_dtype = "float32" if "loss" in name else dtype
        assert dmon.get_backend(g).dtype_name(g) == expect_dtype, (name, g.dtype)
        arr = to_numpy(g).astype(np.float64)
        assert np.all(np.isfinite(arr)), name
        # float32 accumulation, one rounding to the half dtype at the end
        rtol = 1e-2 if dtype == "bfloat16" else 2e-3
        np.testing.assert_allclose(arr, w, rtol=rtol, atol=rtol, err_msg=name)


def test_backend_override_converts_inputs(backend: str) -> None:
    x, a, logits, mask = random_batch(5, masked=True)
    out = dmon.pool(x, a, logits, mask, backend=backend)
    assert dmon.get_backend(out.s).name == backend
    want = dmon.pool(x, a, logits, mask)
    for g, w in zip(out, want, strict=True):
        assert_close(g, w, "float64")


def test_unbatched_input_gives_batch_of_one(backend: str) -> None:
    x, a, logits, _ = random_batch(6, b=1)
    out = dmon.pool(*(to_backend(backend, v[0]) for v in (x, a, logits)))
    want = dmon.pool(x, a, logits)
    assert to_numpy(out.s).shape == (1, 12, 4)
    assert to_numpy(out.adj).shape == (1, 4, 4)
    for g, w in zip(out, want, strict=True):
        assert_close(g, w, "float64")
