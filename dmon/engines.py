"""The engines that train `dmon.cluster`'s model: JAX (`jit` of one step, over a `Mesh` of
one device or many, in one process or several), torch (eager autograd, one process or
the processes of a torchrun job) and TensorFlow (`tf.function` of one step, one device).

The forward pass is written once, against `dmon.ops` (`forward`), and so are Adam
(`adam_update`, Keras' update rule) and the data every fit prepares once (`prepare`): the
partition into node blocks (one block on one device), `Â X` and the sparse structures.
An engine only takes gradients, moves arrays and names the collectives; on one device
the collectives are the identity (`dmon.distributed.LocalCollectives`).

The GCN's first layer is `Â X W + (X W) ⊙ w_skip + b`. `X` is a constant, so `Â X` is
computed once per fit, next to `X`: a step makes one product `[Â X | X] [W ; W ⊙ w_skip]`,
with no `(N, hidden)` elementwise work for the skip term. Features that are mostly zeros
(Cora's bag of words) are kept sparse, so their products cost their non-zeros.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from dmon import distributed as dist
from dmon.ops import get_backend

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # keras.optimizers.Adam's defaults
SPARSE_FEATURES = 0.1
"""Features with at most this share of non-zeros are multiplied as a sparse matrix."""
TRAINER = "engines-1"
"""Recorded in checkpoints: a checkpoint of another trainer cannot be resumed."""
PARAMS = ("gcn/kernel", "gcn/bias", "gcn/skip_weight", "dmon/kernel", "dmon/bias")


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
    if backend not in ("jax", "torch"):
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


# --- what every engine shares ---------------------------------------------------------


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


@dataclass
class Prepared:
    """What a fit computes once, in NumPy: the partition and, per shard (stacked on a
    leading axis `P`), how the GCN propagates. Dense features: `ax = {"stacked": (P,
    block, 2F)}`, `[Â X | X]`, and `x` empty. Sparse features: `x = {"row", "col",
    "value": (P, nnz_max)}` (local row, feature column, value; padding entries are 0) and
    `Â` itself split into the same blocks (`a_hat`) to multiply `X W` by."""

    part: dist.Partition
    x: dict[str, np.ndarray]
    width: int
    """`F`, the number of features."""
    ax: dict[str, np.ndarray] | None = None
    a_hat: dist.Partition | None = None
    symmetric: bool = False
    """`A = Aᵀ` (then `Â` is symmetric too)."""

    def a_hat_part(self) -> dist.Partition:
        if self.a_hat is None:
            raise ValueError("this fit precomputed Â X; it has no Â")
        return self.a_hat


def prepare(
    edge_index: np.ndarray, weight: np.ndarray, features: np.ndarray, parts: int
) -> Prepared:
    """The partition into `parts` node blocks and the features per block, with the
    cheaper of two exact forms of the GCN's `Â X W` (float32 products either way):

    - dense `X`: `[Â X | X] [W ; W ⊙ w_skip]`, with `Â X` computed once here, in
      float64; a step costs one dense product and no sparse one (nor, sharded, any
      communication).
    - sparse `X` (at most `SPARSE_FEATURES` non-zeros, as a bag of words): `Â (X W)`,
      since `Â X` would have several times the non-zeros of `X`; a step costs the
      non-zeros of `X` and of `Â` (sharded, an all-gather of `X W`)."""
    import scipy.sparse as sp

    n, f = features.shape
    part = dist.partition(edge_index, n, parts, edge_weight=weight)
    a = sp.csr_matrix((weight, (edge_index[0], edge_index[1])), shape=(n, n))
    symmetric = (a != a.T).nnz == 0  # O(E) once per fit: a transpose is a counting sort
    if np.count_nonzero(features) <= SPARSE_FEATURES * features.size:
        return Prepared(
            part,
            _sparse_blocks(part, sp.csr_matrix(features)),
            f,
            a_hat=dist.gcn_partition(part, edge_index, weight),
            symmetric=symmetric,
        )
    ax = dist.gcn_propagate(part, features, edge_index, weight)
    stacked = np.empty((*ax.shape[:-1], 2 * f), np.float32)  # written in place: no copies
    stacked[..., :f] = ax
    stacked[..., f:] = part.scatter(features, np.float32)
    return Prepared(part, {}, f, ax={"stacked": stacked}, symmetric=symmetric)


def _sparse_blocks(part: dist.Partition, m: Any) -> dict[str, np.ndarray]:
    """The rows of each block of a SciPy CSR matrix as padded COO triples."""
    counts = [
        int(m.indptr[hi] - m.indptr[lo])
        for lo, hi in zip(part.bounds[:-1], part.bounds[1:], strict=True)
    ]
    nnz = max(max(counts), 1)
    row = np.zeros((part.parts, nnz), np.int32)
    col = np.zeros((part.parts, nnz), np.int32)
    value = np.zeros((part.parts, nnz), np.float32)
    for p in range(part.parts):
        block = m[part.bounds[p] : part.bounds[p + 1]].tocoo()
        row[p, : block.nnz], col[p, : block.nnz] = block.row, block.col
        value[p, : block.nnz] = block.data
    return {"row": row, "col": col, "value": value}


def _project(feat: dict[str, Any], w: Any, block: int, width: int, cache: dict | None) -> Any:
    """`X_p W` for this shard's sparse features `X_p` (COO) — `(block, hidden)`."""
    ops = get_backend(w)
    matrix = ops.sparse_matrix(
        feat["row"], feat["col"], feat["value"], block, cache, width, constant=True
    )
    return ops.spmm(matrix, w)


