"""`dmon partition`: split a graph once into per-shard files and a manifest, which each
process of a sharded `dmon cluster DIR` run reads alone (docs/distributed.md)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dmon.cli.common import UsageError
from dmon.cli.graphs import describe, load_graph


def cmd_partition(args: argparse.Namespace) -> int:
    from dmon.training import shard_files

    if args.parts < 1:
        raise UsageError(f"--parts must be an int >= 1; got {args.parts}")
    out = Path(args.out)
    try:  # before the graph is read
        shard_files.check_destination(out, args.overwrite)
    except FileExistsError as err:
        raise UsageError(f"--out {err}") from None
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: its folder {out.parent}/ does not exist")
    graph = load_graph(args)
    if args.parts > graph.num_nodes:
        raise UsageError(
            f"--parts {args.parts}: more shards than the graph's {graph.num_nodes} nodes"
        )
    print(f"dmon partition: {describe(graph)}", flush=True)
    start = time.perf_counter()
    try:
        folder = shard_files.write_shards(
            graph,
            args.parts,
            out,
            method=args.partitioner,
            exchange=args.exchange,
            overwrite=args.overwrite,
        )
    except ImportError as err:
        raise UsageError(f"--partitioner {args.partitioner}: {err}") from None
    m = folder.manifest
    size = sum(f["bytes"] for f in m["files"].values())
    from dmon.memory import peak_rss_mb

    peak = peak_rss_mb()
    print(
        f"  {m['parts']} shards ({m['partitioner']}, exchange {m['exchange']}): "
        f"nodes per shard {min(m['nodes_per_shard'])}–{max(m['nodes_per_shard'])}, "
        f"edge cut {m['edge_cut']} of {m['num_edges']} stored edges "
        f"({m['edge_cut'] / max(m['num_edges'], 1):.1%}), largest halo {max(m['halo_per_shard'])} rows"
    )
    memory = "" if peak is None else f", peak memory {peak:.0f} MB"
    print(
        f"  {time.perf_counter() - start:.1f} s{memory}; "
        f"{len(m['files'])} files, {size / 1e6:.1f} MB in {out}/"
    )
    print(
        f"train with: python -m torch.distributed.run --nproc-per-node {m['parts']} -m dmon "
        f"cluster {out} --backend torch   (or: dmon cluster {out} --devices {m['parts']})"
    )
    return 0
