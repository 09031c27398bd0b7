"""The one table of bad input to the public API (`tests/core/test_bad_input.py` runs it on
every installed backend): `(id, call(t, backend), exception, message pattern)`, where
`t` moves a NumPy array into the backend under test. The classes missing, type,
framework, shape, dtype, values and the dense `dmon.pool` inputs of a masked batch are
here (`DENSE_CASES`), the sparse ones in `bad_sparse_inputs.py` (`SPARSE_CASES`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import require, to_backend
from oracle import random_batch

import dmon

X, A, LOGITS, MASK = random_batch(3, b=2, n=6, f=3, c=4, masked=True)
x1, a1, l1 = X[0], A[0], LOGITS[0]
EDGES = np.array(np.nonzero(a1)).astype(np.int64)
E = EDGES.shape[1]
WEIGHTS = a1[EDGES[0], EDGES[1]]


def edge_graph(t: Callable[[Any], Any], **over: Any) -> dmon.SparseGraph:
    """The unweighted graph of `EDGES` in the backend of `t`, with `over` replacing fields."""
    fields = {"edge_index": t(EDGES), "edge_weight": None, "batch": None, **over}
    return dmon.SparseGraph(**fields)


def other_framework(backend: str) -> str:
    """A different installed framework, for mixed-input cases."""
    for name in ("numpy", "torch", "jax", "tensorflow"):
        if name != backend:
            try:
                require(name)
            except pytest.skip.Exception:
                continue
            return name
    pytest.skip("needs a second framework")


Case = tuple[str, Callable[[Callable[[Any], Any], str], Any], type, str]

DENSE_CASES: list[Case] = [
    # --- missing inputs
    (
        "x None",
        lambda t, b: dmon.pool(None, t(a1), t(l1)),
        TypeError,
        r"dmon.pool: `x` is required; got None",
    ),
    (
        "adj None",
        lambda t, b: dmon.pool(t(x1), None, t(l1)),
        TypeError,
        r"dmon.pool: `adj` is required",
    ),
    ("logits None", lambda t, b: dmon.pool(t(x1), t(a1), None), TypeError, r"`logits` is required"),
    (
        "s None",
        lambda t, b: dmon.cluster_loss(None),
        TypeError,
        r"dmon.cluster_loss: `s` is required",
    ),
    (
        "spectral adj None",
        lambda t, b: dmon.spectral_loss(None, t(l1)),
        TypeError,
        r"dmon.spectral_loss: `adj` is required",
    ),
    (
        "gcn adj None",
        lambda t, b: dmon.gcn_normalize(None),
        TypeError,
        r"dmon.gcn_normalize: `adj` is required",
    ),
    (
        "spmm dense None",
        lambda t, b: dmon.spmm(edge_graph(t), None),
        TypeError,
        r"dmon.spmm: `dense` is required",
    ),
    (
        "edge_index None",
        lambda t, b: dmon.pool(t(x1), dmon.SparseGraph(None), t(l1)),
        TypeError,
        r"`adj.edge_index` is required",
    ),
    # --- not an array: the argument is named
    (
        "x list",
        lambda t, b: dmon.pool([[1.0] * 3] * 6, t(a1), t(l1)),
        TypeError,
        r"`x` must be a numpy.ndarray.*got builtins.list",
    ),
    (
        "adj scalar",
        lambda t, b: dmon.pool(t(x1), 1.0, t(l1)),
        TypeError,
        r"`adj` must be .*got builtins.float",
    ),
    (
        "logits str",
        lambda t, b: dmon.pool(t(x1), t(a1), "logits"),
        TypeError,
        r"`logits` must be .*got builtins.str",
    ),
    (
        "mask list",
        lambda t, b: dmon.pool(t(x1), t(a1), t(l1), [1] * 6),
        TypeError,
        r"`mask` must be .*got builtins.list",
    ),
    (
        "s dict",
        lambda t, b: dmon.orthogonality_loss({"s": 1}),
        TypeError,
        r"dmon.orthogonality_loss: `s` must be .*got builtins.dict",
    ),
    (
        "edge_weight list",
        lambda t, b: dmon.pool(t(x1), edge_graph(t, edge_weight=[1.0] * E), t(l1)),
        TypeError,
        r"`adj.edge_weight` must be .*got builtins.list",
    ),
    # --- two frameworks
    (
        "edge_weight other framework",
        lambda t, b: dmon.pool(
            t(x1), edge_graph(t, edge_weight=to_backend(other_framework(b), np.ones(E))), t(l1)
        ),
        TypeError,
        r"different frameworks: `x` is .* but `adj.edge_weight` is",
    ),
    (
        "batch other framework",
        lambda t, b: dmon.pool(
            t(x1), edge_graph(t, batch=to_backend(other_framework(b), np.zeros(6, np.int64))), t(l1)
        ),
        TypeError,
        r"different frameworks: .*`adj.batch` is",
    ),
    (
        "logits other framework",
        lambda t, b: dmon.pool(t(x1), t(a1), to_backend(other_framework(b), l1)),
        TypeError,
        r"different frameworks: `x` is .* but `logits` is",
    ),
    # --- shapes
    (
        "x 1-D",
        lambda t, b: dmon.pool(t(x1[0]), t(a1), t(l1)),
        ValueError,
        r"`x` must have shape \(B, N, F\) or \(N, F\); got 1-D shape \(3,\)",
    ),
    (
        "adj not square",
        lambda t, b: dmon.pool(t(x1), t(a1[:, :5]), t(l1)),
        ValueError,
        r"`adj` must be square",
    ),
    (
        "N differs",
        lambda t, b: dmon.pool(t(x1), t(a1), t(l1[:5])),
        ValueError,
        r"node counts N differ \(6 vs 5\)",
    ),
    (
        "C = 0",
        lambda t, b: dmon.pool(t(x1), t(a1), t(l1[:, :0])),
        ValueError,
        r"`logits` needs C >= 1 clusters",
    ),
    (
        "mask shape",
        lambda t, b: dmon.pool(t(X), t(A), t(LOGITS), t(MASK[:, :4])),
        ValueError,
        r"`mask` must have shape \(B, N\) = \(2, 6\)",
    ),
    (
        "spmm dense 1-D",
        lambda t, b: dmon.spmm(edge_graph(t), t(np.ones(6))),
        ValueError,
        r"dmon.spmm: `dense` must have shape \(N, K\); got shape \(6,\)",
    ),
    # --- dtypes
    (
        "int x",
        lambda t, b: dmon.pool(t(x1.astype(np.int32)), t(a1), t(l1)),
        TypeError,
        r"`x` must be a floating array .* got dtype int32",
    ),
    (
        "bool adj",
        lambda t, b: dmon.pool(t(x1), t(a1 > 0), t(l1)),
        TypeError,
        r"`adj` must be a floating array .* got dtype bool",
    ),
    (
        "dtypes differ",
        lambda t, b: dmon.pool(t(x1), t(a1.astype(np.float32)), t(l1)),
        TypeError,
        r"`x` has dtype float64 but `adj` has dtype float32",
    ),
    (
        "spmm int dense",
        lambda t, b: dmon.spmm(edge_graph(t), t(np.ones((6, 2), np.int64))),
        TypeError,
        r"dmon.spmm: `dense` must be floating",
    ),
    # --- values (eager)
    (
        "negative weights",
        lambda t, b: dmon.pool(t(x1), t(-a1), t(l1)),
        ValueError,
        r"`adj` has negative edge weights",
    ),
    (
        "one negative degree",
        lambda t, b: dmon.pool(t(x1), t(a1 - 10 * np.eye(6)[0]), t(l1)),
        ValueError,
        r"`adj` has negative edge weights \(graph 0",
    ),
    (
        "negative weights, 2nd graph",
        lambda t, b: dmon.pool(t(X), t(A * np.array([1.0, -1.0])[:, None, None]), t(LOGITS)),
        ValueError,
        r"graph 1 of the batch",
    ),
    (
        "spectral negative weights",
        lambda t, b: dmon.spectral_loss(t(-a1), t(np.full((6, 4), 0.25))),
        ValueError,
        r"dmon.spectral_loss: `adj` has negative edge weights",
    ),
    (
        "NaN mask",
        lambda t, b: dmon.pool(t(X), t(A), t(LOGITS), t(np.where(MASK, 1.0, np.nan))),
        ValueError,
        r"`mask` holds NaN or Inf",
    ),
    # --- shapes and dtypes of a masked dense batch
    (
        "x rank",
        lambda t, b: _dense_pool(t, x=X[0, 0]),
        ValueError,
        r"`x` must have shape \(B, N, F\) or \(N, F\); got 1-D shape \(3,\)",
    ),
    (
        "x rank 4",
        lambda t, b: _dense_pool(t, x=X[None]),
        ValueError,
        r"`x` must have shape .* got 4-D",
    ),
    (
        "adj not square",
        lambda t, b: _dense_pool(t, adj=A[:, :, :5]),
        ValueError,
        r"`adj` must be square.*\(2, 6, 5\)",
    ),
    (
        "adj rank",
        lambda t, b: _dense_pool(t, adj=A[0, 0]),
        ValueError,
        r"`adj` must have shape \(B, N, N\) or \(N, N\)",
    ),
    (
        "B mismatch",
        lambda t, b: _dense_pool(t, adj=A[:1]),
        ValueError,
        r"`x` has shape \(2, 6, 3\) and `adj` has shape \(1, 6, 6\): their batch sizes B differ \(2 vs 1\)",
    ),
    (
        "N mismatch logits",
        lambda t, b: _dense_pool(t, logits=LOGITS[:, :5]),
        ValueError,
        r"`logits` has shape \(2, 5, 4\): their node counts N differ \(6 vs 5\)",
    ),
    (
        "N mismatch adj",
        lambda t, b: _dense_pool(t, adj=A[:, :5, :5]),
        ValueError,
        r"node counts N differ \(6 vs 5\)",
    ),
    (
        "mask shape",
        lambda t, b: _dense_pool(t, mask=MASK[:, :5]),
        ValueError,
        r"`mask` must have shape \(B, N\) = \(2, 6\); got shape \(2, 5\)",
    ),
    (
        "mask batch",
        lambda t, b: _dense_pool(t, mask=MASK[:1]),
        ValueError,
        r"`mask` must have shape \(B, N\) = \(2, 6\); got shape \(1, 6\)",
    ),
    (
        "mask rank",
        lambda t, b: _dense_pool(t, mask=MASK[..., None]),
        ValueError,
        r"`mask` must have shape",
    ),
    (
        "C < 1",
        lambda t, b: _dense_pool(t, logits=LOGITS[..., :0]),
        ValueError,
        r"`logits` needs C >= 1 clusters",
    ),
    (
        "int x",
        lambda t, b: _dense_pool(t, x=X.astype(np.int64)),
        TypeError,
        r"`x` must be a floating array .* got dtype int64",
    ),
    (
        "int adj",
        lambda t, b: _dense_pool(t, adj=A.astype(np.int32)),
        TypeError,
        r"`adj` must be a floating array .* got dtype int32",
    ),
    (
        "bool logits",
        lambda t, b: _dense_pool(t, logits=LOGITS > 0),
        TypeError,
        r"`logits` must be a floating array .* got dtype bool",
    ),
    (
        "dtype mix",
        lambda t, b: _dense_pool(t, adj=A.astype(np.float32)),
        TypeError,
        r"`x` has dtype float64 but `adj` has dtype float32",
    ),
    (
        "spectral_loss N mismatch",
        lambda t, b: dmon.spectral_loss(t(A), t(np.full((2, 5, 4), 0.25))),
        ValueError,
        r"dmon.spectral_loss: `adj` has shape \(2, 6, 6\) and `s` has shape \(2, 5, 4\)",
    ),
    (
        "cluster_loss int s",
        lambda t, b: dmon.cluster_loss(t(np.ones((2, 6, 4), np.int64))),
        TypeError,
        r"dmon.cluster_loss: `s` must be a floating array",
    ),
    (
        "orthogonality_loss mask shape",
        lambda t, b: dmon.orthogonality_loss(t(np.full((2, 6, 4), 0.25)), t(MASK[:, :3])),
        ValueError,
        r"dmon.orthogonality_loss: `mask` must have shape",
    ),
    (
        "list x",
        lambda t, b: dmon.pool([[1.0]], t(A), t(LOGITS)),
        TypeError,
        r"dmon.pool: `x` must be a numpy.ndarray.*got builtins.list",
    ),
    # --- scalars of the wrong type are refused, not converted
    (
        "resolution bool",
        lambda t, b: dmon.pool(t(x1), t(a1), t(l1), resolution=True),
        TypeError,
        r"dmon.pool: `resolution` must be a real number >= 0; got True",
    ),
    (
        "resolution str",
        lambda t, b: dmon.pool(t(x1), t(a1), t(l1), resolution="0.5"),
        TypeError,
        r"dmon.pool: `resolution` must be a real number >= 0; got '0.5'",
    ),
    (
        "resolution numpy bool",
        lambda t, b: dmon.spectral_loss(t(a1), t(np.full((6, 4), 0.25)), resolution=np.True_),
        TypeError,
        r"dmon.spectral_loss: `resolution` must be a real number >= 0",
    ),
]


def _dense_pool(t: Callable[[Any], Any], **over: Any) -> Any:
    """`dmon.pool` of the masked batch `X, A, LOGITS, MASK` with `over` replacing some."""
    args = {"x": X, "adj": A, "logits": LOGITS, "mask": MASK, **over}
    conv = {k: (None if v is None else t(v)) for k, v in args.items()}
    return dmon.pool(conv["x"], conv["adj"], conv["logits"], conv["mask"])
