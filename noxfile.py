"""nox sessions. Each framework's tests run in a venv holding only that framework, which
proves that a JAX user does not need torch (and so on); ``parity`` holds them all plus
torch_geometric for the cross-framework and PyG tests.

    nox                      # every session below
    nox -s tests-jax         # one of them
    nox -r -s parity         # reuse the venv (seconds instead of a minute)
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable

import nox

nox.options.sessions = [
    "lint",
    "tests-numpy",
    "tests-torch",
    "tests-tensorflow",
    "tests-jax",
    "keras-jax",
    "keras-tensorflow",
    "keras-torch",
    "parity",
    "docs",
    "demo",
]
nox.options.error_on_missing_interpreters = True

# torch is pinned: a CPU wheel of exactly this release is what test machines carry; an
# unpinned torch resolves to a multi-GB CUDA build.
TORCH = "torch==2.13.0"
TENSORFLOW = "tensorflow-cpu>=2.16"
JAX = "jax>=0.7.1"
FRAMEWORKS = {"numpy": [], "torch": [TORCH], "tensorflow": [TENSORFLOW], "jax": [JAX]}


def _frees_disk(fn: Callable[[nox.Session], None]) -> Callable[[nox.Session], None]:
    """Under CI (``CI`` set), delete the session's venv when it ends, pass or fail.

    The eleven venvs hold about 10 GB together (torch, TensorFlow and JAX several times
    over); deleting each once it has run keeps the peak at the largest one, and a CI run
    on a machine with little disk left failed with ENOSPC before this. Locally the venvs
    stay, so ``nox -r`` can reuse them.
    """

    @functools.wraps(fn)
    def wrapper(session: nox.Session) -> None:
        try:
            fn(session)
        finally:
            location = getattr(session.virtualenv, "location", None)
            if os.environ.get("CI") and location and os.path.isdir(location):
                shutil.rmtree(location, ignore_errors=True)

    return wrapper


ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "PYTHONHASHSEED": "0"}


def _pytest(session: nox.Session, *extra: str) -> None:
    session.run("pytest", "-q", *session.posargs, *extra, env=ENV)


def _framework_session(framework: str) -> None:
    def session_fn(session: nox.Session) -> None:
        session.install(*FRAMEWORKS[framework], "-e", ".[test]", "setuptools")
        _pytest(session)

    session_fn.__doc__ = f"The suite with only {framework} installed; the others' tests skip."
    nox.session(name=f"tests-{framework}", tags=["tests"])(_frees_disk(session_fn))


for _fw in FRAMEWORKS:
    _framework_session(_fw)


def _keras_session(backend: str) -> None:
    def session_fn(session: nox.Session) -> None:
        session.install(*FRAMEWORKS[backend], "-e", ".[test,keras]", "setuptools")
        env = {**ENV, "KERAS_BACKEND": backend}
        session.run(
            "pytest",
            "-q",
            "tests/layers/test_keras.py",
            "tests/layers/test_keras_sparse.py",
            "tests/sparse/test_adjacency.py",
            *session.posargs,
            env=env,
        )

    session_fn.__doc__ = (
        f"The Keras layers under KERAS_BACKEND={backend}, with only {backend} installed."
    )
    nox.session(name=f"keras-{backend}", tags=["keras"])(_frees_disk(session_fn))


for _fw in ("jax", "tensorflow", "torch"):
    _keras_session(_fw)


@nox.session
@_frees_disk
def parity(session: nox.Session) -> None:
    """Every framework, Keras and torch_geometric in one venv: cross-backend, Keras
    weight-transfer and PyG tests (Keras in-process tests run on JAX here)."""
    session.install(TORCH)  # first, so nothing below pulls another torch
    session.install(TENSORFLOW, JAX, "torch_geometric", "-e", ".[test,cluster]", "setuptools")
    session.run("pytest", "-q", *session.posargs, env={**ENV, "KERAS_BACKEND": "jax"})


@nox.session
@_frees_disk
def lint(session: nox.Session) -> None:
    """ruff and mypy."""
    session.install("ruff", "mypy", "numpy", "nox", "pytest")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
@_frees_disk
def docs(session: nox.Session) -> None:
    """The mkdocs site, with warnings as errors."""
    session.install("-e", ".[docs]")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", os.path.join(session.create_tmp(), "site")
    )


@nox.session
@_frees_disk
def demo(session: nox.Session) -> None:
    """The README's main job, `dmon cluster` on the embedded graph, then `dmon parity`."""
    session.install(JAX, "-e", ".[cluster]")
    out = os.path.join(session.create_tmp(), "run")  # a reused venv keeps its last run
    session.run("dmon", "cluster", "--out", out, "--overwrite", env=ENV)
    session.run("dmon", "parity", env=ENV)


@nox.session
def bench(session: nox.Session) -> None:
    """Not run by default: the benchmark against torch_geometric (writes docs/benchmarks.md)."""
    session.install(TORCH)
    session.install("torch_geometric", "-e", ".")
    session.run("python", "benchmarks/bench_dense.py", *session.posargs)
