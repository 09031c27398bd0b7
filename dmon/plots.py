"""PNG figures of a clustering run (matplotlib, imported only here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dmon.data import Graph

DRAW_GRAPH_MAX_NODES = 1000
"""Graphs up to this size are drawn node by node; larger ones as their cluster graph."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cluster_colors(k: int) -> list[tuple[float, float, float]]:
    """`k` RGB colours whose neighbouring ids get far-apart hues: hue `i · φ` (the golden
    ratio's fractional part, so ids `i` and `i + 1` differ by 0.38 of the hue circle at
    least), with lightness alternating every few ids so that distant ids landing on close
    hues still differ. Cluster ids are arbitrary, but `tab20`'s neighbours are pairs of
    one hue (two oranges, two blues): clusters side by side looked alike."""
    import colorsys

    golden = (5**0.5 - 1) / 2
    colours = []
    for i in range(k):
        hue = (i * golden) % 1.0
        light, sat = ((0.45, 0.75), (0.62, 0.85), (0.35, 0.6))[(i // 3) % 3]
        colours.append(colorsys.hls_to_rgb(hue, light, sat))
    return colours


LOSS_PANELS = (
    ("loss", "total (weighted)"),
    ("spectral_loss", "spectral"),
    ("cluster_loss", "cluster"),
)
"""The history's losses, each in a panel of its own: on one axis the total hid under
the spectral loss, which it follows within the small cluster loss."""


def loss_curves(history: dict[str, list[float]], path: Path, title: str = "DMoN training") -> None:
    """The total, spectral and cluster loss per epoch, one panel each, sharing the epochs."""
    plt = _pyplot()
    panels = [(key, label) for key, label in LOSS_PANELS if history.get(key)]
    fig, axes = plt.subplots(
        max(len(panels), 1), 1, figsize=(6.5, 1.2 + 1.6 * max(len(panels), 1)), sharex=True,
        squeeze=False,
    )  # fmt: skip
    palette = ("k", "tab:blue", "tab:orange")
    for ax, (key, label), colour in zip(axes[:, 0], panels, palette, strict=False):
        values = history[key]
        ax.plot(np.arange(1, len(values) + 1), values, color=colour, lw=1.2)
        ax.set_ylabel(label)
        ax.annotate(
            f"{values[-1]:+.4f}", (1.0, 1.0), xycoords="axes fraction", ha="right", va="bottom",
            fontsize=8,
        )  # fmt: skip
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("epoch")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_title(graph_name: str, k: int, backend: str, modularity: float | None) -> str:
    """`<graph>: k = 16, jax, modularity 0.712`: what a figure of a run shows."""
    quality = "" if modularity is None else f", modularity {modularity:.3f}"
    return f"{graph_name}: k = {k}, {backend}{quality}"


def spectral_layout(adjacency: Any, seed: int = 0) -> np.ndarray:
    """2-D positions from the two leading non-trivial eigenvectors of the normalised
    adjacency (a Laplacian eigenmap), jittered so that twins do not overlap."""
    from scipy import sparse
    from scipy.sparse.linalg import ArpackError, eigsh

    a = sparse.csr_matrix(adjacency, dtype=np.float64)
    n = a.shape[0]
    deg = np.asarray(a.sum(1)).ravel() + 1e-12
    d = sparse.diags(1 / np.sqrt(deg))
    m = d @ a @ d
    rng = np.random.default_rng(seed)
    if n <= 3 or a.nnz == 0:  # nothing to embed: a circle
        angle = 2 * np.pi * np.arange(n) / max(n, 1)
        return np.stack([np.cos(angle), np.sin(angle)], 1) + 0.03 * rng.normal(size=(n, 2))
    try:
        vals, vecs = eigsh(m, k=3, which="LA", v0=rng.random(n))
    except ArpackError:  # e.g. a graph of self-loops only: no Arnoldi factorization
        return spectral_layout(sparse.csr_matrix((n, n)), seed)
    pos = vecs[:, np.argsort(vals)[::-1][1:3]] / np.sqrt(deg)[:, None]
    pos = pos / (np.abs(pos).max(0) + 1e-12)
    return pos + 0.03 * rng.normal(size=pos.shape)


def clusters(
    graph: Graph,
    assignments: np.ndarray,
    probabilities: np.ndarray,
    path: Path,
    title: str | None = None,
) -> str:
    """The graph coloured by cluster (small graphs), or the coarsened cluster graph with
    node size = cluster size (large ones). Returns which one was drawn."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    palette = cluster_colors(probabilities.shape[1])
    title = graph.name if title is None else title
    if graph.num_nodes <= DRAW_GRAPH_MAX_NODES:
        pos = spectral_layout(graph.adjacency)
        coo = graph.adjacency.tocoo()
        keep = coo.row < coo.col
        segs = np.stack([pos[coo.row[keep]], pos[coo.col[keep]]], axis=1)
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(list(segs), colors="0.75", linewidths=0.5, zorder=1))
        ax.scatter(
            pos[:, 0],
            pos[:, 1],
            c=[palette[c] for c in assignments],
            s=18,
            edgecolors="k",
            linewidths=0.3,
            zorder=2,
        )
        ax.set_title(f"{title}\n{graph.num_nodes} nodes coloured by cluster", fontsize=9)
        kind = "graph"
    else:
        p = np.eye(probabilities.shape[1])[assignments]
        coarse = p.T @ (graph.adjacency @ p)
        np.fill_diagonal(coarse, 0)
        sizes = p.sum(0)
        used = np.flatnonzero(sizes > 0)
        angle = 2 * np.pi * np.arange(len(used)) / max(len(used), 1)
        pos = np.stack([np.cos(angle), np.sin(angle)], 1)
        top = coarse[np.ix_(used, used)]
        wmax = top.max() if top.size and top.max() > 0 else 1.0
        for i in range(len(used)):
            for j in range(i + 1, len(used)):
                if top[i, j] > 0:
                    ax.plot(*pos[[i, j]].T, color="0.6", lw=4 * top[i, j] / wmax, zorder=1)
        # circle area follows cluster size; the largest circle's diameter is at most the
        # gap between neighbours on the ring: nothing overlaps or leaves the figure
        gap = 2 * np.sin(np.pi / max(len(used), 2))
        points = 6.5 * 72 * 0.8 / 2.7  # points per data unit of this figure's axes
        diameter = min(0.9 * gap, 0.6) * np.sqrt(sizes[used] / sizes.max())  # data units
        ax.scatter(
            pos[:, 0], pos[:, 1], s=(diameter * points) ** 2, c=[palette[c] for c in used],
            edgecolors="k", zorder=2,
        )  # fmt: skip
        font = 8 if len(used) <= 24 else 6
        for i, c in enumerate(used):
            ax.annotate(
                f"{c}",
                (1 + diameter[i] / 2 + 0.07) * pos[i],
                ha="center",
                va="center",
                fontsize=font,
                zorder=3,
            )  # the id outside its circle: readable on any colour and size
        ax.set_xlim(-1.35, 1.35)
        ax.set_ylim(-1.35, 1.35)
        ax.set_title(
            f"{title}\ncluster graph: circle area = cluster size, edge width = weight, "
            "labels = cluster ids", fontsize=9,
        )  # fmt: skip
        kind = "cluster graph"
    ax.set_axis_off()
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return kind
