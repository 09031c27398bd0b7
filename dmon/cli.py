"""The `dmon` command: `dmon cluster`, `dmon parity`, `dmon info`.

Errors a user can cause (missing file, bad format, k larger than the graph, unknown or
missing backend) end with one line on stderr and exit status 2, never a stack trace.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from dmon import __version__


class UsageError(Exception):
    """An error to report in one line."""


def _progress(total: int) -> Any:
    """A text progress bar with the current losses, on stderr."""
    tty = sys.stderr.isatty()
    start = time.perf_counter()
    step = max(1, total // 20)

    def update(epoch: int, logs: dict[str, float]) -> None:
        if not tty and epoch % step and epoch != total:
            return
        done = int(30 * epoch / total)
        line = (
            f"epoch {epoch:>{len(str(total))}}/{total} [{'#' * done}{'.' * (30 - done)}] "
            f"loss {logs['loss']:+.4f} spectral {logs['spectral_loss']:+.4f} "
            f"collapse {logs['cluster_loss']:.4f} {time.perf_counter() - start:6.1f}s"
        )
        sys.stderr.write(("\r" if tty else "") + line + ("" if tty and epoch != total else "\n"))
        sys.stderr.flush()

    return update


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


# (command-line option, cluster() setting) pairs, checked by train.check_setting
_SETTINGS = (
    ("--clusters", "k", "clusters"),
    ("--epochs", "epochs", "epochs"),
    ("--lr", "learning_rate", "lr"),
    ("--dropout", "dropout", "dropout"),
    ("--collapse-regularization", "collapse_regularization", "collapse_regularization"),
    ("--hidden", "hidden", "hidden"),
    ("--seed", "seed", "seed"),
    ("--checkpoint-every", "checkpoint_every", "checkpoint_every"),
    ("--resolution", "resolution", "resolution"),
)


def cmd_cluster(args: argparse.Namespace) -> int:
    from dmon import checkpoint, data, engines, files, train

    for option, setting, attr in _SETTINGS:  # every argument before any work
        try:
            train.check_setting(setting, getattr(args, attr))
        except (TypeError, ValueError) as err:
            raise UsageError(option + str(err).removeprefix(setting)) from None
    try:  # the file first: its errors are the most basic
        features = None
        if args.features is not None:
            features = data.load_features(args.features)
        try:
            graph = data.load(
                args.graph,
                num_nodes=None if features is None else features.shape[0],
                symmetrize=not args.directed,
                drop_self_loops=not args.keep_self_loops,
                binarize_features=not args.raw_features,
            )
        except data.GraphFormatError as err:
            if features is None or "num_nodes" not in str(err):
                raise
            raise data.GraphFormatError(
                f"{err} (N from the {features.shape[0]} rows of {args.features})"
            ) from None
        if features is not None:
            if features.shape[0] != graph.num_nodes:
                raise data.GraphFormatError(
                    f"{args.features}: features must have shape (N, F) with N = "
                    f"{graph.num_nodes} nodes; got {features.shape}"
                )
            graph.features = features
            graph.notes = [f"features from {args.features}"]
    except data.GraphFormatError as err:
        raise UsageError(str(err)) from None
    except ImportError as err:
        raise UsageError(f"{args.graph}: needs {err.name}: pip install {err.name}") from None
    launch = engines.Launch(
        devices=args.devices,
        coordinator=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        timeout=args.timeout,
    )
    if args.devices is not None and "jax" not in sys.modules:
        # simulated host devices (CPU only; accelerators are what they are): before JAX starts
        flag = f"--xla_force_host_platform_device_count={args.devices}"
        if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    try:
        backend = train.select_backend(args.backend)
    except train.BackendError as err:
        raise UsageError(str(err)) from None
    distributed = (
        args.devices is not None
        or args.coordinator is not None
        or args.num_processes is not None
        or args.process_id is not None
        or (backend == "torch" and engines.torchrun_launched())
    )
    if distributed:
        try:
            engines.check_launch(backend, launch)
        except ValueError as err:
            # the Python API's argument names, as this command's options
            message = re.sub(
                r"\b(devices|timeout|coordinator|num_processes|process_id)\b",
                lambda m: "--" + m.group(1).replace("_", "-"),
                str(err),
            )
            raise UsageError(message) from None
    if not 2 <= args.clusters <= graph.num_nodes:
        raise UsageError(
            f"--clusters {args.clusters} must be between 2 and the number of nodes ({graph.num_nodes})"
        )
    try:  # where the results go, before training
        out = files.check_writable_folder(args.out or Path("runs") / graph.name)
    except ValueError as err:
        raise UsageError(f"--out {err}") from None
    ckpt_path = out / checkpoint.FILENAME
    if args.resume and not ckpt_path.is_file():
        raise UsageError(f"--resume: no checkpoint in {out}/ ({checkpoint.FILENAME})")
    rank = _rank(args) if distributed else 0
    if rank == 0:  # one header for the job, not one per process
        print(
            f"dmon {__version__}: {graph.name}: {graph.num_nodes} nodes, {graph.num_edges} edges, "
            f"{graph.features.shape[1]} features{' (' + ', '.join(graph.notes) + ')' if graph.notes else ''}; "
            f"k = {args.clusters}, backend {backend}, {args.epochs} epochs, seed {args.seed}",
            flush=True,
        )
    try:
        result = train.cluster(
            graph,
            args.clusters,
            backend=backend,
            launch=launch if distributed else None,
            epochs=args.epochs,
            learning_rate=args.lr,
            dropout=args.dropout,
            collapse_regularization=args.collapse_regularization,
            hidden=args.hidden,
            seed=args.seed,
            on_epoch=None if args.quiet or rank != 0 else _progress(args.epochs),
            checkpoint=ckpt_path if args.checkpoint_every or args.resume else None,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            resolution=args.resolution,
        )
    except (train.TrainingDiverged, checkpoint.CheckpointError, train.BackendError) as err:
        raise UsageError(str(err)) from None
    except Exception as err:
        if not distributed or os.environ.get("DMON_DEBUG"):
            raise
        # A collective failed: another process of the job has most likely ended. Exit at
        # once: JAX's exit handler would wait for the lost process at a shutdown barrier
        # and then abort with a C++ trace.
        print(
            f"dmon: error: process {rank}: sharded training stopped ({type(err).__name__}: "
            f"{_one_line(str(err))[:300]}); another process of the job has probably ended: "
            "see its output; resume from the last checkpoint with --resume",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(2)
    if rank != 0:  # process 0 reports and writes the outputs
        engines.finish()
        return 0
    m = result.metrics
    rows = [
        ("modularity", f"{m['modularity']:.4f}"),
        *(
            [(f"modularity at γ = {args.resolution:g}", f"{m['modularity_at_resolution']:.4f}")]
            if "modularity_at_resolution" in m
            else []
        ),
        ("conductance", f"{m['conductance']:.4f}"),
        ("average conductance", f"{m['average_conductance']:.4f}"),
        ("coverage", f"{m['coverage']:.4f}"),
    ]
    if "nmi" in m:
        rows += [
            ("NMI", f"{m['nmi']:.4f}"),
            (
                "pairwise F1",
                f"{m['f1']:.4f} (precision {m['precision']:.4f}, recall {m['recall']:.4f})",
            ),
        ]
    sizes = sorted((s for s in m["cluster_sizes"] if s), reverse=True)
    trained = result.epochs_completed - (result.resumed_from or 0)
    rows += [
        ("clusters used", f"{m['num_clusters_used']} of {args.clusters}"),
        ("cluster sizes", " ".join(map(str, sizes[:20])) + (" ..." if len(sizes) > 20 else "")),
        (
            "training time",
            f"{result.seconds:.1f} s ({1e3 * result.seconds / max(trained, 1):.2f} ms/epoch)",
        ),
    ]
    if result.resumed_from is not None:
        rows.append(("resumed", f"from epoch {result.resumed_from}"))
    print(_table(rows))
    written = _write_outputs(out, graph, result, args)
    print(f"outputs in {out}/: {' '.join(written)}")
    if distributed:
        engines.finish()
    if result.interrupted:
        print(
            f"dmon: interrupted after epoch {result.epochs_completed} of {args.epochs}; "
            f"outputs so far written; continue with --resume",
            file=sys.stderr,
        )
        return 130
    return 0


def _rank(args: argparse.Namespace) -> int:
    """This process's rank in a sharded run, known before any process group exists."""
    if args.process_id is not None:
        return int(args.process_id)
    return int(os.environ.get("RANK", "0"))


