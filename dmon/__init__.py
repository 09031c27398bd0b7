"""DMoN (Deep Modularity Networks) pooling, written once for NumPy, PyTorch, TensorFlow
and JAX.

`import dmon` imports no deep-learning framework: the backend serving a call is picked
from the type of its input arrays (see `dmon.ops`).
"""

from dmon.graph import gcn_normalize, gcn_normalize_sparse, spmm
from dmon.ops import available_backends, get_backend
from dmon.pooling import DMoNOutput, cluster_loss, orthogonality_loss, pool, spectral_loss
from dmon.sparse import SparseGraph

__version__ = "0.1.0"

__all__ = [
    "DMoNOutput",
    "SparseGraph",
    "__version__",
    "available_backends",
    "cluster_loss",
    "gcn_normalize",
    "gcn_normalize_sparse",
    "get_backend",
    "orthogonality_loss",
    "pool",
    "spectral_loss",
    "spmm",
]
