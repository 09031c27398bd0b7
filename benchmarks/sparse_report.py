"""The tables and the figure of `bench_sparse.py`: the sections it writes into
docs/benchmarks.md (CPU and GPU) and docs/img/sparse_scaling.png."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARXIV = (169_343, 1_166_243)


def _fmt(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _table(rows: list[dict], peak_header: str, peak) -> list[str]:
    """The markdown table of both sections (CPU and GPU); `peak` formats a row's last
    column, the peak memory named `peak_header`."""
    lines = [
        "| graph | N | E (directed) | backend | forward ms | floor ms | ratio | floor+SᵀX ms | ratio | fwd+bwd ms | floor ms | ratio | / fwd | fwd+bwd symmetric ms | / fwd | "
        f"{peak_header} |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = "arxiv-size" if r["N"] == ARXIV[0] else "sweep"
        lines.append(
            f"| {name} | {r['N']:,} | {r['E']:,} | {r['backend']} | {_fmt(r['fwd_ms'])} | {_fmt(r['floor_ms'])} | "
            f"{r['fwd_ratio']:.2f} | {_fmt(r['floor_x_ms'])} | {r['fwd_x_ratio']:.2f} | {_fmt(r.get('fwd_bwd_ms'))} | {_fmt(r.get('floor_bwd_ms'))} | "
            f"{_fmt(r.get('bwd_ratio'), 2)} | {_fmt(r.get('split'), 2)} | {_fmt(r.get('fwd_bwd_sym_ms'))} | "
            f"{_fmt(r.get('split_sym'), 2)} | {peak(r)} |"
        )
    return lines


def _unweighted_table(rows: list[dict]) -> list[str]:
    """The same graphs without `edge_weight` (`SparseGraph(edge_index)`, the general path):
    the matrix of the ones is kept across calls (docs/sparse.md)."""
    lines = [
        "",
        "Unweighted: the same graphs as `SparseGraph(edge_index)` (no `edge_weight`, not",
        "marked symmetric), timed in the same rounds. Their weights are ones on every call, so",
        "the matrix built from them is kept with the graph (TensorFlow's converted CSR matrix",
        "and its transpose, torch's weights of the transpose); under `jax.jit` nothing is kept.",
        "",
        "| graph | N | backend | forward ms | fwd+bwd ms | / fwd |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        if "fwd_unw_ms" in r:
            name = "arxiv-size" if r["N"] == ARXIV[0] else "sweep"
            lines.append(
                f"| {name} | {r['N']:,} | {r['backend']} | {_fmt(r['fwd_unw_ms'])} | "
                f"{_fmt(r.get('fwd_bwd_unw_ms'))} | {_fmt(r.get('split_unw'), 2)} |"
            )
    return lines


def _products_table(rows: list[dict]) -> list[str]:
    """The floor of "/ fwd" at arxiv size: the same ratio for the products alone."""
    lines = [
        "",
        "The products alone, at arxiv size, timed in the same rounds: the forward's `A [S | 1]`",
        "and `Sᵀ X`; forward+backward adds `X G_xᵀ` and `S G_x` (the gradients with respect",
        "to `S` and `x`; every graph) and, for a general graph, `Aᵀ G` with `Aᵀ` prebuilt.",
        'Their ratio is the floor of dmon\'s "/ fwd", what it would be if the softmax, the',
        "losses and every other step cost nothing: the backward makes two `N × F` products",
        "where the forward makes one, so with F = 128 they outweigh the sparse products.",
        "",
        "| backend | products fwd ms | fwd+bwd general ms | / fwd | fwd+bwd symmetric ms | / fwd | dmon / fwd general | dmon / fwd symmetric |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["N"] == ARXIV[0] and "products_fwd_ms" in r:
            lines.append(
                f"| {r['backend']} | {_fmt(r['products_fwd_ms'])} | {_fmt(r['products_fwd_bwd_ms'])} | "
                f"{_fmt(r['products_split'], 2)} | {_fmt(r['products_fwd_bwd_sym_ms'])} | "
                f"{_fmt(r['products_split_sym'], 2)} | {_fmt(r.get('split'), 2)} | {_fmt(r.get('split_sym'), 2)} |"
            )
    return lines


def write(rows: list[dict]) -> None:
    sys.path.insert(0, str(HERE))
    from report import write_section

    import dmon

    lines = [
        "## Sparse pooling at ogbn-arxiv scale",
        "",
        "Written by `python benchmarks/bench_sparse.py`. `dmon.pool(x, SparseGraph(edge_index,",
        "edge_weight), logits)` with F = 128, C = 16, float32, one process per backend and graph;",
        "medians of 11 rounds (5 at N = 1M) in which dmon and its floors run in turn; each ratio",
        "is the median of the per-round ratios, so the machine's drift cancels. The floor is the",
        "same framework's fastest hand-written",
        "`Sᵀ (A S)` with A prebuilt (SciPy CSR, torch CSR, `tf.SparseTensor`, JAX BCOO);",
        '"floor+SᵀX" adds the feature pooling `Sᵀ X` that every DMoN layer also does (with F = 128',
        "it costs as much as the sparse product). For",
        "forward+backward, the framework's own autograd of it where that stays sparse. dmon's",
        "time includes converting `edge_index` to the fast form and the rest of the layer",
        "(softmax, `Sᵀ X` over 128 features, the degrees, the three losses). Peak RSS is the",
        'whole process (framework, data, gradients). "symmetric": the same graph as',
        "`SparseGraph(..., symmetric=True)`, whose backward has no sparse product",
        '(`dmon.node_sums`); "/ fwd" is forward+backward over forward. "torch+keep":',
        "torch with glibc told to keep freed memory (`MALLOC_MMAP_MAX_=0",
        "MALLOC_TRIM_THRESHOLD_=100000000000`, as jemalloc or tcmalloc do): by default the",
        "87 MB gradient of `x` is a fresh mapping, page-faulted on every backward (~20 ms).",
        '"jax+inline": JAX with glibc told the same and its CPU programs run on the calling',
        "thread (`jax_cpu_enable_async_dispatch=False`, as `dmon.cluster` runs them): by",
        "default a worker thread runs them, and its glibc arena maps every block over 64 MiB",
        "afresh, such as the one block of a program's temporaries, page-faulted on every",
        "call; the floors (BCOO) pay it too.",
        "",
    ]
    lines += _table(rows, "peak RSS MiB", lambda r: f"{r['peak_rss_mb']:.0f}")
    lines += _products_table(rows)
    lines += _unweighted_table(rows)
    lines += [
        "",
        f"dmon {dmon.__version__}; CPU, {os.cpu_count()} cores.",
        "",
        "![time and memory vs E](img/sparse_scaling.png)",
        "",
    ]
    write_section("sparse", "\n".join(lines))
    _plot(rows)


def write_gpu(rows: list[dict]) -> None:
    sys.path.insert(0, str(HERE))
    from report import write_section

    import dmon

    cards = sorted({r["device_name"] for r in rows if "device_name" in r})
    lines = [
        f"## Sparse pooling on a GPU ({', '.join(cards)})",
        "",
        "Written by `python benchmarks/bench_sparse.py --device cuda`: the same graphs,",
        "sizes and floors as the CPU table above (arxiv-size, and the sweep's 100k and 1M),",
        "with torch's tensors on the GPU (the clock read after `torch.cuda.synchronize()`)",
        "and JAX on its default device, the GPU; medians of 21 rounds. Peak GPU memory is",
        "torch's `max_memory_allocated`.",
        "",
    ]
    lines += _table(rows, "peak GPU MiB", lambda r: _fmt(r.get("peak_gpu_mb"), 0))
    lines += _unweighted_table(rows)
    lines += ["", f"dmon {dmon.__version__}.", ""]
    write_section("sparse-gpu", "\n".join(lines))


def _plot(rows: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    sweep = [r for r in rows if r["N"] != ARXIV[0]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for backend in sorted({r["backend"] for r in sweep}):
        rs = sorted((r for r in sweep if r["backend"] == backend), key=lambda r: r["E"])
        e = [r["E"] for r in rs]
        ax1.loglog(e, [r["fwd_ms"] for r in rs], "o-", label=f"{backend} forward")
        if all("fwd_bwd_ms" in r for r in rs):
            ax1.loglog(e, [r["fwd_bwd_ms"] for r in rs], "s--", label=f"{backend} fwd+bwd")
        ax2.loglog(e, [r["peak_rss_mb"] for r in rs], "o-", label=backend)
    lo = min(r["E"] for r in sweep)
    ax1.loglog([lo, 100 * lo], [10, 1000], ":", color="gray", label="slope 1 (linear)")
    ax1.set(xlabel="edges E (directed)", ylabel="ms", title="dmon.pool time vs E")
    ax2.set(xlabel="edges E (directed)", ylabel="peak RSS (MiB)", title="peak memory vs E")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    out = HERE.parent / "docs" / "img" / "sparse_scaling.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
