"""Sharded DMoN training at ogbn-arxiv size: per-process peak memory, epoch time and
bytes communicated per step, for P = 1, 2, 4 torch processes (torchrun, gloo) and P = 1,
2, 4 JAX devices (simulated on the CPU), against the communication model of
docs/distributed.md. Writes the "distributed" section of docs/benchmarks.md.

    python benchmarks/bench_distributed.py            # all installed engines
    python benchmarks/bench_distributed.py --quick    # a 20k-node graph, no file written

Every configuration runs in fresh processes (the peak RSS is each process's own). The
graph is an attributed stochastic block model with ogbn-arxiv's sizes (169,343 nodes,
1,166,243 undirected edges stored both ways, F = 128, 40 blocks, k = 40), generated from
a seed in each process. Training is `dmon.cluster(..., launch=Launch())` (the model of
`dmon cluster`, dropout 0.5), 12 epochs; the epoch time is the median of the epochs after
the second (the first compiles).

Bytes are counted where they are communicated:
- torch: every call of `torch.distributed.all_gather`, `scatter` and `all_to_all` (the
  backward of the all-gather: scatters on gloo) and `all_reduce`, by the size of the
  tensors each process receives (an all-reduce as a ring: 2(P-1)/P of the tensor).
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


def _model_bytes(n_pad_total: int, parts: int, symmetric: bool = True) -> int:
    """Bytes per step and process from docs/distributed.md: the all-gather of S (each
    process receives (P-1)/P of N·k floats) and, for a directed graph only, its
    reduce-scatter in the backward (a symmetric graph's backward has none:
    dmon.node_sums), the all-reduce of the C×(2C+1+hidden)+1 sums (a ring: 2(P-1)/P of
    them), and the all-reduce of the parameter gradients (JAX: the transpose of the
    replicated parameters; torch: `sum_gradients`). The benchmark's graph is undirected."""
    if parts == 1:
        return 0
    share = (parts - 1) / parts
    gathered = n_pad_total * K * 4
    sums = (K * (2 * K + 1 + HIDDEN) + 1) * 4
    params = (F * HIDDEN + 2 * HIDDEN + HIDDEN * K + K) * 4
    return int((1 if symmetric else 2) * share * gathered + 2 * share * (sums + params))


def worker(engine: str, n: int, m: int, out: str) -> None:
    from dmon.backends.jax.engine import Engine as JaxEngine
    from graphs import attributed_sbm

    from dmon import training

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

        def all_reduce(tensor, *a, **k):
            world = dist.get_world_size()
            return int(2 * (world - 1) / world * tensor.numel() * tensor.element_size())

        def scatter(tensor, scatter_list=None, src=0, *a, **k):
            # gloo's backward of the all-gather: one scatter from every rank
            return 0 if src == dist.get_rank() else tensor.numel() * tensor.element_size()

        dist.all_gather = counting(dist.all_gather, gathered)
        dist.scatter = counting(dist.scatter, scatter)
        dist.all_to_all = counting(dist.all_to_all, all_to_all)
        dist.all_reduce = counting(dist.all_reduce, all_reduce)
        rank = int(os.environ["RANK"])
    captured: dict = {}
    if engine == "jax":  # keep the engine, to read its compiled step afterwards
        step = JaxEngine.step

        def keep(self, alpha, epoch):
            captured["engine"], captured["alpha"] = self, alpha
            return step(self, alpha, epoch)

        JaxEngine.step = keep
    import keras  # noqa: F401  (the frameworks' own memory is the baseline)

    rss_before = _rss_mb()
    graph = attributed_sbm(n, m, K, F)
    times: list[float] = []
    per_step: list[int] = []

    training.loop.READ_EVERY_S = 0.0  # each epoch read at once: the stamps time epochs

    def on_epoch(epoch: int, logs: dict) -> None:
        times.append(time.perf_counter())
        per_step.append(counted["bytes"])

    result = training.cluster(
        graph, K, backend=engine, launch=training.Launch(), epochs=EPOCHS, on_epoch=on_epoch, seed=0
    )
    epoch_ms = statistics.median(1e3 * (b - a) for a, b in itertools.pairwise(times[2:]))
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
        "peak_rss_mb": _rss_mb(),
        "modularity": result.metrics["modularity"],
    }
    if engine == "torch":
        report["bytes_per_step"] = statistics.median(
            b - a for a, b in itertools.pairwise(per_step[2:])
        )
    else:
        report["bytes_per_step"] = _jax_step_bytes(captured["engine"], captured["alpha"])
    with open(f"{out}.{rank}", "w") as fh:
        json.dump(report, fh)


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
        match = re.search(
            r"=\s*\(?(\w+)\[([\d,]*)\][^=]*?\s(all-gather|all-reduce|reduce-scatter|all-to-all)(-start)?\(",
            line,
        )
        if not match:
            continue
        dtype, dims, op = match.group(1), match.group(2), match.group(3)
        count = 1
        for d in filter(None, dims.split(",")):
            count *= int(d)
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
        nbytes = count * sizes.get(dtype, 4)
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


