"""The `Engine` protocol: what `dmon.cluster`'s loop asks of a framework. Each backend
that trains has one, `dmon.backends.<name>.engine.Engine` (JAX: one `jit` step over a
`Mesh`; torch: eager autograd, one process or a torchrun job; TensorFlow: one
`tf.function` step on one device); the model, Adam and the data they share are
written once (`dmon.training.model`, `optimizer`, `prepared`)."""

from __future__ import annotations

import sys
from typing import Any, Protocol

import numpy as np

from dmon.ops import backend_module
from dmon.partition import Partition
from dmon.training.launch import Launch
from dmon.training.model import ModelSettings
from dmon.training.prepared import Prepared

TRAINER = "engines-1"
"""Recorded in checkpoints: a checkpoint of another trainer cannot be resumed."""


class Engine(Protocol):
    """One framework's training of the model over one process's shards."""

    rank: int
    """This process's rank (0 in a one-process run)."""
    parts: int
    """Shards (devices) over all processes."""
    processes: int
    part: Partition
    """The partition of the graph, after `setup`."""

    def __init__(self, launch: Launch | None) -> None:
        """Join the devices and processes of `launch` (`None`: one device)."""
        ...

    @classmethod
    def check_launch(cls, launch: Launch) -> None:
        """`ValueError` for a launch this framework cannot run, before any process
        group is joined."""
        ...

    @classmethod
    def configure(cls, launch: Launch) -> None:
        """Settings the framework reads when it starts, made before it is imported
        (JAX: simulated CPU devices for `launch.devices`)."""
        ...

    @classmethod
    def launched(cls) -> bool:
        """Whether this process was started as one of a sharded job by the framework's
        own launcher (torchrun), so that it shards without being told."""
        ...

    def setup(self, data: Prepared, params: list[np.ndarray], settings: ModelSettings) -> None:
        """Place the data and the initial parameters (in `PARAMS` order) and build the
        step."""
        ...

    def step(self, alpha: np.float32, epoch: int) -> Any:
        """One training step (Adam with step size `alpha`) of epoch `epoch`, from 0;
        returns `[loss, spectral_loss, cluster_loss]` as a `(3,)` array on the device,
        not read (a read makes the host wait for the device)."""
        ...

    def read(self, values: list[Any]) -> np.ndarray:
        """`(len(values), 3)` float64: the values of several steps in one read."""
        ...

    def state(self) -> list[np.ndarray]:
        """Parameters, then Adam's first and second moments, in `PARAMS` order."""
        ...

    def set_state(self, arrays: list[np.ndarray]) -> None:
        """The inverse of `state`."""
        ...

    def predict(self) -> np.ndarray:
        """`(N, k)` soft assignment without dropout, in the graph's node order."""
        ...

    def device_kind(self) -> str:
        """`"cpu"`, `"gpu"`, ...: where the steps run."""
        ...

    def local_shards(self) -> list[int]:
        """The shards whose data this process places (its devices' blocks)."""
        ...

    def predict_local(self) -> tuple[np.ndarray, np.ndarray]:
        """This process's shards' rows of `predict`: `(nodes, s)`, the graph ids of the
        rows (`(n,)` int64) and the soft assignment `(n, k)`; no `N × k` array is made."""
        ...

    def gather_over_processes(self, x: np.ndarray) -> np.ndarray:
        """`x` (the same shape and dtype on every process) of every process, stacked
        `(processes, ...)` in rank order, on every process."""
        ...


class Defaults:
    """What an engine without a launcher or start-up settings of its own inherits."""

    @classmethod
    def configure(cls, launch: Launch) -> None:
        del launch  # nothing to set before the framework starts

    @classmethod
    def launched(cls) -> bool:
        return False

    def local_shards(self) -> list[int]:
        return list(range(self.parts))  # type: ignore[attr-defined]  # one process: all

    def predict_local(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.predict()  # type: ignore[attr-defined]  # one process: every node
        return np.arange(s.shape[0]), s

    def gather_over_processes(self, x: np.ndarray) -> np.ndarray:
        return x[None]  # one process


def engine_class(backend: str) -> type[Engine]:
    """The engine of `backend` (`"jax"`, `"torch"`, `"tensorflow"`)."""
    engine: type[Engine] = backend_module(backend, "engine").Engine
    return engine


def finish() -> None:
    """End what the engines of this process started that must end cleanly (a torch
    process group: every rank meets first); a no-op where nothing did."""
    for name, module in list(sys.modules.items()):
        if name.startswith("dmon.backends.") and name.endswith(".engine"):
            end = getattr(module, "finish", None)
            if end is not None:
                end()
