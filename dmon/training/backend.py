"""Which framework trains: Keras' backend, chosen before Keras is imported."""

from __future__ import annotations

import importlib.util
import os
import sys

from dmon.environment import quiet_tensorflow
from dmon.ops import backend_module

KERAS_BACKENDS = ("jax", "tensorflow", "torch")


class BackendError(RuntimeError):
    """A backend that is unknown, not installed, or not the one Keras already runs."""


def select_backend(backend: str | None) -> str:
    """Pick the Keras backend before Keras is imported; check that it can be used."""
    if backend is not None and backend not in KERAS_BACKENDS:
        raise BackendError(
            f"unknown backend {backend!r}; choose one of {', '.join(KERAS_BACKENDS)}"
        )
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if backend is not None and backend != current:
            raise BackendError(
                f"Keras is already running on {current!r} in this process; it cannot switch to {backend!r}"
            )
        return str(current)
    if backend is None:
        backend = os.environ.get("KERAS_BACKEND") or next(
            (b for b in KERAS_BACKENDS if importlib.util.find_spec(b) is not None), None
        )
        if backend is None:
            raise BackendError(
                "no deep-learning framework installed: pip install 'dmon[jax,cluster]' (or torch, tensorflow)"
            )
        if backend not in KERAS_BACKENDS:
            raise BackendError(
                f"KERAS_BACKEND={backend!r} is not one of {', '.join(KERAS_BACKENDS)}; "
                "set it to one of them, or pass the backend explicitly"
            )
    if importlib.util.find_spec(backend) is None:
        raise BackendError(f"backend {backend!r} is not installed: pip install 'dmon[{backend}]'")
    if importlib.util.find_spec("keras") is None:
        raise BackendError("Keras 3 is not installed: pip install 'dmon[cluster]'")
    os.environ["KERAS_BACKEND"] = backend
    quiet_tensorflow()
    return backend


def limit_threads(backend: str, n: int) -> None:
    """Compute with `n` CPU threads on `backend` (`dmon cluster --threads`). Call it before
    the framework starts: its thread pools read their size then. On a machine shared with
    other work, a framework's default pool (one thread per core) can run many times slower
    than one thread: its threads wait on each other while the cores are busy."""
    backend_module(backend, "threads").limit_threads(n)
