"""Why `dmon parity` judges float32 against a float64 run: a trained model under both verdicts.

Trains GCNConv -> DMoNPooling(k) on a gnn-benchmark graph (edge_index inputs) under this
process's Keras backend, saves it, and compares it across every installed backend twice:
with elementwise tolerances (rtol 1e-4, atol 1e-5), and against the float64 reference
(the default). Run from the repository root, e.g.

    KERAS_BACKEND=jax python examples/parity_trained_model.py ../shared/datasets/cora.npz
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dmon.environment import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from dmon import parity  # noqa: E402
from dmon.data import load_npz  # noqa: E402
from dmon.layers.keras import DMoNPooling, GCNConv  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("graph", help="a gnn-benchmark .npz file (Cora, CiteSeer, ...)")
    parser.add_argument("-k", type=int, default=7, help="clusters (default 7)")
    parser.add_argument("--epochs", type=int, default=200, help="training epochs (default 200)")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    g = load_npz(args.graph)
    coo = g.adjacency.tocoo()
    ei = np.stack([coo.row, coo.col]).astype("int32")[None]
    x = g.features.astype("float32")[None]
    x_in = keras.Input(x.shape[1:], batch_size=1, name="x")
    e_in = keras.Input(ei.shape[1:], batch_size=1, dtype="int32", name="edge_index")
    s, _, _ = DMoNPooling(args.k, name="pool")([GCNConv(64, name="gcn")([x_in, e_in]), e_in])
    model = keras.Model([x_in, e_in], s)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    start = time.perf_counter()
    model.fit([x, ei], np.zeros((1,)), epochs=args.epochs, verbose=0, batch_size=1)
    print(f"trained {args.epochs} epochs on {keras.backend.backend()} in "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        for how, tolerances in (("elementwise tolerances", {"rtol": 1e-4, "atol": 1e-5}),
                                ("float64 reference", {})):  # fmt: skip
            report = parity.compare_backends(path, [x, ei], **tolerances)
            bad = sum(not c.passed for c in report.comparisons)
            print(f"\n== {how}: {bad} of {len(report.comparisons)} comparisons differ")
            print(report)


if __name__ == "__main__":
    main()
