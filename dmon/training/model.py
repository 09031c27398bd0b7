"""The model `dmon.cluster` trains, defined once: its parameters, their initial values
and its forward pass, written against `dmon.ops` for every engine.

The paper's model (google-research `train.py`): a GCN layer (`hidden` units, SELU, a
learnable per-channel skip weight) on the graph, a dense layer to `k` logits, dropout on
the logits, and DMoN pooling; the loss is `L_spec + collapse · L_clus`. It is the model
that `dmon.layers.keras.GCNConv` and `DMoNPooling` build (`tests/training` checks that
the initial values and the losses of `fit` agree with it).

The GCN's first layer is `Â X W + (X W) ⊙ w_skip + b`. `X` is a constant, so `Â X` is
computed once per fit (`dmon.training.prepared`): a step makes one product
`[Â X | X] [W ; W ⊙ w_skip]`, with no `(N, hidden)` elementwise work for the skip term.
Features that are mostly zeros (Cora's bag of words) are kept sparse, so their products
cost their non-zeros.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dmon import distributed as dist
from dmon.ops import Edges, get_backend

PARAMS = ("gcn/kernel", "gcn/bias", "gcn/skip_weight", "dmon/kernel", "dmon/bias")
"""The parameters, in the order engines and checkpoints keep them (the Keras model's
variable paths)."""


@dataclass(frozen=True)
class ModelSettings:
    """The model's sizes and the settings its steps use."""

    k: int
    hidden: int
    dropout: float
    collapse_regularization: float
    resolution: float
    seed: int


def initial_params(features: int, settings: ModelSettings) -> dict[str, np.ndarray]:
    """The initial values, `(F, hidden)`, `(hidden,)`, `(hidden,)`, `(hidden, k)`, `(k,)`
    float32: Keras' `glorot_uniform` GCN kernel and `orthogonal` dense kernel, zero
    biases and unit skip weights, drawn after `keras.utils.set_random_seed(seed)` on
    Keras' backend, exactly as the Keras layers draw them (each random initializer takes
    its seed from Python's generator when it is made, the GCN's first)."""
    import keras

    with _without_tensorflow_seed(keras):
        keras.utils.set_random_seed(settings.seed)
    gcn_kernel = keras.initializers.get("glorot_uniform")
    dmon_kernel = keras.initializers.get("orthogonal")
    h, k = settings.hidden, settings.k
    values = {
        "gcn/kernel": gcn_kernel((features, h), dtype="float32"),
        "gcn/bias": np.zeros(h),
        "gcn/skip_weight": np.ones(h),
        "dmon/kernel": dmon_kernel((h, k), dtype="float32"),
        "dmon/bias": np.zeros(k),
    }
    return {
        key: np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float32)
        for key, v in values.items()
    }


@contextlib.contextmanager
def _without_tensorflow_seed(keras: Any) -> Iterator[None]:
    """`keras.utils.set_random_seed` imports TensorFlow where it is installed, only to
    seed it (hundreds of MB and a second on a run of another backend: docs/benchmarks.md,
    "Design measurements"); no TensorFlow op draws these values unless
    TensorFlow is the backend. Where it is not imported yet and not the backend, Keras'
    lazy module is told it is absent for the call (the draws are the same: they come
    from Keras' own seed and Python's generator)."""
    lazy = getattr(getattr(keras.src.utils, "module_utils", None), "tensorflow", None)
    skip = (
        keras.backend.backend() != "tensorflow"
        and "tensorflow" not in sys.modules
        and getattr(lazy, "_available", True) is None
    )
    if skip:
        lazy._available = False  # type: ignore[union-attr]
    try:
        yield
    finally:
        if skip:
            lazy._available = None  # type: ignore[union-attr]


def dropout_seed(seed: int, epoch: int, shard: int) -> int:
    """The seed of one epoch's dropout mask on one shard, for engines whose generator
    takes an integer seed: a resumed run draws the same masks."""
    return ((seed * 1_000_003 + epoch) * 4099 + shard) % 2**63


def forward(
    params: Mapping[str, Any],
    prop: Any,
    x: dict[str, Any],
    shard: dist.Shard,
    comm: dist.Collectives,
    keep: Any,
    settings: ModelSettings,
    width: int,
    cache: dict | None = None,
) -> tuple[Any, dist.DMoNOutput]:
    """One shard's forward pass: `h = selu(Â X W + (X W) ⊙ w_skip + b)` (GCNConv),
    `logits = dropout(h W_d + b_d)`, `dmon.distributed.shard_pool(h, ...)` (the losses
    and `s` alone: nothing else is read); the loss
    `L_spec + collapse · L_clus` (the Keras model's `add_loss` total).

    Args:
        params: the values of `PARAMS` by name.
        prop: this shard's `[Â X | X]` (dense features) or `Â` (a `Shard`; see
            `dmon.training.prepared.prepare`).
        x: this shard's sparse features (empty for dense ones).
        shard: this shard's graph.
        comm: the engine's collectives.
        keep: the dropout multiplier `mask / (1 - rate)` `(block, k)`, or `None`.
        settings: the model's settings.
        width: `F`.
        cache: where the sparse features' matrix is kept across steps.
    """
    w, skip = params["gcn/kernel"], params["gcn/skip_weight"]
    ops = get_backend(w)
    block = int(ops.shape(shard.valid)[0])  # type: ignore[arg-type]
    if isinstance(prop, dist.Shard):  # sparse features: Â (X W), Â split into shard rows
        xw = sparse_features_times(x, w, block, width, cache)
        pre = dist.shard_spmm(prop, xw, comm) + xw * skip
    else:
        # Â X W + (X W) ⊙ w_skip as one product: W ⊙ w_skip scales W's columns, (F, hidden)
        # work where the sum and the product with w_skip cost (block, hidden) passes,
        # forward and backward (docs/benchmarks.md, "Training")
        pre = ops.matmul(prop["stacked"], ops.concat([w, w * skip], axis=0))
    h = ops.selu(pre + params["gcn/bias"])
    logits = ops.matmul(h, params["dmon/kernel"]) + params["dmon/bias"]
    if keep is not None:
        logits = logits * keep
    out = dist.shard_pool(h, shard, logits, comm, resolution=settings.resolution, losses_only=True)
    return out.spectral_loss + settings.collapse_regularization * out.cluster_loss, out


def sparse_features_times(
    x: dict[str, Any], w: Any, block: int, width: int, cache: dict | None
) -> Any:
    """`X_p W` `(block, hidden)` for this shard's sparse features `X_p` (COO triples)."""
    ops = get_backend(w)
    edges = Edges(x["row"], x["col"], x["value"], block, width, cache, constant=True)
    return ops.spmm(ops.sparse_matrix(edges), w)


def by_name(values: list[Any]) -> dict[str, Any]:
    """`values` in the order of `PARAMS`, by name."""
    return dict(zip(PARAMS, values, strict=True))
