"""Bad sparse input for the table of `bad_inputs.py`: native sparse matrices, a
`SparseGraph`'s arrays, sizes and batch, checked against the node features."""

from __future__ import annotations

import numpy as np
from bad_inputs import EDGES, LOGITS, WEIGHTS, Case, E, X, a1, edge_graph, l1, x1

import dmon

SPARSE_CASES: list[Case] = [
    # --- sparse
    (
        "edge id past N",
        lambda t, b: dmon.pool(t(x1), dmon.SparseGraph(t(np.array([[0, 6], [1, 0]]))), t(l1)),
        ValueError,
        r"`edge_index` holds node id 6, out of range for N = 6",
    ),
    (
        "negative edge id",
        lambda t, b: dmon.pool(t(x1), dmon.SparseGraph(t(np.array([[0, -1], [1, 0]]))), t(l1)),
        ValueError,
        r"negative node id \(-1\)",
    ),
    (
        "edge_index (3, E)",
        lambda t, b: dmon.pool(t(x1), dmon.SparseGraph(t(np.zeros((3, 2), np.int64))), t(l1)),
        ValueError,
        r"`edge_index` must have shape \(2, E\)",
    ),
    (
        "float edge_index",
        lambda t, b: dmon.pool(t(x1), dmon.SparseGraph(t(EDGES.astype(np.float64))), t(l1)),
        TypeError,
        r"`edge_index` must be an integer array",
    ),
    (
        "edge_weight length",
        lambda t, b: dmon.pool(t(x1), edge_graph(t, edge_weight=t(np.ones(E + 1))), t(l1)),
        ValueError,
        r"`edge_weight` must have shape \(E,\)",
    ),
    (
        "negative edge_weight",
        lambda t, b: dmon.pool(t(x1), edge_graph(t, edge_weight=t(-np.ones(E))), t(l1)),
        ValueError,
        r"`adj.edge_weight` holds a negative weight",
    ),
    (
        "batch unsorted",
        lambda t, b: dmon.pool(
            t(x1),
            dmon.SparseGraph(t(np.zeros((2, 0), np.int64)), batch=t(np.array([0, 1, 0, 1, 1, 1]))),
            t(l1),
        ),
        ValueError,
        r"`batch` must be sorted",
    ),
    (
        "batch length",
        lambda t, b: dmon.pool(t(x1), edge_graph(t, batch=t(np.zeros(5, np.int64))), t(l1)),
        ValueError,
        r"`batch` must have shape \(N,\) = \(6,\)",
    ),
    (
        "edge across graphs",
        lambda t, b: dmon.pool(
            t(x1),
            dmon.SparseGraph(
                t(np.array([[0, 1, 2], [1, 0, 4]])), batch=t(np.array([0, 0, 0, 1, 1, 1]))
            ),
            t(l1),
        ),
        ValueError,
        r"edge 2 \(2 -> 4\) joins node 2 of graph 0 and node 4 of graph 1",
    ),
    (
        "num_graphs too small",
        lambda t, b: dmon.pool(
            t(x1), edge_graph(t, batch=t(np.array([0, 0, 0, 0, 0, 1])), num_graphs=1), t(l1)
        ),
        ValueError,
        r"num_graphs = 1 but `batch` holds graph id 1",
    ),
    (
        "num_graphs 0",
        lambda t, b: dmon.pool(
            t(x1), edge_graph(t, batch=t(np.zeros(6, np.int64)), num_graphs=0), t(l1)
        ),
        ValueError,
        r"SparseGraph `num_graphs` must be an int >= 1; got 0",
    ),
    (
        "mask with sparse",
        lambda t, b: dmon.pool(t(x1), edge_graph(t), t(l1), t(np.ones(6))),
        ValueError,
        r"`mask` is for dense batches",
    ),
    (
        "sparse with batched x",
        lambda t, b: dmon.pool(t(X), edge_graph(t), t(LOGITS)),
        ValueError,
        r"with a sparse `adj`, `x` must be node-level",
    ),
    (
        "gcn_normalize_sparse num_nodes",
        lambda t, b: dmon.gcn_normalize_sparse(edge_graph(t), -1),
        ValueError,
        r"`num_nodes` must be an int >= 0; got -1",
    ),
    (
        "backend name",
        lambda t, b: dmon.pool(t(x1), t(a1), t(l1), backend="mxnet"),
        ValueError,
        r"backend must be one of",
    ),
    # --- a SparseGraph's arrays and sizes, checked against the node features
    (
        "edge_index out of range",
        lambda t, b: dmon.pool(t(x1), dmon.SparseGraph(t(EDGES[:, :3] + 10)), t(l1)),
        ValueError,
        r"`edge_index` holds node id 1[0-9], out of range for N = 6",
    ),
    (
        "edge_index negative",
        lambda t, b: dmon.pool(t(x1), dmon.SparseGraph(t(EDGES - 1)), t(l1)),
        ValueError,
        r"`edge_index` holds a negative node id \(-1\)",
    ),
    (
        "edge_index transposed",
        lambda t, b: dmon.pool(t(x1), dmon.SparseGraph(t(EDGES.T.copy())), t(l1)),
        ValueError,
        r"`edge_index` must have shape \(2, E\); got shape",
    ),
    (
        "edge_index float",
        lambda t, b: dmon.pool(t(x1), dmon.SparseGraph(t(EDGES.astype(np.float64))), t(l1)),
        TypeError,
        r"`edge_index` must be an integer array; got dtype float64",
    ),
    (
        "edge_weight short",
        lambda t, b: dmon.pool(t(x1), dmon.SparseGraph(t(EDGES), t(WEIGHTS[:-1])), t(l1)),
        ValueError,
        r"`edge_weight` must have shape \(E,\)",
    ),
    (
        "edge_weight int",
        lambda t, b: dmon.pool(
            t(x1), dmon.SparseGraph(t(EDGES), t(WEIGHTS.astype(np.int64))), t(l1)
        ),
        TypeError,
        r"`edge_weight` must be floating",
    ),
    (
        "batch unsorted",
        lambda t, b: dmon.pool(
            t(x1), dmon.SparseGraph(t(EDGES), batch=t(np.array([0, 1, 0, 1, 1, 1]))), t(l1)
        ),
        ValueError,
        r"`batch` must be sorted .* batch\[1\] = 1 > batch\[2\] = 0",
    ),
    (
        "max_num_nodes too small",
        lambda t, b: dmon.pool(
            t(x1),
            dmon.SparseGraph(
                t(EDGES), batch=t(np.zeros(6, np.int64)), num_graphs=1, max_num_nodes=3
            ),
            t(l1),
        ),
        ValueError,
        r"max_num_nodes = 3 but a graph of the batch has 6 nodes",
    ),
    (
        "num_nodes mismatch",
        lambda t, b: dmon.pool(t(x1), dmon.SparseGraph(t(EDGES), num_nodes=7), t(l1)),
        ValueError,
        r"num_nodes = 7 but `x` has N = 6",
    ),
    (
        "mask with sparse",
        lambda t, b: dmon.pool(t(x1), dmon.SparseGraph(t(EDGES)), t(l1), t(np.ones(6, bool))),
        ValueError,
        r"`mask` is for dense batches",
    ),
    (
        "batched x with sparse",
        lambda t, b: dmon.pool(t(X), dmon.SparseGraph(t(EDGES)), t(l1)),
        ValueError,
        r"with a sparse `adj`, `x` must be node-level",
    ),
]
