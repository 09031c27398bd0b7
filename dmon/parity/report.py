"""What a parity comparison found: every output, loss and gradient of a model compared
between two backends, the first layer that differs, and the table."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from dmon.parity.verdict import MARGIN, agree, measure, reference_backend

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
    noise: float | None = None
    """What float32 rounding explains, norm-wise and relative to the float64 reference:
    the quietest backend's `‖q32 − q64‖ / ‖q64‖` (`dmon.parity.verdict`); None when
    judged by tolerances."""
    distance: float | None = None
    """The farther of the two backends' `‖q32 − q64‖ / ‖q64‖`."""


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
    method: str = "tolerance"
    """`"reference"`: float32 judged against a float64 run (`dmon.parity.verdict`);
    `"tolerance"`: elementwise `rtol`/`atol`."""
    reference: str | None = None
    """The backend that ran the float64 reference."""
    reference_error: str | None = None
    """Why a float32 comparison fell back to tolerances (the float64 run failed)."""

    @property
    def agree(self) -> bool:
        return all(c.passed for c in self.comparisons) and self.weights_identical

    @property
    def weights_identical(self) -> bool:
        return len(set(self.weights_sha256.values())) <= 1

    @property
    def float32_noise(self) -> float | None:
        """The largest float32 noise of any quantity (relative, norm-wise)."""
        values = [c.noise for c in self.comparisons if c.noise is not None and c.noise < np.inf]
        return max(values) if values else None

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
            "method": self.method,
            "reference": self.reference,
            "reference_error": self.reference_error,
            "float32_noise": self.float32_noise,
            "seconds": self.seconds,
            "comparisons": [
                {**dataclasses.asdict(c), "backends": list(c.backends)} for c in self.comparisons
            ],
        }

    def __str__(self) -> str:
        judged = self.method == "reference"
        head = ("backends", "kind", "name", "max abs")
        rows = [head + (("f32 noise", "off f64") if judged else ("max rel",)) + ("",)]
        for c in self.comparisons:
            numbers = (_fmt(c.noise), _fmt(c.distance)) if judged else (f"{c.max_rel_diff:.1e}",)
            rows.append(
                (
                    f"{c.backends[0]} vs {c.backends[1]}",
                    c.kind,
                    c.name,
                    f"{c.max_abs_diff:.1e}",
                    *numbers,
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
        if judged:
            lines.append(
                f"float32 noise: up to {_fmt(self.float32_noise)} (norm-wise, relative to a "
                f"float64 run on {self.reference}); a quantity differs where a backend is "
                f"{MARGIN:g}x farther from it than the quietest"
            )
        elif self.reference_error:
            lines.append(f"no float64 reference ({self.reference_error}): judged by tolerances")
        times = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        outcome = "agree" if self.agree else "DIFFER"
        how = (
            "float32 against float64"
            if judged
            else f"{self.dtype}, rtol {self.rtol:g}, atol {self.atol:g}"
        )
        lines.append(f"{' / '.join(self.backends)} {outcome} ({how}); {times}")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def diff(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> tuple[float, float, bool]:
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


def compare(
    run: list[str],
    skipped: dict[str, str],
    results: dict[str, dict[str, Any]],
    seconds: dict[str, float],
    *,
    rtol: float,
    atol: float,
    dtype: str,
    reference: bool = False,
) -> ParityReport:
    """Every output, loss and gradient compared pair by pair, and the first layer whose
    output differs. With `reference`, float32 results are judged against each worker's
    float64 run (`dmon.parity.verdict`) where every worker made one."""
    ref = results[run[0]]["meta"]
    source = reference_backend(run) if reference else None
    reference_error = results[source]["meta"].get("reference_error") if source else None
    judged = source is not None and reference_error is None
    quantities = [
        (kind, name, f"{key}_{j}")
        for kind, key, names in (
            ("output", "output", ref["outputs"]),
            ("loss", "loss", _loss_names(ref)),
            ("gradient", "grad", ref["weights"] if ref["grads"] else []),
        )
        for j, name in enumerate(names)
    ]
    judge = _Judge(run, results, rtol, atol, source if judged else None)
    comparisons = [c for kind, name, key in quantities for c in judge.pairs(kind, name, key)]
    first: dict[str, Any] | None = None
    for k, layer in enumerate(ref["layers"]):  # the first layer (topological order) to differ
        keys = [f"layer_{k}_{m}" for m in range(layer["outputs"])]
        bad = [c for key in keys for c in judge.pairs("layer", layer["name"], key, missing_ok=True)]
        bad = [c for c in bad if not c.passed]
        if bad:
            worst = max(bad, key=lambda c: c.max_abs_diff)
            first = {
                "layer": layer["name"],
                "class": layer["class"],
                "backends": list(bad[0].backends),
                "max_abs_diff": worst.max_abs_diff,
            }
            break
    if first is None and not all(c.passed for c in comparisons):
        first = _divergence_from_gradients(comparisons, ref)
    hashes = {b: results[b]["meta"]["weights_sha256"] for b in run}
    return ParityReport(
        run, skipped, comparisons, first, hashes, seconds, rtol, atol, dtype,
        method="reference" if judged else "tolerance", reference=source if judged else None,
        reference_error=reference_error,
    )  # fmt: skip


def _loss_names(meta: dict[str, Any]) -> list[str]:
    names = meta.get("loss_names") or []
    count = meta["num_losses"]
    return list(names) if len(names) == count else [f"loss {j}" for j in range(count)]


class _Judge:
    """Comparisons of one quantity between every pair of backends: against the float64
    run of backend `source`, or by tolerances where there is none."""

    def __init__(
        self,
        run: list[str],
        results: dict[str, dict[str, Any]],
        rtol: float,
        atol: float,
        source: str | None,
    ) -> None:
        self.run, self.results, self.rtol, self.atol, self.source = (
            run, results, rtol, atol, source,
        )  # fmt: skip

    def pairs(self, kind: str, name: str, key: str, missing_ok: bool = False) -> list[Comparison]:
        q32 = {b: self.results[b]["arrays"].get(key) for b in self.run}
        if missing_ok and any(v is None for v in q32.values()):
            return []
        noise = None
        if self.source is not None and all(v is not None for v in q32.values()):
            arrays = self.results[self.source]["arrays"]
            q64, moved = arrays.get(f"ref_{key}"), arrays.get(f"nudged_{key}")
            nudged = None if moved is None else (self.source, moved)
            noise = None if q64 is None else measure(q32, q64, nudged)
        out = []
        for i, a in enumerate(self.run):
            for b in self.run[i + 1 :]:
                x, y = q32[a], q32[b]
                if x is None or y is None:
                    out.append(Comparison(kind, name, (a, b), float("inf"), float("inf"), False))
                    continue
                abs_diff, rel_diff, ok = diff(x, y, self.rtol, self.atol)
                if self.source is None:
                    out.append(Comparison(kind, name, (a, b), abs_diff, rel_diff, ok))
                    continue
                passed, explained, farther = agree(a, b, noise)
                out.append(
                    Comparison(kind, name, (a, b), abs_diff, rel_diff, passed, explained, farther)
                )
        return out


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
