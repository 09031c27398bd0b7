"""What the test suite needs of NumPy: the arrays themselves, no compiler, no gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def to_array(a: np.ndarray, dtype: str | None = None, device: str | None = None) -> Any:
    """`a` itself (NumPy has no bfloat16: a half-precision request keeps `a`'s dtype)."""
    return a


def compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`: NumPy has no compiler."""
    return fn


def gradient(fn: Callable[..., Any], *args: Any) -> list[Any]:
    """NumPy has no autodiff."""
    raise ValueError("no autodiff in numpy")


def enable_float64() -> None:
    """Nothing to do: float64 inputs stay float64."""
