"""dmon on a GPU: CUDA torch (dense, sparse, and PyG's own layer on the same card) and
JAX's GPU backend, against the loop oracle and float64 references computed on the CPU.

Skipped where there is no GPU (CI has none). The rest of the suite runs its torch tests
on the GPU too with `DMON_TEST_DEVICE=cuda` (docs/development.md, "On a GPU").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import TOL, require, to_numpy
from oracle import brute_force, random_batch

import dmon

CUDA = "cuda"  # a name, so that the tests can be dry-run on the CPU (see below)
OUTPUTS = ("s", "x", "adj", "spectral_loss", "ortho_loss", "cluster_loss")


def _cuda() -> Any:
    torch = require("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch


def _jax_gpu() -> tuple[Any, Any]:
    jax = require("jax")
    try:
        return jax, jax.devices("gpu")[0]
    except RuntimeError:
        pytest.skip("JAX has no GPU backend")


def _graph(n: int, directed: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A weighted random graph on `n` nodes (~8 edges a node, no self-loops): its dense
    adjacency, `edge_index` in shuffled order (the CSR build must sort it) and weights."""
    rng = np.random.default_rng(seed)
    a = (rng.random((n, n)) < 8 / n) * rng.uniform(0.5, 2.0, (n, n))
    np.fill_diagonal(a, 0.0)
    if not directed:
        a = np.triu(a, 1)
        a = a + a.T
    ei = np.stack(np.nonzero(a))
    ei = ei[:, rng.permutation(ei.shape[1])]
    return a, ei, a[ei[0], ei[1]]


