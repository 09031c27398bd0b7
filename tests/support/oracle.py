"""Independent oracle: DMoN written as plain Python loops over the paper's formulas, one
graph at a time (no matrix products, no shared code with dmon), plus the test graphs."""

from __future__ import annotations

import math

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def brute_force(x: np.ndarray, adj: np.ndarray, logits: np.ndarray, mask: np.ndarray | None = None):
    """All six DMoN outputs for a batch, by loops. Inputs are ``(B, N, ·)``."""
    b_n, n, f = x.shape
    c = logits.shape[-1]
    if mask is None:
        mask = np.ones((b_n, n), dtype=bool)
    s_all = np.zeros((b_n, n, c))
    x_all = np.zeros((b_n, c, f))
    a_all = np.zeros((b_n, c, c))
    spec, orth, clus = [], [], []
    for b in range(b_n):
        valid = [bool(mask[b, i]) for i in range(n)]
        s = [[0.0] * c for _ in range(n)]
        for i in range(n):
            if not valid[i]:
                continue
            mx = max(logits[b, i])
            e = [math.exp(v - mx) for v in logits[b, i]]
            tot = sum(e)
            s[i] = [v / tot for v in e]
        # pooled features
        for k in range(c):
            for j in range(f):
                v = sum(s[i][k] * x[b, i, j] for i in range(n) if valid[i])
                x_all[b, k, j] = SELU_SCALE * (v if v > 0 else SELU_ALPHA * math.expm1(v))
        # S^T A S
        sas = [
            [
                sum(s[i][k] * adj[b, i, j] * s[j][q] for i in range(n) for j in range(n))
                for q in range(c)
            ]
            for k in range(c)
        ]
        deg = [sum(adj[b, i, j] for j in range(n)) if valid[i] else 0.0 for i in range(n)]
        two_m = sum(deg)
        if two_m > 0:
            tr = sum(sas[k][k] for k in range(c))
            sd = [sum(s[i][k] * deg[i] for i in range(n)) for k in range(c)]
            spec.append(-(tr - sum(v * v for v in sd) / two_m) / two_m)
        else:
            spec.append(0.0)
        n_valid = sum(valid)
        ss = [[sum(s[i][k] * s[i][q] for i in range(n)) for q in range(c)] for k in range(c)]
        ss_norm = math.sqrt(sum(v * v for row in ss for v in row))
        if n_valid == 0:
            orth.append(0.0)
            clus.append(0.0)
        else:
            orth.append(
                math.sqrt(
                    sum(
                        (ss[k][q] / ss_norm - (1 / math.sqrt(c) if k == q else 0.0)) ** 2
                        for k in range(c)
                        for q in range(c)
                    )
                )
            )
            sizes = [sum(s[i][k] for i in range(n)) for k in range(c)]
            clus.append(math.sqrt(sum(v * v for v in sizes)) * math.sqrt(c) / n_valid - 1)
        # pooled adjacency: zero diagonal, then symmetric degree normalisation
        off = [[sas[k][q] if k != q else 0.0 for q in range(c)] for k in range(c)]
        root = [math.sqrt(sum(off[k])) + 1e-15 for k in range(c)]
        for k in range(c):
            for q in range(c):
                a_all[b, k, q] = off[k][q] / root[q] / root[k]
        s_all[b] = np.array(s)
    return s_all, x_all, a_all, float(np.mean(spec)), float(np.mean(orth)), float(np.mean(clus))


def random_batch(
    seed: int,
    b: int = 3,
    n: int = 12,
    f: int = 5,
    c: int = 4,
    *,
    masked: bool = False,
    weighted: bool = True,
):
    """A batch of random symmetric graphs (no self-loops) with features, logits and mask."""
    rng = np.random.default_rng(seed)
    a = (rng.random((b, n, n)) < 0.3).astype(np.float64)
    if weighted:
        a *= rng.uniform(0.5, 2.0, size=(b, n, n))
    a = np.triu(a, 1)
    a = a + a.transpose(0, 2, 1)
    x = rng.normal(size=(b, n, f))
    logits = 2.0 * rng.normal(size=(b, n, c))
    mask = None
    if masked:
        sizes = rng.integers(n // 2, n + 1, size=b)
        sizes[0] = n
        mask = np.arange(n)[None, :] < sizes[:, None]
        a = a * mask[:, :, None] * mask[:, None, :]
        x = x * mask[:, :, None]
    return x, a, logits, mask


def karate() -> np.ndarray:
    import networkx as nx

    return nx.to_numpy_array(nx.karate_club_graph(), weight=None)
