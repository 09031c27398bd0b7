"""What a fit computes once, in NumPy, before its first step: the partition into node
blocks (one block on one device), how the GCN propagates on each, and whether the graph
is symmetric."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dmon import distributed as dist

SPARSE_FEATURES = 0.1
"""Features with at most this share of non-zeros are multiplied as a sparse matrix."""


@dataclass
class Prepared:
    """The partition and, per shard (stacked on a leading axis `P`), how the GCN
    propagates. Dense features: `ax = {"stacked": (P, block, 2F)}`, `[Â X | X]`, and `x`
    empty. Sparse features: `x = {"row", "col", "value": (P, nnz_max)}` (local row,
    feature column, value; padding entries are 0) and `Â` itself split into the same
    blocks (`a_hat`) to multiply `X W` by."""

    part: dist.Partition
    x: dict[str, np.ndarray]
    width: int
    """`F`, the number of features."""
    ax: dict[str, np.ndarray] | None = None
    a_hat: dist.Partition | None = None
    symmetric: bool = False
    """`A = Aᵀ` (then `Â` is symmetric too)."""
    slot_plan: tuple[int, int] | None = None
    """`dmon.partition.slot_plan` of the whole partition, where this process holds only
    some shards (`dmon.training.shard_files`); `None`: computed from `part`."""

    def a_hat_part(self) -> dist.Partition:
        if self.a_hat is None:
            raise ValueError("this fit precomputed Â X; it has no Â")
        return self.a_hat

    def local(self, arrays: dict[str, np.ndarray], p: int) -> dict[str, np.ndarray]:
        """Shard `p`'s part of `arrays` (`x` or `ax`), without the padding entries of a
        sparse block."""
        if "value" not in arrays:  # dense (or none)
            return {key: v[p] for key, v in arrays.items()}
        keep = arrays["value"][p] != 0
        keep[0] = True  # one entry at least (an empty block stays a valid matrix)
        return {k: v[p][keep] for k, v in arrays.items()}

    def mark(self, *shards: Any) -> None:
        """Pass on the finding that `A = Aᵀ` (and so `Â = Âᵀ`) to the shards, and that
        their weights are constants (nothing trains them)."""
        for shard in shards:
            if isinstance(shard, dist.Shard):
                shard.symmetric, shard.constant = self.symmetric, True


def prepare(
    edge_index: np.ndarray,
    weight: np.ndarray,
    features: np.ndarray,
    parts: int,
    method: str = "contiguous",
    exchange: str = "all-gather",
) -> Prepared:
    """The partition into `parts` node blocks and the features per block, with the
    cheaper of two exact forms of the GCN's `Â X W` (float32 products either way):

    - dense `X`: `[Â X | X] [W ; W ⊙ w_skip]`, with `Â X` computed once here, in
      float64; a step costs one dense product and no sparse one (nor, sharded, any
      communication).
    - sparse `X` (at most `SPARSE_FEATURES` non-zeros, as a bag of words): `Â (X W)`,
      since `Â X` would have several times the non-zeros of `X`; a step costs the
      non-zeros of `X` and of `Â` (sharded, an all-gather of `X W`, or its halo).

    `method` and `exchange`: `dmon.partition.partition`'s."""
    import scipy.sparse as sp

    n, f = features.shape
    part = dist.partition(
        edge_index, n, parts, edge_weight=weight, method=method, exchange=exchange
    )
    a = sp.csr_matrix((weight, (edge_index[0], edge_index[1])), shape=(n, n))
    symmetric = (a != a.T).nnz == 0  # O(E) once per fit: a transpose is a counting sort
    if np.count_nonzero(features) <= SPARSE_FEATURES * features.size:
        return Prepared(
            part,
            _sparse_blocks(part, sp.csr_matrix(features)),
            f,
            a_hat=dist.gcn_partition(part, edge_index, weight),
            symmetric=symmetric,
        )
    ax = dist.gcn_propagate(part, features, edge_index, weight)
    stacked = np.empty((*ax.shape[:-1], 2 * f), np.float32)  # written in place: no copies
    stacked[..., :f] = ax
    stacked[..., f:] = part.scatter(features, np.float32)
    return Prepared(part, {}, f, ax={"stacked": stacked}, symmetric=symmetric)


def _sparse_blocks(part: dist.Partition, m: Any) -> dict[str, np.ndarray]:
    """The rows of each block of a SciPy CSR matrix as padded COO triples."""
    if part.order is not None:
        m = m[part.order]  # rows in shard order
    counts = [
        int(m.indptr[hi] - m.indptr[lo])
        for lo, hi in zip(part.bounds[:-1], part.bounds[1:], strict=True)
    ]
    nnz = max(max(counts), 1)
    row = np.zeros((part.parts, nnz), np.int32)
    col = np.zeros((part.parts, nnz), np.int32)
    value = np.zeros((part.parts, nnz), np.float32)
    for p in range(part.parts):
        block = m[part.bounds[p] : part.bounds[p + 1]].tocoo()
        row[p, : block.nnz], col[p, : block.nnz] = block.row, block.col
        value[p, : block.nnz] = block.data
    return {"row": row, "col": col, "value": value}
