"""Train the paper's DMoN model on one graph through the Keras 3 layers, so that one
training path serves JAX, TensorFlow and PyTorch.

Model (google-research `train.py`): GCN encoder (64 units, SELU, skip connection) on the
sparse graph → `DMoNPooling(k)` with collapse regularisation 1.0 and dropout 0.5 on the
logits; Adam, learning rate 1e-3; full-batch epochs; hard clusters by argmax.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dmon import metrics
from dmon.data import Graph

KERAS_BACKENDS = ("jax", "tensorflow", "torch")


class BackendError(RuntimeError):
    """A backend that is unknown, not installed, or not the one Keras already runs."""


@dataclass
class ClusterResult:
    """What `cluster` returns."""

    assignments: np.ndarray
    """`(N,)` hard cluster of every node (argmax of `s`)."""
    probabilities: np.ndarray
    """`(N, k)` soft assignment `s` (inference mode, no dropout)."""
    metrics: dict[str, Any]
    """modularity, conductance, average_conductance, coverage, cluster_sizes, and nmi,
    precision, recall, f1 when the graph has labels."""
    history: dict[str, list[float]] = field(default_factory=dict)
    """Per epoch: `loss` (weighted total), `spectral_loss`, `cluster_loss`."""
    seconds: float = 0.0
    backend: str = ""


def select_backend(backend: str | None) -> str:
    """Pick the Keras backend before Keras is imported; check that it can be used."""
    if backend is not None and backend not in KERAS_BACKENDS:
        raise BackendError(
            f"unknown backend {backend!r}; choose one of {', '.join(KERAS_BACKENDS)}"
        )
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if backend is not None and backend != current:
            raise BackendError(
                f"Keras is already running on {current!r} in this process; it cannot switch to {backend!r}"
            )
        return str(current)
    if backend is None:
        backend = os.environ.get("KERAS_BACKEND") or next(
            (b for b in KERAS_BACKENDS if importlib.util.find_spec(b) is not None), None
        )
        if backend is None:
            raise BackendError(
                "no deep-learning framework installed: pip install 'dmon[jax,cluster]' (or torch, tensorflow)"
            )
    if importlib.util.find_spec(backend) is None:
        raise BackendError(f"backend {backend!r} is not installed: pip install 'dmon[{backend}]'")
    if importlib.util.find_spec("keras") is None:
        raise BackendError("Keras 3 is not installed: pip install 'dmon[cluster]'")
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    return backend


def evaluate(graph: Graph, assignments: np.ndarray) -> dict[str, Any]:
    """Quality of hard clusters on `graph` (and against its labels, if any)."""
    out: dict[str, Any] = {
        "modularity": metrics.modularity(graph.adjacency, assignments),
        "conductance": metrics.conductance(graph.adjacency, assignments),
        "average_conductance": metrics.average_conductance(graph.adjacency, assignments),
        "coverage": metrics.coverage(graph.adjacency, assignments),
        "num_clusters_used": int(np.unique(assignments).size),
        "cluster_sizes": np.bincount(assignments).tolist(),
    }
    if graph.labels is not None:
        out["nmi"] = metrics.nmi(graph.labels, assignments)
        out.update(metrics.pairwise_scores(graph.labels, assignments))
    return out


def cluster(
    graph: Graph,
    k: int = 16,
    *,
    backend: str | None = None,
    epochs: int = 1000,
    learning_rate: float = 1e-3,
    dropout: float = 0.5,
    collapse_regularization: float = 1.0,
    hidden: int = 64,
    seed: int = 0,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> ClusterResult:
    """Cluster `graph` into at most `k` clusters with DMoN, trained on `backend`.

    Args:
        graph: a `dmon.data.Graph` (see `dmon.data.load`).
        k: number of clusters (2 ≤ k ≤ N).
        backend: Keras backend, `"jax"`, `"tensorflow"` or `"torch"` (default: Keras'
            configured one, else the first installed). Must be chosen before Keras is
            imported in this process.
        epochs: full-batch training epochs (the paper: 1000).
        learning_rate: Adam's learning rate (1e-3).
        dropout: dropout on the DMoN logits (0.5).
        collapse_regularization: weight of the collapse loss (1.0).
        hidden: GCN units (64).
        seed: seeds Python, NumPy and the backend; a run is reproducible on a backend.
        on_epoch: called as `on_epoch(epoch, logs)` after every epoch (progress bars).

    Returns:
        A `ClusterResult`.
    """
    if not 2 <= k <= graph.num_nodes:
        raise ValueError(f"k (number of clusters) must be in [2, N = {graph.num_nodes}]; got {k}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}")
    name = select_backend(backend)
    import keras

    from dmon.layers.keras import DMoNPooling, GCNConv

    keras.utils.set_random_seed(seed)
    n, f = graph.features.shape
    ei, w = graph.edge_index()
    ei = ei.astype(np.int32)  # JAX's default integer; ids < 2³¹ on every backend
    e = ei.shape[1]
    x_in = keras.Input((n, f), batch_size=1, name="x")
    ei_in = keras.Input((2, e), batch_size=1, dtype="int32", name="edge_index")
    w_in = keras.Input((e,), batch_size=1, name="edge_weight")
    h = GCNConv(hidden, name="gcn")([x_in, ei_in, w_in])
    pool_layer = DMoNPooling(
        k, dropout=dropout, collapse_regularization=collapse_regularization, name="dmon"
    )
    s, _, _ = pool_layer([h, ei_in, w_in])
    model = keras.Model([x_in, ei_in, w_in], s)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=name != "torch")
    data = [graph.features[None], ei[None], w[None]]
    history: dict[str, list[float]] = {"loss": [], "spectral_loss": [], "cluster_loss": []}

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            row = {"loss": float((logs or {}).get("loss", np.nan))}
            for key in ("spectral", "cluster"):
                row[f"{key}_loss"] = float(keras.ops.convert_to_numpy(pool_layer.last_losses[key]))
            for key, value in row.items():
                history[key].append(value)
            if on_epoch is not None:
                on_epoch(epoch + 1, row)

    t0 = time.perf_counter()
    model.fit(data, epochs=epochs, batch_size=1, verbose=0, shuffle=False, callbacks=[Record()])
    seconds = time.perf_counter() - t0
    probabilities = np.asarray(model.predict(data, batch_size=1, verbose=0))[0]
    assignments = probabilities.argmax(-1)
    return ClusterResult(
        assignments, probabilities, evaluate(graph, assignments), history, seconds, name
    )
