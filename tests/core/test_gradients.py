"""Gradients of a fixed weighted sum of all six outputs w.r.t. ``logits`` and ``x``:
each framework against central finite differences of the NumPy reference, and the
frameworks against each other."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import AUTODIFF, TOL, gradient, installed, to_backend
from oracle import random_batch

import dmon

# Per-output weights: random, so that no term cancels (Σ_k s_ik = 1 would).
_rng = np.random.default_rng(1234)


def _weights(b: int, n: int, f: int, c: int) -> dict[str, np.ndarray]:
    return {
        "s": _rng.normal(size=(b, n, c)),
        "x": _rng.normal(size=(b, c, f)),
        "adj": _rng.normal(size=(b, c, c)),
    }


CASE = dict(seed=11, b=3, n=10, f=4, c=3, masked=True)
X, A, LOGITS, MASK = random_batch(**CASE)
W = _weights(3, 10, 4, 3)
LOSS_W = (0.7, 0.3, 0.5)


def objective(x, adj, logits, mask):
    """A scalar touching all six outputs, in whatever framework the inputs are."""
    out = dmon.pool(x, adj, logits, mask)
    ops = dmon.get_backend(out.s)
    dtype = ops.dtype_name(out.s)
    total = (
        out.spectral_loss * LOSS_W[0] + out.ortho_loss * LOSS_W[1] + out.cluster_loss * LOSS_W[2]
    )
    for name in ("s", "x", "adj"):
        w = ops.astype(to_backend(ops.name, W[name]), dtype)
        total = total + ops.sum(getattr(out, name) * w, axis=(0, 1, 2))
    return total


def _grads(fw: str, dtype: str) -> list[np.ndarray]:
    a = to_backend(fw, A, dtype)
    m = to_backend(fw, MASK)
    return gradient(
        fw,
        lambda lg, x: objective(x, a, lg, m),
        to_backend(fw, LOGITS, dtype),
        to_backend(fw, X, dtype),
    )


def _finite_differences(h: float = 1e-6) -> list[np.ndarray]:
    out = []
    for which in ("logits", "x"):
        base = {"logits": LOGITS, "x": X}
        g = np.zeros_like(base[which])
        for idx in np.ndindex(*g.shape):
            vals = []
            for sign in (1, -1):
                arr = base[which].copy()
                arr[idx] += sign * h
                args = {**base, which: arr}
                vals.append(float(objective(args["x"], A, args["logits"], MASK)))
            g[idx] = (vals[0] - vals[1]) / (2 * h)
        out.append(g)
    return out


FD = None


def test_gradient_matches_finite_differences(framework: str) -> None:
    global FD
    if FD is None:
        FD = _finite_differences()
    for got, want, name in zip(_grads(framework, "float64"), FD, ("logits", "x"), strict=True):
        assert np.abs(want).max() > 1e-2  # the objective really depends on this input
        np.testing.assert_allclose(
            got, want, rtol=1e-6, atol=1e-8, err_msg=f"{framework} d/d{name}"
        )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("pair", list(itertools.combinations(AUTODIFF, 2)), ids="-".join)
def test_gradients_agree_across_frameworks(pair: tuple[str, str], dtype: str) -> None:
    if not all(installed(fw) for fw in pair):
        pytest.skip(f"needs both {pair[0]} and {pair[1]} (the parity session)")
    g1, g2 = _grads(pair[0], dtype), _grads(pair[1], dtype)
    tol = TOL[dtype]
    for a, b, name in zip(g1, g2, ("logits", "x"), strict=True):
        scale = np.abs(b).max()
        np.testing.assert_allclose(
            a, b, rtol=tol["rtol"], atol=tol["rtol"] * scale, err_msg=f"{pair} {dtype} d/d{name}"
        )


def test_degenerate_graphs_have_finite_gradients(framework: str) -> None:
    """A graph with no edges and a fully masked graph in the batch: finite everywhere."""
    x, a, logits, _ = random_batch(4, b=3, n=10, f=4, c=3)
    a[1] = 0.0  # no edges
    mask = np.ones((3, 10), dtype=bool)
    mask[2] = False  # no valid node
    am = to_backend(framework, a)
    mm = to_backend(framework, mask)
    lg, xx = to_backend(framework, logits), to_backend(framework, x)
    for g in gradient(framework, lambda lg, xx: objective(xx, am, lg, mm), lg, xx):
        assert np.all(np.isfinite(g))
