"""Checkpoint files and atomic writes, without a framework: a round trip keeps every
array bit for bit, a damaged or foreign file is a `CheckpointError` naming it, and a
write that fails leaves the previous file whole."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dmon import checkpoint, files


def _state(epoch: int = 3) -> checkpoint.Checkpoint:
    rng = np.random.default_rng(0)
    return checkpoint.Checkpoint(
        epoch=epoch,
        settings={"graph": "abc", "k": 4, "seed": 0, "epochs": 10},
        model=[
            ("gcn/kernel", rng.normal(size=(3, 2)).astype(np.float32)),
            ("seed_generator/state", np.array([7, 9], np.uint32)),
        ],
        optimizer=[("adam/iteration", np.array(3, np.int64))],
        history={"loss": [0.5, 0.25, 0.125]},
        rng=[("torch", rng.integers(0, 255, 16).astype(np.uint8))],
    )


def test_round_trip_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    state = _state()
    checkpoint.save(path, state)
    back = checkpoint.load(path)
    assert (back.epoch, back.settings, back.history) == (state.epoch, state.settings, state.history)
    for got, want in (
        (back.model, state.model),
        (back.optimizer, state.optimizer),
        (back.rng, state.rng),
    ):
        assert [n for n, _ in got] == [n for n, _ in want]
        for (_, g), (_, w) in zip(got, want, strict=True):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
    assert not [p for p in tmp_path.iterdir() if p.name != "c.npz"]  # no temporary left


def _damaged(tmp_path: Path, how: str) -> Path:
    path = tmp_path / "c.npz"
    checkpoint.save(path, _state())
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif how == "text":
        path.write_text("hello")
    elif how in ("pickled meta", "wrong format", "short history", "bad epoch", "missing array"):
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays["meta"]))
        if how == "pickled meta":
            arrays["meta"] = np.array([meta], dtype=object)
        elif how == "wrong format":
            meta["format"] = 99
        elif how == "short history":
            meta["epoch"] = 5
        elif how == "bad epoch":
            meta["epoch"] = -1
        else:
            del arrays["model_1"]
        if how != "pickled meta":
            arrays["meta"] = np.asarray(json.dumps(meta))
        np.savez(path, **arrays, allow_pickle=True)
    return path


@pytest.mark.parametrize(
    "how,pattern",
    [
        ("truncated", r"not a readable dmon checkpoint"),
        ("text", r"not a readable dmon checkpoint"),
        ("pickled meta", r"not a readable dmon checkpoint .*allow_pickle"),
        ("wrong format", r"not a dmon checkpoint \(format 1\)"),
        ("short history", r"the history does not cover its 5 epochs"),
        ("bad epoch", r"bad epoch -1"),
        ("missing array", r"not a readable dmon checkpoint \(KeyError"),
    ],
)
def test_damaged_checkpoints_are_refused(tmp_path: Path, how: str, pattern: str) -> None:
    path = _damaged(tmp_path, how)
    with pytest.raises(checkpoint.CheckpointError, match=rf"{path}: {pattern}"):
        checkpoint.load(path)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(checkpoint.CheckpointError, match=r"no checkpoint to resume from"):
        checkpoint.load(tmp_path / "none.npz")


def test_differences_ignore_epochs() -> None:
    assert checkpoint.differences({"k": 4, "epochs": 10}, {"k": 4, "epochs": 20}) == []
    assert checkpoint.differences({"k": 4, "seed": 0}, {"k": 5, "seed": 0, "lr": 1}) == ["k", "lr"]


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), files.atomic_write(path) as fh:
        fh.write("half of the new")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with files.atomic_write(path) as fh:
        fh.write("new")
    assert path.read_text() == "new"
    assert zipfile.is_zipfile(path) is False


def test_writable_folder_checks(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=r"exists and is not a folder"):
        files.check_writable_folder(tmp_path / "f")
    with pytest.raises(ValueError, match=r"cannot write there"):
        files.check_writable_folder(tmp_path / "f" / "sub")
    assert files.check_writable_folder(tmp_path / "a" / "b").is_dir()
