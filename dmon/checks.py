"""The rules for scalar arguments (`k`, `resolution`, `dropout`, ...), written once for
every entry point: `dmon.pool`, the torch and Keras layers, `dmon.cluster` and the
`dmon` command. One table, so that a rule cannot drift between them."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

_INT = (int, np.integer)
_REAL = (int, float, np.integer, np.floating)

RULES: dict[str, tuple[tuple[type, ...], Callable[[Any], bool], str]] = {
    # one cluster is no clustering: its modularity is 0 whatever the assignment
    "k": (_INT, lambda v: v >= 2, "an int >= 2"),
    "epochs": (_INT, lambda v: v >= 1, "an int >= 1"),
    "learning_rate": (_REAL, lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "dropout": (_REAL, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
    "collapse_regularization": (
        _REAL,
        lambda v: math.isfinite(v) and v >= 0,
        "a finite number >= 0",
    ),
    "spectral_weight": (_REAL, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "ortho_weight": (_REAL, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "hidden": (_INT, lambda v: v >= 1, "an int >= 1"),
    "seed": (_INT, lambda v: 0 <= v < 2**32, "an int in [0, 2**32)"),
    "checkpoint_every": (_INT, lambda v: v >= 0, "an int >= 0 (0: no checkpoints)"),
    "resolution": (_REAL, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
}
"""`name -> (accepted types, rule, what is expected)`."""

_MEANING = {"k": "number of clusters"}


def check_argument(where: str, name: str, value: Any) -> None:
    """Raise `TypeError` (wrong type) or `ValueError` (out of range) unless `value` is a
    valid `name` (a key of `RULES`). The message reads `"{where}: `k` (number of
    clusters) must be an int >= 2; got 1"`; with `where=""` it starts at the name, for
    callers that name the argument their own way (the `dmon` command's options)."""
    kinds, ok, want = RULES[name]
    label = f"`{name}`" + (f" ({_MEANING[name]})" if name in _MEANING else "")
    prefix = f"{where}: {label}" if where else name
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{prefix} must be {want}; got {value!r}")
    if not ok(value):
        raise ValueError(f"{prefix} must be {want}; got {value!r}")


def check_resolution(where: str, resolution: object) -> float:
    """The modularity resolution `γ` as a float: a finite real number `>= 0` (a NumPy
    scalar or 0-d array, or a 0-d tensor, is read as its value). A bool, a string or a
    tensor that requires a gradient is refused: `γ` is a constant of the loss, and
    reading such a tensor's value would cut its gradient without a word."""
    _, ok, want = RULES["resolution"]
    kind = getattr(getattr(resolution, "dtype", None), "kind", None)
    if isinstance(resolution, bool | str | bytes) or kind == "b":
        raise TypeError(f"{where}: `resolution` must be a real number >= 0; got {resolution!r}")
    if getattr(resolution, "requires_grad", False):
        raise TypeError(
            f"{where}: `resolution` is a constant of the loss; got a tensor that requires a "
            "gradient (pass a Python float; no gradient flows to γ)"
        )
    if not isinstance(resolution, _REAL):
        try:
            resolution = float(resolution)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise TypeError(
                f"{where}: `resolution` must be a real number >= 0; got {type(resolution).__name__}"
            ) from None
    value = float(resolution)
    if not ok(value):
        raise ValueError(f"{where}: `resolution` must be {want}; got {resolution!r}")
    return value
