"""`dmon cluster` on a graph sharded by nodes: over the devices of a JAX mesh (one process
or many, `jax.distributed`) or over the processes of a torchrun job (`torch.distributed`).

The model, its initial weights and the optimizer are those of `dmon.train.cluster` (the
weights come from the same Keras model, built with the same seed; Adam is Keras' update,
written once against `dmon.ops` in `adam_update`), so that a run with dropout 0 follows
the one-device run epoch by epoch. The forward pass per shard is written once too
(`_forward`); only taking gradients and the collectives differ by engine.

The GCN's first layer is `Â X W`. `X` is constant, so `Â X` is computed once per fit
(`dmon.distributed.gcn_propagate`) and a step communicates only the assignment
(`docs/distributed.md`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from dmon import checkpoint as ckpt
from dmon import distributed as dist
from dmon.data import Graph, check_graph
from dmon.ops import get_backend
from dmon.train import (
    BackendError,
    ClusterResult,
    TrainingDiverged,
    build_model,
    check_setting,
    evaluate,
    select_backend,
)

ENGINES = ("jax", "torch")
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # keras.optimizers.Adam's defaults


def torchrun_launched() -> bool:
    """Whether this process was started by `torch.distributed.run` (torchrun)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


@dataclass(frozen=True)
class Launch:
    """Where a sharded run runs. JAX: `devices` local devices per process (default all),
    and, for several processes, `jax.distributed.initialize`'s `coordinator`,
    `num_processes` and `process_id`. torch: the torchrun environment. `timeout`: seconds
    that start-up and every collective may wait for another process."""

    devices: int | None = None
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    timeout: float = 300.0


def check_launch(backend: str, launch: Launch) -> None:
    """`ValueError` for a launch that cannot work, before any process group is joined."""
    if backend not in ENGINES:
        raise ValueError(
            f"sharded training runs on jax or torch; got backend {backend!r} (TensorFlow: "
            "see docs/distributed.md)"
        )
    if launch.devices is not None and (
        isinstance(launch.devices, bool)
        or not isinstance(launch.devices, int)
        or launch.devices < 1
    ):
        raise ValueError(f"devices must be an int >= 1; got {launch.devices!r}")
    if not (math.isfinite(launch.timeout) and launch.timeout > 0):
        raise ValueError(f"timeout must be a number of seconds > 0; got {launch.timeout!r}")
    given = [launch.coordinator, launch.num_processes, launch.process_id]
    if any(v is not None for v in given):
        if backend != "jax":
            raise ValueError(
                "coordinator/num_processes/process_id are jax.distributed's; torch takes its "
                "processes from torchrun (python -m torch.distributed.run)"
            )
        if any(v is None for v in given):
            raise ValueError("several JAX processes need coordinator, num_processes and process_id")
        host, _, port = str(launch.coordinator).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"coordinator must be HOST:PORT; got {launch.coordinator!r}")
        n, i = launch.num_processes, launch.process_id
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"num_processes must be an int >= 1; got {n!r}")
        if not isinstance(i, int) or not 0 <= i < n:
            raise ValueError(f"process_id must be in [0, num_processes = {n}); got {i!r}")
    if backend == "torch":
        if launch.devices is not None:
            raise ValueError(
                "torch shards over processes: launch with python -m torch.distributed.run "
                "--nproc-per-node P (devices is for JAX)"
            )
        if not torchrun_launched():
            raise ValueError(
                "sharded torch training needs a torchrun launch (RANK, WORLD_SIZE, MASTER_ADDR, "
                "MASTER_PORT): python -m torch.distributed.run --nproc-per-node P -m dmon cluster ..."
            )


def adam_update(
    params: list[Any], grads: list[Any], m: list[Any], v: list[Any], alpha: Any
) -> tuple[list[Any], list[Any], list[Any]]:
    """One step of Keras' Adam on arrays of any framework: `m += (g - m)(1 - β₁)`,
    `v += (g² - v)(1 - β₂)`, `p -= α m / (√v + ε)` with `α = lr √(1 - β₂ᵗ) / (1 - β₁ᵗ)`
    (`adam_alpha`)."""
    ops = get_backend(params[0])
    m = [mi + (g - mi) * (1 - BETA_1) for mi, g in zip(m, grads, strict=True)]
    v = [vi + (g * g - vi) * (1 - BETA_2) for vi, g in zip(v, grads, strict=True)]
    params = [
        p - (mi * alpha) / (ops.sqrt(vi) + EPSILON) for p, mi, vi in zip(params, m, v, strict=True)
    ]
    return params, m, v