def _assert_oracle(got: Any, x, a, logits, mask, dtype: str) -> None:
    want = brute_force(x, a, logits, mask)
    for name, w in zip(OUTPUTS, want, strict=True):
        np.testing.assert_allclose(to_numpy(getattr(got, name)), w, **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_cuda_dense_pool_equals_oracle(dtype: str) -> None:
    torch = _cuda()
    x, a, logits, mask = random_batch(0, b=3, n=40, f=6, c=5, masked=True)
    args = [torch.tensor(v, dtype=getattr(torch, dtype), device=CUDA) for v in (x, a, logits)]
    for symmetric in (False, True):
        out = dmon.pool(*args, torch.tensor(mask, device=CUDA), symmetric=symmetric)
        assert out.s.device.type == CUDA and out.spectral_loss.device.type == CUDA
        _assert_oracle(out, x, a, logits, mask, dtype)


def _objective(out: Any) -> Any:
    """A scalar of all six outputs, each weighted differently."""
    return (
        (out.s**2).sum()
        + (out.x * 0.3).sum()
        + (out.adj**2).sum()
        + out.spectral_loss
        + 2 * out.ortho_loss
        + 3 * out.cluster_loss
    )


@pytest.mark.parametrize("index", ["int64", "int32"])
@pytest.mark.parametrize("directed", [False, True], ids=["symmetric", "general"])
def test_torch_cuda_sparse_pool_and_gradients_equal_cpu_autodiff(
    directed: bool, index: str
) -> None:
    """The CSR path on the GPU (cuSPARSE products, the custom node-sum backward, the
    transposed product of the general rule) against float64 autodiff of the dense formula
    on the CPU, at a size where the products are not trivially small. int32 indices are
    Keras' `edge_index`: with an int64 row pointer they read out of bounds on CUDA."""
    torch = _cuda()
    n, f, c = 600, 16, 8
    a, ei, w = _graph(n, directed)
    rng = np.random.default_rng(1)
    x, logits = rng.normal(size=(n, f)), 2 * rng.normal(size=(n, c))

    def grads(device: str, sparse: bool) -> list[np.ndarray]:
        leaves = [
            torch.tensor(v, dtype=torch.float64, device=device, requires_grad=True)
            for v in (logits, x, w if sparse else a)
        ]
        if sparse:
            adj = dmon.SparseGraph(
                torch.tensor(ei, device=device, dtype=getattr(torch, index)),
                leaves[2],
                symmetric=not directed,
            )
        else:
            adj = leaves[2]
        out = dmon.pool(leaves[1], adj, leaves[0])
        if sparse:
            want = brute_force(x[None], a[None], logits[None])
            np.testing.assert_allclose(to_numpy(out.adj), want[2], **TOL["float64"])
            assert out.adj.device.type == device
        return [to_numpy(g) for g in torch.autograd.grad(_objective(out), leaves)]

    got, want = grads(CUDA, sparse=True), grads("cpu", sparse=False)
    np.testing.assert_allclose(got[0], want[0], **TOL["float64"])
    np.testing.assert_allclose(got[1], want[1], **TOL["float64"])
    np.testing.assert_allclose(got[2], want[2][ei[0], ei[1]], **TOL["float64"])
    assert np.abs(got[2]).max() > 1e-6  # the edge weights' gradient is not trivially 0


def test_torch_cuda_layer_equals_pyg_on_the_same_card() -> None:
    torch = _cuda()
    pyg_nn = pytest.importorskip("torch_geometric.nn")
    from dmon.layers.torch import DMoNPooling

    torch.manual_seed(0)
    theirs = pyg_nn.DMoNPooling([6, 16], 5).to(CUDA)
    ours = DMoNPooling([6, 16], 5).to(CUDA)
    ours.load_state_dict(theirs.state_dict())
    x, a, _, _ = random_batch(2, b=4, n=64, f=6, c=5)
    xt = torch.tensor(x, dtype=torch.float32, device=CUDA, requires_grad=True)
    at = torch.tensor(a, dtype=torch.float32, device=CUDA)
    results = []
    for module in (ours, theirs):
        module.zero_grad()
        xt.grad = None
        out = module(xt, at)
        sum(o.sum() for o in out).backward()  # type: ignore[union-attr]
        grads = [xt.grad.clone(), *(p.grad.clone() for p in module.parameters())]
        results.append((out, grads))
    (got, got_grads), (want, want_grads) = results
    assert got[0].device.type == CUDA
    for name, g, w in zip(got._fields, got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5, msg=name)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_gpu_dense_pool_under_jit_equals_oracle(dtype: str) -> None:
    """float32 on the GPU meets the suite's float32 tolerance even where JAX's default
    runs float32 products in TF32 (a 10-bit mantissa: errors near 1e-3 here), because
    dmon's products ask for full precision themselves."""
    jax, gpu = _jax_gpu()
    x, a, logits, mask = random_batch(0, b=3, n=40, f=6, c=5, masked=True)
    args = [jax.device_put(v.astype(dtype), gpu) for v in (x, a, logits)]
    with jax.default_matmul_precision("tensorfloat32"):
        out = jax.jit(dmon.pool)(*args, jax.device_put(mask, gpu))
    assert out.s.devices() == {gpu}
    _assert_oracle(out, x, a, logits, mask, dtype)


@pytest.mark.parametrize("directed", [False, True], ids=["symmetric", "general"])
def test_jax_gpu_sparse_gradients_equal_cpu_autodiff(directed: bool) -> None:
    jax, gpu = _jax_gpu()
    cpu = jax.devices("cpu")[0]
    n, f, c = 600, 16, 8
    a, ei, w = _graph(n, directed)
    rng = np.random.default_rng(1)
    x, logits = rng.normal(size=(n, f)), 2 * rng.normal(size=(n, c))

    def sparse(lg, xx, ww, ei):
        return _objective(dmon.pool(xx, dmon.SparseGraph(ei, ww, symmetric=not directed), lg))

    def dense(lg, xx, aa):
        return _objective(dmon.pool(xx, aa, lg))

    on_gpu = [jax.device_put(v, gpu) for v in (logits, x, w, ei)]
    got = jax.jit(jax.grad(sparse, argnums=(0, 1, 2)))(*on_gpu)
    assert got[0].devices() == {gpu}
    want = jax.jit(jax.grad(dense, argnums=(0, 1, 2)))(
        *(jax.device_put(v, cpu) for v in (logits, x, a))
    )
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want[0]), **TOL["float64"])
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), **TOL["float64"])
    np.testing.assert_allclose(
        np.asarray(got[2]), np.asarray(want[2])[ei[0], ei[1]], **TOL["float64"]
    )


def test_torch_cuda_pool_reads_nothing_by_default() -> None:
    """On a GPU value checks are off by default (docs/reliability.md): no call waits
    for the device, dense, symmetric, masked or sparse."""
    torch = _cuda()
    from dmon.backends.torch.counting import count_ops

    a_np, ei, w = _graph(64, directed=False)
    a = torch.tensor(a_np, device=CUDA, dtype=torch.float32)
    x, logits = torch.randn(64, 8, device=CUDA), torch.randn(64, 4, device=CUDA)
    mask = torch.rand(1, 64, device=CUDA) > 0.2
    graph = dmon.SparseGraph(
        torch.tensor(ei, device=CUDA), torch.tensor(w, device=CUDA, dtype=torch.float32)
    )
    calls = [
        lambda: dmon.pool(x, a, logits),
        lambda: dmon.pool(x, a, logits, symmetric=True),
        lambda: dmon.pool(x, a, logits, mask),
        lambda: dmon.pool(x, graph, logits),
    ]
    for call in calls:
        call()
        with count_ops() as tally:
            call()
        assert tally.host_reads == 0
