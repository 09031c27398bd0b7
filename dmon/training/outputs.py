"""A clustering run's files: `assignments.csv`, `metrics.json`, `history.csv` and the
figures, for the `dmon` command and for Python users of `dmon.cluster` alike."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from dmon.data import Graph
from dmon.files import atomic_path, atomic_write
from dmon.training.result import ClusterResult
from dmon.training.shard_files import ShardFolder
from dmon.version import __version__

FILES = ("assignments.csv", "metrics.json", "history.csv")
"""Written first and always; the figures `loss.png` and `clusters.png` follow."""


def _describe(graph: Graph | ShardFolder) -> dict[str, Any]:
    if isinstance(graph, ShardFolder):
        m = graph.manifest
        return {
            "name": m["graph"],
            "nodes": m["num_nodes"],
            "edges": m["edges"],
            "features": m["num_features"],
            "shards": str(graph.path),
        }
    return {
        "name": graph.name,
        "nodes": graph.num_nodes,
        "edges": graph.num_edges,
        "features": int(graph.features.shape[1]),
    }


def write_outputs(
    folder: str | Path,
    graph: Graph | ShardFolder,
    result: ClusterResult,
    settings: dict[str, Any] | None = None,
) -> list[str]:
    """Write `result`'s files into `folder` (which must exist) and return their names.

    The tables first, each written atomically (a temporary file renamed into place); the
    figures last, each of which may fail alone (a warning on stderr, no figures without
    matplotlib), never losing what came before.

    Args:
        folder: where the files go.
        graph: the graph `result` clusters, or its shard folder (no `clusters.png`
            then: no process holds the whole graph).
        result: what `dmon.cluster` returned.
        settings: what `metrics.json` records as the run's settings (default
            `result.settings`; the `dmon` command records its options).

    Example:
        result = dmon.cluster(graph, k=4, backend="jax")
        dmon.training.write_outputs("runs/mine", graph, result)
    """
    out = Path(folder)
    with atomic_write(out / "assignments.csv", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["node", "cluster", "probability"])
        # an edge list's own names, else the indices
        names = None if isinstance(graph, ShardFolder) else graph.node_names
        top = result.top_probability
        if top is None:
            top = result.probabilities.max(-1)
        for i, (c, p) in enumerate(zip(result.assignments, top, strict=True)):
            w.writerow([i if names is None else names[i], int(c), f"{p:.6f}"])
    with atomic_write(out / "history.csv", newline="") as fh:
        w = csv.writer(fh)
        keys = list(result.history)
        w.writerow(["epoch", *keys])
        for e in range(len(result.history[keys[0]])):
            w.writerow([e + 1, *(f"{result.history[k][e]:.6g}" for k in keys)])
    payload = {
        "graph": _describe(graph),
        "settings": {
            **(result.settings if settings is None else settings),
            "backend": result.backend,
        },
        "metrics": result.metrics,
        "seconds": result.seconds,
        "first_epoch_seconds": result.first_epoch_seconds,
        "ms_per_epoch": result.ms_per_epoch,
        "epochs_completed": result.epochs_completed,
        "interrupted": result.interrupted,
        "resumed_from": result.resumed_from,
        **({"distributed": result.distributed} if result.distributed else {}),
        "dmon_version": __version__,
    }
    with atomic_write(out / "metrics.json") as fh:
        fh.write(json.dumps(payload, indent=2, default=float))
    written = list(FILES)
    if importlib.util.find_spec("matplotlib") is None:
        print(
            "dmon: warning: matplotlib is not installed: no figures (pip install 'dmon[cluster]')",
            file=sys.stderr,
        )
        return written
    from dmon import plots

    title = plots.run_title(
        _describe(graph)["name"],
        result.probabilities.shape[1],
        result.backend,
        result.metrics.get("modularity"),
    )
    figures: tuple[tuple[str, Any], ...] = (
        ("loss.png", lambda path: plots.loss_curves(result.history, path, title)),
    )
    if isinstance(graph, Graph):  # a shard folder's graph is in no process's memory
        figures += (
            (
                "clusters.png",
                lambda path: plots.clusters(
                    graph, result.assignments, result.probabilities, path, title
                ),
            ),
        )
    for name, draw in figures:
        try:
            with atomic_path(out / name) as tmp:
                draw(tmp)
            written.append(name)
        except Exception as err:  # a figure is a nicety: its failure loses nothing else
            reason = " ".join(str(err).split())[:200]
            print(
                f"dmon: warning: {name} not drawn ({type(err).__name__}: {reason})", file=sys.stderr
            )
    return written
