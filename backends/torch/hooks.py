"""What the test suite and the parity harness need of torch: tensors from NumPy, its
compiler, its gradients, and a Keras model's gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def to_array(a: np.ndarray, dtype: str | None = None, device: str | None = None) -> Any:
    """`a` as a torch tensor on `device` (default the CPU; `dtype` `"bfloat16"` too)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(a)).to(device or "cpu")
    return t.to(torch.bfloat16) if dtype == "bfloat16" else t


def compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` under `torch.compile` (static shapes)."""
    import torch

    return torch.compile(fn, dynamic=False)


def gradient(fn: Callable[..., Any], *args: Any) -> list[Any]:
    """Gradients of the scalar `fn(*args)` with respect to every argument."""
    import torch

    leaves = [a.clone().requires_grad_(True) for a in args]
    return list(torch.autograd.grad(fn(*leaves), leaves))


def keras_gradients(
    model: Any, arrays: list[Any], trainable: list[Any], total: Callable[[Any, list[Any]], Any]
) -> list[np.ndarray]:
    """`∂ total(outputs, losses) / ∂w` for the `trainable` variables of a Keras model
    (zeros where a variable does not reach the total)."""
    import keras
    import torch

    leaves = [v.value for v in trainable]
    value = total(model(arrays, training=False), model.losses)
    gs = torch.autograd.grad(value, leaves, allow_unused=True)
    return [
        np.zeros(tuple(v.shape), keras.backend.standardize_dtype(v.dtype))
        if g is None
        else g.detach().cpu().numpy()
        for v, g in zip(trainable, gs, strict=True)
    ]


def full_float32_products() -> None:
    """Float32 products and convolutions in float32, not TF32 (cuDNN's default on NVIDIA
    GPUs from Ampere on)."""
    import torch

    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.fp32_precision = "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def enable_float64() -> None:
    """Nothing to do: float64 inputs stay float64."""
