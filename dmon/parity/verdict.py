"""Whether backends' float32 results differ by more than float32 rounding explains.

Elementwise tolerances cry wolf on correct models: a long reduction rounds differently
in every BLAS/XLA stack, and where terms cancel (the gradient of a weight feeding a
softmax whose outputs are summed is ~0) a float32 result is all rounding. So one worker
also runs the model in float64 on the same, exactly widened, weights and inputs: the
**reference**. A quantity `q` (an output, loss, gradient or layer output) is then judged
norm-wise:

- backend `b` is `n_b = ‖q32_b − q64‖` away from the reference. For the reference's own
  backend that is its float32 rounding noise, measured rather than guessed; for another
  backend it is its rounding noise plus whatever it computes differently;
- what float32 rounding explains is the quietest backend's distance, or, if larger, how
  far `q` moves in float32 on the reference's backend when every non-zero input and
  weight moves one unit in the last place (the uncertainty float32 storage alone
  implies; where terms cancel, it is the terms' rounding, not the result's, that
  counts: a backend may round a small loss exactly by luck where another is a few of the
  terms' units off);
- backends `a` and `b` agree on `q` when both are within `MARGIN` times that.

`MARGIN` is 100. Summation orders differ in their rounding by small factors: on a
GCN → DMoN model trained on Cora, whose float32 gradients are 3 % off float64, no backend
was more than 7x farther than the quietest (docs/parity.md). A backend computing in TF32
or half precision is ~10⁴ or more off, and a layer off by 10⁻³ relative sits ~10⁴ above
float32 noise of 10⁻⁷. Differences smaller than that hide in float32 rounding by construction; `dmon
parity --dtype float64` looks below it (JAX and TensorFlow: Keras' torch backend
multiplies float64 matrices in float32).

The reference runs on TensorFlow, else JAX: Keras computes in float64 there.
"""

from __future__ import annotations

import dataclasses

import numpy as np

U32 = 2.0**-24
MARGIN = 100.0
REFERENCE_BACKENDS = ("tensorflow", "jax")
"""Backends whose float64 Keras runs are float64 throughout, in order of preference."""


def reference_backend(run: list[str]) -> str | None:
    return next((b for b in REFERENCE_BACKENDS if b in run), None)


@dataclasses.dataclass(frozen=True)
class Noise:
    """One quantity's distance from the float64 reference, per backend."""

    scale: float
    """`‖q64‖`."""
    distance: dict[str, float]
    """`‖q32_b − q64‖` per backend."""
    nudged: float = 0.0
    """`‖q32' − q32‖` on the reference's backend, `q32'` from inputs and weights one
    unit off."""

    @property
    def explained(self) -> float:
        """What float32 rounding explains: the quietest backend's distance, or how far
        one unit of rounding in the inputs and weights carries, whichever is larger."""
        return max(min(self.distance.values()), self.nudged, 0.5 * U32 * self.scale)

    def relative(self, value: float) -> float:
        return value / self.scale if self.scale > 0 else (0.0 if value == 0 else float("inf"))


def _same_non_finite(a: np.ndarray, b: np.ndarray) -> bool:
    """NaN and ±Inf in the same places in both."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb):
        return False
    a, b = a[~fa], b[~fb]
    return np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(
        np.nan_to_num(a, nan=0.0), np.nan_to_num(b, nan=0.0)
    )


def _norm(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.linalg.norm(x.ravel())) if x.size else 0.0


def measure(
    q32: dict[str, np.ndarray],
    q64: np.ndarray,
    nudged: tuple[str, np.ndarray] | None = None,
) -> Noise | None:
    """Every backend's distance from the reference, and `nudged`'s (a backend and its
    float32 result from nudged inputs) from that backend's; None where a shape or the
    place of a NaN or Inf differs from the reference (then no backend agrees with it)."""
    ref = q64.astype(np.float64)
    distance = {}
    for b, value in q32.items():
        value = value.astype(np.float64)
        if value.shape != ref.shape or not _same_non_finite(value, ref):
            return None
        distance[b] = _norm(value - ref)
    moved = 0.0
    if nudged is not None and nudged[1].shape == ref.shape:
        other = nudged[1].astype(np.float64)
        if _same_non_finite(other, ref):
            moved = _norm(other - q32[nudged[0]].astype(np.float64))
    return Noise(scale=_norm(ref), distance=distance, nudged=moved)


def agree(a: str, b: str, noise: Noise | None) -> tuple[bool, float, float]:
    """`(passed, float32 noise, distance)`: whether `a` and `b` agree, what rounding
    explains and the farther one's distance from the reference, relative to `‖q64‖`."""
    if noise is None:
        return False, float("inf"), float("inf")
    farther = max(noise.distance[a], noise.distance[b])
    passed = farther <= MARGIN * noise.explained
    return passed, noise.relative(noise.explained), noise.relative(farther)
