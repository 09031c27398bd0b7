"""Shared fixtures; the suite's support modules (`support/`) on the path. Environment
settings must precede any framework import."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dmon.environment import quiet_tensorflow

quiet_tensorflow()  # before any framework import; oneDNN off: closer float parity
if os.environ.get("DMON_TEST_DEVICE"):  # a GPU run (docs/development.md, "On a GPU")
    # Keras' own layers (Dense, the feature transforms) take JAX's default precision,
    # TF32 on an NVIDIA GPU; the suite's float32 tolerance is for float32 arithmetic.
    # dmon's own products ask for full precision themselves (tests/gpu/test_gpu.py).
    os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")

sys.path.insert(0, str(Path(__file__).parent / "support"))  # helpers, oracle, workers

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from helpers import BACKENDS, require  # noqa: E402

# The datasets live in shared/ beside the repository (never copied into it).
DATASETS = Path(
    os.environ.get("DMON_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each installed backend; the others are skipped."""
    require(request.param)
    return str(request.param)


@pytest.fixture(params=[b for b in BACKENDS if b != "numpy"])
def framework(request: pytest.FixtureRequest) -> str:
    """Each installed autodiff framework."""
    require(request.param)
    return str(request.param)


def load_npz_graph(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Symmetrised, self-loop-free dense adjacency and labels of a gnn-benchmark graph."""
    path = DATASETS / f"{name}.npz"
    if not path.exists():
        pytest.skip(f"{path} not found (shared datasets are not beside this checkout)")
    sp = pytest.importorskip("scipy.sparse")
    with np.load(path) as z:
        a = sp.csr_matrix(
            (z["adj_data"], z["adj_indices"], z["adj_indptr"]), shape=tuple(z["adj_shape"])
        )
        labels = z["labels"]
    a = ((a + a.T) > 0).astype(np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    return a.toarray(), labels
