"""`dmon.layers.torch.DMoNPooling`'s own arguments and inputs: the rules shared with every
entry point (`dmon.checks`), a dtype mismatch named, NaN padding never read, and the
resolution passed to the loss. Its numbers against PyG's layer: `test_pyg.py`."""

from __future__ import annotations

import numpy as np
import pytest

import dmon


def test_torch_module_arguments() -> None:
    torch = pytest.importorskip("torch")
    from dmon.layers.torch import DMoNPooling

    # one rule for k everywhere (dmon.checks): the torch layer, the Keras one, dmon.cluster
    for k in (0, 1):
        with pytest.raises(
            ValueError, match=rf"`k` \(number of clusters\) must be an int >= 2; got {k}"
        ):
            DMoNPooling(4, k)
    with pytest.raises(
        TypeError, match=r"`k` \(number of clusters\) must be an int >= 2; got True"
    ):
        DMoNPooling(4, True)
    with pytest.raises(ValueError, match=r"channels must be positive ints; got \[4, 0\]"):
        DMoNPooling([4, 0], 2)
    with pytest.raises(ValueError, match=r"`dropout` must be a number in \[0, 1\); got 1.5"):
        DMoNPooling(4, 2, dropout=1.5)
    with pytest.raises(
        ValueError, match=r"x must have shape \(B, N, 4\) or \(N, 4\); got \(2, 6, 3\)"
    ):
        DMoNPooling(4, 2)(torch.zeros(2, 6, 3), torch.zeros(2, 6, 6))


def test_module_names_a_dtype_mismatch_and_ignores_nan_padding() -> None:
    torch = pytest.importorskip("torch")
    from dmon.layers.torch import DMoNPooling

    module = DMoNPooling(3, 2)
    with pytest.raises(
        TypeError,
        match=r"DMoNPooling: `x` has dtype float64 but the module's parameters are float32",
    ):
        module(torch.zeros(5, 3, dtype=torch.float64), torch.zeros(5, 5, dtype=torch.float64))
    x = torch.randn(2, 5, 3)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    x[~mask] = float("nan")
    out = module(x, torch.rand(2, 5, 5), mask)
    (out.x.sum() + out[3] + out[4] + out[5]).backward()
    for p in module.parameters():
        assert torch.isfinite(p.grad).all()
    assert all(torch.isfinite(v).all() for v in out)


def test_torch_module_resolution() -> None:
    torch = pytest.importorskip("torch")
    from dmon.layers.torch import DMoNPooling

    torch.manual_seed(0)
    module = DMoNPooling(3, 2, resolution=0.5)
    x, a = torch.randn(2, 5, 3, dtype=torch.float32), torch.rand(2, 5, 5)
    out = module(x, a)
    want = dmon.spectral_loss(
        a.numpy().astype(np.float64), out.s.detach().numpy().astype(np.float64), resolution=0.5
    )
    assert float(out.spectral_loss) == pytest.approx(float(want), rel=1e-5, abs=1e-6)
    assert repr(module) == "DMoNPooling(3, num_clusters=2)"  # PyG's repr, unchanged
    with pytest.raises(ValueError, match=r"DMoNPooling: `resolution` must be a finite number >= 0"):
        DMoNPooling(3, 2, resolution=float("nan"))
