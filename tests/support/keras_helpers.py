"""What the Keras layer tests share: the float32 tolerance, arrays in and out of Keras,
and the float64 NumPy reference of `DMoNPooling` on the layer's own weights. Imported
only where Keras and its backend are installed."""

from __future__ import annotations

import keras
import numpy as np

import dmon
from dmon.layers.keras import DMoNPooling

TOL32 = {"rtol": 1e-5, "atol": 1e-6}


def np32(*arrays):
    return [None if a is None else a.astype(np.float32) if a.dtype != bool else a for a in arrays]


def to_np(v) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float64)


def reference(layer: DMoNPooling, x, adj, mask=None) -> dmon.DMoNOutput:
    """dmon.pool in float64 NumPy with logits from the layer's own Dense weights."""
    h = x.astype(np.float64)
    for dense in layer.mlp:
        h = h @ to_np(dense.kernel) + to_np(dense.bias)
    return dmon.pool(x.astype(np.float64), adj.astype(np.float64), h, mask)


def sbm_batch(seed: int, b: int = 16, n: int = 24, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A batch of `b` planted-partition graphs of `n` nodes in `k` communities: float32
    features `(b, n, k)` and symmetric 0/1 adjacency `(b, n, n)`."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), n // k)
    p = np.where(labels[:, None] == labels[None, :], 0.6, 0.03)
    a = np.triu(rng.random((b, n, n)) < p, 1).astype(np.float32)
    a = a + a.transpose(0, 2, 1)
    x = (np.eye(k)[labels][None] + 0.5 * rng.normal(size=(b, n, k))).astype(np.float32)
    return x, a
