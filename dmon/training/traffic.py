"""What a sharded training step communicates, by the model of docs/distributed.md
("Communication per step"): the figures `metrics.json`'s `distributed` entry reports and
`benchmarks/bench_distributed.py` checks against the collectives it counts."""

from __future__ import annotations

from typing import Any

import numpy as np

from dmon.partition import Partition

FLOAT32 = 4


def exchanged_rows(part: Partition, padded: bool) -> list[int]:
    """Rows each shard receives when it needs the rows of others: `(P - 1) · block` for
    an all-gather; its halo for a halo exchange, each peer's chunk padded to `H` where
    the engine's collective takes equal chunks (`padded`, JAX)."""
    p = part.parts
    if p == 1:
        return [0]
    if part.send is None:
        return [(p - 1) * part.block] * p
    halo = part.halo()
    return [(p - 1) * halo.chunk] * p if padded else halo.halo_per_shard


def step_bytes(
    part: Partition,
    a_hat: Partition | None,
    *,
    k: int,
    hidden: int,
    features: int,
    symmetric: bool,
    padded: bool,
) -> int:
    """Bytes the busiest shard receives per training step (float32):

    - the rows of `[S | 1]` (`k + 1` columns: the degrees come from the same product)
      its edges reference, and for a directed graph their gradient rows back (a
      symmetric graph's backward needs none: `dmon.node_sums`);
    - with sparse features, the rows of `X W` (`hidden` columns) for `Â (X W)`, forward
      and backward;
    - two all-reduces (a ring: `2 (P - 1) / P` of each): the `k (2k + 1) + 1` sums and the
      parameters' gradients.
    """
    p = part.parts
    if p == 1:
        return 0
    rows = np.asarray(exchanged_rows(part, padded))
    total = rows * (k + 1) * FLOAT32 * (1 if symmetric else 2)
    if a_hat is not None:
        total = total + np.asarray(exchanged_rows(a_hat, padded)) * hidden * FLOAT32 * 2
    sums = k * (2 * k + 1) + 1
    params = features * hidden + 2 * hidden + hidden * k + k
    ring = 2 * (p - 1) / p * (sums + params) * FLOAT32
    return int(total.max() + ring)


def report(
    part: Partition, a_hat: Partition | None, *, padded: bool, **sizes: Any
) -> dict[str, Any]:
    """`metrics.json`'s sharding figures: the partition's `edge_cut` (stored edges across
    shards) and `halo_per_shard` (distinct rows of other shards each one references),
    how rows are exchanged, and the modelled `bytes_per_step` (`step_bytes`)."""
    halo = part.halo()
    return {
        "exchange": part.exchange,
        "partitioner": "contiguous" if part.order is None else "metis",
        "edge_cut": halo.edge_cut,
        "halo_per_shard": halo.halo_per_shard,
        "bytes_per_step": step_bytes(part, a_hat, padded=padded, **sizes),
    }
