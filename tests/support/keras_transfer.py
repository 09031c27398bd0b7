"""Helper for test_keras_migration.py, run in a subprocess per Keras backend.

    KERAS_BACKEND=jax python tests/support/keras_transfer.py save DIR
    KERAS_BACKEND=torch python tests/support/keras_transfer.py load DIR jax

`save` builds a seeded GCNConv → DMoNPooling model, writes its weights with
`model.save_weights` and its outputs on fixed inputs; `load` builds the same architecture
under another backend, loads those weights and prints the largest output difference.
"""

from __future__ import annotations

import json
import os
import sys

from dmon.environment import quiet_tensorflow

quiet_tensorflow()
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from oracle import random_batch  # noqa: E402

from dmon.layers.keras import DMoNPooling, GCNConv  # noqa: E402


def build() -> keras.Model:
    x_in, a_in, m_in = keras.Input((10, 5)), keras.Input((10, 10)), keras.Input((10,), dtype="bool")
    h = GCNConv(16)([x_in, a_in])
    outs = DMoNPooling(4, mlp_units=(8,), ortho_weight=0.5)([h, a_in, m_in])
    return keras.Model([x_in, a_in, m_in], list(outs))


def inputs() -> list[np.ndarray]:
    x, a, _, mask = random_batch(21, b=3, n=10, f=5, c=4, masked=True)
    return [x.astype(np.float32), a.astype(np.float32), mask]


def main() -> None:
    mode, folder = sys.argv[1], sys.argv[2]
    backend = keras.backend.backend()
    if mode == "save":
        keras.utils.set_random_seed(7)
        model = build()
        model.save_weights(os.path.join(folder, f"{backend}.weights.h5"))
        np.savez(os.path.join(folder, f"{backend}_out.npz"), *model.predict(inputs(), verbose=0))
        return
    source = sys.argv[3]
    model = build()
    model.load_weights(os.path.join(folder, f"{source}.weights.h5"))
    got = model.predict(inputs(), verbose=0)
    with np.load(os.path.join(folder, f"{source}_out.npz")) as want:
        diff = max(float(np.abs(g - want[f"arr_{i}"]).max()) for i, g in enumerate(got))
    print(json.dumps({"source": source, "target": backend, "max_abs_diff": diff}))


if __name__ == "__main__":
    main()
