"""Weights saved with `model.save_weights` under one Keras backend load under each other
backend and give the same outputs. Each backend runs in its own subprocess (Keras fixes
its backend at import), so this needs jax, tensorflow, torch and keras installed: the
parity session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SUPPORT, installed, subprocess_env

BACKENDS = ("jax", "tensorflow", "torch")
SCRIPT = SUPPORT / "keras_transfer.py"

pytestmark = pytest.mark.skipif(
    not all(installed(m) for m in (*BACKENDS, "keras")),
    reason="needs keras, jax, tensorflow and torch (parity session)",
)


def _run(backend: str, *args: str) -> str:
    env = subprocess_env(KERAS_BACKEND=backend)
    res = subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    for backend in BACKENDS:
        _run(backend, "save", str(folder))
    return folder


@pytest.mark.parametrize("source", BACKENDS)
@pytest.mark.parametrize("target", BACKENDS)
def test_weights_transfer_across_backends(saved: Path, source: str, target: str) -> None:
    if source == target:
        pytest.skip("same backend")
    result = json.loads(_run(target, "load", str(saved), source).strip().splitlines()[-1])
    print(result)
    assert result["max_abs_diff"] <= 1e-5
