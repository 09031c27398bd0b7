"""`dmon.partition` against brute force: every edge lands once, in its source's shard,
pointing at its target's row of the gathered array; slot order is the same matrix;
blocks are balanced by edges; bad arguments are named."""

from __future__ import annotations

import numpy as np
import pytest

from dmon.ops import Edges
from dmon.partition import partition


def _random_graph(n: int, e: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # a few hubs, so that balancing by edges differs from balancing by nodes
    src = np.where(rng.random(e) < 0.3, rng.integers(0, 3, e), rng.integers(0, n, e))
    return np.stack([src, rng.integers(0, n, e)]), rng.uniform(0.1, 2.0, e)


@pytest.mark.parametrize(("n", "parts"), [(1, 1), (7, 3), (50, 4), (200, 7), (3, 5)])
def test_partition_holds_every_edge_once_in_its_source_shard(n: int, parts: int) -> None:
    ei, w = _random_graph(n, 6 * n, seed=n)
    p = partition(ei, n, parts, edge_weight=w)
    assert p.bounds[0] == 0 and p.bounds[-1] == n and np.all(np.diff(p.bounds) >= 0)
    # the gathered array's row r belongs to node: shard r // block, offset r % block
    got = []
    for q in range(parts):
        for r, c, wt in zip(
            p.row[q, : p.num_edges[q]],
            p.col[q, : p.num_edges[q]],
            p.weight[q, : p.num_edges[q]],
            strict=True,
        ):
            src = p.bounds[q] + r
            assert p.bounds[q] <= src < p.bounds[q + 1]
            shard, offset = divmod(int(c), p.block)
            dst = p.bounds[shard] + offset
            assert dst < p.bounds[shard + 1]
            got.append((int(src), int(dst), float(wt)))
    assert sorted(got) == sorted(zip(ei[0].tolist(), ei[1].tolist(), w.tolist(), strict=True))
    assert np.all(p.weight[:, p.num_edges.max() :] == 0)
    x = np.arange(n * 3.0).reshape(n, 3)
    np.testing.assert_array_equal(p.gather(p.scatter(x)), x)
    assert p.valid.sum() == n and p.nodes_per_shard == np.diff(p.bounds).tolist()


def _dense_rows(p, q: int, cols: int) -> np.ndarray:
    """Shard `q`'s rows of the adjacency as a dense `(block, cols)` matrix, summing
    duplicates: a brute-force reading of its edge list."""
    out = np.zeros((p.block, cols))
    np.add.at(out, (p.row[q], p.col[q]), p.weight[q])
    return out


@pytest.mark.parametrize(("n", "parts"), [(5, 1), (7, 3), (200, 1), (200, 7)])
def test_slotted_partition_is_the_same_matrix(n: int, parts: int) -> None:
    from dmon.partition import slotted

    ei, w = _random_graph(n, 6 * n, seed=n + 1)
    p = partition(ei, n, parts, edge_weight=w)
    s = slotted(p)
    cols = parts * p.block
    for q in range(parts):
        np.testing.assert_allclose(_dense_rows(s, q, cols), _dense_rows(p, q, cols), atol=1e-12)
    if s.slots:  # slot j of row i is edge j·block + i
        assert np.all(s.row[:, : s.slots * s.block] == np.tile(np.arange(s.block), s.slots))
    if n >= 200 and parts == 1:  # the hubs (~30% of the edges) stay in the list
        assert 0 < s.slots < np.bincount(ei[0], minlength=n).max()
    assert slotted(s) is s


@pytest.mark.parametrize("parts", [1, 3])
def test_jax_product_of_a_slotted_partition_matches_the_plain_one(parts: int) -> None:
    jax = pytest.importorskip("jax")
    from dmon.ops import backend_by_name
    from dmon.partition import slotted

    ops = backend_by_name("jax")
    ei, w = _random_graph(300, 3000, seed=3)
    p = partition(ei, 300, parts, edge_weight=w)
    s = slotted(p)
    assert s.slots > 0
    h = np.random.default_rng(0).normal(size=(parts * p.block, 5)).astype(np.float32)
    for q in range(parts):
        want = _dense_rows(p, q, parts * p.block) @ h
        for part in (p, s):
            matrix = ops.sparse_matrix(Edges(
                *(jax.numpy.asarray(a[q]) for a in (part.row, part.col, part.weight.astype(np.float32))),
                p.block, cols=parts * p.block, slots=part.slots,
            ))  # fmt: skip
            got = ops.spmm(matrix, jax.numpy.asarray(h))
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4)


def test_partition_balances_edges_not_only_nodes() -> None:
    n, parts = 400, 4
    ei, _ = _random_graph(n, 4000, seed=1)
    p = partition(ei, n, parts)
    work = 1 + np.bincount(ei[0], minlength=n)
    per_shard = [work[p.bounds[q] : p.bounds[q + 1]].sum() for q in range(parts)]
    # contiguous blocks: each within one node's work of the ideal share
    assert max(per_shard) <= work.sum() / parts + work.max()
    assert p.nodes_per_shard[0] < n / parts  # the hubs' shard holds fewer nodes


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"edge_index": np.zeros((3, 2), int)}, ValueError, r"shape \(2, E\)"),
        ({"edge_index": np.zeros((2, 2))}, TypeError, "integers"),
        ({"edge_index": np.array([[0], [9]])}, ValueError, r"\[0, 5\)"),
        ({"parts": 0}, ValueError, "parts"),
        ({"edge_weight": -np.ones(1)}, ValueError, "non-negative"),
        ({"batch": np.array([0, 0, 1, 1, 1])}, ValueError, "joins graphs"),
        ({"batch": np.zeros(4, int)}, ValueError, r"\(N,\) = \(5,\)"),
    ],
)
def test_partition_names_bad_input(kwargs: dict, error: type, match: str) -> None:
    args = {"edge_index": np.array([[0], [3]]), "num_nodes": 5, "parts": 2, **kwargs}
    with pytest.raises(error, match=match):
        partition(**args)


# --- the sharded pool against one device ---------------------------------------------------