def forward(
    params: list[Any],
    prop: Any,
    x: dict[str, Any],
    shard: dist.Shard,
    comm: dist.Collectives,
    keep: Any,
    collapse: float,
    resolution: float,
    width: int,
    cache: dict | None = None,
) -> tuple[Any, dist.DMoNOutput]:
    """One shard's forward pass: `h = selu(Â X W + (X W) ⊙ w_skip + b)` (GCNConv),
    `logits = dropout(h W_d + b_d)`, `dmon.distributed.shard_pool(h, ...)`; the loss
    `L_spec + collapse · L_clus` (the Keras model's `add_loss` total). `prop` is this
    shard's `[Â X | X]` (dense features) or `Â` (a `Shard`; see `prepare`); `keep` is the
    dropout multiplier `mask / (1 - rate)`, or `None`."""
    w, b, skip, wd, bd = params
    ops = get_backend(w)
    block = int(ops.shape(shard.valid)[0])  # type: ignore[arg-type]
    if isinstance(prop, dist.Shard):  # sparse features: Â (X W), Â split into shard rows
        xw = _project(x, w, block, width, cache)
        pre = dist.shard_spmm(prop, xw, comm) + xw * skip
    else:
        # Â X W + (X W) ⊙ w_skip as one product: W ⊙ w_skip scales W's columns, (F, hidden)
        # work where the sum and the product with w_skip cost (block, hidden) passes,
        # forward and backward (~10 ms of a 210 ms torch epoch at ogbn-arxiv's size)
        pre = ops.matmul(prop["stacked"], ops.concat([w, w * skip], axis=0))
    h = ops.selu(pre + b)
    logits = ops.matmul(h, wd) + bd
    if keep is not None:
        logits = logits * keep
    out = dist.shard_pool(h, shard, logits, comm, resolution=resolution)
    return out.spectral_loss + collapse * out.cluster_loss, out


def _mark_shards(data: Prepared, *shards: Any) -> None:
    """Pass on `prepare`'s finding that `A = Aᵀ` (and so `Â = Âᵀ`) to the shards, and
    that their weights are constants (nothing trains them)."""
    for shard in shards:
        if isinstance(shard, dist.Shard):
            shard.symmetric, shard.constant = data.symmetric, True


def _local_shard(arrays: dict[str, np.ndarray], p: int) -> dict[str, np.ndarray]:
    """Shard `p`'s features, without the padding entries of a sparse block."""
    if "value" not in arrays:  # dense (or none)
        return {key: v[p] for key, v in arrays.items()}
    keep = arrays["value"][p] != 0
    keep[0] = True  # one entry at least (an empty block stays a valid matrix)
    return {k: v[p][keep] for k, v in arrays.items()}


