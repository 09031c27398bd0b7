"""What a parity comparison found: every output, loss and gradient of a model compared
between two backends, the first layer that differs, and the table."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

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
                    comparisons.append(Comparison(kind, name, (a, b), *diff(x, y, rtol, atol)))
            # localise: the first layer (topological order) whose output differs
            for k, layer in enumerate(ref["layers"]):
                if first is not None and first[0] <= k:
                    break
                diffs = [
                    diff(ra["arrays"][f"layer_{k}_{m}"], rb["arrays"][f"layer_{k}_{m}"], rtol, atol)
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
