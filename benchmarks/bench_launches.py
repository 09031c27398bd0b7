"""What dmon's torch paths cost a GPU beyond arithmetic, counted exactly (on the CPU the
counts are a GPU's): dispatched compute ops (kernel launches), host reads (waits for the
device) and autograd nodes, against PyTorch Geometric's `DMoNPooling` and hand-written
torch, eager and compiled. Writes the section "launches" of docs/benchmarks.md
("launches-gpu" with `--device cuda`).

    python benchmarks/bench_launches.py [--device cuda] [--no-compile] [--no-write]

Counted with `dmon.backends.torch.counting`; one steady-state call (after two warm-up
calls) of forward + backward of the sum of every output, or one training epoch.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dmon.backends.torch.counting import autograd_nodes, count_compiled_kernels, count_ops

import dmon

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section

B, N, F, C = 8, 256, 64, 16  # the dense case
SPARSE_N, SPARSE_E, SPARSE_F = 20_000, 100_000, 32
EPOCH_BLOCKS, EPOCH_BLOCK, K, HIDDEN = 16, 125, 16, 64


def _total(out: Any) -> torch.Tensor:
    """The sum of every output of a DMoN 6-tuple: each is on the backward's path."""
    return out[1].sum() + out[2].sum() + out[3] + out[4] + out[5]


def _steady(call: Any) -> dict[str, Any]:
    """Ops, host reads and autograd nodes of one call of `call()` (which runs forward +
    backward and returns the total), with value checks on and off."""
    row: dict[str, Any] = {}
    for checks in (True, False):
        with dmon.value_checks(checks):
            for _ in range(2):
                call()
            with count_ops() as tally:
                total = call()
        if checks:
            row["ops"], row["reads_on"] = tally.ops, tally.host_reads
            row["nodes"] = autograd_nodes(total)
        else:
            row["reads_off"] = tally.host_reads
    return row


def dense_rows(device: torch.device, compiled: bool) -> list[dict[str, Any]]:
    from torch_geometric.nn import DMoNPooling as PyG

    from dmon.layers.torch import DMoNPooling

    torch.manual_seed(0)
    x = torch.randn(B, N, F, device=device)
    a = torch.rand(B, N, N, device=device)
    a = (a + a.transpose(1, 2)) / 2
    mask = torch.rand(B, N, device=device) > 0.2
    rows = []
    for variant, kwargs, sym in (
        ("plain", {}, False),
        ("symmetric=True", {}, True),
        ("bool mask", {"mask": mask}, False),
    ):
        layers = [PyG(F, C).to(device), DMoNPooling(F, C, symmetric=sym).to(device)]
        base, mine = (_dense_counts(layer, x, a, kwargs, compiled) for layer in layers)
        rows.append({"work": f"dense pool fwd+bwd, {variant}", "dmon": mine, "base": base})
    return rows


def _dense_counts(
    layer: Any, x: torch.Tensor, a: torch.Tensor, kwargs: dict, compiled: bool
) -> dict[str, Any]:
    def run() -> torch.Tensor:
        total = _total(layer(x, a, **kwargs))
        total.backward()
        return total

    row = _steady(run)
    if compiled:
        row["compiled"] = _compiled(lambda x_, a_: _total(layer(x_, a_, **kwargs)), x, a)
    return row


def _compiled(fn: Any, *args: Any) -> int | None:
    """Kernels of the compiled forward + backward; `None` where `fullgraph` fails."""
    torch._dynamo.reset()
    try:
        return count_compiled_kernels(lambda *a: (fn(*a),), *args, backward=True)
    except Exception as err:  # a competitor that does not compile whole: say so
        print(f"  (not compiled whole: {type(err).__name__})", file=sys.stderr)
        return None


