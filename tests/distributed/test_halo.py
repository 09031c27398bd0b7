"""METIS's partition and the halo exchange (`dmon.partitioners`, `dmon.halo`) against
brute force: every edge lands once in its source's shard; each shard's halo is the set
of remote nodes its edges reference; `A S` rebuilt from the exchanged rows (padded and
exact layouts) equals the dense product; the edge cut is counted; METIS keeps
communities together where contiguous ids cannot; the rule picks the cheaper exchange."""

from __future__ import annotations

import numpy as np
import pytest

from dmon.halo import HALO_SHARE, exact_layout
from dmon.partition import Partition, partition
from dmon.training.traffic import exchanged_rows

pytest.importorskip("pymetis")


def _planted(n: int, blocks: int, inside: float, degree: int, seed: int) -> np.ndarray:
    """A planted partition with shuffled ids: `blocks` equal communities, `inside` of the
    edges within one, both directions stored; contiguous ids carry no locality."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, blocks, n)
    members = [np.flatnonzero(label == b) for b in range(blocks)]
    src = rng.integers(0, n, n * degree // 2)
    dst = rng.integers(0, n, src.size)
    near = rng.random(src.size) < inside
    dst[near] = [rng.choice(members[label[s]]) for s in src[near]]
    keep = src != dst
    return np.concatenate([np.stack([src, dst])[:, keep], np.stack([dst, src])[:, keep]], axis=1)


def _nodes(p: Partition, q: int) -> np.ndarray:
    """Shard `q`'s nodes, row by row."""
    lo, hi = p.bounds[q], p.bounds[q + 1]
    return np.arange(lo, hi) if p.order is None else p.order[lo:hi]


def _received(p: Partition, s_blocks: np.ndarray, q: int, exact: bool) -> np.ndarray:
    """What shard `q` receives, peer by peer: with padding rows, or exactly."""
    rows = []
    for r in range(p.parts):
        count = p.send_counts[r, q] if exact else p.send.shape[2]
        rows.append(s_blocks[r][p.send[r, q, :count]])
    return np.concatenate(rows)


@pytest.mark.parametrize(("method", "exchange"), [("metis", "halo"), ("metis", "all-gather"),
                                                  ("contiguous", "halo")])  # fmt: skip
@pytest.mark.parametrize(("n", "parts"), [(7, 3), (120, 4), (300, 5)])
def test_every_layout_rebuilds_the_product_of_the_whole_graph(
    method: str, exchange: str, n: int, parts: int
) -> None:
    rng = np.random.default_rng(n)
    ei = _planted(n, 6, 0.9, 8, seed=n)
    w = rng.uniform(0.1, 2.0, ei.shape[1])
    s = rng.normal(size=(n, 3))
    dense = np.zeros((n, n))
    np.add.at(dense, (ei[0], ei[1]), w)
    p = partition(ei, n, parts, w, method=method, exchange=exchange)
    assert p.exchange == exchange
    assert sorted(np.concatenate([_nodes(p, q) for q in range(parts)])) == list(range(n))
    blocks = p.scatter(s)
    for q in range(parts):
        e, nodes = p.num_edges[q], _nodes(p, q)
        rows, col, wt = p.row[q, :e], p.col[q, :e], p.weight[q, :e]
        # brute force: the nodes of other shards this shard's edges point at
        mine = np.isin(ei[0], nodes)
        assert e == mine.sum()
        remote = set(ei[1, mine].tolist()) - set(nodes.tolist())
        assert p.halo().halo_per_shard[q] == len(remote)
        if exchange == "all-gather":
            layouts = [("gathered", blocks.reshape(-1, 3), col)]
        else:
            layouts = [("padded", np.concatenate([blocks[q], _received(p, blocks, q, False)]), col)]
            _, sent, received, exact_col = exact_layout(col, p.send, p.send_counts, p.block, q)
            assert received == p.send_counts[:, q].tolist() and sent == p.send_counts[q].tolist()
            layouts.append(
                ("exact", np.concatenate([blocks[q], _received(p, blocks, q, True)]), exact_col)
            )
        for name, full, c in layouts:
            got = np.zeros((p.block, 3))
            np.add.at(got, rows, wt[:, None] * full[c])
            np.testing.assert_allclose(
                got[: nodes.size], (dense @ s)[nodes], atol=1e-12, err_msg=name
            )
    np.testing.assert_array_equal(p.gather(blocks), s)
    owner = np.empty(n, int)
    for q in range(parts):
        owner[_nodes(p, q)] = q
    assert p.halo().edge_cut == int(np.count_nonzero(owner[ei[0]] != owner[ei[1]]))


def test_metis_keeps_communities_that_contiguous_ids_scatter() -> None:
    n, parts = 4000, 4
    ei = _planted(n, 16, 0.95, 10, seed=1)
    metis = partition(ei, n, parts, method="metis", exchange="auto")
    contiguous = partition(ei, n, parts, method="contiguous", exchange="auto")
    # shuffled ids: contiguous blocks cut about (P - 1) / P of the edges; METIS few
    assert contiguous.halo().edge_cut > 0.7 * ei.shape[1]
    assert metis.halo().edge_cut < 0.2 * ei.shape[1]
    # the rule: METIS's halo is a small share of an all-gather, the contiguous one is not
    assert metis.exchange == "halo" and contiguous.exchange == "all-gather"
    assert metis.halo().chunk <= HALO_SHARE * metis.block < contiguous.halo().chunk
    assert max(exchanged_rows(metis, padded=True)) < 0.5 * (parts - 1) * metis.block
    # balanced by work (1 + edges per node), as the contiguous split: METIS's 3% slack
    work = 1 + np.bincount(ei[0], minlength=n)
    per_shard = [work[_nodes(metis, q)].sum() for q in range(parts)]
    assert max(per_shard) <= 1.04 * work.sum() / parts


def test_a_like_partition_keeps_the_order_and_the_exchange() -> None:
    ei = _planted(200, 4, 0.9, 6, seed=2)
    p = partition(ei, 200, 3, method="metis", exchange="halo")
    q = partition(ei[:, ::2], 200, 3, like=p)
    assert q.order is p.order and np.array_equal(q.bounds, p.bounds) and q.exchange == "halo"


def test_auto_falls_back_to_contiguous_without_pymetis(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pymetis" else real(name, *a)
    )
    ei = _planted(100, 4, 0.9, 6, seed=3)
    assert partition(ei, 100, 2, method="auto").order is None
    with pytest.raises(ImportError, match="pymetis"):
        partition(ei, 100, 2, method="metis")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "kahip"}, r"partition: `method` must be one of auto, metis, contiguous; got 'kahip'"),
        ({"exchange": "ring"}, r"partition: `exchange` must be one of auto, halo, all-gather; got 'ring'"),
    ],
)  # fmt: skip
def test_unknown_methods_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        partition(np.array([[0, 1], [1, 0]]), 2, 2, **kwargs)


@pytest.mark.parametrize(
    ("launch", "match"),
    [
        ({"partitioner": "kahip"}, "partitioner must be one of auto, metis, contiguous; got 'kahip'"),
        ({"exchange": "ring"}, "exchange must be one of auto, halo, all-gather; got 'ring'"),
    ],
)  # fmt: skip
def test_a_launch_names_an_unknown_partitioner_or_exchange(launch: dict, match: str) -> None:
    from dmon.training.launch import Launch, check_common

    with pytest.raises(ValueError, match=match):
        check_common(Launch(devices=2, **launch))
