"""Split a graph into node blocks, one per shard, balanced by edges (NumPy only).

Shard `p` holds nodes `order[bounds[p] : bounds[p + 1]]` (`dmon.partitioners`: METIS's
parts, or contiguous id ranges with `order` the graph's own), their rows of the adjacency
(every edge whose source is local) and their rows of any node array. Every shard is
padded to the same `block` rows, as JAX's `shard_map` needs equal blocks: padding rows
are marked invalid and have no edges. A target at row `r` of block `q` becomes
`q * block + r`, its row in the all-gathered `(P * block, ·)` array; with a halo exchange
(`dmon.halo`), its row in `[own block; received halo rows]`.

Blocks balance work, not only nodes: node `i` weighs `1 + (its edge count)`, so a shard of
hubs gets fewer nodes (`docs/distributed.md`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dmon.halo import HaloCounts, check_exchange, halo_counts, padded_layout, use_halo
from dmon.partitioners import assign, resolve_method


@dataclass(frozen=True)
class Partition:
    """Node blocks of a graph of `num_nodes` nodes over `parts` shards, and each shard's
    padded arrays, stacked over shards (leading axis `P`)."""

    num_nodes: int
    num_graphs: int
    bounds: np.ndarray
    """`(P + 1,)` int64: shard `p` holds nodes `order[bounds[p] : bounds[p + 1]]`."""
    block: int
    """Rows per shard after padding (the largest block, at least 1)."""
    row: np.ndarray
    """`(P, E_max)` int32 local source row of every edge (0 for padding edges)."""
    col: np.ndarray
    """`(P, E_max)` int32 target as a row of the gathered `(P * block, ·)` array, or with
    `send`, of `[own block; received halo]` (`dmon.halo`'s padded layout)."""
    weight: np.ndarray
    """`(P, E_max)` float64 edge weight (0 for padding edges)."""
    valid: np.ndarray
    """`(P, block)` bool: a real node (not padding)."""
    batch: np.ndarray
    """`(P, block)` int32 graph id of every row (0 for padding)."""
    num_edges: np.ndarray
    """`(P,)` int64 real edges per shard."""
    slots: int = 0
    """`K > 0`: every shard's first `K · block` edges are in slot order (`slotted`): edge
    `j · block + i` is row `i`'s `j`-th (weight 0 where row `i` has fewer), the rest
    follow as before. `0`: edges in row order."""
    order: np.ndarray | None = None
    """`(N,)` int64 the nodes in shard order (ascending within a shard); `None`: the
    graph's own order (contiguous blocks)."""
    send: np.ndarray | None = None
    """`(P, P, H)` int32 with a halo exchange: the rows shard `q` sends to `p` at
    `[q, p]` (`dmon.halo`); `None`: shards all-gather."""
    send_counts: np.ndarray | None = None
    """`(P, P)` int64 real rows of `send` (with it)."""
    present: tuple[int, ...] | None = None
    """The shards whose arrays this partition holds (read from shard files by one
    process: `dmon.training.shard_files`; the others' rows are zeros never read);
    `None`: all."""

    @property
    def shards_present(self) -> Sequence[int]:
        """The shards whose arrays are here."""
        return range(self.parts) if self.present is None else self.present

    @property
    def parts(self) -> int:
        """`P`, the number of shards."""
        return int(self.bounds.size - 1)

    @property
    def padded(self) -> bool:
        """Some shard has padding rows (fewer real nodes than `block`)."""
        return bool(self.num_nodes < self.parts * self.block)

    @property
    def exchange(self) -> str:
        """How shards get the rows of others: `halo` or `all-gather`."""
        return "all-gather" if self.send is None else "halo"

    def halo(self) -> HaloCounts:
        """Who needs whose rows, and the edge cut (of a partition not `slotted`)."""
        if self.send is None or self.send_counts is None:
            return halo_counts(self.col, self.num_edges, self.block)
        cut = sum(
            int(np.count_nonzero(self.col[p, : self.num_edges[p]] >= self.block))
            for p in range(self.parts)
        )
        return HaloCounts(self.send_counts, cut)

    @property
    def nodes_per_shard(self) -> list[int]:
        """Real nodes in each shard."""
        return np.diff(self.bounds).astype(int).tolist()

    def scatter(self, values: Any, dtype: Any = None) -> np.ndarray:
        """`(N, ...)` node values → `(P, block, ...)`, padding rows zero."""
        values = np.asarray(values, dtype=dtype)
        if values.ndim < 1 or values.shape[0] != self.num_nodes:
            raise ValueError(
                f"dmon.partition.Partition.scatter: `values` must have shape (N, ...) with N = "
                f"{self.num_nodes}; got {values.shape}"
            )
        if self.order is not None:
            values = values[self.order]
        out = np.zeros((self.parts, self.block, *values.shape[1:]), dtype=values.dtype)
        for p in range(self.parts):
            lo, hi = self.bounds[p], self.bounds[p + 1]
            out[p, : hi - lo] = values[lo:hi]
        return out

    def nodes(self, p: int) -> np.ndarray:
        """The graph ids of shard `p`'s real rows, in row order."""
        lo, hi = int(self.bounds[p]), int(self.bounds[p + 1])
        return np.arange(lo, hi) if self.order is None else np.asarray(self.order[lo:hi])

    def gather(self, sharded: Any) -> np.ndarray:
        """`(P, block, ...)` or `(P * block, ...)` sharded node values → `(N, ...)` in
        the graph's node order (padding dropped). A shape that fits both is read as
        `(P, block, ...)`."""
        sharded = np.asarray(sharded)
        stacked = sharded.ndim >= 2 and sharded.shape[:2] == (self.parts, self.block)
        if not stacked and sharded.ndim >= 1 and sharded.shape[0] == self.parts * self.block:
            sharded = sharded.reshape(self.parts, self.block, *sharded.shape[1:])
        if sharded.ndim < 2 or sharded.shape[:2] != (self.parts, self.block):
            raise ValueError(
                f"dmon.partition.Partition.gather: expected shape ({self.parts}, {self.block}, ...) or "
                f"({self.parts * self.block}, ...); got {sharded.shape}"
            )
        # each shard's rows straight to their places: one copy of an (N, ...) array
        out = np.empty((self.num_nodes, *sharded.shape[2:]), sharded.dtype)
        for p in range(self.parts):
            lo, hi = self.bounds[p], self.bounds[p + 1]
            rows = slice(lo, hi) if self.order is None else self.order[lo:hi]
            out[rows] = sharded[p, : hi - lo]
        return out

    def shard(self, p: int) -> dict[str, np.ndarray]:
        """Shard `p`'s arrays (`row`, `col`, `weight`, `valid`, `batch`)."""
        if not 0 <= p < self.parts:
            raise ValueError(
                f"dmon.partition.Partition.shard: `p` must be in [0, {self.parts}); got {p}"
            )
        return {
            "row": self.row[p],
            "col": self.col[p],
            "weight": self.weight[p],
            "valid": self.valid[p],
            "batch": self.batch[p],
        }


def partition(
    edge_index: Any,
    num_nodes: int,
    parts: int,
    edge_weight: Any = None,
    batch: Any = None,
    *,
    like: Partition | None = None,
    method: str = "contiguous",
    exchange: str = "all-gather",
) -> Partition:
    """Split a graph into `parts` node blocks balanced by edges.

    Args:
        edge_index: `(2, E)` integer source/target ids in `[0, num_nodes)` (PyG's form).
        num_nodes: `N ≥ 1`.
        parts: `P ≥ 1` shards (a shard may be all padding when `N < P`).
        edge_weight: `(E,)` non-negative weights (default 1).
        batch: `(N,)` graph id of every node for several graphs in one (PyG's `batch`);
            ids in `[0, B)`; no edge may join two graphs.
        like: another partition of the same nodes whose blocks and exchange to keep
            (e.g. for the normalised adjacency of a GCN, beside the adjacency's own).
        method: `contiguous` id ranges (the graph's order), `metis` (`pymetis`: few
            edges cross shards), or `auto`, METIS when installed (`dmon.partitioners`).
        exchange: `all-gather` every shard's rows, `halo` (only the rows a shard's edges
            reference, `dmon.halo`), or `auto`, the halo when it is at most
            `dmon.halo.HALO_SHARE` of the all-gather's rows.

    Returns:
        A `Partition`. Cost `O(E + N)` time and memory (`O(E log E)` for a halo), plus
        METIS's.

    Raises:
        TypeError / ValueError: naming the argument, its shape or dtype and what was
            expected.
    """
    where = "dmon.partition.partition"
    for name, v in (("num_nodes", num_nodes), ("parts", parts)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{where}: `{name}` must be an int >= 1; got {v!r}")
    n, p = int(num_nodes), int(parts)
    ei = np.asarray(edge_index)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(f"{where}: `edge_index` must have shape (2, E); got {ei.shape}")
    if ei.size and not np.issubdtype(ei.dtype, np.integer):
        raise TypeError(f"{where}: `edge_index` must hold integers; got dtype {ei.dtype}")
    ei = ei.astype(np.int64)
    if ei.size and (ei.min() < 0 or ei.max() >= n):
        raise ValueError(
            f"{where}: `edge_index` ids must be in [0, {n}); got ids in [{ei.min()}, {ei.max()}]"
        )
    e = ei.shape[1]
    if edge_weight is None:
        w = np.ones(e)
    else:
        w = np.asarray(edge_weight)
        if w.shape != (e,) or not np.issubdtype(w.dtype, np.number):
            raise ValueError(
                f"{where}: `edge_weight` must be real with shape (E,) = ({e},); got {w.dtype} {w.shape}"
            )
        w = w.astype(np.float64)
        if np.any(w < 0):
            raise ValueError(
                f"{where}: `edge_weight` must be non-negative (modularity is undefined otherwise); "
                f"got minimum {w.min()}"
            )
    if batch is None:
        b = np.zeros(n, dtype=np.int64)
        num_graphs = 1
    else:
        b = np.asarray(batch)
        if b.shape != (n,) or not np.issubdtype(b.dtype, np.integer):
            raise ValueError(
                f"{where}: `batch` must be integer graph ids with shape (N,) = ({n},); got {b.dtype} {b.shape}"
            )
        b = b.astype(np.int64)
        if b.min() < 0:
            raise ValueError(f"{where}: `batch` ids must be >= 0; got {b.min()}")
        num_graphs = int(b.max()) + 1
        if e and np.any(b[ei[0]] != b[ei[1]]):
            i = int(np.flatnonzero(b[ei[0]] != b[ei[1]])[0])
            raise ValueError(
                f"{where}: edge {i} ({ei[0, i]} → {ei[1, i]}) joins graphs {b[ei[0, i]]} and "
                f"{b[ei[1, i]]}; edges must stay within a graph"
            )

    if like is not None:
        if like.num_nodes != n or like.parts != p:
            raise ValueError(
                f"{where}: `like` splits {like.num_nodes} nodes into {like.parts} shards; "
                f"this graph has {n} nodes and {p} shards"
            )
        nodes, bounds = like.order, like.bounds
    else:
        nodes, bounds = assign(ei, n, p, resolve_method(method, where))
    sizes = np.diff(bounds)
    block = max(int(sizes.max()), 1)

    # every node's place in shard order, its shard, and its row in the gathered array
    place = np.arange(n) if nodes is None else np.empty(n, np.int64)
    if nodes is not None:
        place[nodes] = np.arange(n)
    owner = np.searchsorted(bounds, place, side="right") - 1
    position = owner * block + (place - bounds[owner])
    by_source = np.argsort(place[ei[0]], kind="stable")  # edges by source, so by shard
    src, dst, wt = ei[0, by_source], ei[1, by_source], w[by_source]
    edge_owner = owner[src]
    num_edges = np.bincount(edge_owner, minlength=p).astype(np.int64)
    e_max = max(int(num_edges.max()) if e else 0, 1)
    row = np.zeros((p, e_max), np.int32)
    col = np.zeros((p, e_max), np.int32)
    weight = np.zeros((p, e_max), np.float64)
    valid = np.zeros((p, block), bool)
    graph = np.zeros((p, block), np.int32)
    starts = np.concatenate([[0], np.cumsum(num_edges)])
    for q in range(p):
        lo, hi = starts[q], starts[q + 1]
        row[q, : hi - lo] = place[src[lo:hi]] - bounds[q]
        col[q, : hi - lo] = position[dst[lo:hi]]
        weight[q, : hi - lo] = wt[lo:hi]
        valid[q, : sizes[q]] = True
        ids = (
            np.arange(bounds[q], bounds[q + 1])
            if nodes is None
            else nodes[bounds[q] : bounds[q + 1]]
        )
        graph[q, : sizes[q]] = b[ids]
    part = Partition(
        n, num_graphs, bounds, block, row, col, weight, valid, graph, num_edges, order=nodes
    )
    if like is not None:
        if like.send is None:
            return part
        halo = part.halo()
    else:
        check_exchange(exchange, where)
        if p == 1 or exchange == "all-gather":
            return part
        halo = part.halo()
        if not use_halo(exchange, halo, block):
            return part
    send, col = padded_layout(col, num_edges, block, halo)
    return dataclasses.replace(part, col=col, send=send, send_counts=halo.send_counts)


# On XLA:CPU a scattered edge (gather, then segment sum) costs about as much as this many
# slot entries (a gather fused into an add; docs/benchmarks.md, "Design measurements").
SLOT_COST = 20
MAX_SLOTS = 128  # each slot is one fused gather in the compiled program


def slotted(part: Partition, plan: tuple[int, int] | None = None) -> Partition:
    """`part` with every shard's edges in slot order (ELL for the first `K` edges of
    each row, the rest as a list), for backends whose sparse product is a scatter.

    `ops.spmm` of a slotted matrix on JAX is `K` dense gathers added up (XLA fuses each
    and runs it on every core) plus a segment sum over the few remaining edges, 5-9x
    faster than a segment sum over all of them on CPU. `K` minimises `block · K +
    SLOT_COST · (edges beyond slot K)` on the busiest shard, so a graph with a few hubs
    keeps them in the list. The edges are the same (plus weight-0 padding entries), so
    the matrix is unchanged for every backend. Cost `O(E + N)`.

    `plan`: `slot_plan`'s `(K, list width)` computed where every shard was at hand (a
    partition of only some shards cannot choose: every process must compile the same
    shapes).
    """
    k, r_max = slot_plan(part) if plan is None else plan
    if part.slots or k == 0:
        return part
    p, block = part.parts, part.block
    width = k * block + r_max
    row = np.zeros((p, width), np.int32)
    col = np.zeros((p, width), np.int32)
    weight = np.zeros((p, width), part.weight.dtype)
    for q in part.shards_present:
        row[q, : k * block] = np.tile(np.arange(block, dtype=np.int32), k)
        e = int(part.num_edges[q])
        r, c, w = part.row[q, :e], part.col[q, :e], part.weight[q, :e]  # sorted by row
        first = np.searchsorted(r, np.arange(block))
        slot = np.arange(e) - first[r]
        head = slot < k
        at = slot[head] * block + r[head]
        col[q, at], weight[q, at] = c[head], w[head]
        tail = np.flatnonzero(~head)
        if tail.size > r_max:
            raise ValueError(
                f"dmon.partition.slotted: shard {q} has {tail.size} edges past slot {k}; the "
                f"plan leaves room for {r_max}"
            )
        row[q, k * block : k * block + tail.size] = r[tail]
        col[q, k * block : k * block + tail.size] = c[tail]
        weight[q, k * block : k * block + tail.size] = w[tail]
    return dataclasses.replace(part, row=row, col=col, weight=weight, slots=k)


def slot_plan(part: Partition) -> tuple[int, int]:
    """`slotted`'s `(K, list width)` for `part` (all its shards present); `(0, 0)`: no
    slots."""
    if part.slots or part.num_edges.max(initial=0) == 0:
        return 0, 0
    block = part.block
    degrees = np.stack(
        [np.bincount(part.row[q, : part.num_edges[q]], minlength=block) for q in range(part.parts)]
    )
    ks = np.arange(min(int(degrees.max()), MAX_SLOTS) + 1)
    rest = np.stack([_beyond(d, ks) for d in degrees])  # (P, K + 1) edges past slot k
    k = int(np.argmin(block * ks + SLOT_COST * rest.max(axis=0)))
    return (k, max(int(rest[:, k].max()), 1)) if k else (0, 0)


def _beyond(degrees: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """`Σᵢ max(dᵢ - k, 0)` for every `k` of `ks`, from suffix sums of the degree
    histogram (`O(N + max degree)`)."""
    h = np.bincount(degrees)
    d = np.arange(h.size)
    count = np.concatenate([np.cumsum(h[::-1])[::-1], [0]])  # nodes with degree >= d
    total = np.concatenate([np.cumsum((d * h)[::-1])[::-1], [0]])  # their degree sum
    above = np.minimum(ks + 1, h.size)
    return total[above] - ks * count[above]
