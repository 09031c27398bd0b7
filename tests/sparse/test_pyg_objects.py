"""A PyTorch Geometric `Data`/`Batch` goes straight into `dmon.pool` (as its sparse
adjacency) and `dmon.cluster` (as a graph), as PyG users hold their graphs. The oracle is
the dense adjacency written from the same edges by hand, pooled on the dense path.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from helpers import installed

import dmon
from dmon import data

pytestmark = pytest.mark.skipif(not installed("torch"), reason="needs torch")


def _edges(rng: np.random.Generator, n: int, offset: int = 0) -> np.ndarray:
    a = np.triu(rng.random((n, n)) < 0.4, 1)
    ei = np.stack(np.nonzero(a | a.T))
    return ei + offset


def test_a_pyg_batch_is_its_sparse_adjacency() -> None:
    import torch

    rng = np.random.default_rng(0)
    sizes = (5, 7)
    ei = np.concatenate([_edges(rng, 5), _edges(rng, 7, offset=5)], axis=1)
    w = rng.uniform(0.5, 2.0, ei.shape[1])
    batch = np.repeat([0, 1], sizes)
    x, logits = rng.normal(size=(12, 3)), rng.normal(size=(12, 4))
    obj = SimpleNamespace(
        edge_index=torch.tensor(ei), edge_attr=torch.tensor(w)[:, None],
        batch=torch.tensor(batch), num_graphs=2, num_nodes=12,
    )  # fmt: skip
    if installed("torch_geometric"):  # the real class, where it is installed
        from torch_geometric.data import Batch, Data

        graphs = [
            Data(edge_index=torch.tensor(ei[:, batch[ei[0]] == g] - (5 if g else 0)),
                 edge_attr=torch.tensor(w[batch[ei[0]] == g])[:, None], num_nodes=s)
            for g, s in enumerate(sizes)
        ]  # fmt: skip
        obj = Batch.from_data_list(graphs)
    got = dmon.pool(torch.tensor(x), obj, torch.tensor(logits))
    for g, s in enumerate(sizes):  # each graph on the dense path, its adjacency by hand
        nodes = np.flatnonzero(batch == g)
        a = np.zeros((s, s))
        own = batch[ei[0]] == g
        a[ei[0, own] - nodes[0], ei[1, own] - nodes[0]] = w[own]
        want = dmon.pool(x[nodes], a, logits[nodes])
        np.testing.assert_allclose(got.x[g].numpy(), want.x[0], rtol=1e-10)
        np.testing.assert_allclose(got.adj[g].numpy(), want.adj[0], rtol=1e-10, atol=1e-12)


def test_a_pyg_data_is_a_graph() -> None:
    import torch

    rng = np.random.default_rng(1)
    ei = _edges(rng, 6)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    obj = SimpleNamespace(
        edge_index=torch.tensor(ei), x=torch.tensor(x), y=torch.tensor([0, 0, 0, 1, 1, 1]),
        edge_weight=None, num_nodes=6,
    )  # fmt: skip
    g = data.from_pyg(obj, binarize_features=False)
    a = np.zeros((6, 6))
    a[ei[0], ei[1]] = 1.0
    np.testing.assert_array_equal(g.adjacency.toarray(), a)
    np.testing.assert_array_equal(g.features, x)
    np.testing.assert_array_equal(g.labels, [0, 0, 0, 1, 1, 1])
    with pytest.raises(TypeError, match="from_pyg: `data` must have an `edge_index`"):
        data.from_pyg(SimpleNamespace(x=1))
    keras_ready = installed("keras") and installed(__import__("keras").backend.backend())
    if keras_ready:  # dmon.cluster takes it as it is, labels and all
        result = dmon.cluster(obj, 2, epochs=2)
        assert result.metrics["nmi"] == pytest.approx(
            dmon.metrics.nmi(np.array([0, 0, 0, 1, 1, 1]), result.assignments)
        )
