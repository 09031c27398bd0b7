"""Train the paper's DMoN model on one graph through the Keras 3 layers, so that one
training path serves JAX, TensorFlow and PyTorch.

Model (google-research `train.py`): GCN encoder (64 units, SELU, skip connection) on the
sparse graph → `DMoNPooling(k)` with collapse regularisation 1.0 and dropout 0.5 on the
logits; Adam, learning rate 1e-3; full-batch epochs; hard clusters by argmax.
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmon import checkpoint as ckpt
from dmon import metrics
from dmon.data import Graph, check_graph

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
    """For a sharded run (`dmon.sharded_train`): `backend`, `processes`, `devices`,
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
        checkpoint: a `.npz` path for training checkpoints (see `dmon.checkpoint`):
            model, optimizer and RNG state and the history, written atomically every
            `checkpoint_every` epochs, at the last epoch and when interrupted.
        checkpoint_every: epochs between checkpoints (0: only the last one).
        resume: continue from `checkpoint`, which must come from a run with the same
            graph and settings (`epochs` may differ). The result equals that of an
            uninterrupted run with the same seed on the same backend.
        resolution: `γ` of the generalized modularity the spectral loss maximises
            (default 1; ½ with half the loss is google-research's objective). Lower
            values favour fewer, larger clusters. `metrics` report modularity at 1 and,
            when `γ ≠ 1`, at `γ` too.

    Ctrl-C (SIGINT, when called from the main thread) stops after the current epoch and
    returns the result so far with `interrupted=True`; a second Ctrl-C raises
    `KeyboardInterrupt` at once.

    Returns:
        A `ClusterResult`.

    Raises:
        ValueError / TypeError: a setting out of range (see `check_setting`).
        TrainingDiverged: a non-finite loss; the message names the epoch, and the last
            checkpoint (of a finite epoch) is kept.
        dmon.checkpoint.CheckpointError: `resume` without a usable checkpoint of this run.
    """
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
    import keras

    n, f = graph.features.shape
    ei, w = graph.edge_index()
    ei = ei.astype(np.int32)  # JAX's default integer; ids < 2³¹ on every backend
    run = {
        "graph": ckpt.arrays_sha256(ei, w, graph.features),
        "backend": name,
        **{key: float(v) if isinstance(v, float) else int(v) for key, v in settings.items()},
    }
    del run["checkpoint_every"]
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

    model, pool_layer = build_model(
        n, f, ei.shape[1], k, hidden, dropout, collapse_regularization, resolution, seed
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=name != "torch")
    data = [graph.features[None], ei[None], w[None]]
    history: dict[str, list[float]] = {"loss": [], "spectral_loss": [], "cluster_loss": []}
    start = 0
    if state is not None:
        _restore(keras, model, state, checkpoint)
        history = {key: list(state.history.get(key, [])) for key in history}
        start = state.epoch

    stop = _InterruptFlag()
    # epochs done, and the epoch of this run's last checkpoint (the one resumed from)
    outcome: dict[str, Any] = {"done": start, "saved": start if state is not None else None}

    def save(epoch: int) -> None:
        if checkpoint is not None:
            outcome["saved"] = epoch
            ckpt.save(
                checkpoint,
                ckpt.Checkpoint(
                    epoch,
                    run,
                    _values(keras, model.variables),
                    _values(keras, model.optimizer.variables),
                    history,
                    _rng_state(name),
                ),
            )

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            row = {"loss": float((logs or {}).get("loss", np.nan))}
            for key in ("spectral", "cluster"):
                row[f"{key}_loss"] = float(keras.ops.convert_to_numpy(pool_layer.last_losses[key]))
            if not all(math.isfinite(v) for v in row.values()):
                outcome["diverged"] = (epoch + 1, row)
                self.model.stop_training = True
                return  # nothing of this epoch is kept, and no checkpoint is written
            for key, value in row.items():
                history[key].append(value)
            outcome["done"] = epoch + 1
            if on_epoch is not None:
                on_epoch(epoch + 1, row)
            last = epoch + 1 == epochs
            if stop.raised or last or (checkpoint_every and (epoch + 1) % checkpoint_every == 0):
                save(epoch + 1)
            if stop.raised:
                self.model.stop_training = True

    t0 = time.perf_counter()
    if start < epochs:
        with stop:
            model.fit(
                data,
                epochs=epochs,
                initial_epoch=start,
                batch_size=1,
                verbose=0,
                shuffle=False,
                callbacks=[Record()],
            )
    elif checkpoint is not None:
        save(start)  # a finished run resumed: nothing to train
    seconds = time.perf_counter() - t0
    if "diverged" in outcome:
        epoch, row = outcome["diverged"]
        kept = (
            f"; the last checkpoint (epoch {outcome['saved']}) is kept in {checkpoint}"
            if outcome["saved"] is not None
            else ""
        )
        values = ", ".join(f"{k} {v:.4g}" for k, v in row.items())
        raise TrainingDiverged(
            f"training diverged at epoch {epoch}: non-finite loss ({values}); lower the "
            f"learning rate or check the features{kept}",
            epoch,
        )
    probabilities = np.asarray(model.predict(data, batch_size=1, verbose=0))[0]
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
    trainer (`dmon.sharded_train`) starts from these same weights."""
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


def _values(keras: Any, variables: Any) -> list[tuple[str, np.ndarray]]:
    return [(v.path, np.asarray(keras.ops.convert_to_numpy(v))) for v in variables]


def _restore(keras: Any, model: Any, state: ckpt.Checkpoint, where: Any) -> None:
    """Assign a checkpoint's values to the model's and optimizer's variables, matched by
    path, shape and dtype (the optimizer is built first)."""
    model.optimizer.build(model.trainable_variables)
    for kind, variables, saved in (
        ("model", model.variables, state.model),
        ("optimizer", model.optimizer.variables, state.optimizer),
    ):
        have = [(v.path, tuple(v.shape)) for v in variables]
        want = [(name, tuple(value.shape)) for name, value in saved]
        if have != want:
            raise ckpt.CheckpointError(
                f"{where}: its {kind} variables do not match this model's; start afresh"
            )
        for var, (_, value) in zip(variables, saved, strict=True):
            var.assign(value.astype(keras.backend.standardize_dtype(var.dtype)))
    _set_rng_state(state.rng)


def _rng_state(backend: str) -> list[tuple[str, np.ndarray]]:
    """The global generators' states: Python's and NumPy's (Keras draws default seeds
    from them) and, on torch, torch's (Keras' unseeded dropout uses it)."""
    version, words, _ = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: list[tuple[str, np.ndarray]] = [
        ("python", np.asarray([version, *words], dtype=np.int64)),
        ("numpy", np.asarray(keys, dtype=np.uint32)),
        ("numpy_extra", np.asarray([pos, has_gauss, cached], dtype=np.float64)),
    ]
    if backend == "torch":
        import torch

        state.append(("torch", torch.get_rng_state().numpy()))
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                state.append((f"torch_cuda_{i}", s.numpy()))
    return state


def _set_rng_state(saved: list[tuple[str, np.ndarray]]) -> None:
    state = dict(saved)
    if "python" in state:
        version, *words = (int(v) for v in state["python"])
        random.setstate((version, tuple(words), None))
    if "numpy" in state and "numpy_extra" in state:
        pos, has_gauss, cached = state["numpy_extra"].tolist()
        np.random.set_state(("MT19937", state["numpy"], int(pos), int(has_gauss), cached))
    if "torch" in state:
        import torch

        torch.set_rng_state(torch.from_numpy(state["torch"].copy()))
        for key, value in state.items():
            if key.startswith("torch_cuda_") and torch.cuda.is_available():
                torch.cuda.set_rng_state(torch.from_numpy(value.copy()), int(key.rsplit("_", 1)[1]))


class _InterruptFlag:
    """While active (in the main thread), the first SIGINT sets `raised` instead of
    raising `KeyboardInterrupt`; the second one raises as usual."""

    def __init__(self) -> None:
        self.raised = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> _InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
