"""`dmon.cluster`: train the paper's DMoN model on one graph, on JAX, TensorFlow or
PyTorch, on one device or sharded over many (docs/distributed.md): start or resume,
the epochs with checkpoints and Ctrl-C, and the evaluation of the clusters."""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dmon import checkpoint as ckpt
from dmon import memory
from dmon.checks import check_argument
from dmon.data import Graph, from_pyg
from dmon.training.backend import BackendError, select_backend
from dmon.training.engine import TRAINER, Engine, engine_class
from dmon.training.interrupt import InterruptFlag
from dmon.training.launch import Launch, check_shards
from dmon.training.model import PARAMS, ModelSettings, initial_params
from dmon.training.optimizer import adam_alpha
from dmon.training.predictions import predict
from dmon.training.progress import progress_bar
from dmon.training.result import ClusterResult, TrainingDiverged
from dmon.training.shard_files import ShardFileError, ShardFolder
from dmon.training.sources import FolderSource, source

LOSSES = ("loss", "spectral_loss", "cluster_loss")
"""What every epoch records, in the order engines return it."""
READ_EVERY_S = 0.5
"""Seconds between reads of the losses to the host (and progress reports), besides the
reads at each checkpoint, at Ctrl-C and at the end."""


def cluster(
    graph: Graph | Any,
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
    progress: bool = False,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    resolution: float = 1.0,
    launch: Launch | None = None,
) -> ClusterResult:
    """Cluster `graph` into at most `k` clusters with DMoN, trained on `backend`.

    The model is the paper's (GCN `hidden` with SELU and a skip weight → a dense layer to
    `k` logits → dropout → `DMoNPooling` with the collapse regularisation), with the
    initial weights the Keras layers draw from `seed` (`dmon.training.model`), trained
    with Keras' Adam by an engine per backend (`dmon.training.engine`): one step compiled with
    `jax.jit` or `tf.function`, or run by torch's autograd. `Â X` is computed once per
    fit. On the CPU, every engine trains inside `dmon.memory.keep_freed_memory` (glibc
    keeps freed memory for the next step; its defaults come back afterwards); where
    dmon starts JAX, JAX's CPU client runs computations on the calling thread (see
    `dmon.backends.jax.engine`). With `launch`, the graph is sharded by nodes over devices
    and processes (docs/distributed.md); every process calls `cluster` alike and gets
    the full result.

    Args:
        graph: a `dmon.data.Graph` (see `dmon.data.load`), or a PyTorch Geometric `Data`
            (`dmon.data.from_pyg`: its `x`, `edge_index`, `edge_weight` and node `y`).
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
        on_epoch: called as `on_epoch(epoch, logs)` for every epoch, `epoch` counted
            from 1 and `logs` `{"loss", "spectral_loss", "cluster_loss"}` (floats). The
            losses are read from the device in batches (at most every
            `dmon.training.loop.READ_EVERY_S` seconds, and at each checkpoint), so calls
            come in bursts; the first comes right after the first epoch, which compiles.
        progress: print `dmon cluster`'s progress bar on stderr (with `on_epoch`, both).
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
            (`dmon.training.Launch`); `None` trains on one device.

    Ctrl-C (SIGINT) or SIGTERM, in the main thread of a one-process run, stops after the
    current epoch and returns the result so far with `interrupted=True` (`stopped_by`
    names the signal); a second one raises `KeyboardInterrupt` at once. (A sharded run stops at once: its processes would first
    have to agree on the epoch; resume from the last checkpoint.)

    Returns:
        A `ClusterResult`; for a sharded run its `distributed` describes the split.

    Raises:
        ValueError / TypeError: a setting out of range (`dmon.checks.RULES`).
        BackendError: a backend or launch that cannot be used.
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
        check_argument("", key, value)
    if not isinstance(graph, Graph) and getattr(graph, "edge_index", None) is not None:
        graph = from_pyg(graph)  # a PyTorch Geometric Data
    if not isinstance(graph, Graph | ShardFolder | str | Path):
        raise TypeError(
            "graph must be a dmon.data.Graph (see dmon.data.load), a torch_geometric Data or "
            f"a shard folder (dmon partition); got {type(graph).__name__}"
        )
    try:
        src = source(graph)
    except ShardFileError as err:
        raise ValueError(str(err)) from None
    if k > src.num_nodes:
        raise ValueError(f"k (number of clusters) must be in [2, N = {src.num_nodes}]; got {k}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs the `checkpoint` path to resume from")
    if checkpoint is not None:  # before training, not at the first checkpoint
        _check_checkpoint_folder(Path(checkpoint))
    name = select_backend(backend)
    if progress:  # from here: the silence of setting up and compiling is explained
        on_epoch = _both(progress_bar(epochs), on_epoch)
    kind = engine_class(name)
    if launch is not None:
        try:
            kind.check_launch(launch)
            check_shards(launch, src.num_nodes)
        except ValueError as err:
            raise BackendError(str(err)) from None
    elif isinstance(src, FolderSource):
        try:
            src.check_parts(1)
        except ValueError as err:
            raise BackendError(str(err)) from None
    # The engine first: jax.distributed must start before any JAX array exists.
    engine = kind(launch)

    f = src.width
    model = ModelSettings(k, hidden, dropout, collapse_regularization, resolution, seed)
    try:
        data = src.prepared(engine, launch)
    except (ShardFileError, ValueError) as err:
        raise BackendError(str(err)) from None
    initial = initial_params(f, model)
    engine.setup(data, [initial[p] for p in PARAMS], model)
    traffic = {}
    if launch is not None:
        traffic = src.traffic(
            data, padded=name == "jax", k=k, hidden=hidden, features=f, symmetric=data.symmetric
        )
    del data

    run = {
        "graph": src.graph_hash(),
        "backend": name,
        "trainer": TRAINER,
        **{key: float(v) if isinstance(v, float) else int(v) for key, v in settings.items()},
    }
    del run["checkpoint_every"]
    history: dict[str, list[float]] = {key: [] for key in LOSSES}
    state = None
    if resume:
        assert checkpoint is not None
        state = _restore(engine, checkpoint, run, epochs)
        history = {key: list(state.history.get(key, [])) for key in history}
    start = 0 if state is None else state.epoch
    outcome: dict[str, Any] = {"done": start, "saved": start if state is not None else None}

    def save(epoch: int) -> None:
        if checkpoint is None:
            return
        outcome["saved"] = epoch
        if engine.rank == 0:
            _save(engine, checkpoint, epoch, run, history)

    stop = InterruptFlag(enabled=engine.processes == 1)
    # each step's large CPU tensors reuse the last step's memory (dmon.memory)
    keep = engine.device_kind() == "cpu"
    t0 = time.perf_counter()
    first_seconds = 0.0
    pending: list[Any] = []  # the losses of epochs not yet read, on the device
    last_read = time.perf_counter()

    def read() -> None:
        """The pending epochs' losses in one read: history, progress, and a non-finite
        loss stops the run naming its first epoch (checkpoints are saved only after a
        read, so the last one kept is of finite epochs)."""
        nonlocal last_read
        first = outcome["done"] + 1
        values = engine.read(pending) if pending else np.zeros((0, len(LOSSES)))
        pending.clear()
        last_read = time.perf_counter()
        for i, row_values in enumerate(values.tolist()):
            row = dict(zip(LOSSES, row_values, strict=True))
            if not all(math.isfinite(v) for v in row_values):
                _diverged(first + i, row, outcome["saved"], checkpoint)
            for key, value in row.items():
                history[key].append(value)
            outcome["done"] = first + i
            if on_epoch is not None:
                on_epoch(first + i, row)

    with stop, memory.keep_freed_memory() if keep else contextlib.nullcontext():
        for epoch in range(start, epochs):
            pending.append(engine.step(adam_alpha(learning_rate, epoch + 1), epoch))
            last = epoch + 1 == epochs
            due = stop.raised or last or (checkpoint_every and (epoch + 1) % checkpoint_every == 0)
            # a read makes the host wait for the device: at most one per READ_EVERY_S, and
            # one after the first step, which compiles, to time it apart from the rest
            if due or epoch == start or time.perf_counter() - last_read >= READ_EVERY_S:
                read()
            if epoch == start:
                first_seconds = time.perf_counter() - t0
            if due:
                save(epoch + 1)
            if stop.raised:
                break
    if start >= epochs:
        save(start)  # a finished run resumed: nothing to train
    seconds = time.perf_counter() - t0
    # a shard folder over several processes: no process holds every node's N × k row
    made = predict(engine, src.num_nodes, isinstance(src, FolderSource) and engine.processes > 1)
    if not made.finite:
        raise TrainingDiverged(
            "the trained model gives non-finite assignments; lower the learning rate or check the features",
            outcome["done"],
        )
    assignments = made.assignments
    quality = src.evaluate(assignments, engine, resolution)
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
            **traffic,
        }
    return ClusterResult(
        assignments,
        made.probabilities,
        quality,
        history,
        seconds,
        name,
        epochs_completed=outcome["done"],
        first_epoch_seconds=first_seconds,
        interrupted=stop.raised and outcome["done"] < epochs,
        stopped_by=stop.by if stop.raised and outcome["done"] < epochs else None,
        resumed_from=None if state is None else state.epoch,
        distributed=distributed,
        settings={**settings, "backend": name},
        nodes=made.nodes,
        top_probability=made.top,
    )


def _check_checkpoint_folder(path: Path) -> None:
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(
            f"checkpoint: the folder {folder}/ of {path} does not exist; create it first"
        )
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(f"checkpoint: cannot write in {folder}/ ({err.strerror or err})") from None


def _diverged(
    epoch: int, row: dict[str, float], saved: int | None, checkpoint: str | Path | None
) -> None:
    kept = (
        f"; the last checkpoint (epoch {saved}) is kept in {checkpoint}"
        if saved is not None
        else ""
    )
    detail = ", ".join(f"{key} {v:.4g}" for key, v in row.items())
    raise TrainingDiverged(
        f"training diverged at epoch {epoch}: non-finite loss ({detail}); lower "
        f"the learning rate or check the features{kept}",
        epoch,
    )


def _both(
    first: Callable[[int, dict[str, float]], None],
    second: Callable[[int, dict[str, float]], None] | None,
) -> Callable[[int, dict[str, float]], None]:
    if second is None:
        return first

    def call(epoch: int, logs: dict[str, float]) -> None:
        first(epoch, logs)
        second(epoch, logs)

    return call


def _restore(engine: Engine, path: str | Path, run: dict[str, Any], epochs: int) -> ckpt.Checkpoint:
    """The checkpoint at `path`, checked against this run, loaded into `engine`."""
    state = ckpt.load(path)
    changed = ckpt.differences(state.settings, run)
    if changed:
        raise ckpt.CheckpointError(
            f"{path}: made by a run with other settings (different {', '.join(changed)}); "
            "resume with the same graph and settings, or start afresh without resuming"
        )
    if state.epoch > epochs:
        raise ckpt.CheckpointError(
            f"{path}: already at epoch {state.epoch}, past epochs = {epochs}"
        )
    names = [key for key, _ in state.model] + [key for key, _ in state.optimizer]
    if names != [*PARAMS, *(f"m/{p}" for p in PARAMS), *(f"v/{p}" for p in PARAMS)]:
        raise ckpt.CheckpointError(f"{path}: its variables do not match this model's; start afresh")
    arrays = [a for _, a in (*state.model, *state.optimizer)]
    for name, have, want in zip(names, arrays, engine.state(), strict=True):
        if tuple(have.shape) != tuple(want.shape):  # an edited file: no raw framework error
            raise ckpt.CheckpointError(
                f"{path}: variable {name} has shape {tuple(have.shape)}, this model's "
                f"{tuple(want.shape)}; start afresh"
            )
    engine.set_state(arrays)
    return state


def _save(
    engine: Engine,
    path: str | Path,
    epoch: int,
    run: dict[str, Any],
    history: dict[str, list[float]],
) -> None:
    """The engine's state after `epoch` epochs, with the history, as a checkpoint."""
    arrays = engine.state()
    p = len(PARAMS)
    ckpt.save(
        path,
        ckpt.Checkpoint(
            epoch,
            run,
            list(zip(PARAMS, arrays[:p], strict=True)),
            [(f"m/{n}", a) for n, a in zip(PARAMS, arrays[p : 2 * p], strict=True)]
            + [(f"v/{n}", a) for n, a in zip(PARAMS, arrays[2 * p :], strict=True)],
            history,
        ),
    )
