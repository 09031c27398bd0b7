"""Bad input: a clear ValueError/TypeError from dmon naming the argument, what it got and
what it expected, before any framework error. One test per case, on every backend."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import to_backend
from oracle import random_batch

import dmon

X, A, LOGITS, MASK = random_batch(0, b=2, n=6, f=3, c=4, masked=True)


def _call(backend: str, **over):
    args = {"x": X, "adj": A, "logits": LOGITS, "mask": MASK, **over}
    conv = {k: (None if v is None else to_backend(backend, v)) for k, v in args.items()}
    return dmon.pool(conv["x"], conv["adj"], conv["logits"], conv["mask"])


CASES = [
    (
        "x rank",
        dict(x=X[0, 0]),
        ValueError,
        r"`x` must have shape \(B, N, F\) or \(N, F\); got 1-D shape \(3,\)",
    ),
    ("x rank 4", dict(x=X[None]), ValueError, r"`x` must have shape .* got 4-D"),
    ("adj not square", dict(adj=A[:, :, :5]), ValueError, r"`adj` must be square.*\(2, 6, 5\)"),
    ("adj rank", dict(adj=A[0, 0]), ValueError, r"`adj` must have shape \(B, N, N\) or \(N, N\)"),
    (
        "B mismatch",
        dict(adj=A[:1]),
        ValueError,
        r"`x` has shape \(2, 6, 3\) and `adj` has shape \(1, 6, 6\): their batch sizes B differ \(2 vs 1\)",
    ),
    (
        "N mismatch logits",
        dict(logits=LOGITS[:, :5]),
        ValueError,
        r"`logits` has shape \(2, 5, 4\): their node counts N differ \(6 vs 5\)",
    ),
    ("N mismatch adj", dict(adj=A[:, :5, :5]), ValueError, r"node counts N differ \(6 vs 5\)"),
    (
        "mask shape",
        dict(mask=MASK[:, :5]),
        ValueError,
        r"`mask` must have shape \(B, N\) = \(2, 6\); got shape \(2, 5\)",
    ),
    (
        "mask batch",
        dict(mask=MASK[:1]),
        ValueError,
        r"`mask` must have shape \(B, N\) = \(2, 6\); got shape \(1, 6\)",
    ),
    ("mask rank", dict(mask=MASK[..., None]), ValueError, r"`mask` must have shape"),
    ("C < 1", dict(logits=LOGITS[..., :0]), ValueError, r"`logits` needs C >= 1 clusters"),
    (
        "int x",
        dict(x=X.astype(np.int64)),
        TypeError,
        r"`x` must be a floating array .* got dtype int64",
    ),
    (
        "int adj",
        dict(adj=A.astype(np.int32)),
        TypeError,
        r"`adj` must be a floating array .* got dtype int32",
    ),
    (
        "bool logits",
        dict(logits=LOGITS > 0),
        TypeError,
        r"`logits` must be a floating array .* got dtype bool",
    ),
    (
        "dtype mix",
        dict(adj=A.astype(np.float32)),
        TypeError,
        r"`x` has dtype float64 but `adj` has dtype float32",
    ),
]


@pytest.mark.parametrize("what,over,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error(
    backend: str, what: str, over: dict, exc: type, pattern: str
) -> None:
    with pytest.raises(exc, match=pattern) as info:
        _call(backend, **over)
    assert info.value.__cause__ is None  # raised by dmon, not translated from the framework
    assert re.search(r"dmon\.pool", str(info.value))


def test_loss_functions_validate_too() -> None:
    s = np.full((2, 6, 4), 0.25)
    with pytest.raises(
        ValueError,
        match=r"dmon.spectral_loss: `adj` has shape \(2, 6, 6\) and `s` has shape \(2, 5, 4\)",
    ):
        dmon.spectral_loss(A, s[:, :5])
    with pytest.raises(TypeError, match=r"dmon.cluster_loss: `s` must be a floating array"):
        dmon.cluster_loss(s.astype(int))
    with pytest.raises(ValueError, match=r"dmon.orthogonality_loss: `mask` must have shape"):
        dmon.orthogonality_loss(s, MASK[:, :3])


def test_unsupported_input_type() -> None:
    with pytest.raises(
        TypeError, match=r"dmon.pool: `x` must be a numpy.ndarray.*got builtins.list"
    ):
        dmon.pool([[1.0]], A, LOGITS)


def test_unknown_backend_name() -> None:
    with pytest.raises(ValueError, match=r"backend must be one of .*; got 'mxnet'"):
        dmon.pool(X, A, LOGITS, backend="mxnet")


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
