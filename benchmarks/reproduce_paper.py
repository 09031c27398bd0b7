"""Reproduce the DMoN paper's Cora and CiteSeer results on a chosen Keras backend.

    python benchmarks/reproduce_paper.py --backend jax
    python benchmarks/reproduce_paper.py --backend torch --seeds 5

The paper's setup (google-research `train.py`): symmetrised graph without self-loops,
binarised features; GCN 64 units (SELU, skip connection) → DMoN with k = 16,
collapse regularisation 1.0, dropout 0.5; Adam 1e-3; 1000 full-batch epochs; hard
clusters by argmax. Datasets are read from `../shared/datasets/` beside the checkout (or
`$DMON_DATASETS`). Each (backend) run writes its rows into docs/results.md, keeping the
other backends' rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("DMON_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "docs" / "results.md"
RAW = ROOT / "docs" / "results.json"
PAPER = {  # Tsitsulin et al., JMLR 2023, Table 3 (DMoN row): C, Q, NMI, F1 (×100)
    "cora": {"conductance": 12.2, "modularity": 76.5, "nmi": 48.8, "f1": 48.8},
    "citeseer": {"conductance": 5.1, "modularity": 79.3, "nmi": 33.7, "f1": 43.2},
}


def run_one(dataset: str, backend: str, seed: int, epochs: int) -> dict:
    """One training run in a fresh process (Keras fixes its backend per process)."""
    code = (
        "import json, sys; from dmon import data, train;"
        f"g = data.load_npz({str(DATASETS / (dataset + '.npz'))!r});"
        f"r = train.cluster(g, 16, backend={backend!r}, epochs={epochs}, seed={seed});"
        "print(json.dumps({**{k: v for k, v in r.metrics.items() if k != 'cluster_sizes'}, 'seconds': r.seconds}))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"{dataset} {backend} seed {seed} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="jax", choices=["jax", "tensorflow", "torch"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="rewrite docs/results.md from docs/results.json",
    )
    args = parser.parse_args()
    if args.markdown_only:
        write_markdown(json.loads(RAW.read_text()))
        return
    for name in PAPER:
        if not (DATASETS / f"{name}.npz").exists():
            sys.exit(
                f"{DATASETS / (name + '.npz')} not found: the datasets live in shared/ beside the checkout"
            )

    raw = json.loads(RAW.read_text()) if RAW.exists() else {}
    for dataset in PAPER:
        runs = []
        for seed in range(args.seeds):
            r = run_one(dataset, args.backend, seed, args.epochs)
            print(dataset, args.backend, seed, json.dumps(r), flush=True)
            runs.append(r)
        raw[f"{dataset}/{args.backend}"] = {"epochs": args.epochs, "runs": runs}
    RAW.write_text(json.dumps(raw, indent=1))
    write_markdown(raw)


def write_markdown(raw: dict) -> None:
    import numpy as np

    lines = [
        "# Reproducing the paper: Cora and CiteSeer",
        "",
        "Written by `python benchmarks/reproduce_paper.py --backend <name>` (raw runs in",
        "`docs/results.json`). Setup as the paper's own code (google-research `train.py`):",
        "symmetrised graph without self-loops, binarised features; GCN with 64 units (SELU,",
        "skip connection) → DMoN, k = 16, collapse regularisation 1.0, dropout 0.5; Adam,",
        "learning rate 1e-3; 1000 full-batch epochs; hard clusters by argmax; seeds 0–4.",
        "Metrics ×100 as in the paper: graph conductance C (lower is better), modularity Q,",
        "NMI and pairwise F1 against the labels (F1 by true pair counting, see",
        "[metrics](math.md)). Mean ± standard deviation over the seeds. CPU, 2 cores.",
        "",
        "| dataset | backend | C ↓ | Q ↑ | NMI ↑ | F1 ↑ | s / run |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key in sorted(raw):
        dataset, backend = key.split("/")
        runs = raw[key]["runs"]

        def cell(metric: str, runs: list[dict] = runs) -> str:
            v = 100 * np.array([r[metric] for r in runs])
            return f"{v.mean():.1f} ± {v.std():.1f}"

        secs = np.mean([r["seconds"] for r in runs])
        lines.append(
            f"| {dataset} | {backend} | {cell('conductance')} | {cell('modularity')} | {cell('nmi')} | {cell('f1')} | {secs:.1f} |"
        )
    for dataset, p in PAPER.items():
        lines.append(
            f"| {dataset} | paper (Table 3) | {p['conductance']} | {p['modularity']} | {p['nmi']} | {p['f1']} | |"
        )
    lines += [
        "",
        "Reading the table:",
        "",
        "- The paper's F1 is google-research's pairwise F1, which takes a max-overlap",
        "  shortcut; ours counts pairs exactly, so F1 is comparable in trend, not digit for",
        "  digit.",
        "- dmon's spectral loss is PyTorch Geometric's: minus modularity at resolution 1.",
        "  google-research's code divides `‖Sᵀd‖²` by `Σd` where PyG divides by `m`, which",
        "  optimises modularity at resolution ½ ([the math](math.md#how-other-implementations-differ)).",
        "  A lower resolution favours larger clusters, hence fewer cut edges: this is the",
        "  likeliest reason the paper's conductance is lower than ours while our modularity",
        "  (measured at resolution 1 for both) is on par.",
        "- Seeds are per backend: JAX, TensorFlow and PyTorch draw different initial weights",
        "  and dropout masks from the same seed, so the rows agree in distribution, not run",
        "  by run.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
