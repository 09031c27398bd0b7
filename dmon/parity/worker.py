"""The parity harness's worker: one Keras backend, in its own process
(`python -m dmon.parity.worker MODEL INPUTS OUT DTYPE GRADS IMPORTS REFERENCE`, with
`KERAS_BACKEND` set by the parent, `dmon.parity.harness`).

It loads the `.keras` file in safe mode, hashes the loaded weights, runs the model on the
inputs, takes the gradients of one scalar (the sum of every output and every `add_loss`
loss) with respect to every trainable weight, records every layer's output, and writes
it all to one `.npz`. With REFERENCE it does it all again in float64 on the same weights
and inputs (keys prefixed `ref_`), the reference `dmon.parity.verdict` judges by. Float32 products run in float32 (not TF32) on every framework.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dmon.checkpoint import arrays_sha256
from dmon.ops import backend_module
from dmon.parity.report import ParityUsageError

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
"""Terminal colour codes, which some frameworks put in their error messages."""


def _worker(
    model_path: str,
    inputs_path: str,
    out_path: str,
    dtype: str,
    grads: bool,
    imports: list[str],
    reference: bool,
) -> None:
    for module in imports:
        try:
            importlib.import_module(module)
        except Exception as err:
            raise ParityUsageError(f"--import {module}: {type(err).__name__}: {err}") from None
    import keras

    import dmon.layers.keras  # noqa: F401 - registers dmon's layers for deserialization

    backend_module(keras.backend.backend(), "hooks").full_float32_products()

    try:
        model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as err:
        missing = re.search(r"Could not locate (?:class|function) '([^']+)'", str(err))
        if missing:
            raise ParityUsageError(
                f"{model_path}: cannot load in safe mode: class {missing.group(1)!r} is not "
                "registered; --import the module that defines it "
                "(with @keras.saving.register_keras_serializable)"
            ) from None
        raise ParityUsageError(
            f"{model_path}: cannot load in safe mode ({type(err).__name__}: {' '.join(str(err).split())[:300]})"
        ) from None
    weights_hash = arrays_sha256(
        *(np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights)
    )
    if dtype == "float64":
        model = _as_float64(keras, model)
    result: dict[str, np.ndarray] = {}
    counts = _run(keras, model, inputs_path, dtype, grads, result, "")
    meta: dict[str, Any] = {}
    if reference:  # the same weights and inputs, widened exactly, run in float64
        try:
            _run(keras, _as_float64(keras, model), inputs_path, dtype, grads, result, "ref_", 64)
            # and in float32 with every non-zero input and weight one unit off: how far
            # float32 carries its inputs' own rounding (dmon.parity.verdict)
            rng = np.random.default_rng(0)
            model.set_weights([_nudge(w, rng) for w in model.get_weights()])
            _run(keras, model, inputs_path, dtype, grads, result, "nudged_", rng=rng)
        except Exception as err:
            meta["reference_error"] = " ".join(str(err).split())[:300]
            for key in [k for k in result if k.startswith(("ref_", "nudged_"))]:
                del result[key]
    trainable = list(model.trainable_variables)
    owners = _weight_owners(model)
    meta |= {
        "outputs": _output_names(model, counts["outputs"]),
        "num_losses": counts["losses"],
        "loss_names": counts["loss_names"],
        "weights": [v.path for v in trainable],
        "weight_layers": [
            owners.get(id(v), {"name": v.path.split("/")[0], "class": "?"}) for v in trainable
        ],
        "grads": grads,
        "layers": counts["layers"],
        "weights_sha256": weights_hash,
        "backend": keras.backend.backend(),
    }
    result["meta"] = np.asarray(json.dumps(meta))
    np.savez(out_path, **result)  # type: ignore[arg-type]


def _run(
    keras: Any,
    model: Any,
    inputs_path: str,
    dtype: str,
    grads: bool,
    result: dict[str, np.ndarray],
    prefix: str,
    bits: int = 0,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Outputs, losses, layer outputs and gradients of one run into `result`, keys
    prefixed with `prefix`; floating inputs in `float<bits>` if given, else `dtype`, and
    nudged by `rng` if given."""
    arrays = _match_inputs(keras, model, inputs_path, f"float{bits}" if bits else dtype)
    if rng is not None:
        arrays = [_nudge(a, rng) for a in arrays]
    outputs = _flatten(model(arrays, training=False))
    losses = list(model.losses)
    loss_names = _loss_names(model, len(losses))
    for j, v in enumerate(outputs):
        result[f"{prefix}output_{j}"] = _to_numpy(keras, v)
    for j, v in enumerate(losses):
        result[f"{prefix}loss_{j}"] = _to_numpy(keras, v)
    layers = _layer_outputs(keras, model, arrays, result, prefix)
    if grads:
        trainable = list(model.trainable_variables)
        for j, g in enumerate(_gradients(keras, model, arrays, trainable)):
            result[f"{prefix}grad_{j}"] = g
    return {
        "outputs": len(outputs),
        "losses": len(losses),
        "loss_names": loss_names,
        "layers": layers,
    }


