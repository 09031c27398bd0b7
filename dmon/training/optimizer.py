"""Keras' Adam, written once for the arrays of every framework, so that every engine's
steps equal `keras.optimizers.Adam`'s."""

from __future__ import annotations

from typing import Any

import numpy as np

from dmon.ops import get_backend

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # keras.optimizers.Adam's defaults


def adam_update(
    params: list[Any], grads: list[Any], m: list[Any], v: list[Any], alpha: Any
) -> tuple[list[Any], list[Any], list[Any]]:
    """One step of Keras' Adam on arrays of any framework: `m += (g - m)(1 - β₁)`,
    `v += (g² - v)(1 - β₂)`, `p -= α m / (√v + ε)` with `α = lr √(1 - β₂ᵗ) / (1 - β₁ᵗ)`
    (`adam_alpha`)."""
    ops = get_backend(params[0])
    m = [mi + (g - mi) * (1 - BETA_1) for mi, g in zip(m, grads, strict=True)]
    v = [vi + (g * g - vi) * (1 - BETA_2) for vi, g in zip(v, grads, strict=True)]
    params = [
        p - (mi * alpha) / (ops.sqrt(vi) + EPSILON) for p, mi, vi in zip(params, m, v, strict=True)
    ]
    return params, m, v


def adam_alpha(learning_rate: float, step: int) -> np.float32:
    """Adam's step size at step `step` (from 1), in float32 as Keras computes it."""
    t = np.float32(step)
    b1, b2 = np.power(np.float32(BETA_1), t), np.power(np.float32(BETA_2), t)
    return np.float32(learning_rate) * np.sqrt(np.float32(1) - b2) / (np.float32(1) - b1)
