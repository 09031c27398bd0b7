"""Parity testing for your own Keras 3 models: do they give the same outputs, losses and
gradients on JAX, TensorFlow and PyTorch, and if not, which layer is the first to
differ?

Keras fixes its backend when it is imported, so each backend runs the model in its own
subprocess (`python -m dmon.parity.worker`, with `KERAS_BACKEND` set); this parent
writes the model and inputs for them, waits, and compares every pair of backends
(`dmon.parity.report`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dmon.environment import TENSORFLOW_QUIET
from dmon.parity.report import BACKENDS, TOLERANCES, ParityReport, ParityUsageError, compare
from dmon.parity.verdict import reference_backend


def compare_backends(
    model_or_path: Any,
    inputs: Any,
    backends: Sequence[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    grads: bool = True,
    *,
    dtype: str = "float32",
    imports: Iterable[str] = (),
    require_all: bool = False,
    timeout: float = 600.0,
) -> ParityReport:
    """Run a Keras model on every backend, each in its own process, and compare.

    Args:
        model_or_path: a `.keras` file, or a Keras model (saved to a temporary `.keras`
            file for the subprocesses; its custom layers must be importable there, see
            `imports`).
        inputs: the model's inputs: a dict by input name, a list in input order, one
            array, or a `.npz` path (matched by name when its keys are the input names,
            else by order).
        backends: Keras backends to compare (default: every installed one of `jax`,
            `tensorflow`, `torch`).
        rtol: relative tolerance: `|a − b| ≤ atol + rtol·|b|` passes. Without `rtol` and
            `atol`, float32 results are judged against a float64 run of the same weights
            and inputs (`dmon.parity.verdict`): what float32 rounding
            explains passes, whatever its size. Given either (or with
            `dtype="float64"`), every element is judged by the tolerances (defaults from
            `TOLERANCES` for the dtype).
        atol: absolute tolerance (see `rtol`).
        grads: also compare the gradients of `Σ outputs + Σ losses` with respect to
            every trainable weight.
        dtype: `"float32"`, or `"float64"` to run every layer and input in float64.
        imports: modules each subprocess imports before loading (custom layers
            registered with `keras.saving.register_keras_serializable`). For a model
            object, the modules of its custom layer classes are added.
        require_all: a requested backend that is not installed is an error, not a skip.
        timeout: seconds allowed to each backend.

    Returns:
        A `ParityReport`.

    Raises:
        ParityUsageError: the comparison cannot run (see the class).
    """
    if dtype not in TOLERANCES:
        raise ParityUsageError(f"dtype must be float32 or float64; got {dtype!r}")
    judged = dtype == "float32" and rtol is None and atol is None
    rtol = TOLERANCES[dtype][0] if rtol is None else float(rtol)
    atol = TOLERANCES[dtype][1] if atol is None else float(atol)
    if not (rtol >= 0 and atol >= 0):
        raise ParityUsageError(f"rtol and atol must be >= 0; got {rtol}, {atol}")
    requested = list(BACKENDS if backends is None else backends)
    twice = sorted({b for b in requested if requested.count(b) > 1})
    if twice:
        raise ParityUsageError(f"backend {twice[0]!r} given twice; each backend runs once")
    unknown = [b for b in requested if b not in BACKENDS]
    if unknown:
        raise ParityUsageError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
    skipped = {}
    for b in requested:
        if importlib.util.find_spec(b) is None or importlib.util.find_spec("keras") is None:
            skipped[b] = (
                f"{'keras' if importlib.util.find_spec('keras') is None else b} is not installed"
            )
    if skipped and require_all:
        name, reason = next(iter(skipped.items()))
        raise ParityUsageError(f"backend {name}: {reason} (--require-all)")
    run = [b for b in requested if b not in skipped]
    if len(run) < 2:
        raise ParityUsageError(
            f"parity needs two installed backends; can run only {run or 'none'}"
            + (f" (skipped: {', '.join(skipped)})" if skipped else "")
        )
    imports = list(imports)
    if not isinstance(model_or_path, str | os.PathLike):  # its custom layers' modules too
        imports += [m for m in _layer_modules(model_or_path) if m not in imports]
    with tempfile.TemporaryDirectory(prefix="dmon-parity-") as tmp:
        work = Path(tmp)
        model_path = _model_file(model_or_path, work)
        inputs_path = _inputs_file(inputs, work)
        reference = reference_backend(run) if judged else None
        results, seconds = _run_all(
            run, model_path, inputs_path, work, dtype, grads, list(imports), timeout, reference
        )
    return compare(
        run, skipped, results, seconds, rtol=rtol, atol=atol, dtype=dtype, reference=judged
    )


def assert_backend_parity(*args: Any, **kwargs: Any) -> ParityReport:
    """`compare_backends(...)`, raising `AssertionError` with the table unless every
    output, loss and gradient agrees on every pair of backends. Returns the report."""
    report = compare_backends(*args, **kwargs)
    if not report.agree:
        raise AssertionError(f"Keras backends disagree:\n{report}")
    return report


def _model_file(model: Any, work: Path) -> Path:
    if isinstance(model, str | os.PathLike):
        path = _existing(model, "model")
        if path.suffix != ".keras":
            raise ParityUsageError(f"{path}: expected a .keras model file")
        _check_archive(path)
        return path
    if not hasattr(model, "save"):
        raise ParityUsageError(
            f"expected a Keras model or a .keras path; got {type(model).__name__}"
        )
    path = work / "model.keras"
    model.save(path)
    return path


def _existing(name: str | os.PathLike[str], what: str) -> Path:
    path = Path(name)
    if not path.is_file():
        raise ParityUsageError(f"{path}: no such {what} file")
    return path


def _check_archive(path: Path) -> None:
    """A `.keras` file is a zip archive: an empty, truncated or corrupted one is refused
    here (each member's CRC is checked), not loaded as far as it goes."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        size = path.stat().st_size
        raise ParityUsageError(
            f"{path}: not a readable .keras archive ({size} bytes; {err})"
        ) from None
    with archive:
        try:
            bad = archive.testzip()
        except Exception as err:  # a member that does not even decompress
            bad = f"? ({type(err).__name__})"
    if bad is not None:
        raise ParityUsageError(f"{path}: member {bad!r} is corrupt (its CRC check fails)")


def _layer_modules(model: Any) -> list[str]:
    """Modules defining the model's custom layers (not Keras', not dmon's, not a
    script's `__main__`), for the subprocesses to import before loading."""
    found: list[str] = []
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        module = type(layer).__module__
        if not module.startswith(("keras", "dmon", "__main__")) and module not in found:
            found.append(module)
        stack.extend(getattr(layer, "layers", []))
    return found


def _inputs_file(inputs: Any, work: Path) -> Path:
    if isinstance(inputs, str | os.PathLike):
        path = _existing(inputs, "inputs")
        try:
            with np.load(path, allow_pickle=False) as z:
                if not hasattr(z, "files"):
                    raise ValueError("a single .npy array, not an .npz archive")
                _check_arrays({k: z[k] for k in z.files}, f"{path}: ")
        except ParityUsageError:
            raise
        except Exception as err:
            message = str(err).split(". ")[0] if isinstance(err, ValueError) else str(err)
            raise ParityUsageError(
                f"{path}: not a readable .npz of numeric arrays ({message})"
            ) from None
        return path
    if isinstance(inputs, dict):
        arrays = {str(k): np.asarray(_numpy(v)) for k, v in inputs.items()}
        names_given = True
    else:
        seq = inputs if isinstance(inputs, list | tuple) else [inputs]
        arrays = {f"arg_{i}": np.asarray(_numpy(v)) for i, v in enumerate(seq)}
        names_given = False
    _check_arrays(arrays, "")
    path = work / ("inputs_by_name.npz" if names_given else "inputs_by_order.npz")
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _check_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """Inputs are real numbers or booleans; complex, object or text arrays are refused."""
    for name, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ParityUsageError(
                f"{where}input {name!r} has dtype {a.dtype}; expected float, int or bool"
            )


def _numpy(v: Any) -> Any:
    if hasattr(v, "detach"):
        return v.detach().cpu().numpy()
    if hasattr(v, "numpy"):
        return v.numpy()
    return v


def _run_all(
    backends: list[str],
    model: Path,
    inputs: Path,
    work: Path,
    dtype: str,
    grads: bool,
    imports: list[str],
    timeout: float,
    reference: str | None,
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Start one worker per backend (in parallel), wait for all, read their results."""
    env = {
        **os.environ,
        **TENSORFLOW_QUIET,  # the worker reports its last line of stderr
        # whatever this process can import (the user's custom layers), the workers can
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Any] = {}
    start: dict[str, float] = {}
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    t0 = time.perf_counter()
    try:
        for b in backends:
            cmd = [
                sys.executable,
                "-m",
                "dmon.parity.worker",
                str(model),
                str(inputs),
                str(work / f"result_{b}.npz"),
                dtype,
                "1" if grads else "0",
                json.dumps(imports),
                "1" if b == reference else "0",
            ]
            # stderr to a file: a chatty framework must not fill a pipe and block
            logs[b] = open(work / f"stderr_{b}.txt", "w+b")  # noqa: SIM115 - closed below
            start[b] = time.perf_counter()
            procs[b] = subprocess.Popen(
                cmd,
                env={
                    **env,
                    "KERAS_BACKEND": b,
                    **({"JAX_ENABLE_X64": "1"} if dtype == "float64" or b == reference else {}),
                },
                stdout=subprocess.DEVNULL,
                stderr=logs[b],
            )
        waiting = dict(procs)
        while waiting:
            for b, proc in list(waiting.items()):
                if proc.poll() is not None:
                    seconds[b] = time.perf_counter() - start[b]
                    del waiting[b]
                elif time.perf_counter() - start[b] > timeout:
                    proc.kill()
                    proc.wait()
                    errors[b] = f"did not finish within {timeout:g} s"
                    del waiting[b]
            time.sleep(0.05)
        seconds["total"] = time.perf_counter() - t0
        for b, proc in procs.items():
            if b not in errors and proc.returncode != 0:
                logs[b].seek(0)
                lines = [
                    ln for ln in logs[b].read().decode(errors="replace").splitlines() if ln.strip()
                ]
                errors[b] = lines[-1] if lines else f"exit status {proc.returncode}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for fh in logs.values():
            fh.close()
    if errors:
        b, message = next(iter(errors.items()))
        raise ParityUsageError(f"{b}: {message.removeprefix('dmon.parity: ')}")
    return {b: _read_result(work / f"result_{b}.npz") for b in backends}, seconds


def _read_result(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"][()]))
        arrays = {k: z[k] for k in z.files if k != "meta"}
    return {"meta": meta, "arrays": arrays}
