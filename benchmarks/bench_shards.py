"""Sharded training from shard files (`dmon partition`), each process reading only its
own shard: per-process peak memory against the imports' alone, bytes per step counted
at the collectives against `dmon.training.traffic`'s model, edge cut and epoch time,
for P = 1, 2, 4 torch processes (torchrun, gloo) and P = 1, 2, 4 JAX processes
(`jax.distributed` on localhost, gloo, one device each). Writes the "shards" section of
docs/benchmarks.md.

    python benchmarks/bench_shards.py            # ogbn-arxiv size and 2M nodes
    python benchmarks/bench_shards.py --quick    # 20k nodes, no file written

The graphs are bench_distributed.py's `sbm-400` (400 blocks, 95% of the edges inside
one, ids in random order, F = 128) at ogbn-arxiv's sizes and at 2,000,000 nodes. Each
is partitioned once per P by `dmon.training.write_shards` in a process of its own
(whose time and peak memory are reported), then trained by `dmon.cluster(folder, ...)`
(k = 40, dropout 0.5, 8 epochs; the epoch time is the median after the second).
Every launch is also run on a 2,000-node graph (`TINY`): its peak is the memory that
does not grow with the graph, and the data part is reported above it as well as above
the imports.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_distributed import (  # noqa: E402
    ARXIV,
    GRAPHS,
    QUICK,
    K,
    _free_port,
    _rss_mb,
    instrument,
    timed_cluster,
)

SIZES = {"arxiv": ARXIV, "2M": (2_000_000, 10_000_000)}
TINY = (2_000, 14_000)
"""The graph whose run measures what does not grow with the graph (the frameworks'
runtimes, compiled steps, process groups): same F, k, P and launch."""
EPOCHS = 8
F = 128


def partition_worker(n: int, m: int, parts: int, out: str) -> dict:
    from graphs import attributed_sbm

    from dmon import training

    blocks, inside = GRAPHS["sbm-400"]
    graph = attributed_sbm(n, m, blocks, F, inside=inside)
    graph_mb = _rss_mb()
    start = time.perf_counter()
    folder = training.write_shards(graph, parts, out)
    return {
        "seconds": time.perf_counter() - start,
        "graph_mb": graph_mb,
        "peak_mb": _rss_mb(),
        "bytes": sum(f["bytes"] for f in folder.manifest["files"].values()),
        "edge_cut": folder.manifest["edge_cut"],
        "halo": max(folder.manifest["halo_per_shard"]),
        "exchange": folder.manifest["exchange"],
        "edges": folder.manifest["num_edges"],
    }


def train_worker(engine: str, folder_path: str, parts: int, out: str, port: int, pid: int) -> None:
    counted, captured, rank = instrument(engine)
    import keras  # noqa: F401  (the frameworks' own memory is the baseline)

    from dmon import training

    rss_before = _rss_mb()
    launch = None
    if parts > 1:
        launch = training.Launch()
        if engine == "jax":
            launch = training.Launch(
                devices=1, coordinator=f"127.0.0.1:{port}", num_processes=parts, process_id=pid
            )
    folder = training.open_folder(folder_path)
    result, epoch_ms, measured = timed_cluster(folder, engine, launch, EPOCHS, counted, captured)
    meta = result.distributed or {}
    if engine == "jax":
        import jax

        rank = jax.process_index()
    report = {
        "epoch_ms": epoch_ms,
        "rss_before_mb": rss_before,
        "peak_rss_mb": captured["peak_mb"],
        "bytes_per_step": measured,
        "model_bytes": meta.get("bytes_per_step", 0),
        "modularity": result.metrics["modularity"],
    }
    with open(f"{out}.{rank}", "w") as fh:
        json.dump(report, fh)


def _run(cmd: list[str], env: dict) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=5400)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} failed:\n{proc.stderr[-3000:]}")


def train(engine: str, folder: str, parts: int) -> list[dict]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": engine}
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parts))
    me = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        out, port = str(Path(tmp) / "report"), _free_port()
        args = ["--train", engine, folder, str(parts), out, str(port)]
        if engine == "torch" and parts > 1:
            _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(parts),
                  "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), me, *args,
                  "0"], env)  # fmt: skip
        else:
            procs = [
                subprocess.Popen([sys.executable, me, *args, str(i)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                for i in range(parts if engine == "jax" else 1)
            ]  # fmt: skip
            try:
                errors = [p.communicate(timeout=5400)[1] for p in procs]
            finally:
                for p in procs:
                    p.kill()
            if any(p.returncode for p in procs):
                raise RuntimeError(f"{engine} P={parts} failed:\n{errors[0][-3000:]}")
        return [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("report.*"))]


def _partition(tmp: str, size: str, n: int, m: int, parts: int) -> tuple[str, dict]:
    """A folder of `parts` shards of the `n`-node graph, written by a process of its own,
    and what that process reports."""
    folder = str(Path(tmp) / f"{size}-{parts}")
    proc = subprocess.run(
        [sys.executable, __file__, "--partition", str(n), str(m), str(parts), folder],
        capture_output=True, text=True, check=True, timeout=5400,
    )  # fmt: skip
    return folder, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--partition", nargs=4)
    ap.add_argument("--train", nargs=6)
    ap.add_argument("--engines", default="torch,jax")
    ap.add_argument("--sizes", default=",".join(SIZES))
    args = ap.parse_args()
    if args.partition:
        n, m, parts, out = args.partition
        sys.path.insert(0, str(HERE.parent))
        print(json.dumps(partition_worker(int(n), int(m), int(parts), out)))
        return
    if args.train:
        engine, folder, parts, out, port, pid = args.train
        train_worker(engine, folder, int(parts), out, int(port), int(pid))
        return
    sizes = {"quick": QUICK} if args.quick else {s: SIZES[s] for s in args.sizes.split(",")}
    engines = args.engines.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fixed = {}  # (engine, P): the tiny graph's peak RSS per process
        for parts in (1, 2, 4):
            folder = _partition(tmp, "tiny", *TINY, parts)[0]
            for engine in engines:
                fixed[engine, parts] = max(r["peak_rss_mb"] for r in train(engine, folder, parts))
        for (size, (n, m)), parts in itertools.product(sizes.items(), (1, 2, 4)):
            folder, made = _partition(tmp, size, n, m, parts)
            for engine in engines:
                reports = train(engine, folder, parts)
                row = {
                    "size": size, "nodes": n, "engine": engine, "P": parts, **made,
                    "fixed_mb": fixed[engine, parts],
                    "epoch_ms": statistics.median(r["epoch_ms"] for r in reports),
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in reports),
                    "rss_before_mb": max(r["rss_before_mb"] for r in reports),
                    "measured": max(r["bytes_per_step"] for r in reports),
                    "model": reports[0]["model_bytes"],
                    "modularity": reports[0]["modularity"],
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
            import shutil

            shutil.rmtree(folder)
    if not args.quick:
        _write(rows)


def _write(rows: list[dict]) -> None:
    import platform

    from report import write_section

    lines = [
        "## Sharded training from shard files (docs/distributed.md, Partition once)",
        "",
        "`python benchmarks/bench_shards.py`: `sbm-400` (400 blocks, 95% of the edges "
        "inside one, ids in random order, F = 128) at ogbn-arxiv's size and at 2,000,000 "
        "nodes, partitioned once per P by `dmon partition`'s `write_shards`, then "
        f"`dmon.cluster(folder, k = {K})`, {EPOCHS} epochs, every process reading its own "
        f"shard only; one machine ({os.cpu_count()} cores, {platform.machine()}, CPU). "
        "torch: P processes under torchrun (gloo); JAX: P processes after "
        "`jax.distributed.initialize` (gloo), one device each. Partitioning: the "
        "partitioning process's time and peak RSS (graph generation included; the graph "
        "alone beside it).",
        "",
        "| graph | P | partitioning (s) | its peak RSS (MB; graph alone) | files (MB) | edge cut | halo | exchange |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    seen = set()
    for r in rows:
        if (r["size"], r["P"]) in seen:
            continue
        seen.add((r["size"], r["P"]))
        lines.append(
            f"| {r['size']} ({r['nodes']:,} nodes, {r['edges']:,} stored edges) | {r['P']} | "
            f"{r['seconds']:.1f} | {r['peak_mb']:.0f} ({r['graph_mb']:.0f}) | "
            f"{r['bytes'] / 1e6:.0f} | {r['edge_cut']:,} | {r['halo']:,} | {r['exchange']} |"
        )
    lines += [
        "",
        "Peak RSS per process: the largest over the job's processes. Two data parts: above "
        "the RSS of the imports (the frameworks and Keras), and above the peak of the same "
        f"launch on a {TINY[0]:,}-node graph (fixed: what does not grow with the graph: "
        "the frameworks' runtimes and process groups, JAX's compiled steps); each × its "
        "value at P = 1. Bytes per step: received by the busiest process, counted at the "
        "collectives, against `dmon.training.traffic`'s model.",
        "",
        "| graph | engine | P | peak RSS per process (MB) | imports (MB) | fixed (MB) | data part above imports (MB) | × P = 1 | data part above fixed (MB) | × P = 1 | median epoch (ms) | bytes per step, measured | model |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ones = {(r["size"], r["engine"]): r for r in rows if r["P"] == 1}
    for r in rows:
        one = ones[r["size"], r["engine"]]
        above = r["peak_rss_mb"] - r["rss_before_mb"]
        above_fixed = r["peak_rss_mb"] - r["fixed_mb"]
        base, base_fixed = (
            one["peak_rss_mb"] - one["rss_before_mb"],
            one["peak_rss_mb"] - one["fixed_mb"],
        )
        lines.append(
            f"| {r['size']} | {r['engine']} | {r['P']} | {r['peak_rss_mb']:.0f} | "
            f"{r['rss_before_mb']:.0f} | {r['fixed_mb']:.0f} | {above:.0f} | {above / base:.2f} | "
            f"{above_fixed:.0f} | {above_fixed / base_fixed:.2f} | {r['epoch_ms']:.0f} | "
            f"{r['measured'] / 1e6:.2f} MB | {r['model'] / 1e6:.2f} MB |"
        )
    lines += [
        "",
        "Final modularity: "
        + ", ".join(f"{r['size']} {r['engine']} P={r['P']} {r['modularity']:.3f}" for r in rows)
        + ".",
    ]
    write_section("shards", "\n".join(lines))


if __name__ == "__main__":
    main()
