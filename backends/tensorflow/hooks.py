"""What the test suite and the parity harness need of TensorFlow: tensors from NumPy,
its compiler, its gradients, and a Keras model's gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def to_array(a: np.ndarray, dtype: str | None = None, device: str | None = None) -> Any:
    """`a` as a TensorFlow tensor (`dtype` `"bfloat16"` too; TensorFlow places it)."""
    import tensorflow as tf

    t = tf.constant(a)
    return tf.cast(t, tf.bfloat16) if dtype == "bfloat16" else t


def compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` under `tf.function(jit_compile=True)`."""
    import tensorflow as tf

    return tf.function(fn, jit_compile=True)


def gradient(fn: Callable[..., Any], *args: Any) -> list[Any]:
    """Gradients of the scalar `fn(*args)` with respect to every argument."""
    import tensorflow as tf

    leaves = [tf.Variable(a) for a in args]
    with tf.GradientTape() as tape:
        out = fn(*leaves)
    return list(tape.gradient(out, leaves))


def keras_gradients(
    model: Any, arrays: list[Any], trainable: list[Any], total: Callable[[Any, list[Any]], Any]
) -> list[np.ndarray]:
    """`∂ total(outputs, losses) / ∂w` for the `trainable` variables of a Keras model
    (zeros where a variable does not reach the total)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = total(model(arrays, training=False), model.losses)
    gs = tape.gradient(value, [v.value for v in trainable])
    return [
        np.zeros(v.shape, v.dtype) if g is None else np.asarray(g)
        for v, g in zip(trainable, gs, strict=True)
    ]


def full_float32_products() -> None:
    """Float32 products in float32, not the TF32 TensorFlow uses on NVIDIA GPUs."""
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)


def enable_float64() -> None:
    """Nothing to do: float64 inputs stay float64."""
