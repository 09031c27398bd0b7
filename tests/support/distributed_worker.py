"""A process of the sharded-pool tests (tests/distributed/test_distributed.py): the sharded pool's
outputs and gradients against `dmon.pool` of the whole graph on one device, written as
JSON of the largest differences per case.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python distributed_worker.py jax OUT
    python -m torch.distributed.run --nproc-per-node 2 distributed_worker.py torch OUT

Cases: N not divisible by the shards, isolated nodes, and three graphs in a `batch`
vector; float32 and float64; contiguous blocks that all-gather, and METIS's blocks that
exchange halos (`LAYOUTS`). The scalar differentiated weighs every output (the three
losses and the pooled `x` and `adj` against fixed random weights), so every gradient path
is compared.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from typing import Any

import numpy as np

import dmon
from dmon import distributed as dd

C, F = 3, 5
LAYOUTS = {"all-gather": ("contiguous", "all-gather"), "halo": ("metis", "halo")}
"""Report name: (`partition`'s `method`, `exchange`)."""


def cases() -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(7)
    out = {}
    for name, sizes in (("one graph, isolated nodes", [23]), ("batch of three", [9, 7, 7])):
        n = sum(sizes)
        starts = np.cumsum([0, *sizes])
        edges = []
        for lo, hi in itertools.pairwise(starts):
            for _ in range(2 * (hi - lo)):
                i, j = rng.integers(lo, hi - 2, 2)  # the last two nodes of a graph: isolated
                if i != j:
                    edges += [(i, j), (j, i)]
        ei = np.array(edges).T
        out[name] = {
            "edge_index": ei,
            "weight": rng.uniform(0.5, 2.0, ei.shape[1]),
            "batch": None if len(sizes) == 1 else np.repeat(np.arange(len(sizes)), sizes),
            "x": rng.normal(size=(n, F)),
            "logits": rng.normal(size=(n, C)),
            "r_x": rng.normal(size=(len(sizes), C, F)),
            "r_adj": rng.normal(size=(len(sizes), C, C)),
        }
    return out


def scalar(out: Any, r_x: Any, r_adj: Any) -> Any:
    return (
        out.spectral_loss
        + 2 * out.cluster_loss
        + 3 * out.ortho_loss
        + (out.x * r_x).sum()
        + (out.adj * r_adj).sum()
    )


def diff(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))


def run_jax(path: str) -> None:
    import jax
    import jax.numpy as jnp
    from dmon.backends.jax.collectives import JaxCollectives, jax_put, jax_shards, shard_spec
    from jax.sharding import PartitionSpec as P

    jax.config.update("jax_enable_x64", True)
    parts = jax.device_count()
    mesh = jax.make_mesh((parts,), ("nodes",))
    comm = JaxCollectives("nodes")
    report: dict[str, Any] = {"shards": parts}
    for (name, c), (layout, (method, exchange)), dtype in itertools.product(
        cases().items(), LAYOUTS.items(), ("float32", "float64")
    ):
        n = c["x"].shape[0]
        part = dd.partition(
            c["edge_index"], n, parts, c["weight"], c["batch"], method=method, exchange=exchange
        )
        assert part.exchange == exchange
        shard = jax_shards(part, mesh, dtype=dtype)
        xs = jax_put(part.scatter(c["x"], dtype), mesh)
        ls = jax_put(part.scatter(c["logits"], dtype), mesh)
        r_x, r_adj = jnp.asarray(c["r_x"], dtype), jnp.asarray(c["r_adj"], dtype)

        def sharded(x: Any, logits: Any, shard: Any, r_x: Any = r_x, r_adj: Any = r_adj) -> Any:
            out = dd.shard_pool(x, shard, logits, comm)
            return out, scalar(out, r_x, r_adj)

        f = jax.shard_map(
            sharded,
            mesh=mesh,
            in_specs=(P("nodes"), P("nodes"), shard_spec(shard)),
            out_specs=(dmon.DMoNOutput(P("nodes"), P(), P(), P(), P(), P()), P()),
        )
        graph = dmon.SparseGraph(
            jnp.asarray(c["edge_index"]),
            jnp.asarray(c["weight"], dtype),
            None if c["batch"] is None else jnp.asarray(c["batch"]),
        )

        def whole(
            x: Any, logits: Any, graph: Any = graph, r_x: Any = r_x, r_adj: Any = r_adj
        ) -> Any:
            out = dmon.pool(x, graph, logits)
            return out, scalar(out, r_x, r_adj)

        x, logits = jnp.asarray(c["x"], dtype), jnp.asarray(c["logits"], dtype)
        with jax.set_mesh(mesh):
            out, _ = jax.jit(lambda a, b, s=shard, f=f: f(a, b, s))(xs, ls)
            g_x, g_l = jax.jit(jax.grad(lambda a, b, s=shard, f=f: f(a, b, s)[1], argnums=(0, 1)))(
                xs, ls
            )
        ref = whole(x, logits)[0]
        r_gx, r_gl = jax.grad(lambda a, b: whole(a, b)[1], argnums=(0, 1))(x, logits)
        report[f"{name}/{layout}/{dtype}"] = {
            "s": diff(part.gather(np.asarray(out.s)), ref.s),
            "x": diff(out.x, ref.x),
            "adj": diff(out.adj, ref.adj),
            **{
                key: diff(getattr(out, key), getattr(ref, key))
                for key in ("spectral_loss", "ortho_loss", "cluster_loss")
            },
            "grad_x": diff(part.gather(np.asarray(g_x)), r_gx),
            "grad_logits": diff(part.gather(np.asarray(g_l)), r_gl),
            "grad_scale": float(np.abs(np.asarray(r_gl)).max()),
        }
    with open(path, "w") as fh:
        json.dump(report, fh)


