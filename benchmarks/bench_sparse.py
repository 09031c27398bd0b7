"""Sparse DMoN at ogbn-arxiv scale and a scaling sweep, per backend, against the fastest
hand-written sparse product of the same framework on the same graph.

    python benchmarks/bench_sparse.py                 # all installed backends, all sizes
    python benchmarks/bench_sparse.py --quick         # small sizes only, no files written
    python benchmarks/bench_sparse.py --device cuda   # torch and JAX on the GPU: arxiv,
                                                      # 100k and 1M; its own section

Each (backend, graph) runs in a fresh subprocess, so that its peak resident memory
(`ru_maxrss`) is its own. Graphs are synthetic (uniform random endpoints, seeded), stored
in both directions as PyG does; features F = 128, clusters C = 16, float32.

- "arxiv": N = 169,343 nodes, 1,166,243 undirected edges (ogbn-arxiv's sizes).
- sweep: N = 10k, 30k, 100k, 300k, 1M at average degree 14.

`dmon.pool` gets a `dmon.SparseGraph(edge_index, edge_weight)` (conversion to the
backend's fast form is inside the timing). The floor is `A @ S` then `Sᵀ (A S)` with `A`
already in the framework's fastest form (SciPy CSR, torch CSR, `tf.SparseTensor`, JAX
BCOO), built outside the timing. Forward+backward differentiates a scalar of all six
outputs w.r.t. the logits and `x`; its floor is the framework's own autograd of the same
two products where that stays sparse (TensorFlow, JAX), and n/a where it does not (torch's
CSR backward densifies) or there is no autodiff (NumPy).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sparse_report import ARXIV, write, write_gpu

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
F, C = 128, 16
SWEEP = [(n, 7 * n) for n in (10_000, 30_000, 100_000, 300_000, 1_000_000)]
GPU_GRAPHS = [ARXIV, SWEEP[2], SWEEP[4]]
DEVICE = os.environ.get("DMON_BENCH_DEVICE", "cpu")  # set by main() for its workers


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _scalar(out, reduce_sum=lambda t: t.sum()):
    """One scalar from all six outputs of `dmon.pool`, to differentiate."""
    return (
        reduce_sum(out.s)
        + reduce_sum(out.x)
        + reduce_sum(out.adj)
        + out.spectral_loss
        + out.ortho_loss
        + out.cluster_loss
    )


def _graph(n: int, m: int):
    import numpy as np

    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    ei = np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])
    order = np.argsort(ei[0], kind="stable")  # PyG's edge_index is sorted by row
    ei = ei[:, order]
    w = np.ones(ei.shape[1], np.float32)
    x = rng.normal(size=(n, F)).astype(np.float32)
    logits = rng.normal(size=(n, C)).astype(np.float32)
    return ei, w, x, logits


def _interleaved(fns: dict, reps: int, sync=lambda: None) -> dict:
    """Median ms of each function, run in turn, round after round, so that a drift in the
    machine's speed hits them all alike; and the medians of the per-round ratios of dmon's
    step to its floors (forward/floor, forward/floor+SᵀX, fwd+bwd/bwd floor). `sync` waits
    for a GPU's queued work before the clock is read."""
    for fn in fns.values():
        fn()  # warm-up (and compilation where there is one)
    times: dict = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t0)
    out = {f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()}
    for num, den, name in (
        ("fwd", "floor", "fwd_ratio"),
        ("fwd", "floor_x", "fwd_x_ratio"),
        ("fwd_bwd", "floor_bwd", "bwd_ratio"),
        ("fwd_bwd", "fwd", "split"),
        ("fwd_bwd_sym", "fwd", "split_sym"),
        ("fwd_bwd_unw", "fwd_unw", "split_unw"),
        ("products_fwd_bwd", "products_fwd", "products_split"),
        ("products_fwd_bwd_sym", "products_fwd", "products_split_sym"),
    ):
        if num in times and den in times:
            out[name] = statistics.median(
                a / b for a, b in zip(times[num], times[den], strict=True)
            )
    return out