def adam_alpha(learning_rate: float, step: int) -> np.float32:
    """Adam's step size at step `step` (from 1), in float32 as Keras computes it."""
    t = np.float32(step)
    b1, b2 = np.power(np.float32(BETA_1), t), np.power(np.float32(BETA_2), t)
    return np.float32(learning_rate) * np.sqrt(np.float32(1) - b2) / (np.float32(1) - b1)


PARAMS = ("gcn/kernel", "gcn/bias", "gcn/skip_weight", "dmon/kernel", "dmon/bias")


def _forward(
    params: list[Any],
    ax: Any,
    x: Any,
    shard: dist.Shard,
    comm: dist.Collectives,
    keep: Any,
    collapse: float,
    resolution: float,
) -> tuple[Any, dist.DMoNOutput]:
    """One shard's forward pass: `h = selu(ÂX W + (X W) ⊙ w_skip + b)` (GCNConv),
    `logits = dropout(h W_d + b_d)`, `dmon.distributed.shard_pool(h, ...)`; the loss
    `L_spec + collapse · L_clus` (the Keras model's `add_loss` total). `keep` is the
    dropout multiplier `mask / (1 - rate)`, or `None`."""
    ops = get_backend(ax)
    w, b, skip, wd, bd = params
    h = ops.selu(ops.matmul(ax, w) + ops.matmul(x, w) * skip + b)
    logits = ops.matmul(h, wd) + bd
    if keep is not None:
        logits = logits * keep
    out = dist.shard_pool(h, shard, logits, comm, resolution=resolution)
    return out.spectral_loss + collapse * out.cluster_loss, out