def sparse_rows(device: torch.device, compiled: bool) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    src = torch.randint(0, SPARSE_N, (SPARSE_E,))
    dst = torch.randint(0, SPARSE_N, (SPARSE_E,))
    ei = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])]).to(device)
    x = torch.randn(SPARSE_N, SPARSE_F, device=device)
    w = torch.randn(SPARSE_F, C, device=device, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "sparse CSR support is in beta"
        ones = torch.ones(ei.shape[1], device=device)
        a = torch.sparse_coo_tensor(ei, ones, (SPARSE_N, SPARSE_N)).coalesce().to_sparse_csr()
    degrees = torch.zeros(SPARSE_N, device=device).index_add_(0, ei[0], ones)
    eye = torch.eye(C, device=device)

    def handwritten(x_: torch.Tensor, w_: torch.Tensor) -> torch.Tensor:
        """DMoN over a CSR adjacency as a careful torch user writes it (degrees and
        the matrix made once, every output, PyG's formulas)."""
        s = torch.softmax(x_ @ w_, -1)
        out_adj = s.T @ (a @ s)
        two_m, vol = degrees.sum(), s.T @ degrees
        spectral = -(torch.trace(out_adj) - (vol @ vol) / two_m) / two_m
        gram = s.T @ s
        ortho = torch.linalg.vector_norm(gram / torch.linalg.vector_norm(gram) - eye / math.sqrt(C))
        cluster = torch.linalg.vector_norm(s.sum(0)) / SPARSE_N * math.sqrt(C) - 1
        pooled = torch.nn.functional.selu(s.T @ x_)
        off = out_adj * (1 - eye)
        root = torch.sqrt(off.sum(-1)) + 1e-15
        return (
            pooled.sum() + (off / root[:, None] / root[None, :]).sum() + spectral + ortho + cluster
        )

    def run(fn: Any) -> torch.Tensor:
        total = fn(x, w)
        total.backward()
        return total

    rows = []
    base = _steady(lambda: run(handwritten))
    if compiled:
        base["compiled"] = _compiled(handwritten, x, w)
    for symmetric in (False, True):
        graph = dmon.SparseGraph(ei, symmetric=symmetric)

        def ours(x_: torch.Tensor, w_: torch.Tensor, g: Any = graph) -> torch.Tensor:
            return _total(dmon.pool(x_, g, x_ @ w_))

        mine = _steady(lambda f=ours: run(f))
        if compiled:
            mine["compiled"] = _compiled(ours, x, w)
        label = "SparseGraph(symmetric=True)" if symmetric else "SparseGraph"
        rows.append({"work": f"sparse pool fwd+bwd, N = 20k, {label}", "dmon": mine, "base": base})
    return rows


def epoch_rows(device: torch.device) -> list[dict[str, Any]]:
    from dmon.data.builtin import synthetic_sbm

    graph = synthetic_sbm((EPOCH_BLOCK,) * EPOCH_BLOCKS, p_in=0.05, p_out=0.002)
    counts = {}
    for epochs in (1, 20, 40):  # per epoch: the difference of two runs, setup cancels
        with count_ops() as tally:
            dmon.cluster(graph, K, backend="torch", epochs=epochs, seed=0)
        counts[epochs] = tally
    mine = {
        "ops": (counts[40].ops - counts[20].ops) / 20,
        # the reads of a 20-epoch loop: the one-epoch run's single read, plus those
        # that 19 more epochs add
        "reads_on": 1 + counts[20].host_reads - counts[1].host_reads,
        "nodes": None,
    }
    base = _handwritten_epoch(graph, device)
    return [
        {
            "work": f"one `dmon.cluster` epoch (N = {graph.num_nodes}, k = {K})",
            "dmon": mine,
            "base": base,
        }
    ]


def _handwritten_epoch(graph: Any, device: torch.device) -> dict[str, Any]:
    """The paper's model and step as a careful torch user writes them, with
    `torch.optim.Adam(foreach=True)`."""
    import scipy.sparse as sp

    a = graph.adjacency.tocsr().astype(np.float32)
    n, f = graph.features.shape
    inv = 1.0 / np.sqrt(np.asarray(a.sum(1)).ravel() + 1.0)
    a_hat = (sp.diags(inv) @ (a + sp.eye(n, dtype=np.float32)) @ sp.diags(inv)).tocsr()

    def csr(m: Any) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.sparse_csr_tensor(
                torch.from_numpy(m.indptr.astype(np.int64)),
                torch.from_numpy(m.indices.astype(np.int64)),
                torch.from_numpy(m.data.astype(np.float32)),
                size=m.shape,
            ).to(device)

    a_t, a_hat_t = csr(a), csr(a_hat)
    x = torch.from_numpy(graph.features).to(device)
    lin, head = torch.nn.Linear(f, HIDDEN).to(device), torch.nn.Linear(HIDDEN, K).to(device)
    skip = torch.nn.Parameter(torch.ones(HIDDEN, device=device))
    opt = torch.optim.Adam([*lin.parameters(), skip, *head.parameters()], lr=1e-3, foreach=True)
    degrees = torch.from_numpy(np.asarray(a.sum(1)).ravel().astype(np.float32)).to(device)
    two_m = degrees.sum()

    def step() -> torch.Tensor:
        opt.zero_grad()
        h = lin(x)
        h = torch.selu(a_hat_t @ h + h * skip)
        s = torch.softmax(torch.nn.functional.dropout(head(h), 0.5, training=True), -1)
        vol = s.T @ degrees
        spectral = -(torch.trace(s.T @ (a_t @ s)) - (vol * vol).sum() / two_m) / two_m
        cluster = torch.linalg.vector_norm(s.sum(0)) / n * K**0.5 - 1
        loss = spectral + cluster
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    with count_ops() as tally:
        step()
    return {"ops": tally.ops, "reads_on": None, "nodes": None}


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v:.0f}" if isinstance(v, float) else str(v)


