"""Does my Keras model give the same numbers on JAX, TensorFlow and PyTorch?

Builds GCNConv -> DMoNPooling -> Dense, compares it across every installed Keras backend
(each in its own process: outputs, DMoN's losses, gradients of every weight), then does
the same with a custom layer that misbehaves under one backend, and shows where the
divergence starts. Run from the repository root:

    python examples/keras_parity.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import keras
import numpy as np

from dmon import parity
from dmon.layers.keras import DMoNPooling, GCNConv

sys.path.insert(0, str(Path(__file__).parent))  # for parity_user_layers, below

from parity_user_layers import Drift


def build(extra: keras.layers.Layer | None = None) -> keras.Model:
    x_in, a_in = keras.Input((8, 4), name="x"), keras.Input((8, 8), name="adj")
    h = GCNConv(16, name="gcn")([x_in, a_in])
    if extra is not None:
        h = extra(h)
    _, x_pool, _ = DMoNPooling(3, name="pool")([h, a_in])
    y = keras.layers.Dense(2, name="head")(keras.layers.Flatten(name="flat")(x_pool))
    return keras.Model([x_in, a_in], y)


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 8, 4)).astype("float32")
    a = (rng.random((3, 8, 8)) < 0.4).astype("float32")
    a = np.maximum(a, a.transpose(0, 2, 1))

    print("== a clean model")
    print(parity.compare_backends(build(), {"x": x, "adj": a}))
    print("\n== with a layer that drifts under one backend")
    report = parity.compare_backends(build(Drift(name="drift")), {"x": x, "adj": a})
    print(report)


if __name__ == "__main__":
    main()
