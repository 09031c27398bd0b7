"""torch's training engine: eager autograd on one device, or one process of a torchrun job
with the collectives of `torch.distributed`."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import numpy as np
from dmon.backends.torch.collectives import TorchCollectives, torch_shard

from dmon.distributed import LocalCollectives
from dmon.training.engine import Defaults
from dmon.training.launch import Launch, check_common
from dmon.training.model import ModelSettings, by_name, dropout_seed, forward
from dmon.training.optimizer import BETA_1, BETA_2, EPSILON
from dmon.training.prepared import Prepared


class Engine(Defaults):
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
            self.comm: Any = LocalCollectives()
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
        self.comm = TorchCollectives()

    @classmethod
    def check_launch(cls, launch: Launch) -> None:
        check_common(
            launch,
            processes="coordinator/num_processes/process_id are jax.distributed's; torch takes "
            "its processes from torchrun (python -m torch.distributed.run)",
        )
        if launch.devices is not None:
            raise ValueError(
                "torch shards over processes: launch with python -m torch.distributed.run "
                "--nproc-per-node P (devices is for JAX)"
            )
        if not cls.launched():
            raise ValueError(
                "sharded torch training needs a torchrun launch (RANK, WORLD_SIZE, MASTER_ADDR, "
                "MASTER_PORT): python -m torch.distributed.run --nproc-per-node P -m dmon cluster ..."
            )

    @classmethod
    def launched(cls) -> bool:
        """Whether torchrun (`torch.distributed.run`) started this process."""
        return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))

    def setup(self, data: Prepared, params: list[np.ndarray], settings: ModelSettings) -> None:
        torch = self.torch
        self.part, self.settings, self.width = data.part, settings, data.width

        def tensors(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
            local = data.local(arrays, self.rank)
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
            else torch_shard(data.a_hat_part(), self.rank, device=self.device)
        )
        self.cache: dict = {}  # the sparse features' CSR, built once per fit
        self.shard = torch_shard(data.part, self.rank, device=self.device)
        data.mark(self.shard, self.ax)
        self.params = [
            torch.as_tensor(p, dtype=torch.float32, device=self.device).requires_grad_()
            for p in params
        ]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        # Adam's step size lives on the device, updated in place: no per-step number is
        # baked into a launch (a CUDA graph can replay the step)
        self.alpha = torch.zeros((), device=self.device)
        self.generator: Any = None
        self.block = data.part.block

    def _keep(self, epoch: int) -> Any:
        rate = self.settings.dropout
        if rate == 0:
            return None
        seed = dropout_seed(self.settings.seed, epoch, self.rank)
        if self.generator is None and self.device.type != "cpu":
            self.generator = self.torch.Generator(device=self.device)  # one, reseeded
        return torch_keep(
            self.torch, (self.block, self.settings.k), rate, seed, self.device, self.generator
        )

    def _forward(self, keep: Any) -> Any:
        return forward(
            by_name(self.params), self.ax, self.x, self.shard, self.comm, keep, self.settings,
            self.width, self.cache,
        )  # fmt: skip

    def step(self, alpha: np.float32, epoch: int) -> Any:
        torch = self.torch
        for p in self.params:
            p.grad = None
        loss, out = self._forward(self._keep(epoch))
        loss.backward()
        self.comm.sum_gradients(self.params)
        with torch.no_grad():
            self.alpha.fill_(float(alpha))
            foreach_adam(
                torch, self.params, [p.grad for p in self.params], self.m, self.v, self.alpha
            )
        return torch.stack([loss.detach(), out.spectral_loss.detach(), out.cluster_loss.detach()])

    def read(self, values: list[Any]) -> np.ndarray:
        return self.torch.stack(values).cpu().numpy().astype(np.float64)

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
            # every rank's block written into one (P, block, k) tensor: no stacked copy
            blocks = out.s.new_empty((self.parts, *out.s.shape))
            self.tdist.all_gather(list(blocks.unbind(0)), out.s.contiguous())
        return self.part.gather(blocks.cpu().numpy())

    def predict_local(self) -> tuple[np.ndarray, np.ndarray]:
        with self.torch.no_grad():
            _, out = self._forward(None)
        nodes = self.part.nodes(self.rank)
        return nodes, out.s[: nodes.size].cpu().numpy()

    def device_kind(self) -> str:
        return self.device.type

    def local_shards(self) -> list[int]:
        return [self.rank]

    def gather_over_processes(self, x: np.ndarray) -> np.ndarray:
        if self.processes == 1:
            return x[None]
        mine = self.torch.as_tensor(np.ascontiguousarray(x), device=self.device)
        out = mine.new_empty((self.processes, *mine.shape))
        self.tdist.all_gather(list(out.unbind(0)), mine)
        return out.cpu().numpy()


def foreach_adam(
    torch: Any, params: list[Any], grads: list[Any], m: list[Any], v: list[Any], alpha: Any
) -> None:
    """`dmon.training.optimizer.adam_update` (Keras' Adam) in place, with torch's
    multi-tensor kernels: seven launches for every parameter together instead of a dozen
    per parameter. Not `torch.optim.Adam(foreach=True)`: it adds ε to `√v̂`, Keras to
    `√v`, so their steps differ. `alpha` is a 0-d tensor."""
    torch._foreach_lerp_(m, grads, 1 - BETA_1)  # m += (g - m)(1 - β₁)
    torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), 1 - BETA_2)
    denominator = torch._foreach_sqrt(v)
    torch._foreach_add_(denominator, EPSILON)
    torch._foreach_addcdiv_(params, torch._foreach_mul(m, alpha), denominator, value=-1)


def torch_keep(
    torch: Any,
    shape: tuple[int, int],
    rate: float,
    seed: int,
    device: Any,
    generator: Any = None,
) -> Any:
    """torch's dropout multiplier `[u >= rate] / (1 - rate)` `(block, k)` float32, `u`
    uniform in `[0, 1)` and a function of `seed` alone (a resumed run draws the same).

    On the CPU the multiplier is made by NumPy, from its PCG64, which draws float32s
    faster than torch's CPU generator, a Mersenne Twister on one thread
    (docs/benchmarks.md, "Design measurements"): no torch op at all. On a GPU the
    uniforms come from `generator` there (one per run, reseeded: made once, not per
    step).
    """
    scale = np.float32(1.0 / (1.0 - rate))
    if torch.device(device).type == "cpu":
        uniform = np.random.default_rng(seed).random(shape, dtype=np.float32)
        return torch.from_numpy(np.where(uniform >= rate, scale, np.float32(0)))
    if generator is None:
        generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    u = torch.rand(shape, generator=generator, device=device)
    return torch.where(u >= rate, scale, 0.0)


def finish() -> None:
    """End a torch process group cleanly (all ranks meet first, so that no rank tears
    down the connections while another still uses them)."""
    import sys

    tdist = sys.modules.get("torch.distributed")
    if tdist is not None and tdist.is_available() and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()
