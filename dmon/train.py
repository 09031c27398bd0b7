"""Train the paper's DMoN model on one graph: `cluster`, for JAX, TensorFlow and PyTorch,
on one device or sharded over many (docs/distributed.md).

Model (google-research `train.py`): GCN encoder (64 units, SELU, skip connection) on the
sparse graph → `DMoNPooling(k)` with collapse regularisation 1.0 and dropout 0.5 on the
logits; Adam, learning rate 1e-3; full-batch epochs; hard clusters by argmax. The model
is built with the Keras 3 layers (`build_model`), whose initial weights a fit starts
from; the steps are run by `dmon.engines`, written once against `dmon.ops`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dmon import checkpoint as ckpt
from dmon import memory, metrics
from dmon.data import Graph, check_graph

if TYPE_CHECKING:
    from dmon.engines import Launch

KERAS_BACKENDS = ("jax", "tensorflow", "torch")


class BackendError(RuntimeError):
    """A backend that is unknown, not installed, or not the one Keras already runs."""


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
    """`(N, k)` soft assignment `s` (inference mode, no dropout)."""
    metrics: dict[str, Any]
    """modularity, conductance, average_conductance, coverage, cluster_sizes, and nmi,
    precision, recall, f1 when the graph has labels."""
    history: dict[str, list[float]] = field(default_factory=dict)
    """Per epoch: `loss` (weighted total), `spectral_loss`, `cluster_loss`."""
    seconds: float = 0.0
    backend: str = ""
    epochs_completed: int = 0
    """Epochs behind the result (fewer than asked when interrupted)."""
    interrupted: bool = False
    """Stopped early by Ctrl-C (SIGINT), after a complete epoch."""
    resumed_from: int | None = None
    """The checkpoint's epoch when the run was resumed, else `None`."""
    distributed: dict[str, Any] | None = None
    """For a sharded run (`launch`): `backend`, `processes`, `devices`,
    `nodes_per_shard`; `None` for a one-device run."""


