"""`dmon parity` (dmon's pool, or your Keras model, on every installed backend) and
`dmon info`."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys

from dmon.cli.common import UsageError
from dmon.version import __version__


def cmd_parity(args: argparse.Namespace) -> int:
    if args.model is None:  # dmon's own pooling on every installed backend
        if args.inputs is not None:
            raise UsageError("--inputs needs a MODEL.keras to feed")
        from dmon.parity.pool_table import report as own_report

        print(own_report(args.reps))
        return 0
    from dmon import parity
    from dmon.files import atomic_write

    if args.inputs is None:
        raise UsageError("dmon parity MODEL.keras needs --inputs INPUTS.npz")
    backends = (
        None
        if args.backends is None
        else [b.strip() for b in args.backends.split(",") if b.strip()]
    )
    try:
        report = parity.compare_backends(
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
    except parity.ParityUsageError as err:
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