class _JaxEngine:
    def __init__(self, launch: Launch) -> None:
        import jax

        self.jax = jax
        if launch.coordinator is not None:
            # CPU devices talk over gloo (accelerators use their own collectives); must be
            # set before the backend starts, so it cannot wait to see which platform it is
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            jax.distributed.initialize(
                launch.coordinator,
                launch.num_processes,
                launch.process_id,
                initialization_timeout=int(launch.timeout),
                heartbeat_timeout_seconds=max(10, int(min(launch.timeout, 100))),
            )
        per_process = launch.devices
        chosen = []
        for proc in range(jax.process_count()):
            own = [d for d in jax.devices() if d.process_index == proc]
            want = len(own) if per_process is None else per_process
            if want > len(own):
                raise ValueError(
                    f"devices {want}: process {proc} has {len(own)} {own[0].platform} device(s); "
                    "on a CPU, simulate more with XLA_FLAGS=--xla_force_host_platform_device_count=P "
                    "(dmon cluster --devices sets it)"
                )
            chosen += own[:want]
        self.mesh = jax.sharding.Mesh(np.array(chosen), ("nodes",))
        self.parts = len(chosen)
        self.processes = jax.process_count()
        self.rank = jax.process_index()

    def setup(
        self,
        part: dist.Partition,
        ax: np.ndarray,
        x: np.ndarray,
        params: list[np.ndarray],
        k: int,
        dropout: float,
        seed: int,
        collapse: float,
        resolution: float,
    ) -> None:
        jax, jnp = self.jax, self.jax.numpy
        from jax.sharding import NamedSharding, PartitionSpec

        self.part = part
        mesh, spec = self.mesh, PartitionSpec("nodes")
        self.ax = dist.jax_put(ax.astype(np.float32), mesh)
        self.x = dist.jax_put(x.astype(np.float32), mesh)
        self.shard = dist.jax_shards(part, mesh)
        replicated = NamedSharding(mesh, PartitionSpec())
        self.params = [jax.device_put(jnp.asarray(p), replicated) for p in params]
        self.m = [jnp.zeros_like(p) for p in self.params]
        self.v = [jnp.zeros_like(p) for p in self.params]
        comm = dist.JaxCollectives("nodes")
        base = jax.random.key(seed)

        def per_shard(params: Any, ax: Any, x: Any, shard: Any, epoch: Any, train: bool) -> Any:
            keep = None
            if train and dropout > 0:
                key = jax.random.fold_in(
                    jax.random.fold_in(base, epoch), jax.lax.axis_index("nodes")
                )
                mask = jax.random.bernoulli(key, 1.0 - dropout, (ax.shape[0], k))
                keep = mask.astype(ax.dtype) / (1.0 - dropout)
            loss, out = _forward(params, ax, x, shard, comm, keep, collapse, resolution)
            return loss, out.spectral_loss, out.cluster_loss, out.s

        def sharded(train: bool) -> Any:
            return jax.shard_map(
                lambda p, a, x, s, e: per_shard(p, a, x, s, e, train),
                mesh=mesh,
                in_specs=(PartitionSpec(), spec, spec, self.shard.spec(), PartitionSpec()),
                out_specs=(PartitionSpec(), PartitionSpec(), PartitionSpec(), spec),
            )

        train_fn = sharded(True)

        def loss_fn(params: Any, ax: Any, x: Any, shard: Any, epoch: Any) -> Any:
            loss, spectral, cluster, _ = train_fn(params, ax, x, shard, epoch)
            return loss, (spectral, cluster)

        def step(
            params: Any, m: Any, v: Any, alpha: Any, ax: Any, x: Any, shard: Any, epoch: Any
        ) -> Any:
            (loss, (spectral, cluster)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, ax, x, shard, epoch
            )
            params, m, v = adam_update(params, grads, m, v, alpha)
            return params, m, v, jnp.stack([loss, spectral, cluster])

        self._step = jax.jit(step, donate_argnums=(0, 1, 2))
        self._predict = jax.jit(sharded(False))

    def step(self, alpha: np.float32, epoch: int) -> list[float]:
        with self.jax.set_mesh(self.mesh):
            self.params, self.m, self.v, values = self._step(
                self.params, self.m, self.v, alpha, self.ax, self.x, self.shard, np.int32(epoch)
            )
        return [float(v) for v in dist.jax_fetch(values)]

    def state(self) -> list[np.ndarray]:
        return [dist.jax_fetch(a) for a in (*self.params, *self.m, *self.v)]

    def set_state(self, arrays: list[np.ndarray]) -> None:
        from jax.sharding import NamedSharding, PartitionSpec

        put = NamedSharding(self.mesh, PartitionSpec())
        values = [self.jax.device_put(a, put) for a in arrays]
        n = len(self.params)
        self.params, self.m, self.v = values[:n], values[n : 2 * n], values[2 * n :]

    def predict(self) -> np.ndarray:
        with self.jax.set_mesh(self.mesh):
            s = self._predict(self.params, self.ax, self.x, self.shard, np.int32(0))[3]
        return self.part.gather(dist.jax_fetch(s))

    def devices(self) -> str:
        return str(self.mesh.devices.flat[0].platform)


