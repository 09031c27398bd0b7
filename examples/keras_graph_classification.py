"""Graph classification with DMoN pooling in Keras 3, on any Keras backend.

    KERAS_BACKEND=jax python examples/keras_graph_classification.py
    KERAS_BACKEND=tensorflow python examples/keras_graph_classification.py
    KERAS_BACKEND=torch python examples/keras_graph_classification.py

Task: tell stochastic-block-model graphs with 2 communities from graphs with 4, with 20 to
40 nodes each (padded to 40 with a node mask). Expected degrees are matched between the
classes, so the degree alone does not give the answer. Node features are a noisy copy of
a random centroid per community, drawn anew for every graph: they say which nodes belong
together, not which class the graph is. Model: GCNConv → DMoNPooling(k=4) → GCNConv on the coarsened
graph → mean readout → Dense. The DMoN losses are added to the classification loss.
"""

from __future__ import annotations

import argparse
import time

from dmon.environment import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from dmon.layers.keras import DMoNPooling, GCNConv  # noqa: E402

N_MAX, FEATURES = 40, 8


def sbm_dataset(count: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """`count` padded graphs; label 0: two communities, label 1: four."""
    rng = np.random.default_rng(seed)
    x = np.zeros((count, N_MAX, FEATURES), np.float32)
    a = np.zeros((count, N_MAX, N_MAX), np.float32)
    mask = np.zeros((count, N_MAX), bool)
    labels = rng.integers(0, 2, size=count)
    for g, label in enumerate(labels):
        n = int(rng.integers(20, N_MAX + 1))
        k, p_in, p_out = (2, 0.35, 0.02) if label == 0 else (4, 0.67, 0.02)  # same expected degree
        comm = rng.integers(0, k, size=n)
        p = np.where(comm[:, None] == comm[None, :], p_in, p_out)
        adj = np.triu(rng.random((n, n)) < p, 1)
        a[g, :n, :n] = adj + adj.T
        centroids = rng.normal(size=(k, FEATURES))  # drawn anew for every graph
        x[g, :n] = centroids[comm] + 0.5 * rng.normal(size=(n, FEATURES))
        mask[g, :n] = True
    return [x, a, mask], labels


def build_model() -> keras.Model:
    x_in = keras.Input((N_MAX, FEATURES), name="x")
    a_in = keras.Input((N_MAX, N_MAX), name="adj")
    m_in = keras.Input((N_MAX,), dtype="bool", name="mask")
    h = GCNConv(32)([x_in, a_in])
    h = GCNConv(32)([h, a_in])
    _, x_pool, a_pool = DMoNPooling(k=4, collapse_regularization=0.1)([h, a_in, m_in])
    h = GCNConv(32)([x_pool, a_pool])
    h = keras.layers.GlobalAveragePooling1D()(h)
    out = keras.layers.Dense(2, activation="softmax")(h)
    return keras.Model([x_in, a_in, m_in], out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    train_x, train_y = sbm_dataset(2000, seed=1)
    test_x, test_y = sbm_dataset(300, seed=2)
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=keras.backend.backend() != "torch",
    )
    epoch_times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            epoch_times.append(time.perf_counter() - self.t0)

    model.fit(train_x, train_y, epochs=args.epochs, batch_size=32, verbose=0, callbacks=[Timer()])
    _, test_acc = model.evaluate(test_x, test_y, verbose=0)
    steady = float(np.median(epoch_times[1:])) if len(epoch_times) > 1 else epoch_times[0]
    print(
        f"backend={keras.backend.backend()} epochs={args.epochs} test_accuracy={test_acc:.3f} "
        f"first_epoch_s={epoch_times[0]:.2f} median_epoch_s={steady:.3f}"
    )


if __name__ == "__main__":
    main()
