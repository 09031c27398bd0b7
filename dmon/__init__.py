"""DMoN (Deep Modularity Networks) pooling, written once for NumPy, PyTorch, TensorFlow
and JAX.

`import dmon` imports no deep-learning framework: the backend serving a call is picked
from the type of its input arrays (see `dmon.ops`). The public API is `__all__`: the
functions and classes below, and the submodules in `SUBMODULES`, each loaded on first
use as `dmon.<name>` (`dmon.data`, `dmon.training`, `dmon.parity`, ...).
"""

from __future__ import annotations

import importlib
from typing import Any

from dmon.adjacency import gcn_normalize, gcn_normalize_sparse, spmm
from dmon.objective import DMoNOutput
from dmon.ops import available_backends, get_backend
from dmon.pooling import cluster_loss, orthogonality_loss, pool, spectral_loss
from dmon.sparse_graph import SparseGraph
from dmon.value_checking import set_value_checks, value_checks, value_checks_enabled
from dmon.version import __version__

SUBMODULES = (
    "adjacency",
    "checkpoint",
    "data",
    "distributed",
    "files",
    "layers",
    "memory",
    "metrics",
    "node_sums",
    "objective",
    "ops",
    "parity",
    "partition",
    "plots",
    "pooling",
    "training",
)
"""The public submodules. `dmon.layers.torch` and `dmon.layers.keras` import their
framework; `dmon.plots` imports matplotlib; the others import none."""


def __getattr__(name: str) -> Any:
    # The clustering job (SciPy, Keras) and the submodules load on first use, not with
    # `import dmon`.
    if name == "cluster":
        from dmon.training import cluster

        return cluster
    if name in SUBMODULES:
        return importlib.import_module(f"dmon.{name}")
    raise AttributeError(f"module 'dmon' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "DMoNOutput",
    "SparseGraph",
    "__version__",
    "available_backends",
    "cluster",
    "cluster_loss",
    "gcn_normalize",
    "gcn_normalize_sparse",
    "get_backend",
    "orthogonality_loss",
    "pool",
    "set_value_checks",
    "spectral_loss",
    "spmm",
    "value_checks",
    "value_checks_enabled",
    *SUBMODULES,
]