class _TorchEngine:
    def __init__(self, launch: Launch) -> None:
        import torch
        import torch.distributed as tdist

        self.torch, self.tdist = torch, tdist
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if not tdist.is_initialized():
            tdist.init_process_group(
                "nccl" if cuda else "gloo", timeout=timedelta(seconds=launch.timeout)
            )
        self.device = (
            torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
        )
        self.rank, self.parts = tdist.get_rank(), tdist.get_world_size()
        self.processes = self.parts

    def setup(
        self,
        part: dist.Partition,
        ax: np.ndarray,
        x: np.ndarray,
        params: list[np.ndarray],
        k: int,
        dropout: float,
        seed: int,
        collapse: float,
        resolution: float,
    ) -> None:
        torch = self.torch
        self.part, self.k, self.dropout, self.seed = part, k, dropout, seed
        self.collapse, self.resolution = collapse, resolution

        def as_t(a: np.ndarray) -> Any:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=self.device)

        self.ax, self.x = as_t(ax[self.rank]), as_t(x[self.rank])
        self.shard = dist.torch_shard(part, self.rank, device=self.device)
        self.params = [as_t(p).requires_grad_() for p in params]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.comm = dist.TorchCollectives()

    def _keep(self, epoch: int) -> Any:
        if self.dropout == 0:
            return None
        g = self.torch.Generator(device=self.device)
        g.manual_seed((self.seed * 1_000_003 + epoch) * 4099 + self.rank)
        mask = self.torch.rand((self.ax.shape[0], self.k), generator=g, device=self.device)
        return (mask >= self.dropout).to(self.ax.dtype) / (1.0 - self.dropout)

    def step(self, alpha: np.float32, epoch: int) -> list[float]:
        torch = self.torch
        for p in self.params:
            p.grad = None
        loss, out = _forward(
            self.params,
            self.ax,
            self.x,
            self.shard,
            self.comm,
            self._keep(epoch),
            self.collapse,
            self.resolution,
        )
        loss.backward()
        self.comm.sum_gradients(self.params)
        with torch.no_grad():
            new, self.m, self.v = adam_update(
                [p.detach() for p in self.params],
                [p.grad for p in self.params],
                self.m,
                self.v,
                float(alpha),
            )
            for p, value in zip(self.params, new, strict=True):
                p.copy_(value)
        return [
            float(v) for v in (loss.detach(), out.spectral_loss.detach(), out.cluster_loss.detach())
        ]

    def state(self) -> list[np.ndarray]:
        return [t.detach().cpu().numpy() for t in (*self.params, *self.m, *self.v)]

    def set_state(self, arrays: list[np.ndarray]) -> None:
        n = len(self.params)
        with self.torch.no_grad():
            for p, a in zip(self.params, arrays[:n], strict=True):
                p.copy_(self.torch.as_tensor(a))
        self.m = [self.torch.as_tensor(a, device=self.device) for a in arrays[n : 2 * n]]
        self.v = [self.torch.as_tensor(a, device=self.device) for a in arrays[2 * n :]]

    def predict(self) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            _, out = _forward(
                self.params,
                self.ax,
                self.x,
                self.shard,
                self.comm,
                None,
                self.collapse,
                self.resolution,
            )
            blocks = [torch.empty_like(out.s) for _ in range(self.parts)]
            self.tdist.all_gather(blocks, out.s.contiguous())
        return self.part.gather(torch.cat(blocks).cpu().numpy())

    def devices(self) -> str:
        return self.device.type


def finish() -> None:
    """End a torch process group cleanly (all ranks meet first, so that no rank tears
    down the connections while another still uses them); JAX ends its own at exit."""
    import sys

    tdist = sys.modules.get("torch.distributed")
    if tdist is not None and tdist.is_available() and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()


