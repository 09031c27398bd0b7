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
    for mod in ("numpy", "torch", "tensorflow", "jax", "__init__"):
        assert f"dmon/backends/{mod}.py" in names
    assert "dmon/layers/torch.py" in names
    assert not any(n.startswith("backends/") for n in names)


def test_wheel_imports_backends(wheel: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = "import dmon.backends.numpy, dmon.backends.jax, dmon.backends.torch, dmon.backends.tensorflow, dmon; print(dmon.__file__)"
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
