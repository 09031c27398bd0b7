"""`dmon.gcn_normalize` on every backend against a loop over the formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_close, to_backend
from oracle import random_batch

import dmon.adjacency


def _brute(a: np.ndarray, self_loops: bool = True) -> np.ndarray:
    n = a.shape[0]
    a = a + (np.eye(n) if self_loops else 0)
    deg = [sum(a[i, j] for j in range(n)) for i in range(n)]
    inv = [1 / math.sqrt(d) if d > 0 else 0.0 for d in deg]
    return np.array([[inv[i] * a[i, j] * inv[j] for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("self_loops", [True, False])
def test_gcn_normalize_matches_formula(backend: str, self_loops: bool) -> None:
    _, a, _, _ = random_batch(2, b=2, n=9)
    a[1, 3, :] = a[1, :, 3] = 0.0  # an isolated node (zero row without self-loops)
    got = dmon.adjacency.gcn_normalize(to_backend(backend, a), add_self_loops=self_loops)
    assert_close(got, np.stack([_brute(g, self_loops) for g in a]), "float64")
    one = dmon.adjacency.gcn_normalize(to_backend(backend, a[0]), add_self_loops=self_loops)
    assert_close(one, _brute(a[0], self_loops), "float64")


def test_gcn_normalize_rejects_bad_adjacency() -> None:
    with pytest.raises(ValueError, match=r"dmon.gcn_normalize: `adj` must be square"):
        dmon.adjacency.gcn_normalize(np.zeros((3, 4)))
