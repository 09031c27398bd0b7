"""A graph sharded by nodes gives the numbers of one device (docs/distributed.md); the
partition itself: `test_partition.py`.

- `dmon.distributed.shard_pool`: outputs and gradients against `dmon.pool` of the whole
  graph on one device, on 4 simulated JAX devices and 2 torch gloo processes (the
  processes of tests/support/distributed_worker.py).
- `dmon cluster` sharded (4 simulated JAX devices, 2 JAX processes, 2 torch processes)
  against the one-device run: losses epoch by epoch and the clusters.
- A process that dies stops the others with one error line, quickly; a sharded run
  resumes from its checkpoint exactly; Keras' `DataParallel` trains the layers on
  batches of graphs as one device does.

Every process started here is ended before its test returns.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import SUPPORT, free_port, installed, jax_job, jax_processes, subprocess_env

CLUSTER_ARGS = ("karate", "--epochs", "60", "--dropout", "0", "--seed", "3", "--quiet")


def _run(cmd: list[str], timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, env=subprocess_env(**env), capture_output=True, text=True, timeout=timeout, check=False
    )


def _torchrun(nproc: int, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        *args,
    ]


# --- partition -------------------------------------------------------------------------


def _check_pool_report(report: dict, float32: float = 1e-6, float64: float = 1e-12) -> None:
    # shards + 2 cases x 2 layouts (contiguous all-gather, METIS halo) x 2 dtypes
    assert len(report) == 9
    for case, errors in report.items():
        if case == "shards":
            continue
        tol = float32 if case.endswith("float32") else float64
        assert errors["grad_scale"] > 0.1  # the gradient compared is not trivially zero
        for key, value in errors.items():
            if key not in ("grad_scale", "padded"):
                assert value <= tol, (case, key, value)


@pytest.mark.skipif(not installed("torch"), reason="needs torch")
def test_one_shard_without_padding_rows_equals_the_whole_graph() -> None:
    # no padding rows: shard_pool skips masking them; the numbers stay dmon.pool's
    from distributed_worker import cases, torch_report

    from dmon.distributed import LocalCollectives

    report: dict = {"shards": 1}
    for name, c in cases().items():
        for layout in ("all-gather", "halo"):  # one shard: never a halo
            for dtype in ("float32", "float64"):
                key = f"{name}/{layout}/{dtype}"
                report[key] = torch_report(c, 1, 0, LocalCollectives(), dtype, layout)
                assert report[key]["padded"] is False
    _check_pool_report(report)


@pytest.mark.skipif(not installed("jax"), reason="needs jax")
def test_shard_pool_on_four_jax_devices_equals_one_device(tmp_path: Path) -> None:
    out = tmp_path / "jax.json"
    proc = _run(
        [sys.executable, str(SUPPORT / "distributed_worker.py"), "jax", str(out)],
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["shards"] == 4
    _check_pool_report(report)


@pytest.mark.skipif(not installed("torch"), reason="needs torch")
def test_shard_pool_on_two_torch_processes_equals_one_device(tmp_path: Path) -> None:
    out = tmp_path / "torch.json"
    proc = _run(_torchrun(2, str(SUPPORT / "distributed_worker.py"), "torch", str(out)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(2):
        report = json.loads(Path(f"{out}.{rank}").read_text())
        assert report["shards"] == 2
        _check_pool_report(report)
        for case, errors in report.items():
            if case != "shards":
                assert errors["padding_grad"] == 0.0
                assert errors["padded"]  # 23 nodes in 2 blocks: the masked path


# --- dmon cluster sharded against one device -----------------------------------------------

needs_keras = pytest.mark.skipif(not installed("keras"), reason="dmon cluster needs keras")


def _dmon_cluster(*args: str) -> list[str]:
    return [sys.executable, "-m", "dmon", "cluster", *CLUSTER_ARGS, *args]


def _history(out: Path) -> np.ndarray:
    with open(out / "history.csv") as fh:
        rows = list(csv.reader(fh))[1:]
    return np.array([[float(v) for v in row[1:]] for row in rows])


def _assignments(out: Path) -> np.ndarray:
    with open(out / "assignments.csv") as fh:
        return np.array([int(row[1]) for row in list(csv.reader(fh))[1:]])


@pytest.fixture(scope="module")
def one_device(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The one-device runs the sharded ones must follow, per backend (Keras fixes the
    initial weights per backend)."""
    runs = {}
    for backend in ("jax", "torch"):
        if not (installed(backend) and installed("keras")):
            continue
        out = tmp_path_factory.mktemp(f"one-{backend}")
        proc = _run(_dmon_cluster("--backend", backend, "--out", str(out)))
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[backend] = out
    return runs


