"""`dmon cluster`: load a graph, check every option and the output folder, train, print
the metrics and write the run's files."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from pathlib import Path

from dmon.checks import check_argument
from dmon.cli.common import UsageError, one_line
from dmon.cli.graphs import describe, fit_folder, load_source
from dmon.training.rendezvous import RendezvousError
from dmon.training.shard_files import ShardFolder
from dmon.version import __version__


def _earlier_run(folder: Path) -> list[str]:
    """The files of an earlier run in `folder`: its results or its checkpoint."""
    from dmon import checkpoint

    return [n for n in ("metrics.json", checkpoint.FILENAME) if (folder / n).is_file()]


def _run_folder(args: argparse.Namespace, name: str, distributed: bool) -> Path:
    """`--out`, else `runs/<graph name>`, else (it holds an earlier run, and this run
    neither resumes nor overwrites it) the first free `runs/<graph name>-2`, `-3`, ...:
    running the same command twice keeps both runs. A sharded job's processes must agree
    without talking, so they take `runs/<graph name>` as given."""
    if args.out is not None:
        return Path(args.out)
    base = Path("runs") / _safe_name(name)
    if distributed or args.resume or args.overwrite or not _earlier_run(base):
        return base
    n = 2
    while _earlier_run(base.with_name(f"{base.name}-{n}")):
        n += 1
    return base.with_name(f"{base.name}-{n}")


def _safe_name(name: str) -> str:
    """A graph's name as a folder name: letters, digits, `.`, `-`, `_`; the rest `_`
    (`Zachary's Karate Club` → `Zachary_s_Karate_Club`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "graph"


def _stop_job(rank: int, why: str) -> None:
    """End this process of a sharded job at once, with one line that says what to do.
    `os._exit`: JAX's exit handler would wait for a lost process at a shutdown barrier and
    then abort with a C++ trace."""
    print(
        f"dmon: error: process {rank}: sharded training stopped ({why}); another process "
        "of the job has probably ended: see its output; resume from the last checkpoint "
        "with --resume",
        file=sys.stderr,
        flush=True,
    )
    sys.stdout.flush()
    os._exit(2)


def _end_on_sigterm(rank: int) -> None:
    """torchrun sends SIGTERM to a job's other processes when one of them ends, often
    before their next collective notices; say so instead of vanishing without a word."""
    signal.signal(signal.SIGTERM, lambda signum, frame: _stop_job(rank, "SIGTERM"))


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


# (command-line option, cluster() setting, attribute): each checked by dmon.checks
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


_LAUNCH = ("devices", "coordinator", "num_processes", "process_id", "timeout", "partitioner",
           "exchange")  # fmt: skip
"""The options that are `dmon.training.Launch`'s fields, by the same names."""


def cmd_cluster(args: argparse.Namespace) -> int:
    from dmon import checkpoint, files, training
    from dmon.training.engine import engine_class, finish

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be an int >= 1; got {args.threads}")
    for option, setting, attr in _SETTINGS:  # every argument before any work
        try:
            check_argument("", setting, getattr(args, attr))
        except (TypeError, ValueError) as err:
            raise UsageError(option + str(err).removeprefix(setting)) from None
    graph = load_source(args)
    try:
        backend = training.backend.select_backend(args.backend)
    except training.BackendError as err:
        raise UsageError(str(err)) from None
    if isinstance(graph, ShardFolder):
        fit_folder(args, graph, backend)
    launch = training.Launch(**{name: getattr(args, name) for name in _LAUNCH})
    if args.threads is not None:
        training.backend.limit_threads(backend, args.threads)
    kind = engine_class(backend)
    kind.configure(launch)
    distributed = (
        args.devices is not None
        or args.coordinator is not None
        or args.num_processes is not None
        or args.process_id is not None
        or kind.launched()
    )
    if not distributed and (args.partitioner, args.exchange) != ("auto", "auto"):
        raise UsageError(
            "--partitioner and --exchange split a sharded run (--devices, --coordinator, or "
            "under torchrun); this run is on one device"
        )
    if distributed:
        from dmon.training.launch import check_shards

        try:
            kind.check_launch(launch)
            check_shards(launch, graph.num_nodes)
        except ValueError as err:
            # the Python API's argument names, as this command's options
            message = re.sub(
                r"\b(devices|timeout|coordinator|num_processes|process_id|partitioner|exchange)\b",
                lambda m: "--" + m.group(1).replace("_", "-"),
                str(err),
            )
            raise UsageError(message) from None
    if not 2 <= args.clusters <= graph.num_nodes:
        raise UsageError(
            f"--clusters {args.clusters} must be between 2 and the number of nodes ({graph.num_nodes})"
        )
    try:  # where the results go, before training
        out = files.check_writable_folder(_run_folder(args, graph.name, distributed))
    except ValueError as err:
        raise UsageError(f"--out {err}") from None
    ckpt_path = out / checkpoint.FILENAME
    earlier = _earlier_run(out)
    if earlier and not (args.resume or args.overwrite):  # a run's results are never lost
        raise UsageError(
            f"--out {out}/ holds an earlier run ({', '.join(earlier)}); continue it with "
            "--resume, replace it with --overwrite, or choose another --out"
        )
    if args.resume and not ckpt_path.is_file():
        raise UsageError(f"--resume: no checkpoint in {out}/ ({checkpoint.FILENAME})")
    rank = _rank(args) if distributed else 0
    if distributed:
        _end_on_sigterm(rank)
    if rank == 0:  # one header for the job, not one per process
        print(
            f"dmon {__version__}: {describe(graph)}; "
            f"k = {args.clusters}, backend {backend}, {args.epochs} epochs, seed {args.seed}",
            flush=True,
        )
    try:
        result = training.cluster(
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
            progress=not args.quiet and rank == 0,
            checkpoint=ckpt_path,  # every --checkpoint-every epochs; 0: at the end
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            resolution=args.resolution,
        )
    except (
        training.TrainingDiverged,
        checkpoint.CheckpointError,
        training.BackendError,
        RendezvousError,
    ) as err:
        raise UsageError(str(err)) from None
    except Exception as err:
        if not distributed or os.environ.get("DMON_DEBUG"):
            raise
        # A collective failed: another process of the job has most likely ended.
        _stop_job(rank, f"{type(err).__name__}: {one_line(str(err))[:300]}")
    if rank != 0:  # process 0 reports and writes the outputs
        finish()
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
    speed = (
        f"first epoch {result.first_epoch_seconds:.1f} s, then {result.ms_per_epoch:.2f} ms/epoch"
        if trained > 1
        else f"{result.ms_per_epoch:.2f} ms/epoch"
    )
    rows += [
        ("clusters used", f"{m['num_clusters_used']} of {args.clusters}"),
        ("cluster sizes", " ".join(map(str, sizes[:20])) + (" ..." if len(sizes) > 20 else "")),
        ("training time", f"{result.seconds:.1f} s: {speed}"),
    ]
    if result.resumed_from is not None:
        rows.append(("resumed", f"from epoch {result.resumed_from}"))
    print(_table(rows))
    options = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    written = training.write_outputs(out, graph, result, options)
    print(f"outputs in {out}/: {' '.join(written)}")
    if distributed:
        finish()
    if result.interrupted:
        by = "stopped by SIGTERM" if result.stopped_by == "SIGTERM" else "interrupted"
        print(
            f"dmon: {by} after epoch {result.epochs_completed} of {args.epochs}; "
            f"outputs so far written; continue with --resume",
            file=sys.stderr,
        )
        return 143 if result.stopped_by == "SIGTERM" else 130
    return 0


def _rank(args: argparse.Namespace) -> int:
    """This process's rank in a sharded run, known before any process group exists."""
    if args.process_id is not None:
        return int(args.process_id)
    return int(os.environ.get("RANK", "0"))