def worker(backend: str, n: int, m: int, reps: int) -> dict:
    import numpy as np

    import dmon

    ei, w, x, logits = _graph(n, m)
    e = ei.shape[1]
    result: dict = {"backend": backend, "N": n, "E": e}
    sync = lambda: None  # noqa: E731

    if backend == "numpy":
        import scipy.sparse as sp

        a = sp.csr_matrix((w, (ei[0], ei[1])), shape=(n, n))
        s = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        graph = dmon.SparseGraph(ei, w)
        unweighted = dmon.SparseGraph(ei)
        result["setup_rss_mb"] = _rss_mb()
        fns = {
            "fwd": lambda: dmon.pool(x, graph, logits),
            "fwd_unw": lambda: dmon.pool(x, unweighted, logits),
            "floor": lambda: s.T @ (a @ s),
            "floor_x": lambda: (s.T @ (a @ s), s.T @ x),
        }
    elif backend == "torch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        eit, wt, xt, lt = (torch.from_numpy(v).to(DEVICE) for v in (ei, w, x, logits))
        if DEVICE != "cpu":
            sync = torch.cuda.synchronize
        graph = dmon.SparseGraph(eit, wt)
        sym = dmon.SparseGraph(eit, wt, symmetric=True)
        unweighted = dmon.SparseGraph(eit)
        a = torch.sparse_csr_tensor(*_torch_csr(torch, eit, wt, n), size=(n, n))
        order = torch.sort(eit[1], stable=True).indices  # Aᵀ: the edges by column
        a_t = torch.sparse_csr_tensor(
            *_torch_csr(torch, eit[[1, 0]][:, order], wt[order], n), size=(n, n)
        )
        s = torch.softmax(lt, -1)
        s1 = torch.cat([s, torch.ones_like(s[:, :1])], -1)
        # cotangents of A [S | 1] and of SᵀX
        g1, gx = torch.randn(n, C + 1, device=DEVICE), torch.randn(C, F, device=DEVICE)
        result["setup_rss_mb"] = _rss_mb()
        no_grad = torch.no_grad()
        lg, xx = lt.clone().requires_grad_(True), xt.clone().requires_grad_(True)
        # written into kept results (out=): the products' floor pays no allocation
        o = [torch.empty(shape, device=DEVICE) for shape in ((n, C + 1), (C, F), (n, C), (n, F))]
        products = (
            lambda: torch.addmm(o[0], a, s1, beta=0, out=o[0]),
            lambda: torch.matmul(s.T, xt, out=o[1]),
        )
        products_bwd = (
            lambda: torch.matmul(xt, gx.T, out=o[2]),
            lambda: torch.matmul(s, gx, out=o[3]),
        )

        def fwd_bwd(g=graph) -> None:
            lg.grad = xx.grad = None
            _scalar(dmon.pool(xx, g, lg)).backward()

        fns = {
            "fwd": no_grad(lambda: dmon.pool(xt, graph, lt)),
            "floor": no_grad(lambda: s.T @ (a @ s)),
            "floor_x": no_grad(lambda: (s.T @ (a @ s), s.T @ xt)),
            "fwd_bwd": fwd_bwd,
            "fwd_bwd_sym": lambda: fwd_bwd(sym),
            "fwd_unw": no_grad(lambda: dmon.pool(xt, unweighted, lt)),
            "fwd_bwd_unw": lambda: fwd_bwd(unweighted),
            **_products(
                products,
                products_bwd,
                lambda: torch.addmm(o[0], a_t, g1, beta=0, out=o[0]),
                no_grad,
            ),
        }
    elif backend == "tensorflow":
        import tensorflow as tf

        eit, wt, xt, lt = (tf.constant(v) for v in (ei, w, x, logits))
        graph = dmon.SparseGraph(eit, wt)
        a = tf.SparseTensor(tf.transpose(tf.cast(eit, tf.int64)), wt, [n, n])
        result["setup_rss_mb"] = _rss_mb()
        s = tf.nn.softmax(lt)

        lg, xx = tf.Variable(lt), tf.Variable(xt)
        from tensorflow.python.ops.linalg.sparse import sparse_csr_matrix_ops as csr

        a_csr = csr.CSRSparseMatrix(a)
        a_t_csr = csr.CSRSparseMatrix(tf.sparse.reorder(tf.sparse.transpose(a)))
        s1 = tf.concat([s, tf.ones_like(s[:, :1])], -1)
        g1, gx = tf.random.normal((n, C + 1)), tf.random.normal((C, F))
        products = (lambda: csr.matmul(a_csr, s1), lambda: tf.matmul(s, xt, transpose_a=True))
        products_bwd = (lambda: tf.matmul(xt, gx, transpose_b=True), lambda: tf.matmul(s, gx))

        sym = dmon.SparseGraph(eit, wt, symmetric=True)
        unweighted = dmon.SparseGraph(eit)

        def fwd_bwd(g=graph) -> None:
            with tf.GradientTape() as tape:
                total = _scalar(dmon.pool(xx, g, lg), tf.reduce_sum)
            tape.gradient(total, [lg, xx])

        def floor_bwd() -> None:
            with tf.GradientTape() as tape:
                s = tf.nn.softmax(lg)
                total = tf.reduce_sum(
                    tf.matmul(s, tf.sparse.sparse_dense_matmul(a, s), transpose_a=True)
                )
            tape.gradient(total, lg)

        fns = {
            "fwd": lambda: dmon.pool(xt, graph, lt),
            "floor": lambda: tf.matmul(s, tf.sparse.sparse_dense_matmul(a, s), transpose_a=True),
            "floor_x": lambda: (
                tf.matmul(s, tf.sparse.sparse_dense_matmul(a, s), transpose_a=True),
                tf.matmul(s, xt, transpose_a=True),
            ),
            "fwd_bwd": fwd_bwd,
            "fwd_bwd_sym": lambda: fwd_bwd(sym),
            "floor_bwd": floor_bwd,
            "fwd_unw": lambda: dmon.pool(xt, unweighted, lt),
            "fwd_bwd_unw": lambda: fwd_bwd(unweighted),
            **_products(products, products_bwd, lambda: csr.matmul(a_t_csr, g1)),
        }
    else:
        import jax
        import jax.numpy as jnp
        from jax.experimental import sparse

        if os.environ.get("DMON_BENCH_INLINE"):  # the "jax+inline" worker: see _run
            jax.config.update("jax_cpu_enable_async_dispatch", False)

        eij, wj, xj, lj = (jnp.asarray(v) for v in (ei, w, x, logits))
        a = sparse.BCOO((wj, eij.T), shape=(n, n))

        @jax.jit
        def forward(x, ei, w, lg):
            return dmon.pool(x, dmon.SparseGraph(ei, w), lg)

        def total(lg, x, ei, w, symmetric=False):
            return _scalar(dmon.pool(x, dmon.SparseGraph(ei, w, symmetric=symmetric), lg))

        grad = jax.jit(jax.grad(total, argnums=(0, 1)))
        # unweighted: the same functions with no weights (w = None)
        grad_unw = jax.jit(jax.grad(lambda lg, x, ei: total(lg, x, ei, None), argnums=(0, 1)))
        grad_sym = jax.jit(jax.grad(lambda *a: total(*a, symmetric=True), argnums=(0, 1)))
        floor = jax.jit(lambda a, lg: jax.nn.softmax(lg).T @ (a @ jax.nn.softmax(lg)))
        floor_x = jax.jit(
            lambda a, lg, x: (
                jax.nn.softmax(lg).T @ (a @ jax.nn.softmax(lg)),
                jax.nn.softmax(lg).T @ x,
            )
        )
        floor_grad = jax.jit(
            jax.grad(lambda lg, a: (jax.nn.softmax(lg).T @ (a @ jax.nn.softmax(lg))).sum())
        )
        result["setup_rss_mb"] = _rss_mb()
        ready = jax.block_until_ready
        fns = {
            "fwd": lambda: ready(forward(xj, eij, wj, lj)),
            "floor": lambda: ready(floor(a, lj)),
            "floor_x": lambda: ready(floor_x(a, lj, xj)),
            "fwd_bwd": lambda: ready(grad(lj, xj, eij, wj)),
            "fwd_bwd_sym": lambda: ready(grad_sym(lj, xj, eij, wj)),
            "floor_bwd": lambda: ready(floor_grad(lj, a)),
            "fwd_unw": lambda: ready(forward(xj, eij, None, lj)),
            "fwd_bwd_unw": lambda: ready(grad_unw(lj, xj, eij)),
        }
    result.update(_interleaved(fns, reps, sync))
    if DEVICE != "cpu" and backend == "torch":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["device_name"] = torch.cuda.get_device_name()
    elif DEVICE != "cpu" and backend == "jax":
        result["device_name"] = jax.devices()[0].device_kind
    result["peak_rss_mb"] = _rss_mb()
    return result