SPLITS = {"all-gather": ("--partitioner", "contiguous", "--exchange", "all-gather"),
          "halo": ("--partitioner", "metis", "--exchange", "halo")}  # fmt: skip
"""Both ways of sharding: contiguous blocks that all-gather `S` (and Cora's `X W`), and
METIS's blocks that exchange only the halo rows (karate's identity features are sparse,
so the halo's backward runs too)."""


def _check_follows(
    one: Path, sharded: Path, devices: int, processes: int, backend: str, exchange: str
) -> None:
    a, b = _history(one), _history(sharded)
    assert a.shape == b.shape == (60, 3)
    assert np.abs(a - b).max() <= 1e-4
    assert a[-1, 0] < a[0, 0] - 0.05  # it trained: the comparison is not of two constants
    assert (_assignments(one) == _assignments(sharded)).mean() >= 0.99
    meta = json.loads((sharded / "metrics.json").read_text())["distributed"]
    assert meta["backend"] == backend
    assert meta["devices"] == devices and meta["processes"] == processes
    assert sum(meta["nodes_per_shard"]) == 34 and len(meta["nodes_per_shard"]) == devices
    assert meta["exchange"] == exchange and len(meta["halo_per_shard"]) == devices
    assert meta["partitioner"] == ("metis" if exchange == "halo" else "contiguous")
    assert 0 < meta["edge_cut"] <= 156 and meta["bytes_per_step"] > 0  # karate: 156 stored


@needs_keras
@pytest.mark.skipif(not installed("jax"), reason="needs jax")
@pytest.mark.parametrize("exchange", SPLITS)
def test_cluster_on_four_simulated_jax_devices_follows_one_device(
    one_device: dict[str, Path], tmp_path: Path, exchange: str
) -> None:
    args = ("--backend", "jax", "--devices", "4", *SPLITS[exchange], "--out", str(tmp_path))
    proc = _run(_dmon_cluster(*args))
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_follows(one_device["jax"], tmp_path, 4, 1, "jax", exchange)


@needs_keras
@pytest.mark.skipif(not installed("jax"), reason="needs jax")
def test_cluster_on_two_jax_processes_follows_one_device(
    one_device: dict[str, Path], tmp_path: Path
) -> None:
    results = jax_job(*CLUSTER_ARGS, *SPLITS["halo"], "--out", str(tmp_path), "--timeout", "120")
    assert "outputs in" in results[0][0] and "outputs in" not in results[1][0]
    _check_follows(one_device["jax"], tmp_path, 2, 2, "jax", "halo")


@needs_keras
@pytest.mark.skipif(not installed("torch"), reason="needs torch")
@pytest.mark.parametrize("exchange", SPLITS)
def test_cluster_on_two_torch_processes_follows_one_device(
    one_device: dict[str, Path], tmp_path: Path, exchange: str
) -> None:
    args = (*CLUSTER_ARGS, *SPLITS[exchange], "--backend", "torch", "--out", str(tmp_path))
    proc = _run(_torchrun(2, "-m", "dmon", "cluster", *args))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("outputs in") == 1  # process 0 alone writes and reports
    _check_follows(one_device["torch"], tmp_path, 2, 2, "torch", exchange)


