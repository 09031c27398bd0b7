"""Measure the largest difference of every backend from the NumPy float64 reference, per
dtype and eager/compiled, over random batches, and write the table to docs/parity.md.

    python benchmarks/parity_table.py          # needs torch, tensorflow and jax installed

Differences are over all six outputs; "rel" is normwise: max |got - ref| / max |ref| of
that output.
These are the numbers the suite's tolerance policy (tests/support/helpers.py: TOL) was set from.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dmon.environment import quiet_tensorflow

quiet_tensorflow()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

import numpy as np  # noqa: E402
from helpers import TOL, compiled, to_backend, to_numpy  # noqa: E402
from oracle import random_batch  # noqa: E402
from report import write_section  # noqa: E402

import dmon  # noqa: E402

CASES = [
    dict(seed=s, b=4, n=n, f=16, c=c, masked=bool(s % 2))
    for s, (n, c) in enumerate([(16, 4), (64, 8), (128, 16), (256, 16)] * 2)
]


def measure(backend: str, dtype: str, mode: str) -> tuple[float, float]:
    worst_abs = worst_rel = 0.0
    for case in CASES:
        x, a, logits, mask = random_batch(**case)
        want = dmon.pool(x, a, logits, mask)
        fn = lambda x, a, lg, m: tuple(dmon.pool(x, a, lg, m))  # noqa: E731
        if mode == "compiled":
            fn = compiled(backend, fn)
        got = fn(
            *(to_backend(backend, v, dtype) for v in (x, a, logits)),
            to_backend(backend, mask) if mask is not None else None,
        )
        for g, w in zip(got, want, strict=True):
            g, w = to_numpy(g).astype(np.float64), np.asarray(w, dtype=np.float64)
            diff = np.abs(g - w)
            worst_abs = max(worst_abs, float(diff.max()))
            worst_rel = max(worst_rel, float(diff.max() / max(np.abs(w).max(), 1e-300)))
    return worst_abs, worst_rel


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    rows = []
    for backend in ("numpy", "torch", "tensorflow", "jax"):
        for dtype in ("float64", "float32"):
            for mode in ("eager", "compiled") if backend != "numpy" else ("eager",):
                worst_abs, worst_rel = measure(backend, dtype, mode)
                tol = TOL[dtype]
                rows.append(
                    f"| {backend} | {dtype} | {mode} | {worst_abs:.1e} | {worst_rel:.1e} | {tol['rtol']:.0e} / {tol['atol']:.0e} |"
                )
                print(rows[-1], flush=True)
    compiler = {
        "torch": "`torch.compile`",
        "tensorflow": "`tf.function(jit_compile=True)`",
        "jax": "`jax.jit`",
    }
    text = "\n".join(
        [
            "# Cross-backend parity",
            "",
            "Largest difference of each backend from the NumPy float64 reference over all six",
            f"outputs of `dmon.pool`, on {len(CASES)} random batches (B=4, N from 16 to 256, C from",
            "4 to 16, half of them masked). Compiled means "
            + ", ".join(f"{v} ({k})" for k, v in compiler.items())
            + ".",
            "Written by `python benchmarks/parity_table.py`; the test suite asserts the tolerance",
            "in the last column (`tests/support/helpers.py: TOL`, rtol / atol) on its own inputs.",
            "",
            "| backend | dtype | mode | max abs diff | max normwise rel diff | tolerance (rtol / atol) |",
            "|---|---|---|---:|---:|---|",
            *rows,
            "",
            "float32 inputs are rounded from the same float64 data, so the float32 rows include",
            "the input rounding itself; their errors are those of float32 arithmetic.",
            "",
        ]
    )
    write_section("parity-table", text.split("\n", 2)[2], ROOT / "docs" / "parity.md")


if __name__ == "__main__":
    main()
