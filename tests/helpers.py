"""Test helpers: moving NumPy data into each framework, compiling, differentiating, and the
one tolerance policy of the suite."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

BACKENDS = ("numpy", "torch", "tensorflow", "jax")
AUTODIFF = ("torch", "tensorflow", "jax")

# The tolerance policy, written down once (see docs/backends.md for the observed errors).
# float64: every backend is a different summation order of the same float64 arithmetic.
# float32: calibrated on the worst case seen over the suite's inputs (graphs up to N=64).
TOL = {
    "float64": {"rtol": 1e-10, "atol": 1e-12},
    "float32": {"rtol": 1e-5, "atol": 1e-6},
}


# Where the suite puts torch tensors: DMON_TEST_DEVICE=cuda runs every torch test that
# takes its inputs from `to_backend` on the GPU (JAX uses its default device, the GPU
# when jax[cuda] is installed). Unset: the CPU. See docs/development.md, "On a GPU".
TORCH_DEVICE = os.environ.get("DMON_TEST_DEVICE") or "cpu"


def installed(name: str) -> bool:
    return name == "numpy" or importlib.util.find_spec(name) is not None


def require(name: str) -> Any:
    """Import a backend's framework or skip the test when it is not installed."""
    if name == "numpy":
        return np
    if name == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        return jax
    return pytest.importorskip(name)


def to_backend(name: str, a: np.ndarray, dtype: str | None = None) -> Any:
    """``a`` as an array of backend ``name`` (with ``dtype``, default ``a``'s own)."""
    fw = require(name)
    if dtype is not None:
        a = a.astype(dtype) if dtype != "bfloat16" else a
    if name == "numpy":
        return a
    if name == "torch":
        t = fw.from_numpy(np.ascontiguousarray(a)).to(TORCH_DEVICE)
        return t.to(fw.bfloat16) if dtype == "bfloat16" else t
    if name == "tensorflow":
        t = fw.constant(a)
        return fw.cast(t, fw.bfloat16) if dtype == "bfloat16" else t
    import jax.numpy as jnp

    return jnp.asarray(a, dtype=jnp.bfloat16 if dtype == "bfloat16" else None)


def to_numpy(v: Any) -> np.ndarray:
    """Any backend's array as a NumPy array (float64 for half precision)."""
    if hasattr(v, "detach"):
        v = v.detach().cpu()
        if str(v.dtype) in ("torch.bfloat16", "torch.float16"):
            v = v.float()
        return v.numpy()
    if hasattr(v, "numpy") and not isinstance(v, np.ndarray):
        if getattr(v.dtype, "name", "") in ("bfloat16",):
            import tensorflow as tf

            v = tf.cast(v, tf.float32)
        return np.asarray(v.numpy())
    arr = np.asarray(v)
    if arr.dtype.name in ("bfloat16",):
        arr = arr.astype(np.float32)
    return arr


def compiled(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` under the framework's compiler: jax.jit, tf.function(jit_compile=True),
    torch.compile."""
    fw = require(name)
    if name == "jax":
        return fw.jit(fn)  # type: ignore[no-any-return]
    if name == "tensorflow":
        return fw.function(fn, jit_compile=True)  # type: ignore[no-any-return]
    if name == "torch":
        return fw.compile(fn, dynamic=False)  # type: ignore[no-any-return]
    return fn


def gradient(name: str, fn: Callable[..., Any], *args: Any) -> list[np.ndarray]:
    """Gradients of the scalar ``fn(*args)`` w.r.t. every arg, as NumPy arrays."""
    fw = require(name)
    if name == "torch":
        leaves = [a.clone().requires_grad_(True) for a in args]
        grads = fw.autograd.grad(fn(*leaves), leaves)
        return [to_numpy(g) for g in grads]
    if name == "tensorflow":
        leaves = [fw.Variable(a) for a in args]
        with fw.GradientTape() as tape:
            out = fn(*leaves)
        return [to_numpy(g) for g in tape.gradient(out, leaves)]
    if name == "jax":
        grads = fw.grad(fn, argnums=tuple(range(len(args))))(*args)
        return [to_numpy(g) for g in grads]
    raise ValueError(f"no autodiff in {name}")


def assert_close(
    actual: Any, expected: Any, dtype: str, what: str = "", scale: float = 1.0
) -> float:
    """Assert within the policy's tolerance for ``dtype``; return the max abs difference."""
    a, e = to_numpy(actual).astype(np.float64), np.asarray(to_numpy(expected), dtype=np.float64)
    tol = TOL["float64" if dtype == "float64" else "float32"]
    np.testing.assert_allclose(
        a, e, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale, err_msg=what
    )
    return float(np.max(np.abs(a - e))) if a.size else 0.0
