"""The `dmon` command: `dmon cluster`, `dmon partition`, `dmon parity`, `dmon info`.

Errors a user can cause (missing file, bad format, k larger than the graph, unknown or
missing backend) end with one line on stderr and exit status 2, never a stack trace.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

from dmon.cli.cluster import cmd_cluster
from dmon.cli.common import UsageError, one_line
from dmon.cli.graphs import add_graph_arguments
from dmon.cli.parity import cmd_info, cmd_parity
from dmon.cli.partition import cmd_partition
from dmon.version import __version__

__all__ = ["UsageError", "main", "parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), like every other
    error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


EXAMPLES = """examples:
  dmon cluster                                   the built-in graph, in seconds
  dmon cluster cora.npz -k 16 --backend jax      a gnn-benchmark .npz
  dmon cluster edges.csv -k 8 --labels labels.csv  your edge list, scored against labels
  dmon cluster cora.npz -k 16 --out runs/cora --resume   continue an interrupted run
  dmon partition big.npz --parts 4 --out shards/big   one file per shard, once
  dmon parity model.keras --inputs in.npz        your Keras model on every backend
  dmon info                                      versions and installed backends
"""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Examples as written (argparse would reflow them)."""


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="dmon",
        description="DMoN graph pooling and clustering on PyTorch, TensorFlow, JAX and NumPy.",
        epilog=EXAMPLES,
        formatter_class=_Help,
    )
    p.add_argument("--version", action="version", version=f"dmon {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser(
        "cluster",
        help="train DMoN on a graph and write clusters, metrics and figures",
        description="Train DMoN on a graph; write assignments.csv, metrics.json, "
        "history.csv, loss.png and clusters.png to the output folder.",
        epilog="\n".join(
            line
            for line in EXAMPLES.splitlines()
            if "cluster" in line or line.startswith("examples")
        ),
        formatter_class=_Help,
    )
    add_graph_arguments(c, folder=True)
    c.add_argument(
        "--clusters",
        "-k",
        type=int,
        default=None,
        help="number of clusters (default 16; 4 for sbm, 2 for karate)",
    )
    c.add_argument(
        "--backend",
        choices=["jax", "tensorflow", "torch"],
        default=None,
        help="Keras backend (default: KERAS_BACKEND, else the first installed)",
    )
    c.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs (default 1000; 300 for the built-in graphs)",
    )
    c.add_argument(
        "--seed", type=int, default=0, help="seed of the weights and dropout (default 0)"
    )
    c.add_argument(
        "--out",
        default=None,
        help="output folder (default runs/<graph name>, or runs/<graph name>-2, ... when taken)",
    )
    c.add_argument(
        "--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3, the paper's)"
    )
    c.add_argument("--dropout", type=float, default=0.5, help="dropout on the logits (default 0.5)")
    c.add_argument(
        "--collapse-regularization", type=float, default=1.0, help="cluster loss weight (default 1)"
    )
    c.add_argument("--hidden", type=int, default=64, help="GCN units (default 64)")
    c.add_argument(
        "--resolution",
        type=float,
        default=1.0,
        help="modularity resolution γ of the spectral loss (default 1; 0.5 as google-research)",
    )
    c.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    c.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for the framework (default: its own, one per core). On a machine "
        "busy with other work, try 1: a full pool can run many times slower there",
    )
    c.add_argument(
        "--checkpoint-every",
        type=int,
        default=50,
        help="epochs between checkpoints in the output folder (default 50; 0: only at the end)",
    )
    c.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in the output folder (same graph and settings)",
    )
    c.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of a finished run in the output folder (refused without)",
    )
    d = c.add_argument_group(
        "distributed (docs/distributed.md)",
        "shard the graph by nodes: JAX over --devices (and --coordinator processes); torch "
        "under python -m torch.distributed.run --nproc-per-node P -m dmon cluster --backend torch",
    )
    d.add_argument(
        "--devices",
        type=int,
        default=None,
        help="JAX devices per process to shard over (on a CPU: that many simulated devices)",
    )
    d.add_argument(
        "--coordinator", default=None, metavar="HOST:PORT", help="jax.distributed coordinator"
    )
    d.add_argument("--num-processes", type=int, default=None, help="JAX processes in all")
    d.add_argument("--process-id", type=int, default=None, help="this JAX process, 0-based")
    d.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds start-up and each collective wait for another process (default 300)",
    )
    _add_split_arguments(d)
    c.set_defaults(func=cmd_cluster)

    part = sub.add_parser(
        "partition",
        help="split a graph once into per-shard files for sharded training",
        description="Partition a graph into --parts shards and write one file per shard "
        "and a manifest to --out; dmon cluster OUT then makes each process of a sharded "
        "run read its own shard only (docs/distributed.md).",
        epilog="example:\n  dmon partition big.npz --parts 4 --out shards/big\n"
        "  python -m torch.distributed.run --nproc-per-node 4 -m dmon cluster shards/big "
        "--backend torch",
        formatter_class=_Help,
    )
    add_graph_arguments(part, folder=False)
    part.add_argument("--parts", "-P", type=int, required=True, help="number of shards")
    part.add_argument("--out", required=True, help="the folder to write (created)")
    part.add_argument(
        "--overwrite", action="store_true", help="replace a partition in --out (refused without)"
    )
    _add_split_arguments(part)
    part.set_defaults(func=cmd_partition)

    par = sub.add_parser(
        "parity", help="the same inputs through every installed backend: differences and timings"
    )
    par.add_argument(
        "model",
        nargs="?",
        default=None,
        help="a Keras .keras model to compare across backends (none: dmon's own pooling)",
    )
    par.add_argument(
        "--inputs", default=None, help="the model's inputs: .npz, by input name or in order"
    )
    par.add_argument(
        "--backends",
        default=None,
        help="comma-separated, default every installed one of jax,tensorflow,torch",
    )
    par.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE in every backend process first (custom layers); repeatable",
    )
    par.add_argument(
        "--rtol",
        type=float,
        default=None,
        help="judge elementwise with this relative tolerance (1e-4 if only --atol; 1e-9 in "
        "float64) instead of against a float64 reference run",
    )
    par.add_argument(
        "--atol",
        type=float,
        default=None,
        help="judge elementwise with this absolute tolerance (1e-5 if only --rtol; 1e-12 in "
        "float64)",
    )
    par.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="float64 rebuilds every layer in float64 and judges by tolerances",
    )
    par.add_argument("--no-grads", action="store_true", help="compare outputs and losses only")
    par.add_argument("--json", default=None, metavar="PATH", help="also write the report as JSON")
    par.add_argument(
        "--require-all", action="store_true", help="a backend that is not installed is an error"
    )
    par.add_argument(
        "--reps", type=int, default=20, help="without a model: timed repetitions (>= 1)"
    )
    par.set_defaults(func=cmd_parity)

    info = sub.add_parser("info", help="version, installed backends and their versions")
    info.set_defaults(func=cmd_info)
    return p


