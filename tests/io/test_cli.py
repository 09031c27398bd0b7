"""The `dmon` command: a short clustering run on the built-in graph under the Keras
backend of this session, and the error paths (exit code 2, one line, no stack trace)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import subprocess_env

from dmon import cli, data, metrics

KERAS_BACKENDS = ("jax", "tensorflow", "torch")


def _dmon(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = subprocess_env(**(env or {}))
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


def test_without_out_a_second_run_gets_a_folder_of_its_own(tmp_path, monkeypatch) -> None:
    keras = pytest.importorskip("keras")
    pytest.importorskip(keras.backend.backend())
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert cli.main(["cluster", "karate", "--epochs", "3", "--quiet"]) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["Zachary_s_Karate_Club", "Zachary_s_Karate_Club-2"]
    assert all((tmp_path / "runs" / r / "metrics.json").is_file() for r in runs)


def test_a_closed_pipe_ends_quietly() -> None:
    # `dmon info | head -0`: the reader has left before dmon writes
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmon", "info"],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert err == "", err


def test_a_checkpoint_folder_that_does_not_exist_is_refused_before_training(tmp_path) -> None:
    from dmon import training

    graph = data.karate_club()
    with pytest.raises(ValueError, match=r"checkpoint: the folder .*missing/ .* does not exist"):
        training.cluster(graph, 2, epochs=1, checkpoint=tmp_path / "missing" / "run.npz")


def test_features_file_of_the_wrong_size(tmp_path) -> None:
    (tmp_path / "e.csv").write_text("0,1\n1,2\n")
    np.save(tmp_path / "f.npy", np.ones((2, 4)))
    _one_line_error(
        _dmon("cluster", str(tmp_path / "e.csv"), "--features", str(tmp_path / "f.npy")),
        "node id 2 is out of range for num_nodes = 2 (N from the 2 rows of",
    )


BAD_ARGUMENTS = [
    (["--lr", "nan"], "--lr must be a finite number > 0; got nan"),
    (["--lr", "-1"], "--lr must be a finite number > 0; got -1.0"),
    (["--lr", "inf"], "--lr must be a finite number > 0; got inf"),
    (["--dropout", "1.0"], "--dropout must be a number in [0, 1); got 1.0"),
    (["--dropout", "-0.1"], "--dropout must be a number in [0, 1)"),
    (["--hidden", "0"], "--hidden must be an int >= 1; got 0"),
    (["--seed", "-1"], "--seed must be an int in [0, 2**32); got -1"),
    (["--seed", str(2**32)], "--seed must be an int in [0, 2**32)"),
    (["--epochs", "0"], "--epochs must be an int >= 1; got 0"),
    (["--clusters", "1"], "--clusters must be an int >= 2; got 1"),
    (
        ["--collapse-regularization", "nan"],
        "--collapse-regularization must be a finite number >= 0",
    ),
    (["--checkpoint-every", "-5"], "--checkpoint-every must be an int >= 0"),
    (["--resolution", "-0.5"], "--resolution must be a finite number >= 0; got -0.5"),
    (["--resolution", "nan"], "--resolution must be a finite number >= 0"),
    (["--threads", "0"], "--threads must be an int >= 1; got 0"),
    (["--clusters", "x"], "argument --clusters/-k: invalid int value: 'x'"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
]


@pytest.mark.parametrize("argv,message", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_one_line_before_any_work(capsys, tmp_path, argv, message) -> None:
    out = tmp_path / "never"
    try:
        code = cli.main(["cluster", *argv, "--out", str(out)])
    except SystemExit as exit_:  # argparse's own errors (type, unknown option)
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert not out.exists()  # nothing created before the arguments were checked


def test_argparse_errors_exit_2_with_one_line() -> None:
    for argv in (["cluster", "--clusters", "x"], ["nonsense"], ["parity", "--reps", "0"]):
        res = _dmon(*argv)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr


def test_out_must_be_writable_before_training(tmp_path) -> None:
    edges = tmp_path / "e.csv"
    edges.write_text("0,1\n1,2\n2,3\n")
    existing = tmp_path / "a_file"
    existing.write_text("x")
    if importlib.util.find_spec("keras") is None or not any(
        importlib.util.find_spec(b) for b in KERAS_BACKENDS
    ):
        pytest.skip("the output check follows the backend check")
    _one_line_error(
        _dmon("cluster", str(edges), "-k", "2", "--out", str(existing)),
        f"--out {existing}: exists and is not a folder",
    )
    _one_line_error(
        _dmon("cluster", str(edges), "-k", "2", "--out", str(existing / "sub")),
        "cannot write there",
    )


def test_a_figure_that_fails_loses_nothing(tmp_path, capsys, monkeypatch) -> None:
    keras = pytest.importorskip("keras")
    pytest.importorskip(keras.backend.backend())
    pytest.importorskip("matplotlib")
    from dmon import plots

    def broken(*args, **kwargs):
        raise RuntimeError("ARPACK error -9999:\nno Arnoldi factorization")

    monkeypatch.setattr(plots, "clusters", broken)
    out = tmp_path / "run"
    code = cli.main(["cluster", "--epochs", "5", "--out", str(out), "--quiet"])
    assert code == 0
    err = capsys.readouterr().err
    assert (
        "dmon: warning: clusters.png not drawn (RuntimeError: ARPACK error -9999: no Arnoldi factorization)"
        in err
    )
    for name in ("assignments.csv", "metrics.json", "history.csv", "loss.png"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "clusters.png").exists()
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_graph_of_self_loops_only_is_drawn(tmp_path) -> None:
    keras = pytest.importorskip("keras")
    pytest.importorskip(keras.backend.backend())
    pytest.importorskip("matplotlib")
    edges = tmp_path / "loops.csv"
    edges.write_text("0,0\n1,1\n2,2\n3,3\n")
    out = tmp_path / "run"
    code = cli.main(
        [
            "cluster",
            str(edges),
            "-k",
            "2",
            "--keep-self-loops",
            "--epochs",
            "3",
            "--out",
            str(out),
            "-q",
        ]
    )
    assert code == 0 and (out / "clusters.png").stat().st_size > 0


def test_unexpected_errors_are_one_line(monkeypatch, capsys) -> None:
    def boom(args):
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr(cli, "cmd_info", boom)
    monkeypatch.delenv("DMON_DEBUG", raising=False)
    p = cli.parser()
    monkeypatch.setattr(cli, "parser", lambda: p)
    for action in p._subparsers._group_actions[0].choices.values():  # type: ignore[union-attr]
        if action.prog.endswith("info"):
            action.set_defaults(func=boom)
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err
    assert err == "dmon: error: RuntimeError: something unforeseen\n"


def test_unknown_keras_backend_variable() -> None:
    _one_line_error(
        _dmon("cluster", env={"KERAS_BACKEND": "mxnet"}),
        "KERAS_BACKEND='mxnet' is not one of jax, tensorflow, torch",
    )


def test_resolution_is_recorded(tmp_path) -> None:
    keras = pytest.importorskip("keras")
    pytest.importorskip(keras.backend.backend())
    out = tmp_path / "run"
    assert (
        cli.main(["cluster", "--epochs", "20", "--resolution", "0.5", "--out", str(out), "-q"]) == 0
    )
    report = json.loads((out / "metrics.json").read_text())
    assert report["settings"]["resolution"] == 0.5 and report["metrics"]["resolution"] == 0.5
    rows = np.loadtxt(out / "assignments.csv", delimiter=",", skiprows=1)
    graph = data.synthetic_sbm()
    assert report["metrics"]["modularity_at_resolution"] == pytest.approx(
        metrics.modularity(graph.adjacency, rows[:, 1].astype(int), resolution=0.5), rel=1e-12
    )


def test_the_first_epoch_is_announced_and_timed_apart(tmp_path) -> None:
    """The silence before the first epoch is explained, and the steady ms/epoch leaves
    out that epoch: metrics.json's figures must add up to the training time."""
    keras = pytest.importorskip("keras")
    backend = keras.backend.backend()
    pytest.importorskip(backend)
    out = tmp_path / "run"
    res = _dmon("cluster", "--epochs", "40", "--out", str(out), "--backend", backend)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0].startswith("preparing the training step")
    assert lines[1].startswith("ready after") and lines[1].endswith("(epoch 1)")
    assert all("cluster " in ln for ln in lines[2:] if ln.startswith("epoch"))
    report = json.loads((out / "metrics.json").read_text())
    first, steady = report["first_epoch_seconds"], report["ms_per_epoch"]
    assert 0 < first < report["seconds"]
    assert first + 39 * steady / 1e3 == pytest.approx(report["seconds"], rel=1e-9)
    assert f"first epoch {first:.1f} s, then {steady:.2f} ms/epoch" in res.stdout


@pytest.mark.parametrize("backend", KERAS_BACKENDS)
def test_threads_reach_the_framework(backend) -> None:
    """`--threads N` (dmon.training.backend.limit_threads) before the framework starts:
    the framework's own count says N."""
    pytest.importorskip(backend)
    read = {
        "torch": "import torch; print(torch.get_num_threads())",
        "tensorflow": "import tensorflow as tf; "
        "print(tf.config.threading.get_intra_op_parallelism_threads())",
        "jax": "import os; print(os.environ['XLA_FLAGS'].split('intra_op_parallelism_threads=')[-1])",
    }[backend]
    code = f"from dmon.training.backend import limit_threads; limit_threads({backend!r}, 1); {read}"
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert res.returncode == 0 and res.stdout.split()[-1] == "1", res.stderr[-2000:]
