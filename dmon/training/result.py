"""What `dmon.cluster` returns, and how it fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class TrainingDiverged(RuntimeError):
    """Training met a non-finite loss; nothing after the last good epoch is kept."""

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch


@dataclass
class ClusterResult:
    """What `cluster` returns."""

    assignments: np.ndarray
    """`(N,)` hard cluster of every node (argmax of `s`)."""
    probabilities: np.ndarray
    """`(N, k)` soft assignment `s` (inference mode, no dropout). From a shard folder
    trained by several processes: this process's nodes' rows only, `nodes` says which."""
    metrics: dict[str, Any]
    """modularity, conductance, average_conductance, coverage, cluster_sizes, and nmi,
    precision, recall, f1 when the graph has labels."""
    history: dict[str, list[float]] = field(default_factory=dict)
    """Per epoch: `loss` (weighted total), `spectral_loss`, `cluster_loss`."""
    seconds: float = 0.0
    """Training time, first epoch included."""
    backend: str = ""
    epochs_completed: int = 0
    """Epochs behind the result (fewer than asked when interrupted)."""
    interrupted: bool = False
    """Stopped early by Ctrl-C (SIGINT) or SIGTERM, after a complete epoch."""
    stopped_by: str | None = None
    """`"SIGINT"` or `"SIGTERM"` when `interrupted`."""
    resumed_from: int | None = None
    """The checkpoint's epoch when the run was resumed, else `None`."""
    first_epoch_seconds: float = 0.0
    """The first epoch of this run (of this process, when resumed): it compiles the step."""
    distributed: dict[str, Any] | None = None
    """For a sharded run (`launch`): `backend`, `processes`, `devices`,
    `nodes_per_shard`; `None` for a one-device run."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The run's settings (`k`, `epochs`, `learning_rate`, ...), as `metrics.json` records
    them (`dmon.training.write_outputs`)."""
    nodes: np.ndarray | None = None
    """The graph ids of `probabilities`' rows where they are not all `N` nodes in order
    (a shard folder trained by several processes: each holds its own); else `None`."""
    top_probability: np.ndarray | None = None
    """`(N,)` every node's largest probability, also where `probabilities` holds some
    nodes only; `None` in a result made by hand (then `probabilities.max(-1)`)."""

    @property
    def ms_per_epoch(self) -> float:
        """Steady training speed: the epochs after the first (which compiles), in ms;
        the first epoch's when there is no other."""
        trained = self.epochs_completed - (self.resumed_from or 0)
        if trained <= 1:
            return 1e3 * self.seconds / max(trained, 1)
        return 1e3 * (self.seconds - self.first_epoch_seconds) / (trained - 1)
