"""DMoN (Deep Modularity Networks) pooling, written once for NumPy, PyTorch, TensorFlow
and JAX.

`import dmon` imports no deep-learning framework: the backend serving a call is picked
from the type of its input arrays (see `dmon.ops`).
"""

from dmon.graph import gcn_normalize, gcn_normalize_sparse, spmm
from dmon.ops import available_backends, get_backend
from dmon.pooling import DMoNOutput, cluster_loss, orthogonality_loss, pool, spectral_loss
from dmon.sparse_graph import SparseGraph

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The clustering job (SciPy, Keras) loads on first use, not with `import dmon`.
    if name == "cluster":
        from dmon.train import cluster

        return cluster
    if name in ("data", "metrics", "train"):
        import importlib

        return importlib.import_module(f"dmon.{name}")
    raise AttributeError(f"module 'dmon' has no attribute {name!r}")


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
    "spectral_loss",
    "spmm",
]
