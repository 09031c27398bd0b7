"""Training speed of `dmon.cluster` on every backend against a hand-written PyTorch DMoN,
in one run. Writes the "training" section of docs/benchmarks.md.

    python benchmarks/bench_train.py            # arxiv-size SBM and Cora, all backends
    python benchmarks/bench_train.py --quick    # a 20k-node SBM and Cora, no file written
    python benchmarks/bench_train.py --device cuda   # torch and JAX on the GPU, own section

Every (trainer, graph) runs in a fresh process, so that its peak RSS is its own, and the
trainers take turns (`--rounds`, the median of each is kept) so that a drift of the
machine hits them all. The epoch time is the median epoch after the first two (which
compile).

- arxiv-size: an attributed SBM with ogbn-arxiv's sizes (169,343 nodes, about 2.33M
  directed edges, F = 128 features, 40 blocks), k = 40 (benchmarks/graphs.py).
- Cora (`../shared/datasets/cora.npz`, preprocessed as the paper), k = 16.

The hand-written reference is the same model (GCN 64 with SELU and skip weight, a dense
layer to k logits, dropout 0.5, DMoN losses with collapse regularisation 1, Adam 1e-3)
as a careful PyTorch user writes it: `Â` and `A` as torch CSR tensors built once, torch
autograd for everything.

The pool split: `dmon.pool` on the training graph with the model's sizes (x: N × 64,
logits: N × k), forward alone and forward+backward (the gradient of all six outputs with
respect to `x` and the logits), on each backend, with the graph marked symmetric as
`dmon cluster` marks it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
HIDDEN = 64
GRAPHS = {"arxiv": (40, 12), "cora": (16, 60), "quick": (40, 12)}  # k, epochs
# "cuda": the trainers' torch on the GPU and JAX on its default device (the GPU); set by
# main() for its workers. "cpu": both kept off any GPU.
DEVICE = os.environ.get("DMON_BENCH_DEVICE", "cpu")


def _sync() -> None:
    if DEVICE != "cpu":
        import torch

        torch.cuda.synchronize()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _graph(name: str):
    import graphs

    if name == "cora":
        return graphs.cora()
    n, m = graphs.ARXIV if name == "arxiv" else (20_000, 140_000)
    return graphs.attributed_sbm(n, m, blocks=40, features=128)


def _median_epoch(stamps: list[float]) -> float:
    return 1e3 * statistics.median(b - a for a, b in itertools.pairwise(stamps[1:]))


def dmon_worker(backend: str, name: str) -> dict:
    os.environ["KERAS_BACKEND"] = backend
    from dmon import training
    from dmon.training import loop

    # each epoch's losses read at once, so that the stamps time epochs (the hand-written
    # trainer waits for the device each epoch too)
    loop.READ_EVERY_S = 0.0
    graph = _graph(name)
    k, epochs = GRAPHS[name]
    stamps: list[float] = []
    training.cluster(
        graph,
        k,
        backend=backend,
        epochs=epochs,
        on_epoch=lambda epoch, logs: stamps.append(time.perf_counter()),
    )
    out = {"epoch_ms": _median_epoch(stamps), "peak_rss_mb": _rss_mb()}
    out.update(_pool_split(backend, graph, k))
    if DEVICE != "cpu":
        out.update(_gpu_memory(backend))
    return out


def _gpu_memory(backend: str) -> dict:
    """The card's name and, for torch, the peak memory its allocator handed out."""
    if backend == "jax":
        import jax

        return {"device_name": jax.devices()[0].device_kind}
    import torch

    return {
        "device_name": torch.cuda.get_device_name(),
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20,
    }