_SPLIT = (
    ("--partitioner", ("auto", "metis", "contiguous"),
     "how nodes are split into shards: METIS (pymetis; few edges cross shards), contiguous "
     "id ranges, or auto: METIS when installed (default)"),
    ("--exchange", ("auto", "halo", "all-gather"),
     "how a shard gets the rows of others: only those its edges reference (halo), all of "
     "them (all-gather), or auto: the halo when it is at most half (default)"),
)  # fmt: skip


def _add_split_arguments(group: Any) -> None:
    for option, choices, text in _SPLIT:
        group.add_argument(option, choices=choices, default="auto", help=text)


def main(argv: list[str] | None = None) -> int:
    """Run the command; every failure ends with one line on stderr and exit status 2
    (130 for Ctrl-C), never a stack trace (set DMON_DEBUG=1 to see one)."""
    args = parser().parse_args(argv)
    if args.command == "cluster":
        builtin = {"sbm": (4, 300), "karate": (2, 300)}.get(args.graph, (16, 1000))
        args.clusters = builtin[0] if args.clusters is None else args.clusters
        args.epochs = builtin[1] if args.epochs is None else args.epochs
    if args.command == "parity" and args.reps < 1:
        print("dmon: error: --reps must be an int >= 1", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # the reader went away (`dmon info | head -1`): end quietly, as Unix tools do;
        # stdout goes to /dev/null so that Python's flush at exit cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except UsageError as err:
        print(f"dmon: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dmon: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get("DMON_DEBUG"):
            raise
        print(f"dmon: error: {type(err).__name__}: {one_line(str(err))}", file=sys.stderr)
        return 2
