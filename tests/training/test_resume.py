"""Long runs survive: `dmon cluster` killed with SIGKILL and resumed ends with the same
assignments and loss history as an uninterrupted run; Ctrl-C (SIGTERM) stops after an
epoch, writes what it has (marked interrupted) and exits 130 (143); a finished run is not
replaced without `--overwrite`; a non-finite loss stops training with an
error naming the epoch and keeps the last good checkpoint.

Each run is a `dmon cluster` process with its own Keras backend (Keras fixes its backend
at import), so a backend is tested where it and keras are installed (the parity session
has them all). Every process started here is ended before the test returns.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import installed, subprocess_env

EPOCHS = 1200  # long enough on the fastest backend to be stopped midway
EVERY = 7  # does not divide EPOCHS: the last checkpoint is an off-cycle one
ARGS = ("cluster", "--epochs", str(EPOCHS), "--checkpoint-every", str(EVERY), "--quiet")


def _dmon(backend: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dmon", *ARGS, "--backend", backend, "--out", str(out), *extra],
        env=subprocess_env(KERAS_BACKEND=backend),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _checkpoint_epoch(out: Path) -> int | None:
    from dmon import checkpoint

    try:
        return checkpoint.load(out / checkpoint.FILENAME).epoch
    except checkpoint.CheckpointError:
        return None


def _start_and_signal(backend: str, out: Path, sig: int, after_epoch: int, delay: float) -> int:
    """Start a run, wait until its checkpoint reaches `after_epoch`, wait `delay` more
    seconds, send `sig`; return the exit status. The process never outlives this."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmon", *ARGS, "--backend", backend, "--out", str(out)],
        env=subprocess_env(KERAS_BACKEND=backend),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while (_checkpoint_epoch(out) or 0) < after_epoch:
            assert proc.poll() is None, f"the run ended before it could be stopped: {proc.stderr}"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        time.sleep(delay)
        assert proc.poll() is None, "the run finished before the signal"
        proc.send_signal(sig)
        proc.wait(timeout=120)
        return proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _outputs(out: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    assignments = np.loadtxt(out / "assignments.csv", delimiter=",", skiprows=1)
    history = np.loadtxt(out / "history.csv", delimiter=",", skiprows=1)
    return assignments, history, json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module", params=["jax", "torch"])
def keras_backend(request: pytest.FixtureRequest) -> str:
    if not (installed("keras") and installed(request.param)):
        pytest.skip(f"needs keras and {request.param}")
    return str(request.param)


@pytest.fixture(scope="module")
def uninterrupted(
    keras_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[np.ndarray, np.ndarray, dict]:
    out = tmp_path_factory.mktemp("whole")
    res = _dmon(keras_backend, out)
    assert res.returncode == 0, res.stderr
    return _outputs(out)


def test_sigkill_then_resume_equals_an_uninterrupted_run(
    keras_backend: str, uninterrupted, tmp_path: Path
) -> None:
    whole_assignments, whole_history, _ = uninterrupted
    out = tmp_path / "killed"
    # at a seeded random moment after the second checkpoint: maybe mid-epoch, maybe
    # mid-write of a checkpoint (the write is atomic, so either one is whole)
    delay = float(np.random.default_rng(0).uniform(0.0, 0.1))
    code = _start_and_signal(keras_backend, out, signal.SIGKILL, 2 * EVERY, delay)
    assert code == -signal.SIGKILL
    killed_at = _checkpoint_epoch(out)
    assert killed_at is not None and 2 * EVERY <= killed_at < EPOCHS
    assert not (out / "assignments.csv").exists()  # killed before the end

    res = _dmon(keras_backend, out, "--resume")
    assert res.returncode == 0, res.stderr
    assignments, history, report = _outputs(out)
    assert report["resumed_from"] == killed_at and report["epochs_completed"] == EPOCHS
    np.testing.assert_array_equal(assignments[:, 1], whole_assignments[:, 1])
    np.testing.assert_allclose(assignments[:, 2], whole_assignments[:, 2], atol=2e-6)
    np.testing.assert_allclose(history, whole_history, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_writes_what_it_has_and_resumes(
    keras_backend: str, uninterrupted, tmp_path: Path, sig: int, status: int
) -> None:
    whole_assignments, whole_history, _ = uninterrupted
    out = tmp_path / "interrupted"
    code = _start_and_signal(keras_backend, out, sig, EVERY, 0.05)
    assert code == status
    _, history, report = _outputs(out)
    done = report["epochs_completed"]
    assert report["interrupted"] is True and EVERY <= done < EPOCHS
    assert history.shape[0] == done and _checkpoint_epoch(out) == done
    np.testing.assert_allclose(history, whole_history[:done], rtol=1e-5, atol=1e-6)

    res = _dmon(keras_backend, out, "--resume")
    assert res.returncode == 0, res.stderr
    assignments, history, report = _outputs(out)
    assert report["interrupted"] is False and report["resumed_from"] == done
    np.testing.assert_array_equal(assignments[:, 1], whole_assignments[:, 1])
    np.testing.assert_allclose(history, whole_history, rtol=1e-5, atol=1e-6)


def test_non_finite_loss_stops_with_the_epoch_and_keeps_the_last_good_checkpoint(
    keras_backend: str, tmp_path: Path
) -> None:
    out = tmp_path / "diverged"
    res = _dmon(keras_backend, out, "--lr", "1e30", "--checkpoint-every", "1")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "training diverged at epoch" in lines[0] and "non-finite loss" in lines[0]
    epoch = int(lines[0].split("training diverged at epoch ")[1].split(":")[0])
    assert _checkpoint_epoch(out) == epoch - 1
    assert f"the last checkpoint (epoch {epoch - 1}) is kept" in lines[0]
    assert not (out / "assignments.csv").exists()


def test_resume_refuses_a_checkpoint_of_another_run(keras_backend: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = _dmon(keras_backend, out, "--epochs", "10", "--checkpoint-every", "0")
    assert res.returncode == 0, res.stderr
    assert _checkpoint_epoch(out) == 10  # 0: a checkpoint at the end only
    # a finished run is never replaced by accident
    before = (out / "metrics.json").read_bytes()
    res = _dmon(keras_backend, out, "--epochs", "5")
    assert res.returncode == 2 and "holds an earlier run (metrics.json" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert (out / "metrics.json").read_bytes() == before
    res = _dmon(keras_backend, out, "--epochs", "10", "--overwrite")
    assert res.returncode == 0, res.stderr
    res = _dmon(keras_backend, out, "--epochs", "20", "--seed", "1", "--resume")
    assert res.returncode == 2 and "different seed" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = _dmon(keras_backend, tmp_path / "empty", "--resume")
    assert res.returncode == 2 and "--resume: no checkpoint in" in res.stderr, res.stderr
    # a checkpoint whose weights were edited to another shape: one line, not a raw error
    import json

    with np.load(out / "checkpoint.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    first = next(k for k in arrays if k.startswith("model_"))
    arrays[first] = arrays[first][:-1]
    np.savez(out / "checkpoint.npz", **arrays)
    json.loads(str(arrays["meta"]))  # still a readable checkpoint otherwise
    res = _dmon(keras_backend, out, "--epochs", "20", "--resume")
    assert res.returncode == 2 and "has shape" in res.stderr and "start afresh" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
