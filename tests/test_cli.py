"""The `dmon` command: a short clustering run on the built-in graph under the Keras
backend of this session, and the error paths (exit code 2, one line, no stack trace)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dmon import cli, data, metrics

KERAS_BACKENDS = ("jax", "tensorflow", "torch")


def _dmon(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dmon", *args],
        capture_output=True,
        text=True,
        env=full_env,
        check=False,
    )


def _one_line_error(res: subprocess.CompletedProcess, pattern: str) -> None:
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert pattern in lines[0], lines[0]


def test_cluster_built_in_graph(tmp_path) -> None:
    keras = pytest.importorskip("keras")
    pytest.importorskip(keras.backend.backend())
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    code = cli.main(["cluster", "--epochs", "150", "--out", str(out), "--quiet"])
    assert code == 0
    for name in ("assignments.csv", "metrics.json", "history.csv", "loss.png", "clusters.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "metrics.json").read_text())
    assert report["settings"]["backend"] == keras.backend.backend()
    graph = data.synthetic_sbm()
    rows = np.loadtxt(out / "assignments.csv", delimiter=",", skiprows=1)
    assert rows.shape == (graph.num_nodes, 3) and np.all((rows[:, 2] > 0) & (rows[:, 2] <= 1))
    q = metrics.modularity(graph.adjacency, rows[:, 1].astype(int))
    q_random = max(
        metrics.modularity(
            graph.adjacency, np.random.default_rng(s).integers(0, 4, graph.num_nodes)
        )
        for s in range(5)
    )
    assert q == pytest.approx(report["metrics"]["modularity"], rel=1e-9)
    assert q > q_random + 0.3, (q, q_random)
    history = np.loadtxt(out / "history.csv", delimiter=",", skiprows=1)
    assert history.shape == (150, 4) and history[-10:, 1].mean() < history[:10, 1].mean()


def test_missing_file() -> None:
    _one_line_error(_dmon("cluster", "no/such/graph.npz"), "no/such/graph.npz: no such file")


def test_bad_format(tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,heavy\n")
    _one_line_error(_dmon("cluster", str(bad)), "weight 'heavy' is not a number")


def test_too_many_clusters(tmp_path) -> None:
    if importlib.util.find_spec("keras") is None or not any(
        importlib.util.find_spec(b) for b in KERAS_BACKENDS
    ):
        pytest.skip("needs keras and a framework (the clusters check follows the backend check)")
    edges = tmp_path / "tiny.csv"
    edges.write_text("0,1\n1,2\n")
    _one_line_error(
        _dmon("cluster", str(edges), "--clusters", "5"),
        "--clusters 5 must be between 2 and the number of nodes (3)",
    )


def test_unknown_backend() -> None:
    res = _dmon("cluster", "--backend", "mxnet")
    assert res.returncode == 2 and "invalid choice: 'mxnet'" in res.stderr


def test_backend_not_installed() -> None:
    missing = [b for b in KERAS_BACKENDS if importlib.util.find_spec(b) is None]
    if not missing:
        pytest.skip("every backend is installed here")
    _one_line_error(
        _dmon("cluster", "--backend", missing[0], env={"KERAS_BACKEND": ""}),
        f"pip install 'dmon[{missing[0]}]'",
    )


def test_info_and_parity() -> None:
    res = _dmon("info")
    assert res.returncode == 0 and "backends: " in res.stdout and "numpy" in res.stdout
    res = _dmon("parity", "--reps", "1")
    assert res.returncode == 0, res.stderr
    numpy_rows = [ln for ln in res.stdout.splitlines() if ln.startswith("numpy      float64")]
    assert numpy_rows and "0.0e+00" in numpy_rows[0]


def test_features_file_of_the_wrong_size(tmp_path) -> None:
    (tmp_path / "e.csv").write_text("0,1\n1,2\n")
    np.save(tmp_path / "f.npy", np.ones((2, 4)))
    _one_line_error(
        _dmon("cluster", str(tmp_path / "e.csv"), "--features", str(tmp_path / "f.npy")),
        "features must have shape (N, F) with N = 3 nodes",
    )
