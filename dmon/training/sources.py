"""What a fit trains on: a graph in memory (`dmon.data.Graph`), or a folder of shard
files (`dmon.training.shard_files`) of which this process reads only its own shards.
Both give the trainer the same things: sizes, the run's identity for checkpoints, the
prepared arrays, and the quality of the clusters found."""

from __future__ import annotations

from typing import Any

import numpy as np

from dmon import checkpoint as ckpt
from dmon import metrics
from dmon.data import Graph, check_graph
from dmon.training.launch import Launch
from dmon.training.prepared import Prepared, prepare
from dmon.training.shard_files import ShardFolder, load, local_edges, open_folder
from dmon.training.traffic import report


class GraphSource:
    """A whole graph in this process's memory."""

    def __init__(self, graph: Graph) -> None:
        check_graph(graph.name, graph.adjacency, graph.features, graph.labels)
        self.graph = graph
        self.name, self.num_nodes = graph.name, graph.num_nodes
        self.width = int(graph.features.shape[1])
        self.edges = graph.edge_index()

    def graph_hash(self) -> str:
        ei, w = self.edges
        return ckpt.arrays_sha256(ei.astype(np.int32), w, self.graph.features)

    def prepared(self, engine: Any, launch: Launch | None) -> Prepared:
        sharding = launch or Launch()
        ei, w = self.edges
        return prepare(
            ei, w, self.graph.features, engine.parts, sharding.partitioner, sharding.exchange
        )

    def traffic(self, data: Prepared, **sizes: Any) -> dict[str, Any]:
        return report(data.part, data.a_hat, **sizes)

    def evaluate(self, assignments: np.ndarray, engine: Any, resolution: float) -> dict[str, Any]:
        del engine  # every process holds the whole graph
        return _graph_quality(self.graph, assignments, resolution)


class FolderSource:
    """A partitioned graph on disk: each process reads its shards' files alone."""

    def __init__(self, folder: ShardFolder) -> None:
        self.folder = folder
        m = folder.manifest
        self.name, self.num_nodes = folder.name, folder.num_nodes
        self.width = int(m["num_features"])

    def graph_hash(self) -> str:
        return str(self.folder.manifest["graph_sha256"])

    def check_parts(self, parts: int) -> None:
        """`ValueError` unless the run has as many shards as the folder."""
        have = self.folder.parts
        if parts != have:
            raise ValueError(
                f"{self.folder.path}: holds {have} shards; this run has {parts} (launch {have} "
                f"processes or devices, or partition again with dmon partition --parts {parts})"
            )

    def prepared(self, engine: Any, launch: Launch | None) -> Prepared:
        del launch  # the partition was chosen when the folder was written
        self.check_parts(engine.parts)
        self.shards = engine.local_shards()
        data = load(self.folder, self.shards)
        k, width = self.folder.manifest["slots"]
        data.slot_plan = (int(k), int(width))
        return data

    def traffic(self, data: Prepared, **sizes: Any) -> dict[str, Any]:
        m = self.folder.manifest
        # the cut and halos of every shard, which this process has not read
        return {
            **report(data.part, data.a_hat, **sizes),
            "edge_cut": m["edge_cut"],
            "halo_per_shard": m["halo_per_shard"],
        }

    def evaluate(self, assignments: np.ndarray, engine: Any, resolution: float) -> dict[str, Any]:
        """The graph metrics from each process's sums over its own edges
        (`dmon.metrics.cluster_weights`), added up over the processes."""
        k = int(assignments.max()) + 1
        src, dst, weight = local_edges(self.folder, self.shards)
        mine = metrics.cluster_weights(src, dst, weight, assignments, k)
        between = engine.gather_over_processes(mine).sum(axis=0)
        used = np.flatnonzero(np.bincount(assignments, minlength=k))
        between = between[np.ix_(used, used)]
        directed = not self.folder.manifest["symmetric"]
        out: dict[str, Any] = dict(metrics.graph_scores(between, directed))
        out = _with_labels(out, assignments, self.folder.labels())
        if resolution != 1.0:
            out["resolution"] = float(resolution)
            scored = metrics.graph_scores(between, directed, resolution)
            out["modularity_at_resolution"] = scored["modularity"]
        return out


def _with_labels(
    out: dict[str, Any], assignments: np.ndarray, labels: np.ndarray | None
) -> dict[str, Any]:
    out["num_clusters_used"] = int(np.unique(assignments).size)
    out["cluster_sizes"] = np.bincount(assignments).tolist()
    if labels is not None:
        out["nmi"] = metrics.nmi(labels, assignments)
        out.update(metrics.pairwise_scores(labels, assignments))
    return out


def source(graph: Any) -> GraphSource | FolderSource:
    """The source of `graph`: a `Graph`, a `ShardFolder`, or a shard folder's path."""
    if isinstance(graph, ShardFolder):
        return FolderSource(graph)
    if isinstance(graph, str | bytes) or hasattr(graph, "__fspath__"):
        return FolderSource(open_folder(graph))
    return GraphSource(graph)


def evaluate(graph: Graph, assignments: np.ndarray) -> dict[str, Any]:
    """Quality of hard clusters on `graph` (and against its labels, if any)."""
    return _graph_quality(graph, np.asarray(assignments), 1.0)


def _graph_quality(graph: Graph, assignments: np.ndarray, resolution: float) -> dict[str, Any]:
    a = graph.adjacency
    out: dict[str, Any] = {
        "modularity": metrics.modularity(a, assignments),
        "conductance": metrics.conductance(a, assignments),
        "average_conductance": metrics.average_conductance(a, assignments),
        "coverage": metrics.coverage(a, assignments),
    }
    out = _with_labels(out, assignments, graph.labels)
    if resolution != 1.0:
        out["resolution"] = float(resolution)
        out["modularity_at_resolution"] = metrics.modularity(a, assignments, resolution)
    return out
