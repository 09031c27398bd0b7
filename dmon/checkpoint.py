"""Training checkpoints: the model's and the optimizer's state and the loss history of a
clustering run, in one `.npz` written atomically, so that a run killed at any moment
resumes from its last checkpoint and ends exactly as an uninterrupted run.

The file holds plain arrays and one JSON string: nothing is pickled, and every part is
checked before use. NumPy only; `dmon.training` moves the arrays in and out of its engines.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmon.files import atomic_write

FORMAT = 1
FILENAME = "checkpoint.npz"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, unreadable, or made for another run."""


@dataclass
class Checkpoint:
    """A training state after `epoch` completed epochs."""

    epoch: int
    settings: dict[str, Any]
    """What the run was started with (graph fingerprint, k, seed, backend, ...)."""
    model: list[tuple[str, np.ndarray]]
    """`(variable path, value)` of every model variable, RNG seed state included."""
    optimizer: list[tuple[str, np.ndarray]]
    """`(variable path, value)` of every optimizer variable (step count, moments)."""
    history: dict[str, list[float]] = field(default_factory=dict)
    rng: list[tuple[str, np.ndarray]] = field(default_factory=list)
    """`(generator, state)` of random generators a trainer draws from. Empty for
    `dmon.cluster`: its dropout masks are a function of the seed, the epoch and the shard
    alone, so a resumed run needs no generator state."""


def arrays_sha256(*arrays: np.ndarray) -> str:
    """SHA-256 of the arrays' dtypes, shapes and bytes (a graph a run was trained on, the
    weights a model loaded)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(path: str | Path, state: Checkpoint) -> None:
    """Write `state` to `path` atomically (a temporary file, fsync, rename)."""
    arrays: dict[str, np.ndarray] = {}
    for prefix, variables in (
        ("model", state.model),
        ("optimizer", state.optimizer),
        ("rng", state.rng),
    ):
        for i, (_, value) in enumerate(variables):
            arrays[f"{prefix}_{i}"] = np.asarray(value)
    for key, values in state.history.items():
        arrays[f"history_{key}"] = np.asarray(values, dtype=np.float64)
    meta = {
        "format": FORMAT,
        "epoch": state.epoch,
        "settings": state.settings,
        "model": [name for name, _ in state.model],
        "optimizer": [name for name, _ in state.optimizer],
        "rng": [name for name, _ in state.rng],
        "history": list(state.history),
    }
    arrays["meta"] = np.asarray(json.dumps(meta))
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]


def load(path: str | Path) -> Checkpoint:
    """Read and check a checkpoint written by `save`.

    Raises:
        CheckpointError: no file, not a checkpoint, or parts missing or inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"][()]))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a dmon checkpoint (format {FORMAT})")
            epoch = meta["epoch"]
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise CheckpointError(f"{path}: bad epoch {epoch!r}")
            model = [(str(n), z[f"model_{i}"]) for i, n in enumerate(meta["model"])]
            optimizer = [(str(n), z[f"optimizer_{i}"]) for i, n in enumerate(meta["optimizer"])]
            rng = [(str(n), z[f"rng_{i}"]) for i, n in enumerate(meta["rng"])]
            history = {str(k): z[f"history_{k}"].astype(float).tolist() for k in meta["history"]}
    except CheckpointError:
        raise
    except Exception as err:  # zip, key, JSON or pickle errors: all mean "unusable"
        raise CheckpointError(
            f"{path}: not a readable dmon checkpoint ({type(err).__name__}: {err})"
        ) from None
    if any(len(v) != epoch for v in history.values()):
        raise CheckpointError(f"{path}: the history does not cover its {epoch} epochs")
    return Checkpoint(epoch, dict(meta["settings"]), model, optimizer, history, rng)


def differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The settings (other than `epochs`) in which a checkpoint differs from a new run."""
    keys = sorted((set(saved) | set(wanted)) - {"epochs"})
    return [k for k in keys if saved.get(k) != wanted.get(k)]