@needs_keras
@pytest.mark.skipif(not installed("jax"), reason="needs jax")
def test_sharded_run_resumes_exactly(tmp_path: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "dmon",
        "cluster",
        "karate",
        "--backend",
        "jax",
        "--devices",
        "2",
        "--dropout",
        "0.3",
        "--quiet",
        "--checkpoint-every",
        "10",
    ]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert _run([*args, "--epochs", "40", "--out", str(whole)]).returncode == 0
    assert _run([*args, "--epochs", "20", "--out", str(part)]).returncode == 0
    proc = _run([*args, "--epochs", "40", "--out", str(part), "--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(_history(part), _history(whole), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(_assignments(part), _assignments(whole))
    assert json.loads((part / "metrics.json").read_text())["resumed_from"] == 20


# --- faults ------------------------------------------------------------------------------


def _wait_for(path: Path, procs: list[subprocess.Popen], limit: float = 300) -> None:
    start = time.monotonic()
    while not path.exists():
        assert all(p.poll() is None for p in procs), "a process ended before training"
        assert time.monotonic() - start < limit, "no checkpoint written"
        time.sleep(0.2)


def _endless_run(out: Path, *extra: str) -> list[str]:
    """`dmon cluster` arguments for a run that lasts until it is killed, writing a
    checkpoint every epoch to `out`."""
    return [
        "karate", *extra, "--epochs", "1000000", "--checkpoint-every", "1", "--quiet",
        "--out", str(out), "--timeout", "30",
    ]  # fmt: skip


@needs_keras
@pytest.mark.skipif(not installed("jax"), reason="needs jax")
def test_a_jax_process_that_dies_stops_the_other_with_one_line(tmp_path: Path) -> None:
    procs = jax_processes(*_endless_run(tmp_path))
    try:
        _wait_for(tmp_path / "checkpoint.npz", procs)
        procs[1].send_signal(signal.SIGKILL)
        start = time.monotonic()
        _, err = procs[0].communicate(timeout=120)
        elapsed = time.monotonic() - start
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
    assert procs[0].returncode == 2
    assert elapsed < 60
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "another process of the job has probably ended" in lines[0]
    from dmon import checkpoint

    assert checkpoint.load(tmp_path / "checkpoint.npz").epoch >= 1  # kept for --resume


@needs_keras
@pytest.mark.skipif(not installed("torch"), reason="needs torch")
@pytest.mark.parametrize("agent_first", [False, True])
def test_a_torch_process_that_dies_ends_the_job(tmp_path: Path, agent_first: bool) -> None:
    """torchrun's agent answers a dead worker with SIGTERM to the others, often before
    their next collective fails (`agent_first`): both ways end with the one line."""
    job = subprocess.Popen(
        _torchrun(2, "-m", "dmon", "cluster", *_endless_run(tmp_path, "--backend", "torch")),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(tmp_path / "checkpoint.npz", [job])
        survivor = _torch_worker(job.pid, rank=0)
        os.kill(_torch_worker(job.pid, rank=1), signal.SIGKILL)
        if agent_first:
            os.kill(survivor, signal.SIGTERM)
        start = time.monotonic()
        _, err = job.communicate(timeout=120)
        elapsed = time.monotonic() - start
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
    assert job.returncode != 0 and elapsed < 60
    ours = [line for line in err.splitlines() if line.startswith("dmon: error:")]
    assert ours and "another process of the job has probably ended" in ours[0]


def _torch_worker(agent: int, rank: int) -> int:
    """The pid of torchrun `agent`'s worker of `rank` (from /proc: its environment)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == agent and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no worker of rank {rank} under torchrun pid {agent}")


# --- Keras DataParallel over batches of graphs --------------------------------------------


@pytest.mark.skipif(not (installed("jax") and installed("keras")), reason="needs jax and keras")
def test_keras_layers_train_under_data_parallel_as_on_one_device(tmp_path: Path) -> None:
    out = tmp_path / "dp.json"
    proc = _run(
        [sys.executable, str(SUPPORT / "keras_data_parallel.py"), str(out)],
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        KERAS_BACKEND="jax",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["devices"] == 4 and report["batch_sharded"]
    assert report["losses_moved"] > 1e-3  # training changed the loss
    assert report["max_loss_diff"] <= 1e-5
    assert report["max_weight_diff"] <= 1e-5
