"""Process settings that must be made before a framework is imported, in one place."""

from __future__ import annotations

import os

TENSORFLOW_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
"""TensorFlow's C++ logging off, and oneDNN's reordered float arithmetic off (closer
parity with the other frameworks). Read when TensorFlow is imported."""


def quiet_tensorflow(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set `TENSORFLOW_QUIET` in `environ` (default `os.environ`) where not set already,
    and return it: for this process before TensorFlow is imported, or for a
    subprocess's environment."""
    target = os.environ if environ is None else environ
    for key, value in TENSORFLOW_QUIET.items():
        target.setdefault(key, value)
    return target  # type: ignore[return-value]