def check_setting(name: str, value: Any) -> None:
    """Raise `ValueError` (`TypeError` for a wrong type) unless `value` is a valid
    setting `name` of `cluster`. One rule set for the Python API and the command line."""
    rules: dict[str, tuple[type, Callable[[Any], bool], str]] = {
        "k": (int, lambda v: v >= 2, "an int >= 2"),
        "epochs": (int, lambda v: v >= 1, "an int >= 1"),
        "learning_rate": (float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
        "dropout": (float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
        "collapse_regularization": (
            float,
            lambda v: math.isfinite(v) and v >= 0,
            "a finite number >= 0",
        ),
        "hidden": (int, lambda v: v >= 1, "an int >= 1"),
        "seed": (int, lambda v: 0 <= v < 2**32, "an int in [0, 2**32)"),
        "checkpoint_every": (int, lambda v: v >= 0, "an int >= 0 (0: no checkpoints)"),
        "resolution": (float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    }
    kind, ok, want = rules[name]
    numeric = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, numeric):
        raise TypeError(f"{name} must be {want}; got {value!r}")
    if not ok(value):
        raise ValueError(f"{name} must be {want}; got {value!r}")


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
        if backend not in KERAS_BACKENDS:
            raise BackendError(
                f"KERAS_BACKEND={backend!r} is not one of {', '.join(KERAS_BACKENDS)}; "
                "set it to one of them, or pass the backend explicitly"
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
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    resolution: float = 1.0,
    launch: Launch | None = None,
) -> ClusterResult:
    """Cluster `graph` into at most `k` clusters with DMoN, trained on `backend`.

    The model is the paper's (GCN `hidden` with SELU and a skip weight → a dense layer to
    `k` logits → dropout → `DMoNPooling` with the collapse regularisation), with the
    initial weights of the Keras model `build_model` draws from `seed`, trained with
    Keras' Adam by an engine per backend (`dmon.engines`): one step compiled with
    `jax.jit` or `tf.function`, or run by torch's autograd. `Â X` is computed once per
    fit. On the CPU, every engine trains inside `dmon.memory.keep_freed_memory` (glibc
    keeps freed memory for the next step; its defaults come back afterwards); where
    dmon starts JAX, JAX's CPU client runs computations on the calling thread (see
    `dmon.engines.JaxEngine`). With `launch`, the graph is sharded by nodes over devices
    and processes (docs/distributed.md); every process calls `cluster` alike and gets
    the full result.

    Args:
        graph: a `dmon.data.Graph` (see `dmon.data.load`).
        k: number of clusters (2 ≤ k ≤ N).
        backend: `"jax"`, `"tensorflow"` or `"torch"` (default: Keras' configured one,
            else the first installed). Must be chosen before Keras is imported in this
            process (the initial weights come from a Keras model).
        epochs: full-batch training epochs (the paper: 1000).
        learning_rate: Adam's learning rate (1e-3).
        dropout: dropout on the logits (0.5). The masks come from a counter-based
            generator keyed by (seed, epoch, shard): a run is reproducible on a backend
            and a resumed run is exact.
        collapse_regularization: weight of the collapse loss (1.0).
        hidden: GCN units (64).
        seed: the initial weights and the dropout masks.
        on_epoch: called as `on_epoch(epoch, logs)` after every epoch (progress bars).
        checkpoint: a `.npz` path for training checkpoints (see `dmon.checkpoint`):
            weights, Adam's moments and the history, written atomically (by process 0)
            every `checkpoint_every` epochs, at the last epoch and when interrupted.
        checkpoint_every: epochs between checkpoints (0: only the last one).
        resume: continue from `checkpoint`, which must come from a run with the same
            graph and settings (`epochs` may differ). The result equals that of an
            uninterrupted run with the same seed on the same backend.
        resolution: `γ` of the generalized modularity the spectral loss maximises
            (default 1; ½ with half the loss is google-research's objective). `metrics`
            report modularity at 1 and, when `γ ≠ 1`, at `γ` too.
        launch: shard over JAX devices or processes, or the processes of a torchrun job
            (`dmon.engines.Launch`); `None` trains on one device.

    Ctrl-C (SIGINT, in the main thread of a one-process run) stops after the current
    epoch and returns the result so far with `interrupted=True`; a second Ctrl-C raises
    `KeyboardInterrupt` at once. (A sharded run stops at once: its processes would first
    have to agree on the epoch; resume from the last checkpoint.)

    Returns:
        A `ClusterResult`; for a sharded run its `distributed` describes the split.

    Raises:
        ValueError / TypeError: a setting out of range (see `check_setting`).
        BackendError: a backend or launch that cannot be used.
        TrainingDiverged: a non-finite loss; the message names the epoch, and the last
            checkpoint (of a finite epoch) is kept.
        dmon.checkpoint.CheckpointError: `resume` without a usable checkpoint of this run.
    """
    from dmon import engines

    settings = {
        "k": k,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "dropout": dropout,
        "collapse_regularization": collapse_regularization,
        "hidden": hidden,
        "seed": seed,
        "checkpoint_every": checkpoint_every,
        "resolution": resolution,
    }
    for key, value in settings.items():
        check_setting(key, value)
    if not isinstance(graph, Graph):
        raise TypeError(
            f"graph must be a dmon.data.Graph (see dmon.data.load); got {type(graph).__name__}"
        )
    check_graph(graph.name, graph.adjacency, graph.features, graph.labels)
    if k > graph.num_nodes:
        raise ValueError(f"k (number of clusters) must be in [2, N = {graph.num_nodes}]; got {k}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs the `checkpoint` path to resume from")
    name = select_backend(backend)
    if launch is not None:
        try:
            engines.check_launch(name, launch)
        except ValueError as err:
            raise BackendError(str(err)) from None
    # The engine first: jax.distributed must start before any JAX array exists.
    engine = engines.make_engine(name, launch)

    n, f = graph.features.shape
    ei, w = graph.edge_index()
    data = engines.prepare(ei, w, graph.features, engine.parts)
    model, pool_layer = build_model(
        n, f, ei.shape[1], k, hidden, dropout, collapse_regularization, resolution, seed
    )
    gcn, dense = model.get_layer("gcn"), pool_layer.mlp[0]
    initial = [
        np.asarray(_numpy(v), dtype=np.float32)
        for v in (gcn.kernel, gcn.bias, gcn.skip_weight, dense.kernel, dense.bias)
    ]
    del model, pool_layer, gcn, dense
    engine.setup(data, initial, k, dropout, seed, collapse_regularization, resolution)
    del data

    run = {
        "graph": ckpt.arrays_sha256(ei.astype(np.int32), w, graph.features),
        "backend": name,
        "trainer": engines.TRAINER,
        **{key: float(v) if isinstance(v, float) else int(v) for key, v in settings.items()},
    }
    del run["checkpoint_every"]
    history: dict[str, list[float]] = {"loss": [], "spectral_loss": [], "cluster_loss": []}
    start = 0
    state = None
    if resume:
        assert checkpoint is not None
        state = ckpt.load(checkpoint)
        changed = ckpt.differences(state.settings, run)
        if changed:
            raise ckpt.CheckpointError(
                f"{checkpoint}: made by a run with other settings (different {', '.join(changed)}); "
                "resume with the same graph and settings, or start afresh without resuming"
            )
        if state.epoch > epochs:
            raise ckpt.CheckpointError(
                f"{checkpoint}: already at epoch {state.epoch}, past epochs = {epochs}"
            )
        names = [key for key, _ in state.model] + [key for key, _ in state.optimizer]
        params = engines.PARAMS
        if names != [*params, *(f"m/{p}" for p in params), *(f"v/{p}" for p in params)]:
            raise ckpt.CheckpointError(
                f"{checkpoint}: its variables do not match this model's; start afresh"
            )
        engine.set_state([a for _, a in (*state.model, *state.optimizer)])
        history = {key: list(state.history.get(key, [])) for key in history}
        start = state.epoch
    outcome: dict[str, Any] = {"done": start, "saved": start if state is not None else None}

    def save(epoch: int) -> None:
        if checkpoint is None:
            return
        outcome["saved"] = epoch
        if engine.rank != 0:
            return
        arrays = engine.state()
        p = len(engines.PARAMS)
        ckpt.save(
            checkpoint,
            ckpt.Checkpoint(
                epoch,
                run,
                list(zip(engines.PARAMS, arrays[:p], strict=True)),
                [(f"m/{n}", a) for n, a in zip(engines.PARAMS, arrays[p : 2 * p], strict=True)]
                + [(f"v/{n}", a) for n, a in zip(engines.PARAMS, arrays[2 * p :], strict=True)],
                history,
            ),
        )

    stop = _InterruptFlag(enabled=engine.processes == 1)
    # each step's large CPU tensors reuse the last step's memory (dmon.memory)
    keep = engine.device_kind() == "cpu"
    t0 = time.perf_counter()
    with stop, memory.keep_freed_memory() if keep else contextlib.nullcontext():
        for epoch in range(start, epochs):
            values = engine.step(engines.adam_alpha(learning_rate, epoch + 1), epoch)
            row = dict(zip(("loss", "spectral_loss", "cluster_loss"), values, strict=True))
            if not all(math.isfinite(v) for v in values):
                saved = outcome["saved"]
                kept = (
                    f"; the last checkpoint (epoch {saved}) is kept in {checkpoint}"
                    if saved is not None
                    else ""
                )
                detail = ", ".join(f"{key} {v:.4g}" for key, v in row.items())
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch + 1}: non-finite loss ({detail}); lower "
                    f"the learning rate or check the features{kept}",
                    epoch + 1,
                )
            for key, value in row.items():
                history[key].append(value)
            outcome["done"] = epoch + 1
            if on_epoch is not None:
                on_epoch(epoch + 1, row)
            last = epoch + 1 == epochs
            if stop.raised or last or (checkpoint_every and (epoch + 1) % checkpoint_every == 0):
                save(epoch + 1)
            if stop.raised:
                break
    if start >= epochs:
        save(start)  # a finished run resumed: nothing to train
    seconds = time.perf_counter() - t0
    probabilities = engine.predict()
    if not np.all(np.isfinite(probabilities)):
        raise TrainingDiverged(
            "the trained model gives non-finite assignments; lower the learning rate or check the features",
            outcome["done"],
        )
    assignments = probabilities.argmax(-1)
    quality = evaluate(graph, assignments)
    if resolution != 1.0:
        quality["resolution"] = float(resolution)
        quality["modularity_at_resolution"] = metrics.modularity(
            graph.adjacency, assignments, resolution=resolution
        )
    distributed = None
    if launch is not None:
        distributed = {
            "backend": name,
            "processes": engine.processes,
            "devices": engine.parts,
            "device_kind": engine.device_kind(),
            "process_id": engine.rank,
            "nodes_per_shard": engine.part.nodes_per_shard,
            "edges_per_shard": engine.part.num_edges.astype(int).tolist(),
        }
    return ClusterResult(
        assignments,
        probabilities,
        quality,
        history,
        seconds,
        name,
        epochs_completed=outcome["done"],
        interrupted=stop.raised and outcome["done"] < epochs,
        resumed_from=None if state is None else state.epoch,
        distributed=distributed,
    )


