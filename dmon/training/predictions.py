"""The trained model's assignment of every node, without any process holding `N × k`
numbers where the graph is a shard folder trained by several processes: each keeps its
own nodes' soft assignment, and only the hard cluster and the top probability of every
node (`2 N` numbers) cross between processes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmon.training.engine import Engine


@dataclass
class Predictions:
    """What a fit predicts, as `dmon.cluster`'s result holds it."""

    assignments: np.ndarray
    """`(N,)` int64: every node's cluster."""
    top: np.ndarray
    """`(N,)` float32: every node's largest probability; NaN where its row of `s` is not
    finite."""
    probabilities: np.ndarray
    """`(n, k)` soft assignment of the rows `nodes` (all `N` in order where `nodes` is
    `None`)."""
    nodes: np.ndarray | None = None

    @property
    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.top)))


def _top(s: np.ndarray) -> np.ndarray:
    finite = np.isfinite(s).all(axis=-1)
    return np.where(finite, s.max(axis=-1, initial=-np.inf), np.nan).astype(np.float32)


def predict(engine: Engine, num_nodes: int, local: bool) -> Predictions:
    """Every node's prediction on every process; with `local`, each process keeps only
    its own nodes' `probabilities` (`Engine.predict_local`)."""
    if not local:
        s = engine.predict()
        return Predictions(s.argmax(-1), _top(s), s)
    nodes, s = engine.predict_local()
    # the processes' row counts differ: pad to the largest (ids -1) to gather them
    width = int(engine.gather_over_processes(np.array([nodes.size])).max())
    ids = np.full((2, width), -1, np.int64)
    ids[0, : nodes.size], ids[1, : nodes.size] = nodes, s.argmax(-1)
    top = np.zeros(width, np.float32)
    top[: nodes.size] = _top(s)
    every_ids, every_top = engine.gather_over_processes(ids), engine.gather_over_processes(top)
    real = every_ids[:, 0] >= 0
    assignments = np.zeros(num_nodes, np.int64)
    tops = np.full(num_nodes, np.nan, np.float32)
    assignments[every_ids[:, 0][real]] = every_ids[:, 1][real]
    tops[every_ids[:, 0][real]] = every_top[real]
    return Predictions(assignments, tops, s, nodes)