def cluster_sharded(
    graph: Graph,
    k: int = 16,
    *,
    backend: str | None = None,
    launch: Launch | None = None,
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
    """`dmon.train.cluster` on a graph sharded by nodes over JAX devices or torch
    processes (`launch`). Every process calls it with the same graph and settings; each
    gets the full result (process 0 is the one that should write files, and the only
    one that writes the checkpoint).

    Settings are those of `dmon.train.cluster`. With dropout 0 the run follows the
    one-device run epoch by epoch (same initial weights, same Adam), up to float
    rounding; with dropout, the masks come from a counter-based generator keyed by
    (seed, epoch, shard), so a resumed run is exact but the masks differ from Keras'.
    Ctrl-C stops the process (no graceful stop: the processes would have to agree on
    the epoch); resume from the last checkpoint.

    Returns:
        A `ClusterResult` whose `distributed` is `{"backend", "processes", "devices",
        "nodes_per_shard"}`.
    """
    launch = launch or Launch()
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
    try:
        check_launch(name, launch)
    except ValueError as err:
        raise BackendError(str(err)) from None
    # The engine first: jax.distributed must start before any JAX array exists.
    engine: _JaxEngine | _TorchEngine = (
        _JaxEngine(launch) if name == "jax" else _TorchEngine(launch)
    )

    n, f = graph.features.shape
    ei, w = graph.edge_index()
    part = dist.partition(ei, n, engine.parts, edge_weight=w)
    ax = dist.gcn_propagate(part, graph.features, ei, w)
    x = part.scatter(graph.features, dtype=np.float32)
    model, pool_layer = build_model(
        n, f, ei.shape[1], k, hidden, dropout, collapse_regularization, resolution, seed
    )
    gcn, dense = model.get_layer("gcn"), pool_layer.mlp[0]
    initial = [
        np.asarray(_numpy(v), dtype=np.float32)
        for v in (gcn.kernel, gcn.bias, gcn.skip_weight, dense.kernel, dense.bias)
    ]
    del model, pool_layer, gcn, dense
    engine.setup(part, ax, x, initial, k, dropout, seed, collapse_regularization, resolution)
    del ax, x

    run = {
        "graph": ckpt.arrays_sha256(ei.astype(np.int32), w, graph.features),
        "backend": f"{name}-sharded",
        **{key: float(v) if isinstance(v, float) else int(v) for key, v in settings.items()},
    }
    del run["checkpoint_every"]
    history: dict[str, list[float]] = {"loss": [], "spectral_loss": [], "cluster_loss": []}
    start, saved = 0, None
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
        want = list(PARAMS) + [f"m/{p}" for p in PARAMS] + [f"v/{p}" for p in PARAMS]
        if names != want:
            raise ckpt.CheckpointError(
                f"{checkpoint}: not a checkpoint of a sharded run; start afresh"
            )
        engine.set_state([a for _, a in (*state.model, *state.optimizer)])
        history = {key: list(state.history.get(key, [])) for key in history}
        start = saved = state.epoch

    def save(epoch: int) -> None:
        if checkpoint is None or engine.rank != 0:
            return
        arrays = engine.state()
        p = len(PARAMS)
        ckpt.save(
            checkpoint,
            ckpt.Checkpoint(
                epoch,
                run,
                list(zip(PARAMS, arrays[:p], strict=True)),
                [(f"m/{n}", a) for n, a in zip(PARAMS, arrays[p : 2 * p], strict=True)]
                + [(f"v/{n}", a) for n, a in zip(PARAMS, arrays[2 * p :], strict=True)],
                history,
            ),
        )

    t0 = time.perf_counter()
    for epoch in range(start, epochs):
        values = engine.step(adam_alpha(learning_rate, epoch + 1), epoch)
        row = dict(zip(("loss", "spectral_loss", "cluster_loss"), values, strict=True))
        if not all(math.isfinite(v) for v in values):
            kept = f"; the last checkpoint (epoch {saved}) is kept in {checkpoint}" if saved else ""
            detail = ", ".join(f"{key} {v:.4g}" for key, v in row.items())
            raise TrainingDiverged(
                f"training diverged at epoch {epoch + 1}: non-finite loss ({detail}); lower the "
                f"learning rate or check the features{kept}",
                epoch + 1,
            )
        for key, value in row.items():
            history[key].append(value)
        if on_epoch is not None:
            on_epoch(epoch + 1, row)
        if epoch + 1 == epochs or (checkpoint_every and (epoch + 1) % checkpoint_every == 0):
            save(epoch + 1)
            saved = epoch + 1
    if start >= epochs:
        save(start)
    seconds = time.perf_counter() - t0
    probabilities = engine.predict()
    if not np.all(np.isfinite(probabilities)):
        raise TrainingDiverged(
            "the trained model gives non-finite assignments; lower the learning rate or check the features",
            len(history["loss"]),
        )
    assignments = probabilities.argmax(-1)
    quality = evaluate(graph, assignments)
    if resolution != 1.0:
        from dmon import metrics

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
        epochs_completed=len(history["loss"]),
        resumed_from=None if not resume else start,
        distributed={
            "backend": name,
            "processes": engine.processes,
            "devices": engine.parts,
            "device_kind": engine.devices(),
            "process_id": engine.rank,
            "nodes_per_shard": part.nodes_per_shard,
            "edges_per_shard": part.num_edges.astype(int).tolist(),
        },
    )


def _numpy(v: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(v))