def _write_outputs(out: Path, graph: Any, result: Any, args: argparse.Namespace) -> list[str]:
    """Assignments, history and metrics first, each written atomically; the figures last,
    each of which may fail alone (a warning), never losing what came before."""
    from dmon.files import atomic_path, atomic_write

    with atomic_write(out / "assignments.csv", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["node", "cluster", "probability"])
        for i, (c, p) in enumerate(
            zip(result.assignments, result.probabilities.max(-1), strict=True)
        ):
            w.writerow([i, int(c), f"{p:.6f}"])
    with atomic_write(out / "history.csv", newline="") as fh:
        w = csv.writer(fh)
        keys = list(result.history)
        w.writerow(["epoch", *keys])
        for e in range(len(result.history[keys[0]])):
            w.writerow([e + 1, *(f"{result.history[k][e]:.6g}" for k in keys)])
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    payload = {
        "graph": {
            "name": graph.name,
            "nodes": graph.num_nodes,
            "edges": graph.num_edges,
            "features": int(graph.features.shape[1]),
        },
        "settings": {**settings, "backend": result.backend},
        "metrics": result.metrics,
        "seconds": result.seconds,
        "epochs_completed": result.epochs_completed,
        "interrupted": result.interrupted,
        "resumed_from": result.resumed_from,
        **({"distributed": result.distributed} if result.distributed else {}),
        "dmon_version": __version__,
    }
    with atomic_write(out / "metrics.json") as fh:
        fh.write(json.dumps(payload, indent=2, default=float))
    written = ["assignments.csv", "metrics.json", "history.csv"]
    if importlib.util.find_spec("matplotlib") is None:
        print(
            "dmon: warning: matplotlib is not installed: no figures (pip install 'dmon[cluster]')",
            file=sys.stderr,
        )
        return written
    from dmon import plots

    figures = (
        ("loss.png", lambda path: plots.loss_curves(result.history, path)),
        (
            "clusters.png",
            lambda path: plots.clusters(graph, result.assignments, result.probabilities, path),
        ),
    )
    for name, draw in figures:
        try:
            with atomic_path(out / name) as tmp:
                draw(tmp)
            written.append(name)
        except Exception as err:  # a figure is a nicety: its failure loses nothing else
            reason = " ".join(str(err).split())[:200]
            print(
                f"dmon: warning: {name} not drawn ({type(err).__name__}: {reason})", file=sys.stderr
            )
    return written


