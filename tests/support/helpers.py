"""Test helpers: moving NumPy data into each framework, compiling, differentiating, and the
one tolerance policy of the suite."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
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


def hooks(name: str) -> Any:
    """`dmon.backends.<name>.hooks`, after `require(name)`: the framework's side of the
    suite (conversion, compiler, gradients)."""
    from dmon.ops import backend_module

    require(name)
    return backend_module(name, "hooks")


def to_backend(name: str, a: np.ndarray, dtype: str | None = None) -> Any:
    """``a`` as an array of backend ``name`` (with ``dtype``, default ``a``'s own)."""
    if dtype is not None and dtype != "bfloat16":
        a = a.astype(dtype)
    return hooks(name).to_array(a, dtype, TORCH_DEVICE if name == "torch" else None)


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
    return hooks(name).compile(fn)  # type: ignore[no-any-return]


def gradient(name: str, fn: Callable[..., Any], *args: Any) -> list[np.ndarray]:
    """Gradients of the scalar ``fn(*args)`` w.r.t. every arg, as NumPy arrays."""
    return [to_numpy(g) for g in hooks(name).gradient(fn, *args)]


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


# --- graphs and processes, shared by the test modules -------------------------------------


def edges(a: np.ndarray, dtype: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`(2, E)` int64 `edge_index` and `(E,)` weights of the non-zeros of a dense `a`,
    rows sorted (weights in `dtype`, default `a`'s own)."""
    ei = np.stack(np.nonzero(a)).astype(np.int64)
    w = a[ei[0], ei[1]]
    return ei, w if dtype is None else w.astype(dtype)


def sparse_graph(backend: str, a: np.ndarray, dtype: str = "float64", **kw: Any) -> Any:
    """A `dmon.SparseGraph` of backend `backend`'s arrays with the non-zeros of `a`."""
    import dmon

    ei, w = edges(a)
    return dmon.SparseGraph(to_backend(backend, ei), to_backend(backend, w, dtype), **kw)


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child (a `dmon` command, a worker script):
    TensorFlow quiet, hash seed fixed, plus `extra` (e.g. `KERAS_BACKEND`)."""
    from dmon.environment import TENSORFLOW_QUIET

    return {**os.environ, **TENSORFLOW_QUIET, "PYTHONHASHSEED": "0", **extra}


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pool_objective(x: Any, adj: Any, logits: Any) -> Any:
    """A scalar that weighs every output of `dmon.pool(x, adj, logits)` (4 clusters),
    for comparing gradients of one input form against another."""
    import dmon

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


SUPPORT = Path(__file__).parent
"""This folder: the worker scripts that tests run in their own processes."""


def importable_module(folder: Path, name: str, source: str) -> str:
    """`source` as module `name` in `folder`, importable here and by subprocesses (which
    get this `sys.path`): users' custom layers for the parity harness. Returns `folder`."""
    (folder / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    return str(folder)


def jax_processes(*args: str) -> list[subprocess.Popen]:
    """Two `dmon cluster --backend jax` processes of one job on localhost, each in its own
    session (so that a test can kill its whole group), reading pipes as text."""
    port = free_port()
    job = ("--backend", "jax", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2")
    return [
        subprocess.Popen(
            [sys.executable, "-m", "dmon", "cluster", *args, *job, "--process-id", str(i)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for i in range(2)
    ]


def jax_job(*args: str) -> list[tuple[str, str]]:
    """`jax_processes(*args)` run to their end (killed if they outlive 600 s); asserts
    that both succeeded and returns their (stdout, stderr)."""
    procs = jax_processes(*args)
    try:
        results = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]
    return results
