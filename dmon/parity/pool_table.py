"""The same inputs through every installed backend: the six outputs side by side with
each backend's largest difference from the NumPy float64 reference, and timings."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from dmon.environment import quiet_tensorflow
from dmon.ops import available_backends, backend_by_name, backend_module
from dmon.pooling import pool, spectral_loss


def planted_partition(
    n_per: int = 8, k: int = 3, p_in: float = 0.7, p_out: float = 0.05, seed: int = 0
):
    """Symmetric 0/1 adjacency `(N, N)`, features `(N, k)` and labels of a seeded
    planted-partition graph; logits from a fixed projection of the features."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), n_per)
    p = np.where(labels[:, None] == labels[None, :], p_in, p_out)
    a = np.triu(rng.random(p.shape) < p, 1).astype(np.float64)
    a = a + a.T
    x = np.eye(k)[labels] + 0.3 * rng.normal(size=(len(labels), k))
    logits = x @ (3.0 * np.eye(k) + 0.5 * np.random.default_rng(seed + 1).normal(size=(k, k)))
    return a, x, logits, labels


def compare(reps: int = 20) -> list[dict[str, Any]]:
    """One row per (backend, dtype): losses, max |Δ| of s/x/adj vs NumPy float64, ms."""
    quiet_tensorflow()
    a, x, logits, _ = planted_partition()
    ref = pool(x, a, logits)
    for name in available_backends():  # JAX computes in float32 unless told otherwise
        backend_module(name, "hooks").enable_float64()
    numpy_ops = backend_by_name("numpy")
    rows: list[dict[str, Any]] = []
    for name in available_backends():
        for dtype in ("float64", "float32"):
            args = [v.astype(dtype) for v in (x, a, logits)]
            try:
                out = pool(*args, backend=name)  # warm-up: imports, kernel choice
            except Exception as err:  # a framework that cannot run here: say so, go on
                rows.append({"backend": name, "dtype": dtype, "error": str(err)})
                break
            t0 = time.perf_counter()
            for _ in range(reps):
                out = pool(*args, backend=name)
            ms = 1e3 * (time.perf_counter() - t0) / reps
            got = [np.asarray(numpy_ops.asarray(v), dtype=np.float64) for v in out]
            rows.append(
                {
                    "backend": name,
                    "dtype": backend_by_name(name).dtype_name(out.s),
                    "spectral": float(got[3]),
                    "ortho": float(got[4]),
                    "cluster": float(got[5]),
                    "ds": float(np.abs(got[0] - ref.s).max()),
                    "dx": float(np.abs(got[1] - ref.x).max()),
                    "dadj": float(np.abs(got[2] - ref.adj).max()),
                    "ms": ms,
                }
            )
    return rows


def report(reps: int = 20) -> str:
    """`compare` as a text table."""
    a, _, _, labels = planted_partition()
    header = f"{'backend':<11}{'dtype':<9}{'spectral':>11}{'ortho':>9}{'cluster':>9}{'max|Δs|':>10}{'max|Δx|':>10}{'max|Δadj|':>11}{'ms':>8}"
    lines = [
        f"graph: {len(labels)} nodes, {int(a.sum() / 2)} edges, 3 planted communities",
        f"modularity of the true partition: {-float(spectral_loss(a, np.eye(3)[labels])):.4f}",
        "",
        header,
        "-" * len(header),
    ]
    for r in compare(reps):
        if "error" in r:
            lines.append(f"{r['backend']:<11}{r['dtype']:<9} unavailable: {r['error']}")
            continue
        lines.append(
            f"{r['backend']:<11}{r['dtype']:<9}{r['spectral']:>11.6f}{r['ortho']:>9.5f}{r['cluster']:>9.5f}"
            f"{r['ds']:>10.1e}{r['dx']:>10.1e}{r['dadj']:>11.1e}{r['ms']:>8.2f}"
        )
    return "\n".join(lines)
