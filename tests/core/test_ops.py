"""The array ops that do more than call the framework: `matmul_sum` (in place on torch)
and torch's large CPU products (allocated with huge pages), against float64 NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import TOL, compiled, gradient, require, to_backend, to_numpy

import dmon
from dmon.ops import backend_by_name

_rng = np.random.default_rng(11)


def _pairs(b: int, n: int, ks: tuple[int, ...], c: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(_rng.normal(size=(b, n, k)), _rng.normal(size=(b, k, c))) for k in ks]


@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_matmul_sum_matches_numpy(framework, rank, compile_):
    backend = framework
    pairs = _pairs(2, 7, (5, 1, 3), 4)
    if rank == 2:
        pairs = [(a[0], b[0]) for a, b in pairs]
    want = sum(a @ b for a, b in pairs)  # NumPy's own matmul_sum is the same sum: not tested
    ops = backend_by_name(backend)

    def fn(*flat):
        return ops.matmul_sum(list(zip(flat[::2], flat[1::2], strict=True)))

    fn = compiled(backend, fn) if compile_ else fn
    flat = [to_backend(backend, v, "float64") for pair in pairs for v in pair]
    np.testing.assert_allclose(to_numpy(fn(*flat)), want, **TOL["float64"])


def test_matmul_sum_differentiates_when_autograd_records(framework):
    """torch accumulates in place only when nothing records; recorded, the sum is
    differentiated like the plain one (∂/∂a_i = G b_iᵀ, ∂/∂b_i = a_iᵀ G)."""
    pairs = _pairs(2, 6, (4, 2), 3)
    w = _rng.normal(size=(2, 6, 3))
    ops = backend_by_name(framework)

    def objective(a0, b0, a1, b1):
        out = ops.matmul_sum([(a0, b0), (a1, b1)])
        return ops.sum(out * to_backend(ops.name, w), axis=(0, 1, 2))

    flat = [to_backend(framework, v, "float64") for pair in pairs for v in pair]
    got = gradient(framework, objective, *flat)
    want = []
    for a, b in pairs:
        want += [w @ b.transpose(0, 2, 1), a.transpose(0, 2, 1) @ w]
    for g, e in zip(got, want, strict=True):
        np.testing.assert_allclose(g, e, **TOL["float64"])


# (1, 65,536, 16) @ (1, 16, 128) in float32 is 32 MiB: the size from which glibc maps
# every block afresh and torch's matmul takes a huge-page buffer instead
_N, _F = 65_600, 128


def test_large_torch_product_is_exact_and_fresh():
    torch = require("torch")
    ops = backend_by_name("torch")
    from dmon.backends.torch.ops import _large_cpu_result

    rng = np.random.default_rng(5)  # its own: the values must not depend on test order
    s, g = rng.random((1, _N, 16)), rng.normal(size=(1, 16, _F))
    with torch.no_grad():
        # the size this test is about takes the huge-page buffer
        assert _large_cpu_result(torch, torch.zeros(1, _N, 16), torch.zeros(1, 16, _F)) is not None
        first = ops.matmul(torch.from_numpy(s).float(), torch.from_numpy(g).float())
        second = ops.matmul(torch.from_numpy(s).float(), torch.from_numpy(-g).float())
    # two results never share memory (no buffer is reused behind the caller's back)
    assert first.untyped_storage().data_ptr() != second.untyped_storage().data_ptr()
    np.testing.assert_allclose(first.numpy(), s @ g, **TOL["float32"])
    np.testing.assert_allclose(second.numpy(), -(s @ g), **TOL["float32"])
    # recorded by autograd it is torch's own product, differentiable
    a = torch.from_numpy(s).float().requires_grad_(True)
    ops.matmul(a, torch.from_numpy(g).float()).sum().backward()
    # each entry is a float32 sum of F = 128 terms of size ~1, against the float64 sum of
    # the same float32 inputs: its rounding is ~1e-5 absolute, above TOL's atol on
    # entries that cancel to ~0.05
    g32 = g.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(
        a.grad.numpy(), np.broadcast_to(g32.sum(-1)[:, None, :], s.shape), rtol=1e-5, atol=1e-5
    )


def test_large_feature_gradient_of_the_symmetric_pool_accumulates():
    """The symmetric rule's `∂/∂X = S G_x` at a size that takes the huge-page buffer: equal
    to the general path's autodiff gradient, and usable as `x.grad` (a second backward
    adds to it)."""
    torch = require("torch")
    n, m = _N, 4 * _N
    src, dst = _rng.integers(0, n, m), _rng.integers(0, n, m)
    keep = src != dst
    ei = np.stack([np.r_[src[keep], dst[keep]], np.r_[dst[keep], src[keep]]])
    x = torch.from_numpy(_rng.normal(size=(n, _F)).astype(np.float32))
    logits = torch.from_numpy(_rng.normal(size=(n, 16)).astype(np.float32))
    graph64 = dmon.SparseGraph(torch.from_numpy(ei))
    x64 = x.double().requires_grad_(True)
    out = dmon.pool(x64, graph64, logits.double())
    (out.x.sum() + out.spectral_loss).backward()
    once = x64.grad.numpy()  # float64 autodiff of the general path: the oracle
    for symmetric in (False, True):
        xx = x.clone().requires_grad_(True)
        graph = dmon.SparseGraph(torch.from_numpy(ei), symmetric=symmetric)
        for _ in range(2):  # the second backward accumulates into x.grad
            out = dmon.pool(xx, graph, logits)
            (out.x.sum() + out.spectral_loss).backward()
        np.testing.assert_allclose(xx.grad.numpy(), 2 * once, rtol=1e-4, atol=1e-6)


def test_large_product_path_under_torch_func_and_inference(monkeypatch):
    """With every product counted as large: `torch.func.vmap` and `torch.func.grad` (whose
    wrapped tensors cannot take `out=`) and inference mode still give the products and
    their gradient exactly."""
    torch = require("torch")
    import dmon.backends.torch.ops as backend

    monkeypatch.setattr(backend, "_LARGE_BYTES", 0)
    ops = backend_by_name("torch")
    a, b = _rng.normal(size=(3, 4, 5)), _rng.normal(size=(3, 5, 2))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    with torch.no_grad():
        assert backend._large_cpu_result(torch, ta, tb) is not None
        np.testing.assert_allclose(ops.matmul(ta, tb).numpy(), a @ b, **TOL["float64"])
    with torch.inference_mode():
        np.testing.assert_allclose(ops.matmul(ta, tb).numpy(), a @ b, **TOL["float64"])
    np.testing.assert_allclose(
        torch.func.vmap(ops.matmul)(ta, tb).detach().numpy(), a @ b, **TOL["float64"]
    )
    grad = torch.func.grad(lambda t: ops.matmul(t, tb).sum())(ta)
    np.testing.assert_allclose(  # ∂ Σ(a b) / ∂a = 1 bᵀ
        grad.numpy(), np.ones((3, 4, 2)) @ b.transpose(0, 2, 1), **TOL["float64"]
    )


def test_jax_products_ask_for_full_float32_precision():
    """JAX's default runs a float32 product in TF32 on NVIDIA GPUs from Ampere on (errors
    near 1e-3 in the pooled features on an H200); dmon's products ask for HIGHEST, and a
    user's default (here TF32) does not override it. Read off the traced program, since a
    CPU computes float32 either way."""
    jax = require("jax")
    ops = backend_by_name("jax")
    a, b = np.ones((2, 4, 3), np.float32), np.ones((2, 3, 5), np.float32)
    with jax.default_matmul_precision("tensorfloat32"):
        for fn in (ops.matmul, lambda a, b: ops.matmul_sum([(a, b), (a, b)])):
            program = str(jax.make_jaxpr(fn)(a, b))
            assert program.count("dot_general") >= 1
            assert program.count(
                "precision=(Precision.HIGHEST, Precision.HIGHEST)"
            ) == program.count("dot_general"), program
