"""Graphs for clustering: loaders (gnn-benchmark `.npz`, edge lists, networkx, SciPy),
the paper's preprocessing, and the embedded default graphs. NumPy/SciPy only; files are
never unpickled.

- `graph`: `Graph`, its checks (`check_graph`) and `preprocess`;
- `readers`: `load_npz`, `load_edgelist`, `load_features`, `load_labels`;
- `builtin`: `from_networkx`, `from_pyg`, `from_scipy`, `karate_club`, `synthetic_sbm`.
"""

from __future__ import annotations

from pathlib import Path

from dmon.data.builtin import from_networkx, from_pyg, from_scipy, karate_club, synthetic_sbm
from dmon.data.graph import (
    IDENTITY_FEATURES_MAX_NODES,
    ISOLATED_SLACK,
    MAX_DENSE_FEATURES,
    MAX_NODES,
    Graph,
    GraphFormatError,
    check_graph,
    default_features,
    preprocess,
)
from dmon.data.readers import check_file, load_edgelist, load_features, load_labels, load_npz

__all__ = [
    "IDENTITY_FEATURES_MAX_NODES",
    "ISOLATED_SLACK",
    "MAX_DENSE_FEATURES",
    "MAX_NODES",
    "Graph",
    "GraphFormatError",
    "check_graph",
    "default_features",
    "from_networkx",
    "from_pyg",
    "from_scipy",
    "karate_club",
    "load",
    "load_edgelist",
    "load_features",
    "load_labels",
    "load_npz",
    "preprocess",
    "synthetic_sbm",
]


def load(path_or_name: str, *, num_nodes: int | None = None, **prep: bool) -> Graph:
    """Load by file suffix (`.npz`; `.csv`/`.tsv`/`.txt`/`.edges`/`.edgelist`) or built-in
    name (`sbm`, `karate`). `num_nodes` goes to `load_edgelist`."""
    if path_or_name == "sbm":
        return synthetic_sbm()
    if path_or_name == "karate":
        return karate_club()
    path = Path(path_or_name)
    if not path.exists():
        raise GraphFormatError(f"{path}: no such file (built-in graphs: sbm, karate)")
    check_file(path)
    if path.suffix == ".npz":
        return load_npz(path, **prep)
    if path.suffix in (".csv", ".tsv", ".txt", ".edges", ".edgelist", ""):
        return load_edgelist(path, num_nodes=num_nodes, **prep)
    raise GraphFormatError(
        f"{path}: unknown format {path.suffix!r}; expected .npz or an edge list (.csv, .tsv, .txt)"
    )