def _products(forward: tuple, backward: tuple, transposed, wrap=lambda f: f) -> dict:
    """The products alone, each call a tuple of results: the forward's (`A [S | 1]`,
    `Sᵀ X`); with the backward's for a symmetric graph (`X G_xᵀ`, `S G_x`); and for a
    general one, with `Aᵀ G` too. Their ratio is the floor of dmon's "/ fwd": what it would
    be if everything else cost nothing."""
    return {
        "products_fwd": wrap(lambda: tuple(f() for f in forward)),
        "products_fwd_bwd_sym": wrap(lambda: tuple(f() for f in (*forward, *backward))),
        "products_fwd_bwd": wrap(lambda: tuple(f() for f in (*forward, *backward, transposed))),
    }


def _torch_csr(torch, ei, w, n):
    """torch CSR parts of row-sorted edges, with int32 indices (MKL's; int64 ones are
    converted on every product)."""
    counts = torch.bincount(ei[0], minlength=n)
    crow = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    return crow.int(), ei[1].int(), w


# glibc keeps freed memory instead of returning blocks over 32 MiB to the system (see
# bench_train.py): the "torch+keep" worker shows what the allocator costs torch. JAX
# allocates a program's temporaries on the thread that runs it, by default one of its
# workers, whose glibc arena maps every block over 64 MiB afresh whatever the settings:
# the "jax+inline" worker also runs programs on the calling thread (as dmon.cluster's
# engine does; dmon.backends.jax.engine).
KEEP_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
VARIANTS = {"": {}, "keep": KEEP_MEMORY, "inline": {**KEEP_MEMORY, "DMON_BENCH_INLINE": "1"}}


