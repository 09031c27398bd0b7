"""A launch that cannot work ends in one line and exit 2 before any work: malformed
settings, more shards than nodes, and (`dmon.training.rendezvous`) a peer or coordinator
that never comes, which JAX would answer with a C++ abort. Every process started here is
ended before its test returns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port, installed, subprocess_env

from dmon.training.rendezvous import RendezvousError, meet

needs_keras = pytest.mark.skipif(not installed("keras"), reason="dmon cluster needs keras")


def _run(cmd: list[str], timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, env=subprocess_env(**env), capture_output=True, text=True, timeout=timeout, check=False
    )


def _jax_job(coordinator: str, process_id: int = 0) -> list[str]:
    return ["--backend", "jax", "--coordinator", coordinator, "--num-processes", "2",
            "--process-id", str(process_id)]  # fmt: skip


@needs_keras
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--devices", "0"], "--devices must be an int >= 1"),
        (["--backend", "tensorflow", "--devices", "2"], "sharded training runs on jax or torch"),
        (
            ["--backend", "jax", "--coordinator", "127.0.0.1:1"],
            "need --coordinator, --num-processes and --process-id",
        ),
        (
            [
                "--backend",
                "jax",
                "--coordinator",
                "nohost",
                "--num-processes",
                "2",
                "--process-id",
                "0",
            ],
            "HOST:PORT",
        ),
        (
            [
                "--backend",
                "jax",
                "--coordinator",
                "127.0.0.1:1",
                "--num-processes",
                "2",
                "--process-id",
                "2",
            ],
            "--process-id must be in [0, --num-processes = 2)",
        ),
        (["--backend", "torch", "--devices", "2"], "torch shards over processes"),
        (["--backend", "jax", "--devices", "2", "--timeout", "0"], "--timeout must be"),
        (_jax_job("http://127.0.0.1:1"), "--coordinator must be HOST:PORT"),
        (_jax_job("127.0.0.1:1:5"), "--coordinator must be HOST:PORT"),
        (_jax_job("[::1]:70000"), "--coordinator must be HOST:PORT"),
        (["--backend", "jax", "--devices", "100000"], "--devices: 100000 shards for a graph of 34"),
        (
            ["--backend", "jax", "--exchange", "halo"],
            "--partitioner and --exchange split a sharded",
        ),
    ],
)
def test_cli_refuses_a_launch_that_cannot_work(
    args: list[str], message: str, tmp_path: Path
) -> None:
    backend = args[args.index("--backend") + 1] if "--backend" in args else "jax"
    if not installed(backend):
        pytest.skip(f"needs {backend}")
    proc = _run([sys.executable, "-m", "dmon", "cluster", "karate", *args, "--out", str(tmp_path)])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


@needs_keras
@pytest.mark.parametrize(
    ("process_id", "message"),
    [
        (0, "process(es) 1 of 2 did not arrive at 127.0.0.1:{port} within 3 s"),
        (1, "process 1: the coordinator (process 0) at 127.0.0.1:{port} did not answer within 3 s"),
    ],
)
def test_a_peer_that_never_comes_is_one_line_not_an_abort(
    process_id: int, message: str, tmp_path: Path
) -> None:
    if not installed("jax"):
        pytest.skip("needs jax")
    port = free_port()
    args = [*_jax_job(f"127.0.0.1:{port}", process_id), "--timeout", "3"]
    proc = _run([sys.executable, "-m", "dmon", "cluster", "karate", *args, "--out", str(tmp_path)])
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("dmon: error")]
    assert errors == [f"dmon: error: {message.format(port=port)}; " + errors[0].split("; ", 1)[1]]
    assert "Check failure" not in proc.stderr and "Traceback" not in proc.stderr


def test_processes_meet_and_a_stranger_is_ignored() -> None:
    """Three processes meet (threads here); a client that is not one of them, and one
    claiming an id twice, do not count."""
    import socket
    import threading
    import time

    port = free_port()
    where = f"127.0.0.1:{port}"
    errors: list[BaseException] = []

    def run(rank: int, delay: float) -> None:
        time.sleep(delay)
        try:
            meet(where, 3, rank, timeout=20)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(r, d)) for r, d in ((0, 0), (2, 0.3), (1, 1.0))]
    for t in threads:
        t.start()
    time.sleep(0.5)
    for junk in (b"hello", b"2"):  # a stranger, and process 2 again
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(junk)
        except OSError:
            pass
    for t in threads:
        t.join(30)
    assert not errors and not any(t.is_alive() for t in threads)
    with pytest.raises(RendezvousError, match=r"process\(es\) 1, 2 of 3 did not arrive"):
        meet(f"127.0.0.1:{free_port()}", 3, 0, timeout=0.5)