def _dropout_seed(seed: int, epoch: int, shard: int) -> int:
    return ((seed * 1_000_003 + epoch) * 4099 + shard) % 2**63


def torch_keep(torch: Any, shape: tuple[int, int], rate: float, seed: int, device: Any) -> Any:
    """torch's dropout multiplier `[u >= rate] / (1 - rate)` `(block, k)` float32, `u`
    uniform in `[0, 1)` and a function of `seed` alone (a resumed run draws the same).

    On the CPU the uniforms come from NumPy's PCG64, which draws float32s 1.5-3x faster
    than torch's CPU generator (a Mersenne Twister on one thread: 14-26 ms of a ~210 ms
    epoch at ogbn-arxiv's size, 169,343 x 40); on a GPU, from torch's generator there.
    """
    if torch.device(device).type == "cpu":
        uniform = np.random.default_rng(seed).random(shape, dtype=np.float32)
        u = torch.from_numpy(uniform)
    else:
        g = torch.Generator(device=device)
        g.manual_seed(seed)
        u = torch.rand(shape, generator=g, device=device)
    return (u >= rate).to(torch.float32).mul_(1.0 / (1.0 - rate))


# --- JAX --------------------------------------------------------------------------------


class JaxEngine:
    """One `jax.jit` step over a `Mesh` of `launch.devices` devices per process (one
    device for a local run), across processes after `jax.distributed.initialize`.

    Where the engine starts JAX (no JAX computation ran before in the process), JAX's
    CPU client runs single-device computations on the calling thread
    (`jax_cpu_enable_async_dispatch=False`), for the rest of the process. XLA:CPU
    allocates a step's temporaries as one block (about 380 MB at ogbn-arxiv's size) on
    the thread that runs the step: on the trainer's thread, glibc keeps it for the next
    step (`dmon.memory.keep_freed_memory`); on one of JAX's worker threads, whose glibc
    arena grows in heaps of at most 64 MiB, it is a fresh mapping page-faulted in on
    every step (over a third of the epoch at that size). The step's result is read at
    once in any case, so dispatching it asynchronously gains nothing here.
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
        self.mesh = jax.sharding.Mesh(np.array(chosen), ("nodes",))
        self.parts = len(chosen)
        self.processes = jax.process_count()
        self.rank = jax.process_index()

    def setup(
        self,
        data: Prepared,
        params: list[np.ndarray],
        k: int,
        dropout: float,
        seed: int,
        collapse: float,
        resolution: float,
    ) -> None:
        jax, jnp = self.jax, self.jax.numpy
        from jax.sharding import NamedSharding, PartitionSpec

        self.part = data.part
        mesh, spec = self.mesh, PartitionSpec("nodes")

        def put(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
            return {key: dist.jax_put(v, mesh) for key, v in arrays.items()}

        self.x = put(data.x)
        self.ax = put(data.ax) if data.ax is not None else dist.jax_shards(data.a_hat_part(), mesh)
        # the pool's product A [S | 1] of a symmetric graph is never differentiated with
        # respect to S (dmon.symmetric), so its edges may take the fast slot order
        self.shard = dist.jax_shards(data.part, mesh, slots=data.symmetric)
        _mark_shards(data, self.shard, self.ax)
        replicated = NamedSharding(mesh, PartitionSpec())
        self.params = [jax.device_put(jnp.asarray(p), replicated) for p in params]
        self.m = [jnp.zeros_like(p) for p in self.params]
        self.v = [jnp.zeros_like(p) for p in self.params]
        comm = dist.JaxCollectives("nodes")
        base = jax.random.key(seed)
        block, width = data.part.block, data.width

        def per_shard(params: Any, ax: Any, x: Any, shard: Any, epoch: Any, train: bool) -> Any:
            keep = None
            if train and dropout > 0:
                key = jax.random.fold_in(
                    jax.random.fold_in(base, epoch), jax.lax.axis_index("nodes")
                )
                mask = jax.random.bernoulli(key, 1.0 - dropout, (block, k))
                keep = mask.astype(jnp.float32) / (1.0 - dropout)
            loss, out = forward(params, ax, x, shard, comm, keep, collapse, resolution, width)
            return loss, out.spectral_loss, out.cluster_loss, out.s

        feature_spec = {key: spec for key in data.x}
        prop_spec = (
            self.ax.spec() if isinstance(self.ax, dist.Shard) else {k: spec for k in self.ax}
        )

        def sharded(train: bool) -> Any:
            return jax.shard_map(
                lambda p, a, x, s, e: per_shard(p, a, x, s, e, train),
                mesh=mesh,
                in_specs=(
                    PartitionSpec(),
                    prop_spec,
                    feature_spec,
                    self.shard.spec(),
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

    def device_kind(self) -> str:
        return str(self.mesh.devices.flat[0].platform)


# --- torch ------------------------------------------------------------------------------


class TorchEngine:
    """Eager autograd on one device (`launch is None`), or one process of a torchrun job
    with the collectives of `torch.distributed` (gloo on CPU, NCCL on GPU)."""

    def __init__(self, launch: Launch | None) -> None:
        import torch
        import torch.distributed as tdist

        self.torch, self.tdist = torch, tdist
        cuda = torch.cuda.is_available()
        if launch is None:  # one device, no process group
            self.device = torch.device("cuda") if cuda else torch.device("cpu")
            self.rank, self.parts, self.processes = 0, 1, 1
            self.comm: Any = dist.LocalCollectives()
            return
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
        self.comm = dist.TorchCollectives()

    def setup(
        self,
        data: Prepared,
        params: list[np.ndarray],
        k: int,
        dropout: float,
        seed: int,
        collapse: float,
        resolution: float,
    ) -> None:
        torch = self.torch
        self.part, self.k, self.dropout, self.seed = data.part, k, dropout, seed
        self.collapse, self.resolution, self.width = collapse, resolution, data.width

        def tensors(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
            local = _local_shard(arrays, self.rank)
            return {
                key: torch.as_tensor(
                    np.ascontiguousarray(v),
                    dtype=torch.float32 if v.dtype.kind == "f" else torch.int64,
                    device=self.device,
                )
                for key, v in local.items()
            }

        self.x = tensors(data.x)
        self.ax = (
            tensors(data.ax)
            if data.ax is not None
            else dist.torch_shard(data.a_hat_part(), self.rank, device=self.device)
        )
        self.cache: dict = {}  # the sparse features' CSR, built once per fit
        self.shard = dist.torch_shard(data.part, self.rank, device=self.device)
        _mark_shards(data, self.shard, self.ax)
        self.params = [
            torch.as_tensor(p, dtype=torch.float32, device=self.device).requires_grad_()
            for p in params
        ]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.block = data.part.block

    def _keep(self, epoch: int) -> Any:
        if self.dropout == 0:
            return None
        seed = _dropout_seed(self.seed, epoch, self.rank)
        return torch_keep(self.torch, (self.block, self.k), self.dropout, seed, self.device)

    def _forward(self, keep: Any) -> Any:
        return forward(
            self.params, self.ax, self.x, self.shard, self.comm, keep, self.collapse,
            self.resolution, self.width, self.cache,
        )  # fmt: skip

    def step(self, alpha: np.float32, epoch: int) -> list[float]:
        torch = self.torch
        for p in self.params:
            p.grad = None
        loss, out = self._forward(self._keep(epoch))
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
        values = torch.stack([loss.detach(), out.spectral_loss.detach(), out.cluster_loss.detach()])
        return values.cpu().tolist()

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
            _, out = self._forward(None)
            if self.parts == 1:
                return self.part.gather(out.s.cpu().numpy()[None])
            blocks = [torch.empty_like(out.s) for _ in range(self.parts)]
            self.tdist.all_gather(blocks, out.s.contiguous())
        return self.part.gather(torch.stack(blocks).cpu().numpy())

    def device_kind(self) -> str:
        return self.device.type


# --- TensorFlow ---------------------------------------------------------------------------


class TensorFlowEngine:
    """One `tf.function` step (without XLA: TensorFlow's sparse product has no XLA kernel)
    on one device."""

    def __init__(self, launch: Launch | None) -> None:
        import tensorflow as tf

        if launch is not None:
            raise ValueError("TensorFlow trains on one device (see docs/distributed.md)")
        self.tf = tf
        self.rank, self.parts, self.processes = 0, 1, 1

    def setup(
        self,
        data: Prepared,
        params: list[np.ndarray],
        k: int,
        dropout: float,
        seed: int,
        collapse: float,
        resolution: float,
    ) -> None:
        tf = self.tf
        self.part = data.part
        comm = dist.LocalCollectives()

        def tensors(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
            local = _local_shard(arrays, 0)
            return {
                key: tf.constant(v, dtype=tf.float32 if v.dtype.kind == "f" else tf.int64)
                for key, v in local.items()
            }

        self.x = tensors(data.x)
        self.ax = tensors(data.ax) if data.ax is not None else dist.tf_shard(data.a_hat_part())
        self.shard = dist.tf_shard(data.part)
        _mark_shards(data, self.shard, self.ax)
        self.params = [tf.Variable(p, dtype=tf.float32) for p in params]
        self.m = [tf.Variable(tf.zeros_like(p)) for p in self.params]
        self.v = [tf.Variable(tf.zeros_like(p)) for p in self.params]
        cache: dict = {}
        block, width = data.part.block, data.width
        # the sparse structures, built eagerly once: the traced step reads them as constants
        if isinstance(self.ax, dist.Shard):  # sparse features (see prepare)
            dist.shard_spmm(self.ax, tf.zeros((block, 1)), comm)
            _project(self.x, tf.zeros((width, 1)), block, width, cache)
        dist.shard_spmm(self.shard, tf.zeros((block, 1)), comm)

        def run(train: bool, epoch: Any) -> Any:
            keep = None
            if train and dropout > 0:
                mask = tf.random.stateless_uniform(
                    (block, k), tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
                )
                keep = tf.cast(mask >= dropout, tf.float32) / (1.0 - dropout)
            return forward(
                list(self.params), self.ax, self.x, self.shard, comm, keep, collapse,
                resolution, width, cache,
            )  # fmt: skip

        @tf.function
        def step(alpha: Any, epoch: Any) -> Any:
            with tf.GradientTape() as tape:
                loss, out = run(True, epoch)
            # a gather's gradient is IndexedSlices: dense for Adam
            grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, self.params)]
            new, m, v = adam_update(list(self.params), grads, list(self.m), list(self.v), alpha)
            for var, value in zip([*self.params, *self.m, *self.v], [*new, *m, *v], strict=True):
                var.assign(value)
            return tf.stack([loss, out.spectral_loss, out.cluster_loss])

        @tf.function
        def predict() -> Any:
            return run(False, 0)[1].s

        self._step, self._predict = step, predict

    def step(self, alpha: np.float32, epoch: int) -> list[float]:
        values = self._step(self.tf.constant(alpha), self.tf.constant(epoch, self.tf.int64))
        return [float(v) for v in values.numpy()]

    def state(self) -> list[np.ndarray]:
        return [v.numpy() for v in (*self.params, *self.m, *self.v)]

    def set_state(self, arrays: list[np.ndarray]) -> None:
        for var, a in zip([*self.params, *self.m, *self.v], arrays, strict=True):
            var.assign(a)

    def predict(self) -> np.ndarray:
        return self.part.gather(self._predict().numpy()[None])

    def device_kind(self) -> str:
        return "gpu" if self.tf.config.list_logical_devices("GPU") else "cpu"


def make_engine(backend: str, launch: Launch | None) -> JaxEngine | TorchEngine | TensorFlowEngine:
    """The engine of `backend`; `launch` `None` is one device in one process."""
    if backend == "jax":
        return JaxEngine(launch)
    if backend == "torch":
        return TorchEngine(launch)
    return TensorFlowEngine(launch)


def finish() -> None:
    """End a torch process group cleanly (all ranks meet first, so that no rank tears
    down the connections while another still uses them); JAX ends its own at exit."""
    import sys

    tdist = sys.modules.get("torch.distributed")
    if tdist is not None and tdist.is_available() and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()