def build_model(
    n: int,
    f: int,
    e: int,
    k: int,
    hidden: int,
    dropout: float,
    collapse_regularization: float,
    resolution: float,
    seed: int,
) -> tuple[Any, Any]:
    """The paper's model as a Keras functional model on one graph (inputs `x` `(1, N, F)`,
    `edge_index` `(1, 2, E)`, `edge_weight` `(1, E)`; output `s`), its weights drawn
    after `keras.utils.set_random_seed(seed)`, and its `DMoNPooling` layer. The sharded
    trainer (`dmon.engines`) starts from these weights."""
    import keras

    from dmon.layers.keras import DMoNPooling, GCNConv

    keras.utils.set_random_seed(seed)
    x_in = keras.Input((n, f), batch_size=1, name="x")
    ei_in = keras.Input((2, e), batch_size=1, dtype="int32", name="edge_index")
    w_in = keras.Input((e,), batch_size=1, name="edge_weight")
    h = GCNConv(hidden, name="gcn")([x_in, ei_in, w_in])
    pool_layer = DMoNPooling(
        k,
        dropout=dropout,
        collapse_regularization=collapse_regularization,
        resolution=resolution,
        name="dmon",
    )
    s, _, _ = pool_layer([h, ei_in, w_in])
    return keras.Model([x_in, ei_in, w_in], s), pool_layer


def _numpy(v: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(v))


class _InterruptFlag:
    """While active (in the main thread, and `enabled`), the first SIGINT sets `raised`
    instead of raising `KeyboardInterrupt`; the second one raises as usual."""

    def __init__(self, enabled: bool = True) -> None:
        self.raised = False
        self.enabled = enabled
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> _InterruptFlag:
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
