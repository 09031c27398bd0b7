"""JAX backend (eager and ``jax.jit``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class JaxOps:
    name = "jax"
    framework = "jax"

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp

        self.jax = jax
        self.jnp = jnp

    def is_array(self, x: object) -> bool:
        return isinstance(x, self.jax.Array)  # tracers are jax.Array too

    def asarray(self, x: object) -> Any:
        if isinstance(x, self.jax.Array):
            return x
        import numpy

        if hasattr(x, "detach"):  # torch: leave autograd and the device first
            x = x.detach().cpu()
        return self.jnp.asarray(numpy.asarray(x))

    def shape(self, x: Any) -> tuple[int | None, ...]:
        return tuple(x.shape)

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype.name)

    def astype(self, x: Any, dtype: str) -> Any:
        return x.astype(dtype)

    def expand_dims(self, x: Any, axis: int) -> Any:
        return self.jnp.expand_dims(x, axis)

    def ones_like(self, x: Any) -> Any:
        return self.jnp.ones_like(x)

    def eye(self, n: int, like: Any) -> Any:
        return self.jnp.eye(n, dtype=like.dtype)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return self.jnp.concatenate(list(xs), axis=axis)

    def matmul(self, a: Any, b: Any) -> Any:
        return self.jnp.matmul(a, b)

    def transpose(self, x: Any) -> Any:
        return self.jnp.swapaxes(x, -1, -2)

    def diagonal(self, x: Any) -> Any:
        return self.jnp.diagonal(x, axis1=-2, axis2=-1)

    def sum(self, x: Any, axis: int | tuple[int, ...], keepdims: bool = False) -> Any:
        return self.jnp.sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x: Any) -> Any:
        return self.jnp.mean(x)

    def sqrt(self, x: Any) -> Any:
        return self.jnp.sqrt(x)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return self.jnp.where(cond, a, b)

    def softmax(self, x: Any) -> Any:
        return self.jax.nn.softmax(x, axis=-1)

    def selu(self, x: Any) -> Any:
        return self.jax.nn.selu(x)
