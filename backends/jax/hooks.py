"""What the test suite and the parity harness need of JAX: arrays from NumPy, its
compiler, its gradients, and a Keras model's gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def to_array(a: np.ndarray, dtype: str | None = None, device: str | None = None) -> Any:
    """`a` as a JAX array, in bfloat16 for `dtype="bfloat16"` (else `a`'s own dtype, as
    `jax_enable_x64` allows), on JAX's default device."""
    import jax.numpy as jnp

    return jnp.asarray(a, dtype=jnp.bfloat16 if dtype == "bfloat16" else None)


def compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` under `jax.jit`."""
    import jax

    return jax.jit(fn)


def gradient(fn: Callable[..., Any], *args: Any) -> list[Any]:
    """Gradients of the scalar `fn(*args)` with respect to every argument."""
    import jax

    return list(jax.grad(fn, argnums=tuple(range(len(args))))(*args))


def keras_gradients(
    model: Any, arrays: list[Any], trainable: list[Any], total: Callable[[Any, list[Any]], Any]
) -> list[np.ndarray]:
    """`∂ total(outputs, losses) / ∂w` for the `trainable` variables of a Keras model,
    through its stateless call."""
    import jax

    tv = [v.value for v in trainable]
    ntv = [v.value for v in model.non_trainable_variables]

    def scalar(tv: list[Any]) -> Any:
        outputs, _, losses = model.stateless_call(
            tv, ntv, arrays, training=False, return_losses=True
        )
        return total(outputs, losses)

    return [np.asarray(g) for g in jax.grad(scalar)(tv)]


def full_float32_products() -> None:
    """Float32 products in float32, not the TF32 JAX uses on NVIDIA GPUs by default."""
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")


def enable_float64() -> None:
    """Let float64 inputs stay float64 (JAX computes in float32 unless told)."""
    import jax

    jax.config.update("jax_enable_x64", True)
