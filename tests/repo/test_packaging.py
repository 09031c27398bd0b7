"""A built wheel carries backends/ as dmon.backends and imports from outside the tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools")
    out = tmp_path_factory.mktemp("wheel")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
        str(ROOT),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.fail(res.stdout + res.stderr)
    (whl,) = out.glob("dmon-*.whl")
    return whl


def test_wheel_contains_every_backend(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "dmon/backends/__init__.py" in names
    for fw in ("numpy", "torch", "tensorflow", "jax"):
        for mod in ("__init__", "ops", "hooks"):
            assert f"dmon/backends/{fw}/{mod}.py" in names
        if fw != "numpy":
            assert f"dmon/backends/{fw}/engine.py" in names
    for package in ("training", "parity", "data", "cli"):
        assert f"dmon/{package}/__init__.py" in names
    assert "dmon/layers/torch.py" in names
    assert not any(n.startswith("backends/") for n in names)


def test_a_checkout_without_install_says_how_to_install(tmp_path: Path) -> None:
    """Run from the repository root without installing, dmon names the fix in one line
    instead of a ModuleNotFoundError from deep inside the dispatch."""
    code = (
        # this environment's own install of dmon (an editable one) out of the way
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
        "if '__editable__' not in getattr(f, '__module__', '')]\n"
        f"sys.path.insert(0, {str(ROOT)!r}); import numpy as np, dmon\n"
        "try:\n"
        "    dmon.pool(np.ones((3, 2)), np.ones((3, 3)), np.ones((3, 2)))\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    res = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "pip install -e ." in res.stdout and "not installed" in res.stdout


def test_wheel_imports_backends(wheel: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = "import dmon.backends.numpy.ops, dmon.backends.jax.ops, dmon.backends.torch.ops, dmon.backends.tensorflow.ops, dmon.backends.jax.engine, dmon.training, dmon; print(dmon.__file__)"
    res = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r}); {code}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert str(tmp_path / "site") in res.stdout