def _run(backend: str, n: int, m: int, reps: int) -> dict | None:
    name, _, variant = backend.partition("+")
    cmd = [sys.executable, __file__, "--worker", name, str(n), str(m), str(reps)]
    env = {**os.environ, **VARIANTS[variant], "DMON_BENCH_DEVICE": DEVICE}
    if DEVICE == "cpu":
        env["JAX_PLATFORMS"] = "cpu"  # else JAX takes a GPU when there is one
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode != 0:
        print(f"{backend} N={n}: failed\n{res.stderr[-2000:]}", file=sys.stderr)
        return None
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["backend"] = backend
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", nargs=4, metavar=("BACKEND", "N", "M", "REPS"))
    parser.add_argument("--backends", nargs="+", default=None)
    parser.add_argument("--arxiv", action="store_true", help="the arxiv-size graph only")
    parser.add_argument("--device", default="cpu", help="cuda: torch and JAX on the GPU")
    args = parser.parse_args()
    global DEVICE
    if not args.worker:  # a worker takes its device from the parent (DMON_BENCH_DEVICE)
        DEVICE = args.device
    if args.worker:
        backend, n, m, reps = args.worker
        print(json.dumps(worker(backend, int(n), int(m), int(reps))))
        return

    sys.path.insert(0, str(HERE.parent))
    import dmon

    backends = args.backends or dmon.available_backends()
    graphs = [(10_000, 70_000)] if args.quick else ([ARXIV] if args.arxiv else [ARXIV, *SWEEP])
    if DEVICE != "cpu":
        backends = [b for b in backends if b != "numpy"]  # no GPU
        graphs = graphs if args.quick or args.arxiv else GPU_GRAPHS
    rows = []
    for n, m in graphs:
        on_cpu = DEVICE == "cpu"
        variants = [
            f"{b}+{v}"
            for b, v in (("torch", "keep"), ("jax", "inline"))
            if b in backends and (n, m) == ARXIV and on_cpu
        ]
        for backend in [*backends, *variants]:
            reps = 21 if not on_cpu else 11 if n <= 300_000 else 5
            r = _run(backend, n, m, reps)
            if r is None:
                continue
            rows.append(r)
            print(json.dumps(r), flush=True)
    if args.quick or args.arxiv:  # a partial run leaves docs/benchmarks.md alone
        return
    if DEVICE != "cpu":
        write_gpu(rows)
        return
    write(rows)


if __name__ == "__main__":
    main()
