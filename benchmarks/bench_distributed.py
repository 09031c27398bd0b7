"""Sharded DMoN training at ogbn-arxiv size: per-process peak memory, epoch time and
bytes communicated per step, for P = 1, 2, 4 torch processes (torchrun, gloo) and P = 1,
2, 4 JAX devices (simulated on the CPU), contiguous blocks that all-gather against
METIS's blocks with the exchange `auto` picks, against the communication model of
`dmon.training.traffic`. Writes the "distributed" section of docs/benchmarks.md.

    python benchmarks/bench_distributed.py            # all installed engines
    python benchmarks/bench_distributed.py --quick    # a 20k-node graph, no file written

Every configuration runs in fresh processes (the peak RSS is each process's own). The
graphs are attributed stochastic block models with ogbn-arxiv's sizes (169,343 nodes,
1,166,243 undirected edges stored both ways, F = 128; `GRAPHS`), generated from a seed
in each process. Training is `dmon.cluster(..., launch=Launch(...))` (the model of
`dmon cluster`, k = 40, dropout 0.5), 12 epochs; the epoch time is the median of the
epochs after the second (the first compiles).

Bytes are counted where they are communicated:
- torch: every call of `torch.distributed.all_gather`, `scatter`, `all_to_all`,
  `all_to_all_single` (the halo exchange) and `all_reduce`, by the size of the tensors
  each process receives (an all-reduce as a ring: 2(P-1)/P of the tensor).
- JAX: the collectives in the compiled training step (`all-gather`, `all-reduce`,
  `reduce-scatter`, `all-to-all` ops of the optimized HLO), by their result sizes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
ARXIV = (169_343, 1_166_243)
QUICK = (20_000, 140_000)
F, K, HIDDEN, EPOCHS = 128, 40, 64, 12


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


GRAPHS = {
    "sbm-40": (40, 0.8),  # 40 blocks, 80% of the edges inside one
    "sbm-400": (400, 0.95),  # many small communities: the halo's case
}
"""Graph name: (blocks, share of edges inside a block) of `graphs.attributed_sbm`."""
LAYOUTS = {"contiguous": ("contiguous", "all-gather"), "metis": ("metis", "auto")}
"""Layout name: (`Launch.partitioner`, `Launch.exchange`)."""


def instrument(engine: str) -> tuple[dict, dict, int]:
    """Count the bytes each torch collective delivers to this process (`counted`), or
    keep JAX's engine to read its compiled step (`captured`); and this process's rank."""
    from dmon.backends.jax.engine import Engine as JaxEngine

    counted = {"bytes": 0}
    rank = 0
    if engine == "torch":
        import torch.distributed as dist

        def counting(fn, received):
            def wrapper(*args, **kwargs):
                counted["bytes"] += received(*args, **kwargs)
                return fn(*args, **kwargs)

            return wrapper

        def gathered(out_list, tensor, *a, **k):
            return sum(t.numel() * t.element_size() for t in out_list) - (
                tensor.numel() * tensor.element_size()
            )

        def all_to_all(out_list, in_list, *a, **k):
            return sum(t.numel() * t.element_size() for t in out_list[1:])

        def all_to_all_single(output, input, output_split_sizes=None, *a, **k):
            # the halo exchange: nothing is sent to oneself, so all of it is received
            return output.numel() * output.element_size()

        def all_reduce(tensor, *a, **k):
            world = dist.get_world_size()
            return int(2 * (world - 1) / world * tensor.numel() * tensor.element_size())

        def scatter(tensor, scatter_list=None, src=0, *a, **k):
            # gloo's backward of the all-gather: one scatter from every rank
            return 0 if src == dist.get_rank() else tensor.numel() * tensor.element_size()

        dist.all_gather = counting(dist.all_gather, gathered)
        dist.scatter = counting(dist.scatter, scatter)
        dist.all_to_all = counting(dist.all_to_all, all_to_all)
        dist.all_to_all_single = counting(dist.all_to_all_single, all_to_all_single)
        dist.all_reduce = counting(dist.all_reduce, all_reduce)
        rank = int(os.environ.get("RANK", "0"))
    captured: dict = {}
    if engine == "jax":  # keep the engine, to read its compiled step afterwards
        step = JaxEngine.step

        def keep(self, alpha, epoch):
            captured["engine"], captured["alpha"] = self, alpha
            return step(self, alpha, epoch)

        JaxEngine.step = keep
    return counted, captured, rank


def worker(engine: str, n: int, m: int, out: str, graph_name: str, layout: str) -> None:
    from graphs import attributed_sbm

    from dmon import training

    counted, captured, rank = instrument(engine)
    import keras  # noqa: F401  (the frameworks' own memory is the baseline)

    rss_before = _rss_mb()
    blocks, inside = GRAPHS[graph_name]
    graph = attributed_sbm(n, m, blocks, F, inside=inside)
    partitioner, exchange = LAYOUTS[layout]
    launch = training.Launch(partitioner=partitioner, exchange=exchange)
    result, epoch_ms, measured = timed_cluster(graph, engine, launch, EPOCHS, counted, captured)
    meta = result.distributed or {}
    report = {
        "engine": engine,
        "rank": rank,
        "devices": meta.get("devices"),
        "processes": meta.get("processes"),
        "nodes_per_shard": meta.get("nodes_per_shard"),
        "edges_per_shard": meta.get("edges_per_shard"),
        "epoch_ms": epoch_ms,
        "rss_before_mb": rss_before,
        "peak_rss_mb": captured["peak_mb"],
        "modularity": result.metrics["modularity"],
        **{
            key: meta.get(key)
            for key in ("exchange", "partitioner", "edge_cut", "halo_per_shard", "bytes_per_step")
        },
    }
    report["model_bytes"] = report.pop("bytes_per_step") or 0  # dmon.training.traffic's
    report["bytes_per_step"] = measured
    with open(f"{out}.{rank}", "w") as fh:
        json.dump(report, fh)


def timed_cluster(graph, engine: str, launch, epochs: int, counted: dict, captured: dict):
    """`dmon.cluster(graph, K, ...)` with each epoch read at once: `(result, median epoch
    in ms after the second, bytes received per step counted at the collectives)`."""
    from dmon import training

    times: list[float] = []
    per_step: list[int] = []
    training.loop.READ_EVERY_S = 0.0  # each epoch read at once: the stamps time epochs

    def on_epoch(epoch: int, logs: dict) -> None:
        times.append(time.perf_counter())
        per_step.append(counted["bytes"])

    result = training.cluster(
        graph, K, backend=engine, launch=launch, epochs=epochs, on_epoch=on_epoch, seed=0
    )
    epoch_ms = statistics.median(1e3 * (b - a) for a, b in itertools.pairwise(times[2:]))
    captured["peak_mb"] = _rss_mb()  # before the step is compiled again to count its bytes
    if launch is None:
        return result, epoch_ms, 0
    if engine == "torch":
        return (
            result,
            epoch_ms,
            statistics.median(b - a for a, b in itertools.pairwise(per_step[2:])),
        )
    return result, epoch_ms, _jax_step_bytes(captured["engine"], captured["alpha"])


def _jax_step_bytes(eng, alpha) -> int:
    """Bytes received per process by the collectives of the compiled training step."""
    import jax
    import numpy as np

    with jax.set_mesh(eng.mesh):
        hlo = (
            eng._step.lower(eng.params, eng.m, eng.v, alpha, eng.ax, eng.x, eng.shard, np.int32(0))
            .compile()
            .as_text()
        )
    sizes = {"f32": 4, "f64": 8, "s32": 4, "pred": 1, "bf16": 2, "f16": 2}
    total = 0
    for line in hlo.splitlines():
        # the result type: one array, or a tuple of them (an all-to-all of P chunks)
        match = re.search(
            r"=\s*(\(?[^=]*?\)?)\s(all-gather|all-reduce|reduce-scatter|all-to-all)(-start)?\(",
            line,
        )
        if not match:
            continue
        op = match.group(2)
        count = 0
        for dtype, dims in re.findall(r"(\w+)\[([\d,]*)\]", match.group(1)):
            size = sizes.get(dtype, 4)
            for d in filter(None, dims.split(",")):
                size *= int(d)
            count += size
        groups = re.search(r"replica_groups=\{\{([\d,]+)\}", line) or re.search(
            r"replica_groups=\[(\d+),(\d+)\]", line
        )
        parts = (
            len(groups.group(1).split(","))
            if groups and "{" in groups.group(0)
            else (int(groups.group(2)) if groups else 1)
        )
        if parts <= 1:
            continue
        share = (parts - 1) / parts
        nbytes = count
        if op == "all-gather":
            total += int(share * nbytes)
        elif op == "all-reduce":
            total += int(2 * share * nbytes)
        else:  # reduce-scatter: result is one shard of the input; all-to-all: same size
            total += int((parts - 1) * nbytes) if op == "reduce-scatter" else int(share * nbytes)
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(engine: str, parts: int, n: int, m: int, graph: str, layout: str) -> list[dict]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": engine}
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "report")
        args = ["--worker", engine, "--nodes", str(n), "--edges", str(m), "--out", out,
                "--graph", graph, "--layout", layout]  # fmt: skip
        if engine == "torch":
            cmd = [
                sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(parts),
                "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                str(Path(__file__).resolve()), *args,
            ]  # fmt: skip
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parts))
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), *args]
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={parts}"
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"{engine} P={parts} failed:\n{proc.stderr[-3000:]}")
        return [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("report.*"))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--worker", choices=["jax", "torch"])
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--edges", type=int)
    ap.add_argument("--out")
    ap.add_argument("--graph", choices=list(GRAPHS), default="sbm-40")
    ap.add_argument("--layout", choices=list(LAYOUTS), default="metis")
    ap.add_argument("--engines", default="torch,jax")
    ap.add_argument("--graphs", default=",".join(GRAPHS))
    args = ap.parse_args()
    if args.worker:
        sys.path.insert(0, str(HERE.parent))
        worker(args.worker, args.nodes, args.edges, args.out, args.graph, args.layout)
        return
    n, m = QUICK if args.quick else ARXIV
    import importlib.util

    rows = []
    for graph, engine in itertools.product(args.graphs.split(","), args.engines.split(",")):
        if importlib.util.find_spec(engine) is None or importlib.util.find_spec("keras") is None:
            print(f"skip {engine}: not installed")
            continue
        for parts, layout in [(1, "contiguous"), *itertools.product((2, 4), LAYOUTS)]:
            reports = run(engine, parts, n, m, graph, layout)
            first = reports[0]
            nodes = first["nodes_per_shard"]
            row = {
                "graph": graph,
                "engine": engine,
                "P": parts,
                "layout": "—" if parts == 1 else f"{first['partitioner']}, {first['exchange']}",
                "processes": first["processes"],
                "nodes": f"{min(nodes):,}–{max(nodes):,}",
                "edge_cut": first["edge_cut"],
                "halo": max(first["halo_per_shard"]),
                "epoch_ms": statistics.median(r["epoch_ms"] for r in reports),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in reports),
                "rss_before_mb": max(r["rss_before_mb"] for r in reports),
                "bytes": max(r["bytes_per_step"] for r in reports),
                "model": first["model_bytes"],
                "modularity": first["modularity"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.quick or not rows:
        return
    _write(rows, n, m)


def _write(rows: list[dict], n: int, m: int) -> None:
    import platform

    from report import write_section

    lines = [
        "## Sharded training (docs/distributed.md)",
        "",
        f"`python benchmarks/bench_distributed.py`: `dmon.cluster(..., launch=Launch(...))` "
        f"on attributed SBMs with ogbn-arxiv's sizes ({n:,} nodes, about {2 * m / 1e6:.1f}M "
        f"stored edges, F = {F}, k = {K}, node ids in random order), {EPOCHS} epochs, on one "
        f"machine ({os.cpu_count()} cores, {platform.machine()}, CPU): `sbm-40` has 40 "
        "blocks with 80% of the edges inside one, `sbm-400` 400 blocks with 95%. torch: "
        "P processes under torchrun (gloo), each with cores/P threads; JAX: P simulated "
        "devices in one process. Two cores cannot speed anything up: read this for "
        "memory, traffic and overhead. Layout: the partitioner and the exchange "
        "(`--partitioner`, `--exchange`; `auto` chose the one shown). The bytes are "
        "those the busiest process receives per training step, counted at the "
        "collectives; the model is `dmon.training.traffic`'s (`metrics.json`'s "
        "`bytes_per_step`). Edge cut: stored edges across shards; halo: the most rows of "
        "other shards one shard's edges reference.",
        "",
        "| graph | engine | P | layout | nodes per shard | edge cut | halo | median epoch (ms) | peak RSS per process (MB) | RSS of the imports (MB) | bytes per step, measured | model | measured / model | vs. all-gather |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    gathered = {
        (r["graph"], r["engine"], r["P"]): r["bytes"]
        for r in rows
        if r["layout"].endswith("all-gather") and r["layout"].startswith("contiguous")
    }
    for r in rows:
        ratio = f"{r['bytes'] / r['model']:.2f}" if r["model"] else "—"
        base = gathered.get((r["graph"], r["engine"], r["P"]))
        versus = f"{r['bytes'] / base:.2f}" if base else "—"
        lines.append(
            f"| {r['graph']} | {r['engine']} | {r['P']} | {r['layout']} | {r['nodes']} | "
            f"{r['edge_cut']:,} | {r['halo']:,} | {r['epoch_ms']:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['rss_before_mb']:.0f} | {r['bytes'] / 1e6:.2f} MB | {r['model'] / 1e6:.2f} MB | "
            f"{ratio} | {versus} |"
        )
    lines += [
        "",
        "JAX's P devices share one process, so its peak RSS is the whole job's; torch's is "
        "per process, and each process here builds the whole graph before keeping its "
        'shard (from shard files each reads its own: "Sharded training from shard files"). Final modularity: '
        + ", ".join(
            f"{r['graph']} {r['engine']} P={r['P']} {r['layout']} {r['modularity']:.3f}"
            for r in rows
        )
        + ".",
    ]
    write_section("distributed", "\n".join(lines))


if __name__ == "__main__":
    main()