def _nudge(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every non-zero float entry one unit in the last place up or down (zeros stay: a
    graph keeps its edges)."""
    if not np.issubdtype(a.dtype, np.floating):
        return a
    away = np.where(rng.random(a.shape) < 0.5, np.inf, -np.inf).astype(a.dtype)
    return np.where(a != 0, np.nextafter(a, away), a).astype(a.dtype)


def _loss_names(model: Any, count: int) -> list[str]:
    """`<layer>/<loss>` for each `add_loss` loss, where the layers' own counts add up
    (a layer may name its losses in a `loss_names` attribute)."""
    names = []
    for layer in getattr(model, "layers", []):
        own = len(layer.losses)
        given = list(getattr(layer, "loss_names", ()))
        names += [
            f"{layer.name}/{given[i] if len(given) == own else f'loss {i}'}" for i in range(own)
        ]
    return names if len(names) == count else [f"loss {j}" for j in range(count)]


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
    batch = {name: a.shape[0] for name, t, a in zip(names, model.inputs, ordered, strict=True)
             if a.ndim and t.shape and t.shape[0] is None}  # fmt: skip
    if len(set(batch.values())) > 1:
        sizes = ", ".join(f"{n} {b}" for n, b in batch.items())
        raise ParityUsageError(f"the inputs' batch sizes differ ({sizes}); give one batch")
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
    keras: Any, model: Any, arrays: list[Any], result: dict[str, np.ndarray], prefix: str
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
            result[f"{prefix}layer_{k}_{m}"] = _to_numpy(keras, next(it))
    return layers


def _weight_owners(model: Any) -> dict[int, dict[str, str]]:
    owners: dict[int, dict[str, str]] = {}
    for layer in getattr(model, "layers", []):
        for w in layer.weights:
            owners.setdefault(id(w), {"name": layer.name, "class": type(layer).__name__})
    return owners


def _gradients(keras: Any, model: Any, arrays: list[Any], trainable: list[Any]) -> list[np.ndarray]:
    """`∂(Σ outputs + Σ losses)/∂w` for every trainable weight, by the backend's autodiff."""

    def total(outputs: Any, losses: list[Any]) -> Any:
        terms = [keras.ops.sum(o) for o in _flatten(outputs)] + list(losses)
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out

    return backend_module(keras.backend.backend(), "hooks").keras_gradients(
        model, arrays, trainable, total
    )


def _main(argv: list[str]) -> int:
    model, inputs, out, dtype, grads, imports, reference = argv
    try:
        _worker(model, inputs, out, dtype, grads == "1", json.loads(imports), reference == "1")
    except ParityUsageError as err:
        print(f"dmon.parity: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except Exception as err:
        text = ANSI.sub("", " ".join(str(err).split()))[:500]
        print(f"dmon.parity: {type(err).__name__}: {text}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(_main(sys.argv[1:]))
