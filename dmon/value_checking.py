"""The switch for eager value checks: the checks that read array values back to the host
(negative weights, a broken `symmetric=True` promise, edge ids out of range, an unsorted
`batch`, NaN in a float mask).

A read is cheap on the CPU and a wait on a GPU: each one stops the host until the device
has caught up, which at the sizes DMoN trains costs more than the work itself. So:

- `DMON_VALUE_CHECKS=0` (or `off`/`false`) in the environment, `set_value_checks(False)`
  or `with value_checks(False):` turn them off. No dmon call then reads an array value;
  invalid values give NaN outputs, as they do under `jit`/`tf.function`/`torch.compile`
  (never a plausible finite number).
- `1` (`on`/`true`), `set_value_checks(True)`: on for every array.
- The default (`auto`, or `set_value_checks(None)`): on for arrays in host memory, off
  for arrays on an accelerator (GPU, TPU), where compiled code and JAX already run
  without them.

Shape and dtype checks never read values and always run. Checks of a reusable input
(`SparseGraph`: its ids, its `batch`, a torch weight tensor until it is modified) run
once per object, not per call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from dmon.ops import Array, ArrayOps

ENVIRONMENT = "DMON_VALUE_CHECKS"
_WORDS = {
    "0": False,
    "off": False,
    "false": False,
    "1": True,
    "on": True,
    "true": True,
    "auto": None,
}
_UNSET = object()
_setting: Any = _UNSET  # True, False, None (auto); _UNSET: from the environment


def _from_environment() -> bool | None:
    raw = os.environ.get(ENVIRONMENT, "auto").strip().lower()
    if raw not in _WORDS:
        raise ValueError(
            f"dmon: environment variable {ENVIRONMENT} must be 0, 1 or auto; got {raw!r}"
        )
    return _WORDS[raw]


def set_value_checks(enabled: bool | None) -> None:
    """Turn eager value checks on (`True`) or off (`False`) for every later dmon call,
    or back to the default (`None`: on for host arrays, off on accelerators). Overrides
    `DMON_VALUE_CHECKS`."""
    global _setting
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(
            f"dmon.set_value_checks: `enabled` must be True, False or None; got {enabled!r}"
        )
    _setting = enabled


@contextlib.contextmanager
def value_checks(enabled: bool | None) -> Iterator[None]:
    """`set_value_checks(enabled)` inside the block, the previous setting after it."""
    global _setting
    previous = _setting
    set_value_checks(enabled)
    try:
        yield
    finally:
        _setting = previous


def value_checks_enabled(ops: ArrayOps | None = None, x: Array = None) -> bool:
    """Whether a value check of array `x` (of backend `ops`) runs now: the setting, and
    for the default, whether `x` is in host memory."""
    setting = _from_environment() if _setting is _UNSET else _setting
    if setting is not None:
        return bool(setting)
    return ops is None or x is None or not ops.on_accelerator(x)


def read(ops: ArrayOps, x: Array) -> Any:
    """`x`'s values as NumPy for a value check; `None` when checks are off for it or its
    values are unknown (traced)."""
    if not value_checks_enabled(ops, x):
        return None
    return ops.to_numpy(x)
