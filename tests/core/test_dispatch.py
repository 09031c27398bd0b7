"""Dispatch by input type: no framework at import, cached choice, mixed inputs refused."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import installed, to_backend

import dmon
from dmon import ops as dmon_ops


def test_import_dmon_imports_no_framework() -> None:
    code = (
        "import sys, dmon, dmon.layers, dmon.backends.torch, dmon.backends.jax, dmon.backends.tensorflow;"
        "bad = [m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules];"
        "assert not bad, bad; print(dmon.available_backends())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "numpy" in out.stdout


def test_numpy_only_process_needs_no_framework() -> None:
    code = (
        "import sys, numpy as np, dmon; o = dmon.pool(np.ones((3, 2)), np.ones((3, 3)), np.zeros((3, 2)));"
        "assert dmon.get_backend(o.s).name == 'numpy';"
        "assert not [m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules]"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_get_backend_by_type_is_cached(backend: str) -> None:
    arr = to_backend(backend, np.zeros((2, 2)))
    ops = dmon.get_backend(arr)
    assert ops.name == backend
    assert dmon_ops._type_cache[type(arr)] is ops
    assert dmon.get_backend(to_backend(backend, np.ones(3))) is ops


def test_available_backends_lists_installed() -> None:
    names = dmon.available_backends()
    assert "numpy" in names
    for fw in ("torch", "tensorflow", "jax"):
        assert (fw in names) == installed(fw)


@pytest.mark.parametrize("fw", ["torch", "tensorflow", "jax"])
def test_mixed_frameworks_raise_type_error(fw: str) -> None:
    pytest.importorskip(fw)
    x = np.ones((1, 3, 2))
    adj = to_backend(fw, np.ones((1, 3, 3)))
    with pytest.raises(
        TypeError, match=r"different frameworks: `x` is numpy.ndarray but `adj` is \S+"
    ):
        dmon.pool(x, adj, np.zeros((1, 3, 2)))


def test_backend_override_with_mixed_inputs() -> None:
    torch = pytest.importorskip("torch")
    out = dmon.pool(
        np.ones((1, 3, 2)),
        torch.ones(1, 3, 3, dtype=torch.float64),
        np.zeros((1, 3, 2)),
        backend="numpy",
    )
    assert isinstance(out.s, np.ndarray)


@pytest.mark.parametrize("call", ["pool", "sparse", "backend"])
def test_torch_inputs_on_two_devices_raise_value_error(call: str) -> None:
    """torch never moves a tensor between devices; dmon names the two arguments first
    (the "meta" device stands in for a GPU here)."""
    torch = pytest.importorskip("torch")
    x, logits = torch.zeros(5, 3), torch.zeros(5, 2)
    if call == "sparse":
        adj = dmon.SparseGraph(torch.tensor([[0, 1], [1, 0]], device="meta"))
        culprit = "adj.edge_index"
    else:
        adj, culprit = torch.zeros(5, 5, device="meta"), "adj"
    kwargs = {"backend": "torch"} if call == "backend" else {}
    with pytest.raises(ValueError, match=rf"`x` is on cpu but `{culprit}` is on meta"):
        dmon.pool(x, adj, logits, **kwargs)


def test_only_torch_names_a_device(backend: str) -> None:
    """`ops.device` is what the device check reads: `None` where the framework moves
    arrays between devices itself, so that only torch inputs are held to one device."""
    ops = dmon.get_backend(to_backend(backend, np.zeros(3)))
    got = ops.device(to_backend(backend, np.zeros(3)))
    assert got == ("cpu" if backend == "torch" else None)