def cmd_parity(args: argparse.Namespace) -> int:
    if args.model is None:  # dmon's own pooling on every installed backend
        if args.inputs is not None:
            raise UsageError("--inputs needs a MODEL.keras to feed")
        from dmon.parity import report as own_report

        print(own_report(args.reps))
        return 0
    from dmon import testing
    from dmon.files import atomic_write

    if args.inputs is None:
        raise UsageError("dmon parity MODEL.keras needs --inputs INPUTS.npz")
    backends = (
        None
        if args.backends is None
        else [b.strip() for b in args.backends.split(",") if b.strip()]
    )
    try:
        report = testing.compare_backends(
            args.model,
            args.inputs,
            backends,
            rtol=args.rtol,
            atol=args.atol,
            grads=not args.no_grads,
            dtype=args.dtype,
            imports=args.imports,
            require_all=args.require_all,
        )
    except testing.ParityUsageError as err:
        raise UsageError(str(err)) from None
    print(report)
    if args.json is not None:
        try:
            with atomic_write(args.json) as fh:
                fh.write(json.dumps(report.to_dict(), indent=2))
        except OSError as err:
            raise UsageError(f"--json {args.json}: cannot write ({err.strerror or err})") from None
    return 0 if report.agree else 1


def cmd_info(args: argparse.Namespace) -> int:
    from dmon.ops import available_backends

    print(f"dmon {__version__} (Python {sys.version.split()[0]})")
    packages = {
        "tensorflow": ("tensorflow", "tensorflow-cpu"),
        "torch_geometric": ("torch_geometric", "torch-geometric"),
    }
    for name in (
        "numpy",
        "scipy",
        "torch",
        "tensorflow",
        "jax",
        "keras",
        "torch_geometric",
        "matplotlib",
        "networkx",
    ):
        print(f"  {name:<16} {_version(packages.get(name, (name,)))}")
    print(f"backends: {', '.join(available_backends())}")
    return 0


def _version(distributions: tuple[str, ...]) -> str:
    for dist in distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), like every other
    error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="dmon",
        description="DMoN graph pooling and clustering on PyTorch, TensorFlow, JAX and NumPy.",
    )
    p.add_argument("--version", action="version", version=f"dmon {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser(
        "cluster", help="train DMoN on a graph and write clusters, metrics and figures"
    )
    c.add_argument(
        "graph",
        nargs="?",
        default="sbm",
        help="a .npz (gnn-benchmark) file, an edge list (.csv/.tsv/.txt: src,dst[,weight]), or a built-in graph: sbm (default), karate",
    )
    c.add_argument(
        "--features",
        default=None,
        help="node features for an edge list: .npy or .csv/.tsv, one row per node",
    )
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
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default=None, help="output folder (default runs/<graph name>)")
    c.add_argument(
        "--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3, the paper's)"
    )
    c.add_argument("--dropout", type=float, default=0.5, help="dropout on the logits (default 0.5)")
    c.add_argument("--collapse-regularization", type=float, default=1.0)
    c.add_argument("--hidden", type=int, default=64, help="GCN units (default 64)")
    c.add_argument(
        "--resolution",
        type=float,
        default=1.0,
        help="modularity resolution γ of the spectral loss (default 1; 0.5 as google-research)",
    )
    c.add_argument("--directed", action="store_true", help="do not symmetrise the adjacency")
    c.add_argument("--keep-self-loops", action="store_true")
    c.add_argument("--raw-features", action="store_true", help="do not binarise features")
    c.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
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
    c.set_defaults(func=cmd_cluster)

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
        help="relative tolerance (default 1e-4; 1e-9 in float64)",
    )
    par.add_argument(
        "--atol",
        type=float,
        default=None,
        help="absolute tolerance (default 1e-5; 1e-12 in float64)",
    )
    par.add_argument("--dtype", choices=["float32", "float64"], default="float32")
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
    except UsageError as err:
        print(f"dmon: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dmon: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get("DMON_DEBUG"):
            raise
        print(f"dmon: error: {type(err).__name__}: {_one_line(str(err))}", file=sys.stderr)
        return 2


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
