"""Graphs the benchmarks share (generated from a seed: nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ARXIV = (169_343, 1_166_243)  # ogbn-arxiv's nodes and undirected edges
DATASETS = Path(
    os.environ.get("DMON_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)


def attributed_sbm(
    n: int, m: int, blocks: int = 40, features: int = 128, seed: int = 0, inside: float = 0.8
):
    """A `dmon.data.Graph`: a stochastic block model with `blocks` blocks (nodes drawn
    at random, so ids carry no locality), `m` random edges of which a share `inside`
    stay inside a block (symmetrised, no self-loops), and float32 features that are the
    block's centre plus unit noise; labels are the blocks."""
    import scipy.sparse as sp

    from dmon.data import Graph

    rng = np.random.default_rng(seed)
    block = rng.integers(0, blocks, n)
    members = [np.flatnonzero(block == b) for b in range(blocks)]
    src = rng.integers(0, n, m)
    dst = rng.integers(0, n, m)
    near = rng.random(m) < inside
    for b in range(blocks):
        pick = near & (block[src] == b)
        dst[pick] = rng.choice(members[b], int(pick.sum()))
    keep = src != dst
    a = sp.coo_matrix((np.ones(int(keep.sum()), np.float32), (src[keep], dst[keep])), (n, n))
    a = ((a + a.T) > 0).astype(np.float32).tocsr()
    centres = rng.normal(size=(blocks, features)).astype(np.float32)
    x = centres[block] + rng.normal(size=(n, features)).astype(np.float32)
    return Graph(a, x, block, name="arxiv-size attributed SBM" if n == ARXIV[0] else f"SBM {n}")


def cora():
    """Cora from ../shared/datasets (gnn-benchmark format), preprocessed as the paper."""
    from dmon import data

    return data.load(str(DATASETS / "cora.npz"))