def torch_report(
    c: dict[str, Any], parts: int, rank: int, comm: Any, dtype: str, layout: str = "all-gather"
) -> dict:
    """Shard `rank` of `parts`: `shard_pool` against `dmon.pool` of the whole graph."""
    import torch
    from dmon.backends.torch.collectives import torch_shard

    tdt = getattr(torch, dtype)
    n = c["x"].shape[0]
    method, exchange = LAYOUTS[layout]
    part = dd.partition(
        c["edge_index"], n, parts, c["weight"], c["batch"], method=method, exchange=exchange
    )
    assert part.exchange == (exchange if parts > 1 else "all-gather")
    shard = torch_shard(part, rank, dtype=tdt)
    x_p = torch.tensor(part.scatter(c["x"], dtype)[rank], requires_grad=True)
    l_p = torch.tensor(part.scatter(c["logits"], dtype)[rank], requires_grad=True)
    r_x, r_adj = torch.tensor(c["r_x"], dtype=tdt), torch.tensor(c["r_adj"], dtype=tdt)
    out = dd.shard_pool(x_p, shard, l_p, comm)
    scalar(out, r_x, r_adj).backward()
    x = torch.tensor(c["x"], dtype=tdt, requires_grad=True)
    logits = torch.tensor(c["logits"], dtype=tdt, requires_grad=True)
    graph = dmon.SparseGraph(
        torch.as_tensor(c["edge_index"]),
        torch.tensor(c["weight"], dtype=tdt),
        None if c["batch"] is None else torch.as_tensor(c["batch"]),
    )
    ref = dmon.pool(x, graph, logits)
    scalar(ref, r_x, r_adj).backward()
    lo, hi = part.bounds[rank], part.bounds[rank + 1]
    size = hi - lo
    ids = np.arange(lo, hi) if part.order is None else part.order[lo:hi]  # this shard's nodes
    return {
        "s": diff(out.s.detach()[:size], ref.s.detach()[ids]),
        "x": diff(out.x.detach(), ref.x.detach()),
        "adj": diff(out.adj.detach(), ref.adj.detach()),
        **{
            key: diff(getattr(out, key).detach(), getattr(ref, key).detach())
            for key in ("spectral_loss", "ortho_loss", "cluster_loss")
        },
        "grad_x": diff(x_p.grad[:size], x.grad[ids]),
        "grad_logits": diff(l_p.grad[:size], logits.grad[ids]),
        "grad_scale": float(logits.grad.abs().max()),
        "padding_grad": float(l_p.grad[size:].abs().max()) if size < part.block else 0.0,
        "padded": shard.padded,
    }


def run_torch(path: str) -> None:
    import torch.distributed as tdist
    from dmon.backends.torch.collectives import TorchCollectives

    tdist.init_process_group("gloo")
    rank, parts = tdist.get_rank(), tdist.get_world_size()
    comm = TorchCollectives()
    report: dict[str, Any] = {"shards": parts}
    for (name, c), layout, dtype in itertools.product(
        cases().items(), LAYOUTS, ("float32", "float64")
    ):
        report[f"{name}/{layout}/{dtype}"] = torch_report(c, parts, rank, comm, dtype, layout)
    with open(f"{path}.{rank}", "w") as fh:
        json.dump(report, fh)
    tdist.barrier()
    # The report is written: end without tearing gloo down, whose teardown aborted a rank
    # once in CI ("terminate called without an active exception") after the work was done.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    {"jax": run_jax, "torch": run_torch}[sys.argv[1]](sys.argv[2])
