"""How the `dmon` commands read a graph: the graph argument and its options, shared by
`dmon cluster` and `dmon partition`; `dmon cluster` also takes a shard folder."""

from __future__ import annotations

import argparse
from typing import Any

from dmon.cli.common import UsageError

GRAPH_OPTIONS = ("features", "labels", "directed", "keep_self_loops", "raw_features")
"""Options that shape the graph as it is read (fixed for a shard folder when it was
partitioned)."""


def add_graph_arguments(p: argparse.ArgumentParser, folder: bool) -> None:
    """The graph positional and the options that shape it as it is read."""
    where = ", or a folder of shards (dmon partition)" if folder else ""
    p.add_argument(
        "graph",
        nargs="?",
        default="sbm",
        help="a .npz (gnn-benchmark) file, an edge list (.csv/.tsv/.txt: src,dst[,weight]), "
        f"or a built-in graph: sbm (default), karate{where}",
    )
    p.add_argument(
        "--features",
        default=None,
        help="node features for an edge list: .npy or .csv/.tsv, one row per node",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="FILE",
        help="true classes for NMI and F1: node,label lines, nodes named as in the graph",
    )
    p.add_argument("--directed", action="store_true", help="do not symmetrise the adjacency")
    p.add_argument(
        "--keep-self-loops", action="store_true", help="keep the graph's self-loops (dropped)"
    )
    p.add_argument("--raw-features", action="store_true", help="do not binarise features")


def load_graph(args: argparse.Namespace) -> Any:
    """The `dmon.data.Graph` the arguments name; `UsageError` with the reader's message."""
    from dmon import data

    try:  # the file first: its errors are the most basic
        features = None
        if args.features is not None:
            features = data.load_features(args.features)
        try:
            graph = data.load(
                args.graph,
                num_nodes=None if features is None else features.shape[0],
                symmetrize=not args.directed,
                drop_self_loops=not args.keep_self_loops,
                binarize_features=not args.raw_features,
            )
        except data.GraphFormatError as err:
            if features is None or "num_nodes" not in str(err):
                raise
            raise data.GraphFormatError(
                f"{err} (N from the {features.shape[0]} rows of {args.features})"
            ) from None
        if features is not None:
            if features.shape[0] != graph.num_nodes:
                raise data.GraphFormatError(
                    f"{args.features}: features must have shape (N, F) with N = "
                    f"{graph.num_nodes} nodes; got {features.shape}"
                )
            graph.features = features
            graph.notes = [f"features from {args.features}"]
        if args.labels is not None:
            graph.labels = data.load_labels(args.labels, graph)
            graph.notes = [*graph.notes, f"labels from {args.labels}"]
    except data.GraphFormatError as err:
        raise UsageError(str(err)) from None
    except ImportError as err:
        raise UsageError(f"{args.graph}: needs {err.name}: pip install {err.name}") from None
    return graph


def load_source(args: argparse.Namespace) -> Any:
    """A shard folder (`ShardFolder`) where the graph argument is one, else the graph."""
    from dmon.training import shard_files

    if not shard_files.is_shard_folder(args.graph):
        return load_graph(args)
    given = [
        "--" + name.replace("_", "-")
        for name in GRAPH_OPTIONS
        if getattr(args, name) not in (None, False)
    ]
    if given:
        raise UsageError(
            f"{' and '.join(given)}: a shard folder's graph was fixed when it was partitioned "
            f"({args.graph}); partition again with these options"
        )
    try:
        return shard_files.open_folder(args.graph)
    except shard_files.ShardFileError as err:
        raise UsageError(str(err)) from None


def describe(graph: Any) -> str:
    """One line on the graph or shard folder a run trains on."""
    from dmon.training.shard_files import ShardFolder

    if isinstance(graph, ShardFolder):
        m = graph.manifest
        return (
            f"{m['graph']}: {m['num_nodes']} nodes, {m['edges']} edges, {m['num_features']} "
            f"features (in {m['parts']} shards: {graph.path})"
        )
    notes = f" ({', '.join(graph.notes)})" if graph.notes else ""
    return (
        f"{graph.name}: {graph.num_nodes} nodes, {graph.num_edges} edges, "
        f"{graph.features.shape[1]} features{notes}"
    )


def fit_folder(args: argparse.Namespace, folder: Any, backend: str) -> None:
    """Check that the run has one shard per file of `folder` (`UsageError` naming how to
    launch it), and give JAX in one process one device per shard (`--devices`)."""
    import os

    parts = folder.parts
    fixed = [f"--{name}" for name in ("partitioner", "exchange") if getattr(args, name) != "auto"]
    if fixed:
        raise UsageError(
            f"{' and '.join(fixed)}: fixed when {folder.path} was partitioned; partition again "
            "with dmon partition to change them"
        )
    if backend == "jax":
        processes = args.num_processes or 1
        if args.devices is None and parts > 1 and parts % processes == 0:
            args.devices = parts // processes  # one process may hold the whole folder
        shards = (args.devices or 1) * processes
    elif backend == "torch":
        shards = int(os.environ.get("WORLD_SIZE", "1"))
    else:
        shards = 1
    if shards != parts:
        how = {
            "jax": f"--devices D with D × processes = {parts}",
            "torch": f"python -m torch.distributed.run --nproc-per-node {parts}",
        }.get(backend, "the jax or torch backend")
        raise UsageError(
            f"{folder.path}: holds {parts} shards; this run has {shards} (launch with {how}, "
            f"or partition again with dmon partition --parts {shards})"
        )
