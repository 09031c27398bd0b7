"""Two versions of dmon side by side, in turns: does a change (a restructuring, say) cost
time? Each version is built from git into a folder of its own and put first on
`PYTHONPATH`; every measurement is a fresh process, and the versions take turns round
by round on this machine.

    python benchmarks/bench_versions.py --old 4a2d30f            # against HEAD; writes docs
    python benchmarks/bench_versions.py --old A --new B --rounds 5 --no-write

Measured: the median steady epoch of `dmon.cluster` on Cora (k = 16, 150 epochs, the
first 20 left out) on each installed backend, and torch's `dmon.pool` forward+backward on
a sparse graph (50k nodes, 350k edges, F = 64, C = 16) and a dense batch (8 × 256 nodes).
Needs ../shared/datasets/cora.npz beside the checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORA = ROOT.parent / "shared" / "datasets" / "cora.npz"


def worker(what: str, backend: str) -> dict:
    """One measurement, in this process (the version is whatever `dmon` imports)."""
    import numpy as np

    os.environ["KERAS_BACKEND"] = backend
    if backend == "torch":
        import torch

        torch.set_num_threads(2)  # a busy machine's default pool is far slower
    import dmon

    if what == "cluster":
        import dmon.training.loop as loop

        loop.READ_EVERY_S = 0.0  # each epoch read at once: the stamps time epochs
        stamps: list[float] = []
        graph = dmon.data.load_npz(str(CORA))
        dmon.cluster(
            graph, 16, backend=backend, epochs=150,
            on_epoch=lambda epoch, logs: stamps.append(time.perf_counter()),
        )  # fmt: skip
        return {"cluster_ms": float(np.median(np.diff(stamps[20:])) * 1e3)}
    import torch

    rng = np.random.default_rng(0)
    n, e = 50_000, 350_000
    edges = torch.from_numpy(np.stack([rng.integers(0, n, e), rng.integers(0, n, e)]))
    graph = dmon.SparseGraph(edges, torch.rand(e))
    x, logits = torch.randn(n, 64, requires_grad=True), torch.randn(n, 16, requires_grad=True)
    xd, ld = (
        torch.randn(8, 256, 64, requires_grad=True),
        torch.randn(8, 256, 16, requires_grad=True),
    )
    ad = (torch.rand(8, 256, 256) < 0.05).float()
    ad = ad + ad.transpose(1, 2)

    def run(*args: object) -> None:
        o = dmon.pool(*args)
        (o.x.sum() + o.adj.sum() + o.spectral_loss + o.ortho_loss + o.cluster_loss).backward()

    out = {}
    for name, args in (("sparse_ms", (x, graph, logits)), ("dense_ms", (xd, ad, ld))):
        for _ in range(3):
            run(*args)
        times = []
        for _ in range(15):
            t0 = time.perf_counter()
            run(*args)
            times.append(time.perf_counter() - t0)
        out[name] = 1e3 * statistics.median(times)
    return out


def build(rev: str, into: Path) -> Path:
    """`rev` of this repository, installed (no dependencies) into `into`."""
    src = into / "src"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(src), rev], check=True
    )
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
             "--target", str(into / "site"), str(src)],
            check=True,
        )  # fmt: skip
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(src)], check=True
        )
    return into / "site"


def measure(site: Path, what: str, backend: str) -> dict:
    from dmon.environment import quiet_tensorflow

    env = quiet_tensorflow({**os.environ, "PYTHONPATH": str(site)})
    cmd = [sys.executable, __file__, "--worker", what, backend]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", help="git revision to compare against")
    ap.add_argument("--new", default="HEAD")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs alone")
    ap.add_argument("--worker", nargs=2, metavar=("WHAT", "BACKEND"))
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    if args.old is None:
        ap.error("--old REV is required")
    import dmon

    backends = [b for b in ("jax", "torch", "tensorflow") if b in dmon.available_backends()]
    jobs = [("cluster", b) for b in backends] + ([("pool", "torch")] if "torch" in backends else [])
    results: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="dmon-versions-") as tmp:
        sites = {v: build(rev, Path(tmp) / v) for v, rev in (("old", args.old), ("new", args.new))}
        for _ in range(args.rounds):
            for what, backend in jobs:
                for version, site in sites.items():  # in turns: drift hits both alike
                    for key, value in measure(site, what, backend).items():
                        results.setdefault((backend, key, version), []).append(value)
    rows = sorted({(b, k) for b, k, _ in results})
    lines = [
        f"Written by `python benchmarks/bench_versions.py --old {args.old} --new {args.new}`: "
        f"medians of {args.rounds} interleaved rounds, a fresh process per measurement.",
        "",
        "| backend | measure | old ms | new ms | new / old |",
        "|---|---|---:|---:|---:|",
    ]
    for backend, key in rows:
        old = statistics.median(results[(backend, key, "old")])
        new = statistics.median(results[(backend, key, "new")])
        lines.append(
            f"| {backend} | {key.removesuffix('_ms')} | {old:.2f} | {new:.2f} | {new / old:.2f} |"
        )
    print("\n".join(lines))
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).parent))
        from report import write_section

        write_section("versions", "## Two versions side by side\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
