"""Parity across frameworks, behind `dmon parity`:

- your Keras 3 model on JAX, TensorFlow and PyTorch (`compare_backends`): outputs,
  losses and gradients compared between every pair of backends, each run in its own
  process, and the first layer that differs (`harness`, `worker`, `report`);
- dmon's own pooling on every installed backend against the NumPy float64 reference
  (`pool_table`).

    report = dmon.parity.compare_backends(model, {"x": x, "adj": adj})
    print(report)                     # the table
    dmon.parity.assert_backend_parity(model, [x, adj])  # AssertionError with the table

or, from the shell, `dmon parity MODEL.keras --inputs INPUTS.npz`.
"""

from dmon.parity.harness import assert_backend_parity, compare_backends
from dmon.parity.report import TOLERANCES, Comparison, ParityReport, ParityUsageError

__all__ = [
    "TOLERANCES",
    "Comparison",
    "ParityReport",
    "ParityUsageError",
    "assert_backend_parity",
    "compare_backends",
]
