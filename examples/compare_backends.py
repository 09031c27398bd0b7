"""Pool one small built-in graph on every installed backend and print the six outputs
side by side, with each backend's largest difference from the NumPy float64 reference.

    python examples/compare_backends.py

The graph: three planted communities of 8 nodes (seeded), features that carry the
community plus noise, and assignment logits from a fixed random projection of them.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np

import dmon


def planted_partition(
    n_per: int = 8, k: int = 3, p_in: float = 0.7, p_out: float = 0.05, seed: int = 0
):
    """Symmetric 0/1 adjacency, features and true labels of a planted-partition graph."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), n_per)
    p = np.where(labels[:, None] == labels[None, :], p_in, p_out)
    a = np.triu(rng.random(p.shape) < p, 1).astype(np.float64)
    a = a + a.T
    x = np.eye(k)[labels] + 0.3 * rng.normal(size=(len(labels), k))
    return a, x, labels


def main() -> None:
    a, x, labels = planted_partition()
    rng = np.random.default_rng(1)
    logits = x @ (3.0 * np.eye(3) + 0.5 * rng.normal(size=(3, 3)))
    ref = dmon.pool(x, a, logits)
    if "jax" in dmon.available_backends():
        import jax  # JAX computes in float32 unless float64 is switched on

        jax.config.update("jax_enable_x64", True)

    header = f"{'backend':<11}{'dtype':<9}{'spectral':>11}{'ortho':>9}{'cluster':>9}{'max|Δs|':>10}{'max|Δx|':>10}{'max|Δadj|':>11}{'ms':>8}"
    print(f"graph: {len(labels)} nodes, {int(a.sum() / 2)} edges, 3 planted communities")
    print(
        f"modularity of the true partition: {-float(dmon.spectral_loss(a, np.eye(3)[labels])):.4f}\n"
    )
    print(header)
    print("-" * len(header))
    for name in dmon.available_backends():
        for dtype in ("float64", "float32"):
            args = [v.astype(dtype) for v in (x, a, logits)]
            try:
                dmon.pool(*args, backend=name)  # warm-up (imports, kernel selection)
            except Exception as err:  # a framework that cannot run here: say so, go on
                print(f"{name:<11}{dtype:<9} unavailable: {err}")
                break
            t0 = time.perf_counter()
            out = dmon.pool(*args, backend=name)
            ms = 1e3 * (time.perf_counter() - t0)
            ops = dmon.get_backend(out.s)
            np_out = [
                np.asarray(dmon.ops.backend_by_name("numpy").asarray(v), dtype=np.float64)
                for v in out
            ]
            diffs = [np.abs(g - w).max() for g, w in zip(np_out[:3], ref[:3], strict=True)]
            print(
                f"{ops.name:<11}{ops.dtype_name(out.s):<9}{np_out[3]:>11.6f}{np_out[4]:>9.5f}{np_out[5]:>9.5f}"
                f"{diffs[0]:>10.1e}{diffs[1]:>10.1e}{diffs[2]:>11.1e}{ms:>8.2f}"
            )
    hard = np.asarray(ref.s)[0].argmax(-1)
    print(f"\nhard clusters (argmax s): {hard.tolist()}")
    print(f"true communities:         {labels.tolist()}")


if __name__ == "__main__":
    main()