def _pool_split(backend: str, graph, k: int, reps: int = 5) -> dict:
    """Median ms of `dmon.pool` forward and forward+backward on `graph`."""
    import numpy as np

    import dmon

    rng = np.random.default_rng(0)
    ei, w = graph.edge_index()
    n = graph.num_nodes
    x = rng.normal(size=(n, HIDDEN)).astype(np.float32)
    logits = rng.normal(size=(n, k)).astype(np.float32)

    def scalar(out, total):
        return (
            total(out.s)
            + total(out.x)
            + total(out.adj)
            + out.spectral_loss
            + out.ortho_loss
            + out.cluster_loss
        )

    if backend == "torch":
        import torch

        dev = "cpu" if DEVICE == "cpu" else "cuda"
        g = dmon.SparseGraph(
            torch.from_numpy(ei).to(dev), torch.from_numpy(w).to(dev), symmetric=True
        )
        xt, lt = torch.from_numpy(x).to(dev), torch.from_numpy(logits).to(dev)
        xg, lg = xt.clone().requires_grad_(), lt.clone().requires_grad_()

        def fwd():
            with torch.no_grad():
                dmon.pool(xt, g, lt)
            _sync()

        def fwd_bwd():
            xg.grad = lg.grad = None
            scalar(dmon.pool(xg, g, lg), torch.sum).backward()
            _sync()

    elif backend == "tensorflow":
        import tensorflow as tf

        g = dmon.SparseGraph(tf.constant(ei), tf.constant(w), symmetric=True)
        xt, lt = tf.constant(x), tf.constant(logits)
        xv, lv = tf.Variable(x), tf.Variable(logits)

        @tf.function
        def fwd():
            return dmon.pool(xt, g, lt).spectral_loss

        @tf.function
        def fwd_bwd():
            with tf.GradientTape() as tape:
                total = scalar(dmon.pool(xv, g, lv), tf.reduce_sum)
            return tape.gradient(total, [xv, lv])

    else:
        import jax
        import jax.numpy as jnp

        eij, wj = jnp.asarray(ei), jnp.asarray(w)
        xj, lj = jnp.asarray(x), jnp.asarray(logits)

        def graph_of(ei, w):
            return dmon.SparseGraph(ei, w, symmetric=True)

        forward = jax.jit(lambda x, lg, ei, w: dmon.pool(x, graph_of(ei, w), lg))
        grad = jax.jit(
            jax.grad(
                lambda x, lg, ei, w: scalar(dmon.pool(x, graph_of(ei, w), lg), jnp.sum),
                argnums=(0, 1),
            )
        )

        def fwd():
            jax.block_until_ready(forward(xj, lj, eij, wj))

        def fwd_bwd():
            jax.block_until_ready(grad(xj, lj, eij, wj))

    fns = {"pool_fwd_ms": fwd, "pool_fwd_bwd_ms": fwd_bwd}
    times: dict[str, list[float]] = {key: [] for key in fns}
    for fn in fns.values():
        fn()
    for _ in range(reps):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    out = {key: 1e3 * statistics.median(v) for key, v in times.items()}
    out["pool_ratio"] = statistics.median(
        b / a for a, b in zip(times["pool_fwd_ms"], times["pool_fwd_bwd_ms"], strict=True)
    )
    return out