def table(rows: list[dict[str, Any]], device: str, compiled: bool) -> str:
    lines = [
        "| work | baseline | dmon ops | baseline ops | ratio | dmon host reads (checks on / off) "
        "| autograd nodes dmon / baseline |"
        + (" compiled kernels dmon / baseline |" if compiled else ""),
        "|---|---|---:|---:|---:|---:|---:|" + ("---:|" if compiled else ""),
    ]
    for r in rows:
        d, b = r["dmon"], r["base"]
        base_name = "PyG `DMoNPooling`" if r["work"].startswith("dense") else "hand-written torch"
        reads = f"{_cell(d['reads_on'])} / {_cell(d.get('reads_off'))}"
        nodes = f"{_cell(d['nodes'])} / {_cell(b['nodes'])}"
        line = (
            f"| {r['work']} | {base_name} | {_cell(d['ops'])} | {_cell(b['ops'])} | "
            f"{d['ops'] / b['ops']:.2f} | {reads} | {nodes} |"
        )
        if compiled:
            line += f" {_cell(d.get('compiled'))} / {_cell(b.get('compiled'))} |"
        lines.append(line)
    title = "## Launches and host reads" + ("" if device == "cpu" else " on a GPU")
    return (
        f"{title}\n\n`python benchmarks/bench_launches.py{'' if device == 'cpu' else ' --device cuda'}`"
        f" ({device}; torch {torch.__version__}). Ops are dispatched compute ops, each a "
        "kernel launch on a GPU (views and allocations not counted), for one steady-state "
        "forward + backward of every output, or one training epoch (the difference of a "
        "40- and a 20-epoch run, over 20). Host reads wait for the device; for an epoch "
        "they are the reads of a whole 20-epoch loop. The hand-written step's "
        "`torch.optim.Adam` reads its CPU step counters (`.item()`, no wait on a GPU), "
        "so its reads are not shown. Targets (issue 23): dense ≤ 1.25× PyG, sparse and "
        "epoch ≤ 1.5× hand-written, no read with value checks off.\n\n" + "\n".join(lines)
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-compile", action="store_true", help="skip the compiled counts")
    p.add_argument("--no-write", action="store_true", help="print, do not write the docs")
    args = p.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    compiled = not args.no_compile
    rows = dense_rows(device, compiled) + sparse_rows(device, compiled) + epoch_rows(device)
    text = table(rows, device.type, compiled)
    print(text)
    if not args.no_write:
        write_section("launches" if device.type == "cpu" else "launches-gpu", text)


if __name__ == "__main__":
    main()
