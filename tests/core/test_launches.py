"""dmon's torch paths are lean and compilable (issue 23), counted exactly on the CPU with
`dmon.backends.torch.counting`: ops within the targets against PyTorch Geometric's
`DMoNPooling` and hand-written torch (the baselines of `benchmarks/bench_launches.py`),
no host read with value checks off, reads once per `SparseGraph` with them on, and
`torch.compile(dmon.pool, fullgraph=True)` as the first dmon call of a process, equal to
eager.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import installed, subprocess_env

import dmon

pytestmark = pytest.mark.skipif(not installed("torch"), reason="needs torch")
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    import torch

    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_launches
    finally:
        sys.path.remove(str(BENCHMARKS))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield bench_launches
    torch.set_num_threads(threads)


@pytest.mark.skipif(not installed("torch_geometric"), reason="needs torch_geometric")
def test_dense_ops_within_a_quarter_of_pyg_and_no_read_with_checks_off(bench) -> None:
    import torch

    for row in bench.dense_rows(torch.device("cpu"), compiled=False):
        dmon_, pyg = row["dmon"], row["base"]
        assert dmon_["ops"] <= 1.25 * pyg["ops"], row
        assert dmon_["reads_off"] == 0, row
        assert dmon_["reads_on"] <= 2, row  # one joined read per check


def test_sparse_ops_within_half_again_of_handwritten_and_no_read(bench) -> None:
    import torch

    rows = bench.sparse_rows(torch.device("cpu"), compiled=False)
    for row in rows:
        assert row["dmon"]["ops"] <= 1.5 * row["base"]["ops"], row
        # an unweighted graph: ids checked at its first call, nothing read after
        assert row["dmon"]["reads_on"] == 0 and row["dmon"]["reads_off"] == 0, row


EPOCH = f"""
import json, sys, torch
sys.path.insert(0, {str(BENCHMARKS)!r})
import bench_launches
torch.set_num_threads(1)
print(json.dumps(bench_launches.epoch_rows(torch.device("cpu"))))
"""


@pytest.mark.skipif(not installed("keras"), reason="dmon.cluster needs keras")
def test_a_training_epoch_within_half_again_of_a_foreach_adam_step() -> None:
    # a process of its own: Keras runs on torch there (this one's Keras may be on JAX)
    out = subprocess.run(
        [sys.executable, "-c", EPOCH],
        env=subprocess_env(KERAS_BACKEND="torch"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = json.loads(out.stdout.splitlines()[-1])
    assert row["dmon"]["ops"] <= 1.5 * row["base"]["ops"], row
    assert row["dmon"]["reads_on"] <= 3, row  # in a 20-epoch loop


def test_a_sparse_graph_reads_its_weights_once_until_they_change() -> None:
    import torch
    from dmon.backends.torch.counting import count_ops

    ei = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    w = torch.ones(6)
    batch = torch.tensor([0, 0, 0, 0])
    graph = dmon.SparseGraph(ei, w, batch=batch)
    x, logits = torch.ones(4, 2), torch.zeros(4, 3)
    with dmon.value_checks(True):
        reads = []
        for change in (False, False, True, False):
            if change:
                w.mul_(2.0)  # in place: the version counter moves
            with count_ops() as tally:
                dmon.pool(x, graph, logits)
            reads.append(tally.host_reads)
        assert reads[1] == 0 and reads[3] == 0, reads  # remembered
        assert reads[0] > 0 and reads[2] == 1, reads  # ids, batch, weights; then weights
        w[2] = -1.0
        with pytest.raises(ValueError, match="negative weight"):
            dmon.pool(x, graph, logits)


def test_a_boolean_mask_is_never_read() -> None:
    import torch
    from dmon.backends.torch.counting import count_ops

    a = torch.rand(2, 6, 6)
    a = a + a.transpose(1, 2)
    mask = torch.rand(2, 6) > 0.3
    with dmon.value_checks(True), count_ops() as tally:
        dmon.pool(torch.ones(2, 6, 3), a, torch.zeros(2, 6, 4), mask)
    assert tally.host_reads == 1  # the volumes' non-negativity, nothing of the mask


def test_foreach_adam_is_keras_adam() -> None:
    """The torch engine's multi-tensor Adam against the float64 formula of Keras' Adam
    (`m += (g - m)(1 - β₁)`, `v += (g² - v)(1 - β₂)`, `p -= α m / (√v + ε)`)."""
    import torch
    from dmon.backends.torch.engine import foreach_adam

    from dmon.training.optimizer import BETA_1, BETA_2, EPSILON, adam_alpha

    rng = np.random.default_rng(0)
    shapes = [(5, 3), (3,), (7,)]
    p64 = [rng.normal(size=s) for s in shapes]
    m64, v64 = [np.zeros(s) for s in shapes], [np.zeros(s) for s in shapes]
    p = [torch.tensor(a, dtype=torch.float32) for a in p64]
    m, v = [torch.zeros(s) for s in shapes], [torch.zeros(s) for s in shapes]
    for step in range(1, 6):
        grads64 = [rng.normal(size=s) for s in shapes]
        alpha = adam_alpha(1e-2, step)
        foreach_adam(
            torch, p, [torch.tensor(g, dtype=torch.float32) for g in grads64], m, v,
            torch.tensor(alpha),
        )  # fmt: skip
        for i, g in enumerate(grads64):
            m64[i] += (g - m64[i]) * (1 - BETA_1)
            v64[i] += (g * g - v64[i]) * (1 - BETA_2)
            p64[i] -= float(alpha) * m64[i] / (np.sqrt(v64[i]) + EPSILON)
    for got, want in zip(p, p64, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


COMPILE = """
import torch, dmon
torch.manual_seed(0)
B, N, F, C = 2, 24, 5, 3
x = torch.randn(B, N, F)
a = torch.rand(B, N, N)
a = (a + a.transpose(1, 2)) / 2
a.requires_grad_(True)
mask = torch.rand(B, N) > 0.2
ei = torch.randint(0, N, (2, 40))
graph = dmon.SparseGraph(torch.cat([ei, ei.flip(0)], 1))
cases = {
    "dense": lambda x, l: dmon.pool(x, a, l),
    "symmetric": lambda x, l: dmon.pool(x, a, l, symmetric=True),
    "masked": lambda x, l: dmon.pool(x, a, l, mask),
    "sparse": lambda x, l: dmon.pool(x[0], graph, l[0]),
}
for name, fn in cases.items():  # the first dmon call of the process is compiled
    logits = torch.randn(B, N, C, requires_grad=True)
    compiled = torch.compile(fn, fullgraph=True)
    outs = [f(x, logits) for f in (compiled, fn)]
    grads = []
    for out in outs:
        total = out[1].sum() + out[2].sum() + out[3] + out[4] + out[5]
        grads.append(torch.autograd.grad(total, (logits, a), allow_unused=True))
    for got, want in zip(outs[0], outs[1]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for got, want in zip(*grads):
        if want is not None:  # the sparse case has no dense `a`
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    print(name, "ok")
"""


def test_torch_compile_fullgraph_as_the_first_call() -> None:
    out = subprocess.run(
        [sys.executable, "-c", COMPILE],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["dense", "ok", "symmetric", "ok", "masked", "ok", "sparse", "ok"]
