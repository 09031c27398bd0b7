"""A process of tests/distributed/test_distributed.py: Keras' `DataParallel` over 4 simulated JAX
devices trains a graph classifier built from `GCNConv` and `DMoNPooling` (dense batches
of graphs, the batch axis split over the devices) exactly as one device does.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 KERAS_BACKEND=jax \
        python keras_data_parallel.py OUT.json
"""

from __future__ import annotations

import json
import sys

import keras
import numpy as np

from dmon.layers.keras import DMoNPooling, GCNConv

B, N, F, K = 32, 12, 6, 3


def data() -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    adj = (rng.random((B, N, N)) < 0.3).astype("float32")
    adj = np.triu(adj, 1)
    adj = adj + adj.transpose(0, 2, 1)
    x = rng.normal(size=(B, N, F)).astype("float32")
    y = (adj.sum((1, 2)) > np.median(adj.sum((1, 2)))).astype("int32")
    return [x, adj], y


def train() -> tuple[list[float], list[np.ndarray]]:
    keras.utils.set_random_seed(1)
    x_in, a_in = keras.Input((N, F)), keras.Input((N, N))
    h = GCNConv(8)([x_in, a_in])
    _, pooled, _ = DMoNPooling(K, collapse_regularization=0.5)([h, a_in])
    out = keras.layers.Dense(2)(keras.layers.Flatten()(pooled))
    model = keras.Model([x_in, a_in], out)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    inputs, y = data()
    history = model.fit(inputs, y, batch_size=8, epochs=4, shuffle=False, verbose=0)
    return history.history["loss"], [np.asarray(w) for w in model.get_weights()]


def main(path: str) -> None:
    import jax

    one_losses, one_weights = train()
    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    layout = distribution.get_data_layout((B, N, F))
    dp_losses, dp_weights = train()
    report = {
        "devices": len(devices),
        "jax_devices": jax.device_count(),
        "batch_sharded": layout.axes[0] is not None,
        "losses_moved": abs(one_losses[0] - one_losses[-1]),
        "max_loss_diff": float(np.max(np.abs(np.subtract(one_losses, dp_losses)))),
        "max_weight_diff": max(
            float(np.max(np.abs(a - b))) for a, b in zip(one_weights, dp_weights, strict=True)
        ),
    }
    with open(path, "w") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main(sys.argv[1])
