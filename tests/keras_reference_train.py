"""A process of tests/test_train.py: `dmon.cluster`'s model trained by Keras' own
`model.fit` (how `dmon.cluster` trained before `dmon.engines`), as the oracle of the
engines' per-epoch losses. Prints the history as JSON.

    KERAS_BACKEND=jax python keras_reference_train.py GRAPH K EPOCHS SEED
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def main(graph_name: str, k: int, epochs: int, seed: int) -> None:
    from dmon import data, train

    backend = train.select_backend(os.environ.get("KERAS_BACKEND"))
    import keras

    graph = data.load(graph_name)
    n, f = graph.features.shape
    ei, w = graph.edge_index()
    ei = ei.astype(np.int32)
    model, pool = train.build_model(n, f, ei.shape[1], k, 64, 0.0, 1.0, 1.0, seed)
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
    print(json.dumps({"history": history, "assignments": s.argmax(-1).tolist()}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
