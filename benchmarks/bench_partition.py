"""The partitioners `dmon.partition` could use, on the graphs of bench_distributed.py:
METIS (`pymetis`), KaHIP (`kahip`, when installed) and contiguous id ranges. Per
partitioner and P: seconds, the partitioner's own peak memory, the edge cut, the largest
halo and the work balance. Writes the "partitioners" section of docs/benchmarks.md.

    python benchmarks/bench_partition.py           # ogbn-arxiv size
    python benchmarks/bench_partition.py --quick   # 20k nodes, no file written

Each measurement runs in a fresh process, whose peak RSS before the call (graph built)
and after it gives the partitioner's own peak. All balance work as dmon does, node `i`
weighing `1 + (its stored edges)`; KaHIP runs in its `FAST` mode with 3% imbalance
(METIS's default).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_distributed import ARXIV, GRAPHS, QUICK  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(graph_name: str, method: str, parts: int, n: int, m: int) -> dict:
    from graphs import attributed_sbm

    from dmon.halo import halo_counts
    from dmon.partition import partition

    blocks, inside = GRAPHS[graph_name]
    a = attributed_sbm(n, m, blocks, 8, inside=inside).adjacency.tocsr()
    ei = np.stack([np.repeat(np.arange(n), np.diff(a.indptr)), a.indices]).astype(np.int64)
    work = 1 + np.diff(a.indptr)
    before = _rss_mb()
    start = time.perf_counter()
    if method == "kahip":
        import kahip

        _, membership = kahip.kaffpa(
            work.astype(np.int32).tolist(), a.indptr.astype(np.int32).tolist(), [],
            a.indices.astype(np.int32).tolist(), parts, 0.03, True, 0, kahip.FAST,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        owner = np.asarray(membership)
    else:
        part = partition(ei, n, parts, method=method)
        seconds = time.perf_counter() - start
        owner = np.empty(n, np.int64)
        for q in range(parts):
            lo, hi = part.bounds[q], part.bounds[q + 1]
            owner[np.arange(lo, hi) if part.order is None else part.order[lo:hi]] = q
    peak = _rss_mb() - before
    # one layout to count halos by, whichever partitioner made the owners
    order = np.argsort(owner, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=parts))])
    counted = partition(ei, n, parts, like=_Like(n, parts, order, bounds))  # type: ignore[arg-type]
    halo = halo_counts(counted.col, counted.num_edges, counted.block)
    per_shard = np.bincount(owner, weights=work, minlength=parts)
    return {
        "graph": graph_name,
        "method": method,
        "P": parts,
        "seconds": seconds,
        "peak_mb": peak,
        "edge_cut": halo.edge_cut,
        "halo": max(halo.halo_per_shard),
        "imbalance": float(per_shard.max() / per_shard.mean()),
        "edges": int(ei.shape[1]),
    }


class _Like:
    """Just what `partition(..., like=)` reads: the blocks of a given assignment."""

    def __init__(self, n: int, parts: int, order: np.ndarray, bounds: np.ndarray) -> None:
        self.num_nodes, self.parts, self.order, self.bounds = n, parts, order, bounds
        self.send = None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--worker", nargs=5)
    args = ap.parse_args()
    if args.worker:
        graph_name, method, parts, n, m = args.worker
        sys.path.insert(0, str(HERE.parent))
        print(json.dumps(worker(graph_name, method, int(parts), int(n), int(m))))
        return
    n, m = QUICK if args.quick else ARXIV
    methods = ["metis", "contiguous"] + (["kahip"] if importlib.util.find_spec("kahip") else [])
    rows = []
    for graph_name, parts, method in itertools.product(GRAPHS, (2, 4, 8), methods):
        cmd = [sys.executable, __file__, "--worker", graph_name, method, str(parts), str(n), str(m)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if args.quick:
        return
    import platform

    from report import write_section

    lines = [
        "## Partitioners (docs/distributed.md, Partitioning)",
        "",
        f"`python benchmarks/bench_partition.py`: the graphs of the sharded-training table "
        f"({n:,} nodes; stored edges: "
        + ", ".join(sorted({f"{r['graph']} {r['edges']:,}" for r in rows}))
        + f"; ids in random order), on one machine "
        f"({os.cpu_count()} cores, {platform.machine()}). Peak: the partitioner's own "
        "peak memory above the graph's (peak RSS after the call less before). Halo: the "
        "most rows of other shards one shard's edges reference. Imbalance: the busiest "
        "shard's work (1 + edges per node) over the mean.",
        "",
        "| graph | P | partitioner | seconds | peak (MB) | edge cut | halo | imbalance |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['graph']} | {r['P']} | {r['method']} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | "
            f"{r['edge_cut']:,} ({r['edge_cut'] / r['edges']:.0%}) | {r['halo']:,} | {r['imbalance']:.3f} |"
        )
    write_section("partitioners", "\n".join(lines))


if __name__ == "__main__":
    main()