def handwritten_worker(name: str) -> dict:
    """The reference: DMoN as a careful PyTorch user writes it."""
    import numpy as np
    import torch

    graph = _graph(name)
    k, epochs = GRAPHS[name]
    torch.manual_seed(0)
    dev = torch.device("cpu" if DEVICE == "cpu" else "cuda")
    a = graph.adjacency.tocsr().astype(np.float32)
    n, f = graph.features.shape
    deg = np.asarray(a.sum(1)).ravel() + 1.0
    inv = 1.0 / np.sqrt(deg)
    import scipy.sparse as sp

    a_hat = (sp.diags(inv) @ (a + sp.eye(n, dtype=np.float32)) @ sp.diags(inv)).tocsr()

    def csr(m):
        m = m.astype(np.float32).tocsr()
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.data),
            size=m.shape,
        ).to(dev)

    a_t, a_hat_t = csr(a), csr(a_hat)
    x = torch.from_numpy(graph.features).to(dev)
    lin = torch.nn.Linear(f, HIDDEN).to(dev)
    skip = torch.nn.Parameter(torch.ones(HIDDEN, device=dev))
    head = torch.nn.Linear(HIDDEN, k).to(dev)
    params = [*lin.parameters(), skip, *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    two_m = torch.tensor(float(a.sum()), device=dev)
    degrees = torch.from_numpy(np.asarray(a.sum(1)).ravel().astype(np.float32)).to(dev)
    stamps = []
    for _ in range(epochs):
        opt.zero_grad()
        h = lin(x)
        h = torch.selu(a_hat_t @ h + h * skip)
        s = torch.softmax(torch.nn.functional.dropout(head(h), 0.5, training=True), -1)
        a_s = a_t @ s
        s_d = s.T @ degrees
        spectral = -(torch.trace(s.T @ a_s) - (s_d * s_d).sum() / two_m) / two_m
        cluster = torch.linalg.norm(s.sum(0)) / n * k**0.5 - 1
        (spectral + cluster).backward()
        opt.step()
        _sync()
        stamps.append(time.perf_counter())
    out = {"epoch_ms": _median_epoch(stamps), "peak_rss_mb": _rss_mb()}
    return {**out, **(_gpu_memory("torch") if DEVICE != "cpu" else {})}


# glibc's malloc returns every block over 32 MiB to the system when it is freed, so each
# step's fresh N × 64 tensors are page-faulted again (~20 ms per 87 MB at arxiv size);
# these settings keep freed memory for reuse, as jemalloc or tcmalloc would, and as
# dmon's trainers ask of glibc themselves (dmon.memory). The
# "handwritten+keep" trainer runs with them: the like-for-like reference.
KEEP_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}


