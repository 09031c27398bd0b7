"""JAX's training engine: one `jax.jit` step over a `Mesh` of devices, in one process or
across processes after `jax.distributed.initialize`."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
from dmon.backends.jax.collectives import (
    AXIS,
    JaxCollectives,
    jax_fetch,
    jax_put,
    jax_shards,
    shard_spec,
)

from dmon import memory
from dmon.distributed import Shard
from dmon.training.engine import Defaults
from dmon.training.launch import Launch, check_common
from dmon.training.model import ModelSettings, by_name, forward
from dmon.training.optimizer import adam_update
from dmon.training.prepared import Prepared
from dmon.training.rendezvous import meet


class Engine(Defaults):
    """One `jax.jit` step over a `Mesh` of `launch.devices` devices per process (one
    device for a local run), across processes after `jax.distributed.initialize`.

    Where the engine starts JAX (no JAX computation ran before in the process), JAX's
    CPU client runs single-device computations on the calling thread
    (`jax_cpu_enable_async_dispatch=False`), for the rest of the process. XLA:CPU
    allocates a step's temporaries as one large block on
    the thread that runs the step: on the trainer's thread, glibc keeps it for the next
    step (`dmon.memory.keep_freed_memory`); on one of JAX's worker threads, whose glibc
    arena grows in heaps of at most 64 MiB, it is a fresh mapping page-faulted in on
    every step (docs/benchmarks.md, "Training"). On the CPU each step is also waited
    for before the next is dispatched: steps of simulated devices queued behind one
    another can starve XLA's thread pool until a collective's rendezvous times out. On
    an accelerator steps queue, and the loop reads their losses in batches.

    The step and the prediction are compiled apart from their first run, and the
    compiler's freed memory is handed back before it (`dmon.memory.release_freed_memory`);
    a process of a job on CPUs shares one malloc arena among its threads
    (`dmon.memory.one_arena`). Both keep a sharded process's peak memory to its data's
    (docs/benchmarks.md, "shards").
    """

    def __init__(self, launch: Launch | None) -> None:
        import jax

        self.jax = jax
        launch = launch or Launch(devices=1)
        # only a new client reads it; restored for whatever reads the setting later
        was = jax.config.read("jax_cpu_enable_async_dispatch")
        jax.config.update("jax_cpu_enable_async_dispatch", False)
        try:
            self._start(launch)
        finally:
            jax.config.update("jax_cpu_enable_async_dispatch", was)

    def _start(self, launch: Launch) -> None:
        jax = self.jax
        if launch.coordinator is not None:
            if _cpu_only(jax):
                memory.one_arena()  # before JAX's threads start (dmon.memory.one_arena)
            # CPU devices talk over gloo (accelerators use their own collectives); must be
            # set before the backend starts, so it cannot wait to see which platform it is
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            # meet first: JAX aborts in C++ when a peer never comes (dmon.training.rendezvous)
            meet(launch.coordinator, launch.num_processes or 1, launch.process_id or 0,
                 launch.timeout)  # fmt: skip
            jax.distributed.initialize(
                launch.coordinator,
                launch.num_processes,
                launch.process_id,
                initialization_timeout=int(launch.timeout),
                heartbeat_timeout_seconds=max(10, int(min(launch.timeout, 100))),
            )
        chosen = []
        for proc in range(jax.process_count()):
            own = [d for d in jax.devices() if d.process_index == proc]
            want = len(own) if launch.devices is None else launch.devices
            if want > len(own):
                raise ValueError(
                    f"devices {want}: process {proc} has {len(own)} {own[0].platform} device(s); "
                    "on a CPU, simulate more with XLA_FLAGS=--xla_force_host_platform_device_count=P "
                    "(dmon cluster --devices sets it)"
                )
            chosen += own[:want]
        self.mesh = jax.sharding.Mesh(np.array(chosen), (AXIS,))
        self.wait = chosen[0].platform == "cpu"
        self.parts = len(chosen)
        self.processes = jax.process_count()
        self.rank = jax.process_index()

    @classmethod
    def check_launch(cls, launch: Launch) -> None:
        check_common(launch)

    @classmethod
    def configure(cls, launch: Launch) -> None:
        if launch.devices is None or "jax" in sys.modules:
            return
        # simulated host devices (CPU only; accelerators are what they are): before JAX starts
        flag = f"--xla_force_host_platform_device_count={launch.devices}"
        if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()

    def setup(self, data: Prepared, params: list[np.ndarray], settings: ModelSettings) -> None:
        jax, jnp = self.jax, self.jax.numpy
        from jax.sharding import NamedSharding, PartitionSpec

        self.part = data.part
        mesh, spec = self.mesh, PartitionSpec(AXIS)

        def put(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
            return {key: jax_put(v, mesh) for key, v in arrays.items()}

        self.x = put(data.x)
        self.ax = put(data.ax) if data.ax is not None else jax_shards(data.a_hat_part(), mesh)
        # the pool's product A [S | 1] of a symmetric graph is never differentiated with
        # respect to S (dmon.node_sums), so its edges may take the fast slot order
        self.shard = jax_shards(data.part, mesh, slots=data.symmetric, plan=data.slot_plan)
        data.mark(self.shard, self.ax)
        replicated = NamedSharding(mesh, PartitionSpec())
        self.params = [jax.device_put(jnp.asarray(p), replicated) for p in params]
        self.m = [jnp.zeros_like(p) for p in self.params]
        self.v = [jnp.zeros_like(p) for p in self.params]
        comm = JaxCollectives(AXIS)
        k, dropout = settings.k, settings.dropout
        base = jax.random.key(settings.seed)
        block, width = data.part.block, data.width

        def per_shard(params: Any, ax: Any, x: Any, shard: Any, epoch: Any, train: bool) -> Any:
            keep = None
            if train and dropout > 0:
                key = jax.random.fold_in(jax.random.fold_in(base, epoch), jax.lax.axis_index(AXIS))
                mask = jax.random.bernoulli(key, 1.0 - dropout, (block, k))
                keep = mask.astype(jnp.float32) / (1.0 - dropout)
            loss, out = forward(by_name(params), ax, x, shard, comm, keep, settings, width)
            return loss, out.spectral_loss, out.cluster_loss, out.s

        feature_spec = {key: spec for key in data.x}
        prop_spec = (
            shard_spec(self.ax) if isinstance(self.ax, Shard) else {key: spec for key in self.ax}
        )

        def sharded(train: bool) -> Any:
            return jax.shard_map(
                lambda p, a, x, s, e: per_shard(p, a, x, s, e, train),
                mesh=mesh,
                in_specs=(
                    PartitionSpec(),
                    prop_spec,
                    feature_spec,
                    shard_spec(self.shard),
                    PartitionSpec(),
                ),
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
        self._compiled: Any = None
        self._predict = jax.jit(sharded(False))

    def step(self, alpha: np.float32, epoch: int) -> Any:
        args = (self.params, self.m, self.v, alpha, self.ax, self.x, self.shard, np.int32(epoch))
        with self.jax.set_mesh(self.mesh):
            if self._compiled is None:
                self._compiled = _compiled(self._step, args)
            self.params, self.m, self.v, values = self._compiled(*args)
        if self.wait:
            values.block_until_ready()
        return values

    def read(self, values: list[Any]) -> np.ndarray:
        return np.stack([np.asarray(jax_fetch(v), dtype=np.float64) for v in values])

    def state(self) -> list[np.ndarray]:
        return [jax_fetch(a) for a in (*self.params, *self.m, *self.v)]

    def set_state(self, arrays: list[np.ndarray]) -> None:
        from jax.sharding import NamedSharding, PartitionSpec

        put = NamedSharding(self.mesh, PartitionSpec())
        values = [self.jax.device_put(a, put) for a in arrays]
        n = len(self.params)
        self.params, self.m, self.v = values[:n], values[n : 2 * n], values[2 * n :]

    def _sharded_predictions(self) -> Any:
        args = (self.params, self.ax, self.x, self.shard, np.int32(0))
        with self.jax.set_mesh(self.mesh):
            return _compiled(self._predict, args)(*args)[3]

    def predict(self) -> np.ndarray:
        return self.part.gather(jax_fetch(self._sharded_predictions()))

    def predict_local(self) -> tuple[np.ndarray, np.ndarray]:
        s = self._sharded_predictions()
        block, blocks = self.part.block, {}
        for piece in s.addressable_shards:  # this process's devices' blocks only
            blocks[(piece.index[0].start or 0) // block] = np.asarray(piece.data)
        nodes = [self.part.nodes(p) for p in sorted(blocks)]
        rows = [blocks[p][: ids.size] for p, ids in zip(sorted(blocks), nodes, strict=True)]
        return np.concatenate(nodes), np.concatenate(rows)

    def device_kind(self) -> str:
        return str(self.mesh.devices.flat[0].platform)

    def local_shards(self) -> list[int]:
        mine = self.jax.process_index()
        return [i for i, d in enumerate(self.mesh.devices.flat) if d.process_index == mine]

    def gather_over_processes(self, x: np.ndarray) -> np.ndarray:
        if self.processes == 1:
            return x[None]
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(np.asarray(x)))


def _compiled(fn: Any, args: tuple[Any, ...]) -> Any:
    """`fn` (a `jax.jit` function) compiled for `args`, with the compiler's freed memory
    handed back before the first run: glibc keeps it in its arenas, where the run's one
    large block of temporaries cannot reuse it, so it would add to the peak."""
    compiled = fn.lower(*args).compile()
    memory.release_freed_memory()
    return compiled


def _cpu_only(jax: Any) -> bool:
    """Whether JAX will run on the CPU, known before its backends start: CPU asked for,
    or no accelerator plugin installed."""
    import importlib.metadata
    import importlib.util

    platforms = jax.config.jax_platforms
    if platforms:
        return str(platforms).split(",")[0] == "cpu"
    plugins = importlib.metadata.entry_points(group="jax_plugins")
    return not plugins and importlib.util.find_spec("jax_plugins") is None
