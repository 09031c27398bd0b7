"""Parity testing for your own Keras 3 models: do they give the same outputs, losses and
gradients on JAX, TensorFlow and PyTorch, and if not, which layer is the first to
differ?

Keras fixes its backend when it is imported, so each backend runs the model in its own
subprocess (`python -m dmon.testing`, with `KERAS_BACKEND` set): it loads the `.keras`
file in safe mode, hashes the loaded weights, runs the model on the given inputs, takes
the gradients of one scalar (the sum of every output and every `add_loss` loss) with
respect to every trainable weight, and records every layer's output. The parent process
compares every pair of backends.

    report = dmon.testing.compare_backends(model, {"x": x, "adj": adj})
    print(report)                     # the table
    dmon.testing.assert_backend_parity(model, [x, adj])  # AssertionError with the table

or, from the shell, `dmon parity MODEL.keras --inputs INPUTS.npz`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dmon.checkpoint import arrays_sha256

BACKENDS = ("jax", "tensorflow", "torch")
TOLERANCES = {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-12)}
"""Default `(rtol, atol)` per dtype: `|a − b| ≤ atol + rtol·|b|` elementwise. float32
allows for the different summation orders of three BLAS/XLA stacks through a model;
float64 is tight enough to catch any real difference."""


class ParityUsageError(ValueError):
    """The comparison cannot run: a missing or unreadable model or inputs file, an unknown
    backend, inputs that do not fit the model, fewer than two backends."""


@dataclasses.dataclass
class Comparison:
    """One quantity compared between two backends."""

    kind: str
    """`"output"`, `"loss"` or `"gradient"`."""
    name: str
    backends: tuple[str, str]
    max_abs_diff: float
    max_rel_diff: float
    passed: bool


@dataclasses.dataclass
class ParityReport:
    """What `compare_backends` found. `str(report)` is the table."""

    backends: list[str]
    """The backends that ran."""
    skipped: dict[str, str]
    """Backends not run, with the reason (e.g. not installed)."""
    comparisons: list[Comparison]
    first_divergence: dict[str, Any] | None
    """`{"layer", "class", "backends", "max_abs_diff"}` of the first layer, in topological
    order, whose output differs beyond tolerance; `None` when everything agrees (or the
    model is not a functional one, whose layers can be read one by one)."""
    weights_sha256: dict[str, str]
    """Hash of the loaded weights per backend: identical when loading is faithful."""
    seconds: dict[str, float]
    """Wall time per backend subprocess (start-up included), and `"total"`."""
    rtol: float
    atol: float
    dtype: str

    @property
    def agree(self) -> bool:
        return all(c.passed for c in self.comparisons) and self.weights_identical

    @property
    def weights_identical(self) -> bool:
        return len(set(self.weights_sha256.values())) <= 1

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.comparisons), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (`dmon parity --json`)."""
        return {
            "backends": self.backends,
            "skipped": self.skipped,
            "agree": self.agree,
            "max_abs_diff": self.max_abs_diff,
            "first_divergence": self.first_divergence,
            "weights_identical": self.weights_identical,
            "weights_sha256": self.weights_sha256,
            "dtype": self.dtype,
            "rtol": self.rtol,
            "atol": self.atol,
            "seconds": self.seconds,
            "comparisons": [
                {**dataclasses.asdict(c), "backends": list(c.backends)} for c in self.comparisons
            ],
        }

    def __str__(self) -> str:
        rows = [("backends", "kind", "name", "max abs", "max rel", "")]
        for c in self.comparisons:
            rows.append(
                (
                    f"{c.backends[0]} vs {c.backends[1]}",
                    c.kind,
                    c.name,
                    f"{c.max_abs_diff:.1e}",
                    f"{c.max_rel_diff:.1e}",
                    "ok" if c.passed else "DIFFERS",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("")
        for name, reason in self.skipped.items():
            lines.append(f"skipped {name}: {reason}")
        lines.append(
            "weights: identical after loading"
            if self.weights_identical
            else f"weights: DIFFER after loading {self.weights_sha256}"
        )
        if self.first_divergence:
            d = self.first_divergence
            lines.append(
                f"first divergence: layer {d['layer']!r} ({d['class']}), {d['backends'][0]} vs "
                f"{d['backends'][1]}, max abs diff {d['max_abs_diff']:.1e}"
            )
        times = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        verdict = "agree" if self.agree else "DIFFER"
        lines.append(
            f"{' / '.join(self.backends)} {verdict} ({self.dtype}, rtol {self.rtol:g}, atol {self.atol:g}); {times}"
        )
        return "\n".join(lines)


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
        rtol: relative tolerance: `|a − b| ≤ atol + rtol·|b|` passes (default from
            `TOLERANCES` for the dtype).
        atol: absolute tolerance (default from `TOLERANCES`).
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
    rtol = TOLERANCES[dtype][0] if rtol is None else float(rtol)
    atol = TOLERANCES[dtype][1] if atol is None else float(atol)
    if not (rtol >= 0 and atol >= 0):
        raise ParityUsageError(f"rtol and atol must be >= 0; got {rtol}, {atol}")
    requested = list(BACKENDS if backends is None else backends)
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
        results, seconds = _run_all(
            run, model_path, inputs_path, work, dtype, grads, list(imports), timeout
        )
    return _compare(run, skipped, results, seconds, rtol, atol, dtype)


def assert_backend_parity(*args: Any, **kwargs: Any) -> ParityReport:
    """`compare_backends(...)`, raising `AssertionError` with the table unless every
    output, loss and gradient agrees on every pair of backends. Returns the report."""
    report = compare_backends(*args, **kwargs)
    if not report.agree:
        raise AssertionError(f"Keras backends disagree:\n{report}")
    return report


# --- the parent: files, subprocesses, comparison --------------------------------------


def _model_file(model: Any, work: Path) -> Path:
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if not path.is_file():
            raise ParityUsageError(f"{path}: no such model file")
        if path.suffix != ".keras":
            raise ParityUsageError(f"{path}: expected a .keras model file")
        return path
    if not hasattr(model, "save"):
        raise ParityUsageError(
            f"expected a Keras model or a .keras path; got {type(model).__name__}"
        )
    path = work / "model.keras"
    model.save(path)
    return path


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
        path = Path(inputs)
        if not path.is_file():
            raise ParityUsageError(f"{path}: no such inputs file")
        try:
            with np.load(path, allow_pickle=False) as z:
                z.files  # noqa: B018 - opening proves it is an .npz
        except Exception as err:
            raise ParityUsageError(f"{path}: not a readable .npz of arrays ({err})") from None
        return path
    if isinstance(inputs, dict):
        arrays = {str(k): np.asarray(_numpy(v)) for k, v in inputs.items()}
        names_given = True
    else:
        seq = inputs if isinstance(inputs, list | tuple) else [inputs]
        arrays = {f"arg_{i}": np.asarray(_numpy(v)) for i, v in enumerate(seq)}
        names_given = False
    path = work / ("inputs_by_name.npz" if names_given else "inputs_by_order.npz")
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


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
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Start one worker per backend (in parallel), wait for all, read their results."""
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_ENABLE_ONEDNN_OPTS": "0",
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
                "dmon.testing",
                str(model),
                str(inputs),
                str(work / f"result_{b}.npz"),
                dtype,
                "1" if grads else "0",
                json.dumps(imports),
            ]
            # stderr to a file: a chatty framework must not fill a pipe and block
            logs[b] = open(work / f"stderr_{b}.txt", "w+b")  # noqa: SIM115 - closed below
            start[b] = time.perf_counter()
            procs[b] = subprocess.Popen(
                cmd,
                env={
                    **env,
                    "KERAS_BACKEND": b,
                    **({"JAX_ENABLE_X64": "1"} if dtype == "float64" else {}),
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
        raise ParityUsageError(f"{b}: {message.removeprefix('dmon.testing: ')}")
    return {b: _read_result(work / f"result_{b}.npz") for b in backends}, seconds


def _read_result(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"][()]))
        arrays = {k: z[k] for k in z.files if k != "meta"}
    return {"meta": meta, "arrays": arrays}


def _diff(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> tuple[float, float, bool]:
    if a.shape != b.shape:
        return float("inf"), float("inf"), False
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if not a.size:
        return 0.0, 0.0, True
    both_nan = np.isnan(a64) & np.isnan(b64)
    err = np.where(both_nan, 0.0, np.abs(a64 - b64))
    err = np.where(np.isnan(err), np.inf, err)  # NaN on one side only
    rel = err / np.maximum(np.abs(b64), np.finfo(np.float64).tiny)
    ok = bool(np.all(err <= atol + rtol * np.abs(np.nan_to_num(b64))))
    return float(err.max()), float(np.where(err == 0, 0.0, rel).max()), ok


def _compare(
    run: list[str],
    skipped: dict[str, str],
    results: dict[str, dict[str, Any]],
    seconds: dict[str, float],
    rtol: float,
    atol: float,
    dtype: str,
) -> ParityReport:
    comparisons: list[Comparison] = []
    first: tuple[int, dict[str, Any]] | None = None
    ref = results[run[0]]["meta"]
    for i, a in enumerate(run):
        for b in run[i + 1 :]:
            ra, rb = results[a], results[b]
            for kind, key, names in (
                ("output", "output", ref["outputs"]),
                ("loss", "loss", [f"loss {j}" for j in range(ref["num_losses"])]),
                ("gradient", "grad", ref["weights"] if ref["grads"] else []),
            ):
                for j, name in enumerate(names):
                    x, y = ra["arrays"].get(f"{key}_{j}"), rb["arrays"].get(f"{key}_{j}")
                    if x is None or y is None:
                        comparisons.append(
                            Comparison(kind, name, (a, b), float("inf"), float("inf"), False)
                        )
                        continue
                    comparisons.append(Comparison(kind, name, (a, b), *_diff(x, y, rtol, atol)))
            # localise: the first layer (topological order) whose output differs
            for k, layer in enumerate(ref["layers"]):
                if first is not None and first[0] <= k:
                    break
                diffs = [
                    _diff(
                        ra["arrays"][f"layer_{k}_{m}"], rb["arrays"][f"layer_{k}_{m}"], rtol, atol
                    )
                    for m in range(layer["outputs"])
                    if f"layer_{k}_{m}" in ra["arrays"] and f"layer_{k}_{m}" in rb["arrays"]
                ]
                if any(not ok for _, _, ok in diffs):
                    worst = max(d for d, _, _ in diffs)
                    first = (
                        k,
                        {
                            "layer": layer["name"],
                            "class": layer["class"],
                            "backends": [a, b],
                            "max_abs_diff": worst,
                        },
                    )
                    break
    hashes = {b: results[b]["meta"]["weights_sha256"] for b in run}
    divergence = first[1] if first is not None else None
    if divergence is None and not all(c.passed for c in comparisons):
        divergence = _divergence_from_gradients(comparisons, ref)
    return ParityReport(run, skipped, comparisons, divergence, hashes, seconds, rtol, atol, dtype)


def _divergence_from_gradients(
    comparisons: list[Comparison], ref: dict[str, Any]
) -> dict[str, Any] | None:
    """When every layer output agrees but a gradient does not: the layer that owns the
    first differing weight (by the weight's path)."""
    owners = {w: o for w, o in zip(ref["weights"], ref["weight_layers"], strict=True)}
    for c in comparisons:
        if not c.passed and c.kind == "gradient":
            layer = owners.get(c.name, {"name": c.name.split("/")[0], "class": "?"})
            return {
                "layer": layer["name"],
                "class": layer["class"],
                "backends": list(c.backends),
                "max_abs_diff": c.max_abs_diff,
            }
    return None


# --- the worker: one backend, in its own process ---------------------------------------


def _full_float32_products(backend: str) -> None:
    """Run this worker's float32 matrix products and convolutions in float32, not TF32.

    On NVIDIA GPUs from Ampere on, JAX and TensorFlow compute a float32 product in TF32 by
    default (a 10-bit mantissa) and torch does its cuDNN convolutions so: a parity check
    would report those defaults (errors near 1e-3) as a divergence between the models. On
    a CPU nothing changes. The worker is its own process, so the settings stay in it.
    """
    if backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "torch":
        import torch

        if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
            torch.backends.cuda.matmul.fp32_precision = "ieee"
            torch.backends.cudnn.fp32_precision = "ieee"
        else:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False


def _worker(
    model_path: str, inputs_path: str, out_path: str, dtype: str, grads: bool, imports: list[str]
) -> None:
    for module in imports:
        try:
            importlib.import_module(module)
        except Exception as err:
            raise ParityUsageError(f"--import {module}: {type(err).__name__}: {err}") from None
    import keras

    import dmon.layers.keras  # noqa: F401 - registers dmon's layers for deserialization

    _full_float32_products(keras.backend.backend())

    try:
        model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as err:
        raise ParityUsageError(
            f"{model_path}: cannot load in safe mode ({type(err).__name__}: {' '.join(str(err).split())[:300]})"
        ) from None
    weights_hash = arrays_sha256(
        *(np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights)
    )
    if dtype == "float64":
        model = _as_float64(keras, model)
    arrays = _match_inputs(keras, model, inputs_path, dtype)
    outputs = _flatten(model(arrays, training=False))
    losses = list(model.losses)
    result: dict[str, np.ndarray] = {}
    for j, v in enumerate(outputs):
        result[f"output_{j}"] = _to_numpy(keras, v)
    for j, v in enumerate(losses):
        result[f"loss_{j}"] = _to_numpy(keras, v)
    layers = _layer_outputs(keras, model, arrays, result)
    trainable = list(model.trainable_variables)
    if grads:
        for j, g in enumerate(_gradients(keras, model, arrays, trainable)):
            result[f"grad_{j}"] = g
    owners = _weight_owners(model)
    meta = {
        "outputs": _output_names(model, len(outputs)),
        "num_losses": len(losses),
        "weights": [v.path for v in trainable],
        "weight_layers": [
            owners.get(id(v), {"name": v.path.split("/")[0], "class": "?"}) for v in trainable
        ],
        "grads": grads,
        "layers": layers,
        "weights_sha256": weights_hash,
        "backend": keras.backend.backend(),
    }
    result["meta"] = np.asarray(json.dumps(meta))
    np.savez(out_path, **result)  # type: ignore[arg-type]


def _as_float64(keras: Any, model: Any) -> Any:
    """The same model with every layer's dtype policy float64 and the weights cast."""

    def widen(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and isinstance(node.get("config"), dict):
                return {**node, "config": {**node["config"], "name": "float64"}}
            return {
                k: (
                    "float64"
                    if k == "dtype" and v in ("float32", "float16", "bfloat16")
                    else widen(v)
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [widen(v) for v in node]
        return node

    try:
        wide = type(model).from_config(widen(model.get_config()))
    except Exception as err:
        raise ParityUsageError(
            f"--dtype float64 needs a model that can be rebuilt from its config ({type(err).__name__}: {err})"
        ) from None
    wide.set_weights(
        [
            w.astype(np.float64) if np.issubdtype(w.dtype, np.floating) else w
            for w in model.get_weights()
        ]
    )
    return wide


def _match_inputs(keras: Any, model: Any, inputs_path: str, dtype: str) -> list[Any]:
    names = [t.name for t in model.inputs]
    with np.load(inputs_path, allow_pickle=False) as z:
        given = {k: z[k] for k in z.files}
    if set(given) == set(names):
        ordered = [given[n] for n in names]
    elif not set(given) & set(names) or Path(inputs_path).name == "inputs_by_order.npz":
        if len(given) != len(names):
            raise ParityUsageError(
                f"the model takes {len(names)} inputs ({', '.join(names)}); got {len(given)} arrays ({', '.join(given)})"
            )
        ordered = list(given.values())
    else:
        missing = sorted(set(names) - set(given))
        raise ParityUsageError(
            f"inputs by name must name every model input: missing {missing}, got {sorted(given)}"
        )
    out = []
    for name, t, a in zip(names, model.inputs, ordered, strict=True):
        want = tuple(t.shape)
        if len(want) != a.ndim or any(
            w is not None and w != g for w, g in zip(want, a.shape, strict=False)
        ):
            raise ParityUsageError(f"input {name!r} must have shape {want}; got {a.shape}")
        if np.issubdtype(a.dtype, np.floating):
            a = a.astype(dtype)
        out.append(a)
    return out


def _flatten(v: Any) -> list[Any]:
    if isinstance(v, dict):
        return [x for k in sorted(v) for x in _flatten(v[k])]
    if isinstance(v, list | tuple):
        return [x for item in v for x in _flatten(item)]
    return [v]


def _to_numpy(keras: Any, v: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(v))


def _output_names(model: Any, count: int) -> list[str]:
    names = []
    for i, t in enumerate(_flatten(getattr(model, "outputs", None) or [])):
        history = getattr(t, "_keras_history", None)
        layer = history.operation.name if history is not None else "?"
        names.append(f"output {i} ({layer})")
    return names if len(names) == count else [f"output {i}" for i in range(count)]


def _layer_outputs(
    keras: Any, model: Any, arrays: list[Any], result: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Every layer's output, in the model's topological order, for localising a
    divergence (functional models; layers called more than once are left out)."""
    layers, tensors = [], []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            out = _flatten(layer.output)
        except (AttributeError, ValueError):  # not functional, or used more than once
            continue
        layers.append({"name": layer.name, "class": type(layer).__name__, "outputs": len(out)})
        tensors.append(out)
    if not layers:
        return []
    try:
        probe = keras.Model(model.inputs, [t for out in tensors for t in out])
        values = _flatten(probe(arrays, training=False))
    except Exception:
        return []
    it = iter(values)
    for k, layer in enumerate(layers):
        for m in range(layer["outputs"]):
            result[f"layer_{k}_{m}"] = _to_numpy(keras, next(it))
    return layers


def _weight_owners(model: Any) -> dict[int, dict[str, str]]:
    owners: dict[int, dict[str, str]] = {}
    for layer in getattr(model, "layers", []):
        for w in layer.weights:
            owners.setdefault(id(w), {"name": layer.name, "class": type(layer).__name__})
    return owners


def _gradients(keras: Any, model: Any, arrays: list[Any], trainable: list[Any]) -> list[np.ndarray]:
    """`∂(Σ outputs + Σ losses)/∂w` for every trainable weight, by the backend's autodiff."""
    backend = keras.backend.backend()

    def total(outputs: Any, losses: list[Any]) -> Any:
        terms = [keras.ops.sum(o) for o in _flatten(outputs)] + list(losses)
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out

    if backend == "jax":
        import jax

        tv = [v.value for v in trainable]
        ntv = [v.value for v in model.non_trainable_variables]

        def scalar(tv: list[Any]) -> Any:
            outputs, _, losses = model.stateless_call(
                tv, ntv, arrays, training=False, return_losses=True
            )
            return total(outputs, losses)

        return [np.asarray(g) for g in jax.grad(scalar)(tv)]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = total(model(arrays, training=False), model.losses)
        gs = tape.gradient(value, [v.value for v in trainable])
        return [
            np.zeros(v.shape, v.dtype) if g is None else np.asarray(g)
            for v, g in zip(trainable, gs, strict=True)
        ]
    if backend == "torch":
        import torch

        leaves = [v.value for v in trainable]
        value = total(model(arrays, training=False), model.losses)
        gs = torch.autograd.grad(value, leaves, allow_unused=True)
        return [
            np.zeros(tuple(v.shape), keras.backend.standardize_dtype(v.dtype))
            if g is None
            else g.detach().cpu().numpy()
            for v, g in zip(trainable, gs, strict=True)
        ]
    raise ParityUsageError(f"no gradients for backend {backend!r}")


def _main(argv: list[str]) -> int:
    model, inputs, out, dtype, grads, imports = argv
    try:
        _worker(model, inputs, out, dtype, grads == "1", json.loads(imports))
    except ParityUsageError as err:
        print(f"dmon.testing: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except Exception as err:
        print(
            f"dmon.testing: {type(err).__name__}: {' '.join(str(err).split())[:500]}",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(_main(sys.argv[1:]))