def _run(args: list[str]) -> dict | None:
    trainer, *rest = args
    keep = trainer.endswith("+keep")
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", trainer.removesuffix("+keep"), *rest],
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "TF_ENABLE_ONEDNN_OPTS": "0",
            **(KEEP_MEMORY if keep else {}),
            "DMON_BENCH_DEVICE": DEVICE,
            # on the CPU, keep every framework off a GPU the machine may have
            **({"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""} if DEVICE == "cpu" else {}),
        },
    )
    if proc.returncode != 0:
        print(f"{' '.join(args)}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", nargs="+")
    parser.add_argument("--backends", nargs="+", default=["jax", "torch", "tensorflow"])
    parser.add_argument("--device", default="cpu", help="cuda: torch and JAX on the GPU")
    args = parser.parse_args()
    global DEVICE
    if not args.worker:  # a worker takes its device from the parent (DMON_BENCH_DEVICE)
        DEVICE = args.device
    if args.worker:
        kind, *rest = args.worker
        out = handwritten_worker(*rest) if kind == "handwritten" else dmon_worker(kind, *rest)
        print(json.dumps(out))
        return
    import importlib.util

    backends = [b for b in args.backends if importlib.util.find_spec(b) is not None]
    graph_names = ["quick", "cora"] if args.quick else ["arxiv", "cora"]
    trainers = ["handwritten", *backends]
    if "torch" in backends and not args.quick and DEVICE == "cpu":
        trainers += ["handwritten+keep"]
    results: dict[tuple[str, str], list[dict]] = {}
    for name in graph_names:
        for _ in range(1 if args.quick else args.rounds):
            for trainer in trainers:
                out = _run([trainer, name])
                if out is not None:
                    results.setdefault((name, trainer), []).append(out)
                    print(name, trainer, json.dumps(out), flush=True)
    rows = {}
    for (name, trainer), runs in results.items():
        rows[(name, trainer)] = {
            key: statistics.median(r[key] for r in runs) if key != "device_name" else value
            for key, value in runs[0].items()
        }
    for key, row in rows.items():
        print(key, row)
    if args.quick:
        return
    from report import write_section

    import dmon

    label = {
        "arxiv": "arxiv-size attributed SBM (169,343 nodes, F = 128, k = 40)",
        "cora": "Cora (k = 16)",
    }
    gpu = DEVICE != "cpu"
    cards = sorted({r["device_name"] for r in rows.values() if "device_name" in r})
    lines = [
        "## Training: `dmon.cluster` per backend against hand-written PyTorch"
        + (f" (on a GPU: {', '.join(cards)})" if gpu else ""),
        "",
        "Written by `python benchmarks/bench_train.py"
        + (" --device cuda" if gpu else "")
        + "`: the median epoch of `dmon.cluster` "
        "(the paper's model: GCN 64, DMoN, dropout 0.5, Adam 1e-3) on each backend and of "
        "the same model hand-written in PyTorch (CSR adjacency built once, torch autograd), "
        f"each in a fresh process, taking turns over {args.rounds} "
        f"round{'' if args.rounds == 1 else 's'} (medians). "
        "Ratios: to the fastest dmon backend on the same graph, and to the hand-written "
        "epoch. "
        + (
            "Here every trainer runs on the GPU: torch's tensors on `cuda` (the clock read "
            "after `torch.cuda.synchronize()`), JAX on its default device. Peak GPU memory "
            "is torch's `max_memory_allocated` (JAX's allocator does not report one)."
            if gpu
            else "By default glibc hands every freed block over 32 MiB back to the system, "
            "so each step's fresh N × 64 tensors (and XLA's one block of a step's "
            "temporaries) are page-faulted in again, which costs a quarter to a third of the "
            "epoch at arxiv size; dmon's trainers ask glibc to keep freed memory while they "
            "train (`dmon.memory.keep_freed_memory`), as jemalloc or tcmalloc would, and "
            "JAX runs its steps on the trainer's thread, where that setting reaches XLA's "
            "block (`dmon.backends.jax.engine`). "
            "The hand-written trainer runs twice: as written, and with glibc told the "
            "same from the environment (`MALLOC_MMAP_MAX_=0 "
            "MALLOC_TRIM_THRESHOLD_=100000000000`); the last ratio is to that run, like for "
            "like."
        ),
        "",
        "| graph | trainer | median epoch (ms) | / fastest backend | / hand-written PyTorch | "
        + ("" if gpu else "/ hand-written, memory kept | ")
        + ("peak GPU memory (MiB) |" if gpu else "peak RSS (MB) |"),
        "|---|---|---:|---:|---:|---:|" + ("" if gpu else "---:|"),
    ]
    for name in graph_names:
        fastest = min(
            (rows[(name, b)]["epoch_ms"] for b in backends if (name, b) in rows), default=None
        )
        for trainer in trainers:
            row = rows.get((name, trainer))
            if row is None:
                continue
            keep = trainer.endswith("+keep")
            base = trainer.removesuffix("+keep")
            spread = f"{row['epoch_ms'] / fastest:.2f}" if fastest and base in backends else "—"
            versus = []
            for ref_name in ("handwritten",) if gpu else ("handwritten", "handwritten+keep"):
                ref = rows.get((name, ref_name))
                mine = base != "handwritten"
                versus.append(f"{row['epoch_ms'] / ref['epoch_ms']:.2f}" if ref and mine else "—")
            who = "hand-written PyTorch" if base == "handwritten" else f"dmon {base}"
            if keep:
                who += ", malloc keeps freed memory"
            peak = row.get("peak_gpu_mb") if gpu else row["peak_rss_mb"]
            lines.append(
                f"| {label[name]} | {who} | {row['epoch_ms']:.1f} | {spread} | "
                f"{' | '.join(versus)} | {'—' if peak is None else f'{peak:.0f}'} |"
            )
    lines += [
        "",
        "The pool alone (`dmon.pool` with the training graph marked symmetric; x: N × 64, "
        "logits: N × k): forward, forward+backward (gradients of all six outputs), and "
        "their ratio.",
        "",
        "| graph | backend | forward (ms) | forward+backward (ms) | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for name in graph_names:
        for b in backends:
            row = rows.get((name, b))
            if row:
                lines.append(
                    f"| {label[name]} | {b} | {row['pool_fwd_ms']:.1f} | "
                    f"{row['pool_fwd_bwd_ms']:.1f} | {row['pool_ratio']:.2f} |"
                )
    import torch

    where = ", ".join(cards) if gpu else "CPU only"
    lines += [
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {where}; torch "
        f"{torch.__version__}, dmon {dmon.__version__}.",
    ]
    write_section("training-gpu" if gpu else "training", "\n".join(lines))


if __name__ == "__main__":
    main()
