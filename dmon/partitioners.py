"""Which shard each node goes to (NumPy only): METIS through `pymetis`, which keeps
communities together so that few edges cross shards, or contiguous id ranges, which
need no library and keep the graph's own order.

Both balance work, not only nodes: node `i` weighs `1 + (its stored edges)`, the rows of
the adjacency its shard multiplies (docs/distributed.md, "Partitioning").
"""

from __future__ import annotations

import importlib.util

import numpy as np

METHODS = ("auto", "metis", "contiguous")
"""`auto`: METIS when `pymetis` is installed, else contiguous blocks."""

METIS_SEED = 0
"""METIS's random seed, fixed: every process of a job computes the same partition."""


def resolve_method(method: str, where: str) -> str:
    """`method` with `auto` made concrete; `ValueError` for an unknown one, `ImportError`
    for `metis` without `pymetis`."""
    if method not in METHODS:
        raise ValueError(f"{where}: `method` must be one of {', '.join(METHODS)}; got {method!r}")
    installed = importlib.util.find_spec("pymetis") is not None
    if method == "metis" and not installed:
        raise ImportError(
            f"{where}: method 'metis' needs pymetis (pip install pymetis); 'contiguous' needs nothing",
            name="pymetis",
        )
    if method == "auto":
        return "metis" if installed else "contiguous"
    return method


def assign(
    edge_index: np.ndarray, num_nodes: int, parts: int, method: str
) -> tuple[np.ndarray | None, np.ndarray]:
    """`(order, bounds)`: shard `p` holds nodes `order[bounds[p] : bounds[p + 1]]`
    (ascending ids within a shard); `order` is `None` for the graph's own order.

    `edge_index` is `(2, E)` int64, checked; `method` is `metis` or `contiguous`."""
    degree = np.bincount(edge_index[0], minlength=num_nodes)
    if method == "contiguous" or parts == 1 or edge_index.shape[1] == 0:
        return None, _contiguous_bounds(degree, parts)
    membership = _metis(edge_index, num_nodes, parts, 1 + degree)
    order = np.argsort(membership, kind="stable").astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(np.bincount(membership, minlength=parts))])
    return order, bounds.astype(np.int64)


def _contiguous_bounds(degree: np.ndarray, parts: int) -> np.ndarray:
    """Contiguous blocks of about equal work."""
    n = degree.size
    work = np.cumsum(1 + degree)
    targets = work[-1] * np.arange(1, parts) / parts
    bounds = np.concatenate([[0], np.searchsorted(work, targets, side="left") + 1, [n]])
    return np.minimum(np.maximum.accumulate(bounds), n).astype(np.int64)


def _metis(edge_index: np.ndarray, n: int, parts: int, work: np.ndarray) -> np.ndarray:
    """METIS's k-way partition of the undirected graph underneath (`A + Aᵀ`'s pattern
    without self-loops: METIS takes nothing else), balanced by `work`; `(N,)` int64."""
    import pymetis
    import scipy.sparse as sp

    src, dst = edge_index
    off = src != dst
    ones = np.ones(int(off.sum()), np.int8)
    a = sp.coo_matrix((ones, (src[off], dst[off])), shape=(n, n)).tocsr()
    a = (a + a.T).tocsr()
    a.sum_duplicates()
    adjacency = pymetis.CSRAdjacency(
        adj_starts=a.indptr.astype(np.int64), adjacent=a.indices.astype(np.int64)
    )
    _, membership = pymetis.part_graph(
        parts,
        adjacency,
        vweights=work.astype(np.int64),
        options=pymetis.Options(seed=METIS_SEED),
    )
    return np.asarray(membership, dtype=np.int64)
