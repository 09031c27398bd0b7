"""A process of tests/training/test_train.py: `dmon.cluster`'s model built with dmon's
Keras layers and trained by Keras' own `model.fit` (how `dmon.cluster` trained before
its engines), as the oracle of the engines' initial weights and per-epoch losses.
Prints the initial weights' hash and the history as JSON.

    KERAS_BACKEND=jax python keras_reference_train.py GRAPH K EPOCHS SEED
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np


def build_model(n: int, f: int, e: int, k: int, hidden: int, seed: int) -> tuple[Any, Any]:
    """The paper's model as a Keras functional model on one graph (inputs `x` `(1, N, F)`,
    `edge_index` `(1, 2, E)`, `edge_weight` `(1, E)`; output `s`), its weights drawn
    after `keras.utils.set_random_seed(seed)`, and its `DMoNPooling` layer (no dropout,
    collapse regularisation 1)."""
    import keras

    from dmon.layers.keras import DMoNPooling, GCNConv

    keras.utils.set_random_seed(seed)
    x_in = keras.Input((n, f), batch_size=1, name="x")
    ei_in = keras.Input((2, e), batch_size=1, dtype="int32", name="edge_index")
    w_in = keras.Input((e,), batch_size=1, name="edge_weight")
    h = GCNConv(hidden, name="gcn")([x_in, ei_in, w_in])
    pool_layer = DMoNPooling(k, dropout=0.0, collapse_regularization=1.0, name="dmon")
    s, _, _ = pool_layer([h, ei_in, w_in])
    return keras.Model([x_in, ei_in, w_in], s), pool_layer


def main(graph_name: str, k: int, epochs: int, seed: int) -> None:
    from dmon import data
    from dmon.checkpoint import arrays_sha256
    from dmon.training.backend import select_backend

    backend = select_backend(os.environ.get("KERAS_BACKEND"))
    import keras

    graph = data.load(graph_name)
    n, f = graph.features.shape
    ei, w = graph.edge_index()
    ei = ei.astype(np.int32)
    model, pool = build_model(n, f, ei.shape[1], k, 64, seed)
    gcn, dense = model.get_layer("gcn"), pool.mlp[0]
    initial = [
        np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float32)
        for v in (gcn.kernel, gcn.bias, gcn.skip_weight, dense.kernel, dense.bias)
    ]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=backend != "torch")
    history: dict[str, list[float]] = {"loss": [], "spectral_loss": [], "cluster_loss": []}

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            history["loss"].append(float((logs or {})["loss"]))
            for key in ("spectral", "cluster"):
                value = keras.ops.convert_to_numpy(pool.last_losses[key])
                history[f"{key}_loss"].append(float(value))

    inputs = [graph.features[None], ei[None], w[None]]
    model.fit(inputs, epochs=epochs, batch_size=1, verbose=0, shuffle=False, callbacks=[Record()])
    s = np.asarray(model.predict(inputs, batch_size=1, verbose=0))[0]
    print(
        json.dumps(
            {
                "initial_sha256": arrays_sha256(*initial),
                "history": history,
                "assignments": s.argmax(-1).tolist(),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