def run(engine: str, parts: int, n: int, m: int) -> list[dict]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": engine}
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "report")
        args = ["--worker", engine, "--nodes", str(n), "--edges", str(m), "--out", out]
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
    ap.add_argument("--engines", default="torch,jax")
    args = ap.parse_args()
    if args.worker:
        sys.path.insert(0, str(HERE.parent))
        worker(args.worker, args.nodes, args.edges, args.out)
        return
    n, m = QUICK if args.quick else ARXIV
    import importlib.util

    rows = []
    for engine in args.engines.split(","):
        if importlib.util.find_spec(engine) is None or importlib.util.find_spec("keras") is None:
            print(f"skip {engine}: not installed")
            continue
        for parts in (1, 2, 4):
            reports = run(engine, parts, n, m)
            first = reports[0]
            nodes = first["nodes_per_shard"]
            block = max(nodes)
            model = _model_bytes(block * len(nodes), len(nodes))
            row = {
                "engine": engine,
                "P": parts,
                "processes": first["processes"],
                "nodes": f"{min(nodes):,}–{max(nodes):,}",
                "epoch_ms": statistics.median(r["epoch_ms"] for r in reports),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in reports),
                "rss_before_mb": max(r["rss_before_mb"] for r in reports),
                "bytes": max(r["bytes_per_step"] for r in reports),
                "model": model,
                "modularity": first["modularity"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.quick or not rows:
        return
    import platform

    from report import write_section

    lines = [
        "## Sharded training (docs/distributed.md)",
        "",
        f"`python benchmarks/bench_distributed.py`: `dmon.cluster(..., launch=Launch())` on an "
        f"attributed SBM with ogbn-arxiv's sizes ({n:,} nodes, {2 * m:,} directed edges, "
        f"F = {F}, k = {K}), {EPOCHS} epochs, on one machine ({os.cpu_count()} cores, "
        f"{platform.machine()}, CPU). torch: P processes under torchrun (gloo), each with "
        "cores/P threads; JAX: P simulated devices in one process. Two cores cannot speed "
        "anything up: read this for memory and overhead. The bytes are those each process "
        "receives per training step, counted at the collectives; the model is "
        "docs/distributed.md's.",
        "",
        "| engine | P | processes | nodes per shard | median epoch (ms) | × P = 1 | peak RSS per process (MB) | RSS of the imports alone (MB) | bytes per step, measured | model | measured / model |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {r["engine"]: r["epoch_ms"] for r in rows if r["P"] == 1}
    for r in rows:
        ratio = f"{r['bytes'] / r['model']:.2f}" if r["model"] else "—"
        lines.append(
            f"| {r['engine']} | {r['P']} | {r['processes']} | {r['nodes']} | {r['epoch_ms']:.0f} | "
            f"{r['epoch_ms'] / base[r['engine']]:.2f} | {r['peak_rss_mb']:.0f} | {r['rss_before_mb']:.0f} | "
            f"{r['bytes'] / 1e6:.2f} MB | {r['model'] / 1e6:.2f} MB | {ratio} |"
        )
    lines += [
        "",
        "JAX's P devices share one process, so its peak RSS is the whole job's; torch's is "
        "per process, and each process still builds the whole graph before keeping its "
        "shard (docs/distributed.md, Limits). Final modularity: "
        + ", ".join(f"{r['engine']} P={r['P']} {r['modularity']:.3f}" for r in rows)
        + ".",
    ]
    write_section("distributed", "\n".join(lines))


if __name__ == "__main__":
    main()
