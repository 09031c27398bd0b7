"""The halo of each shard: the rows of other shards that its edges reference, and how to
exchange only those instead of all-gathering every shard's rows (NumPy only).

Shard `p` receives from each peer `q` the rows `send[q, p, :send_counts[q, p]]` of `q`'s
block (ascending), and multiplies by the array `[own block; received rows]`:

- padded (JAX's `lax.all_to_all` needs equal chunks): every chunk has `H` rows, the
  largest count of any pair; peer `q`'s rows sit at `block + q·H`;
- exact (`torch.distributed.all_to_all_single` takes per-peer counts): peer `q`'s rows
  sit at `block + Σ_{r<q} send_counts[r, p]`.

A `Partition` with `send` stores its edge targets in the padded layout; `exact_layout`
derives the other in `O(E_p)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HALO_SHARE = 0.5
"""`exchange="auto"` exchanges halos when the rows a shard receives (padded) are at most
this share of what an all-gather delivers, `(P - 1) · block`: below it the saved traffic
pays for the gathers of the rows to send (docs/distributed.md, "Halo exchange")."""

EXCHANGES = ("auto", "halo", "all-gather")


@dataclass(frozen=True)
class HaloCounts:
    """Who needs whose rows, from the edges of a partition (gathered layout)."""

    send_counts: np.ndarray
    """`(P, P)` int64: rows shard `q` sends to shard `p` at `[q, p]` (0 on the diagonal)."""
    edge_cut: int
    """Stored edges whose endpoints are on different shards (an undirected edge stored
    both ways counts twice)."""

    @property
    def halo_per_shard(self) -> list[int]:
        """Rows each shard receives (its distinct remote targets)."""
        return self.send_counts.sum(axis=0).astype(int).tolist()

    @property
    def chunk(self) -> int:
        """`H`: rows of the largest pair, at least 1."""
        return max(int(self.send_counts.max(initial=0)), 1)


def remote_targets(col: np.ndarray, p: int, block: int) -> np.ndarray:
    """Shard `p`'s distinct remote targets (ascending gathered rows) among `col`."""
    remote = col[col // block != p]
    return np.unique(remote)


def halo_counts(col: np.ndarray, num_edges: np.ndarray, block: int) -> HaloCounts:
    """The halo of a partition whose `col` `(P, E_max)` are rows of the gathered array."""
    parts = int(num_edges.size)
    counts = np.zeros((parts, parts), np.int64)
    cut = 0
    for p in range(parts):
        c = col[p, : num_edges[p]]
        cut += int(np.count_nonzero(c // block != p))
        targets = remote_targets(c, p, block)
        counts[:, p] = np.bincount(targets // block, minlength=parts)
    return HaloCounts(counts, cut)


def padded_layout(
    col: np.ndarray, num_edges: np.ndarray, block: int, counts: HaloCounts
) -> tuple[np.ndarray, np.ndarray]:
    """`(send, col)`: `send` `(P, P, H)` int32, the local rows `send[q, p]` shard `q` sends
    to `p` (0 past `send_counts[q, p]`: sent, never read), and the edge targets as rows of
    `[own block; received (P·H)]` in the padded layout."""
    parts, h = int(num_edges.size), counts.chunk
    send = np.zeros((parts, parts, h), np.int32)
    out = np.zeros_like(col)
    for p in range(parts):
        c = col[p, : num_edges[p]].astype(np.int64)
        targets = remote_targets(c, p, block)
        owner = targets // block
        starts = np.searchsorted(targets, np.arange(parts) * block)  # each owner's first
        for q in np.unique(owner):
            rows = targets[owner == q] - q * block
            send[q, p, : rows.size] = rows
        local = c // block == p
        mapped = c - p * block  # own rows
        at = np.searchsorted(targets, c[~local])
        q = c[~local] // block
        mapped[~local] = block + q * h + (at - starts[q])
        out[p, : num_edges[p]] = mapped
    return send, out


def exact_layout(
    col: np.ndarray, send: np.ndarray, send_counts: np.ndarray, block: int, p: int
) -> tuple[np.ndarray, list[int], list[int], np.ndarray]:
    """Shard `p`'s `(send rows, input splits, output splits, col)` for an all-to-all with
    per-peer counts, from the padded layout (`col`: shard `p`'s edge targets there)."""
    parts, h = send.shape[1], send.shape[2]
    out_counts = send_counts[:, p]
    rows = np.concatenate([send[p, q, : send_counts[p, q]] for q in range(parts)])
    offsets = np.concatenate([[0], np.cumsum(out_counts)[:-1]])
    c = col.astype(np.int64)
    remote = c >= block
    q, i = np.divmod(c[remote] - block, h)
    c[remote] = block + offsets[q] + i
    return (
        rows.astype(np.int64),
        send_counts[p].astype(int).tolist(),
        out_counts.astype(int).tolist(),
        c,
    )


def check_exchange(exchange: str, where: str) -> None:
    """`ValueError` for an `exchange` not in `EXCHANGES`."""
    if exchange not in EXCHANGES:
        raise ValueError(
            f"{where}: `exchange` must be one of {', '.join(EXCHANGES)}; got {exchange!r}"
        )


def use_halo(exchange: str, counts: HaloCounts, block: int) -> bool:
    """Whether to exchange halos (`exchange` checked): always for `halo`, never on one
    shard or for `all-gather`, and for `auto` when each peer's chunk `H` is at most
    `HALO_SHARE · block` (a shard then receives `(P - 1) H` rows instead of
    `(P - 1) block`)."""
    if counts.send_counts.shape[0] == 1 or exchange == "all-gather":
        return False
    return exchange == "halo" or counts.chunk <= HALO_SHARE * block
