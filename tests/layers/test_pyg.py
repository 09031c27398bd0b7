"""dmon.layers.torch.DMoNPooling against torch_geometric.nn.DMoNPooling itself."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import brute_force, random_batch

torch = pytest.importorskip("torch")
pyg_nn = pytest.importorskip("torch_geometric.nn")

from dmon.layers.torch import DMoNPooling  # noqa: E402


def _pair(channels, k):
    torch.manual_seed(0)
    theirs = pyg_nn.DMoNPooling(channels, k)
    ours = DMoNPooling(channels, k)
    ours.load_state_dict(theirs.state_dict())  # PyG's state_dict loads unchanged
    return theirs, ours


@pytest.mark.parametrize("channels", [5, [5, 16]], ids=["linear", "mlp"])
@pytest.mark.parametrize("masked", [False, True])
def test_outputs_equal_pyg_on_equal_size_batches(channels, masked: bool) -> None:
    theirs, ours = _pair(channels, 4)
    x, a, _, _ = random_batch(0, b=4, n=20, f=5, c=4)
    x, a = torch.tensor(x, dtype=torch.float32), torch.tensor(a, dtype=torch.float32)
    mask = None
    if masked:  # equal valid sizes, so PyG's cluster loss is right too
        mask = torch.ones(4, 20, dtype=torch.bool)
        mask[:, 15:] = False
    want = theirs(x, a, mask)
    got = ours(x, a, mask)
    for name, g, w in zip(got._fields, got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6, msg=name)


def test_unequal_sizes_cluster_loss_equals_brute_force_not_pyg() -> None:
    theirs, ours = _pair(5, 4)
    x, a, _, mask = random_batch(3, b=3, n=16, f=5, c=4, masked=True)
    xt, at, mt = (torch.tensor(v) for v in (x, a, mask))
    theirs.double()
    ours.double()
    got, want = ours(xt, at, mt), theirs(xt, at, mt)
    logits = ours.mlp(xt).detach().numpy()
    oracle = brute_force(x, a, logits, mask)
    assert float(got.cluster_loss.detach()) == pytest.approx(oracle[5], rel=1e-10)
    assert abs(float(want[5].detach()) - oracle[5]) > 1e-3  # PyG's (B,)/(B,1) broadcast (#10148)
    for name, g, w in zip(got._fields[:5], got[:5], want[:5], strict=True):  # the rest agree
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12, msg=name)


def test_unbatched_input_like_pyg() -> None:
    theirs, ours = _pair(5, 3)
    x, a, _, _ = random_batch(2, b=1, n=9, f=5, c=3)
    x, a = torch.tensor(x[0], dtype=torch.float32), torch.tensor(a[0], dtype=torch.float32)
    for g, w in zip(ours(x, a), theirs(x, a), strict=True):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


def test_gradients_equal_pyg() -> None:
    theirs, ours = _pair([5, 8], 4)
    x, a, _, _ = random_batch(5, b=2, n=12, f=5, c=4)
    x, a = torch.tensor(x, dtype=torch.float32), torch.tensor(a, dtype=torch.float32)
    weights = [torch.randn(o.shape) for o in theirs(x, a)[:3]]

    def total(out):
        return (
            sum((o * w).sum() for o, w in zip(out[:3], weights, strict=False))
            + out[3]
            + out[4]
            + out[5]
        )

    total(theirs(x, a)).backward()
    total(ours(x, a)).backward()
    for (name, p1), p2 in zip(theirs.named_parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(p2.grad, p1.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_repr_and_reset_like_pyg() -> None:
    theirs, ours = _pair([5, 16], 4)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    before = [p.clone() for p in ours.parameters()]
    ours.reset_parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, ours.parameters(), strict=False))


def test_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    ours = DMoNPooling(5, 4, dropout=0.5)
    x, a, _, _ = random_batch(1, b=2, n=10, f=5, c=4)
    x, a = torch.tensor(x, dtype=torch.float32), torch.tensor(a, dtype=torch.float32)
    ours.eval()
    s1, s2 = ours(x, a).s, ours(x, a).s
    torch.testing.assert_close(s1, s2)
    ours.train()
    assert not torch.allclose(ours(x, a).s, s1)
    logits = ours.mlp(x)
    assert np.allclose(
        ours.eval()(x, a).s.detach().numpy(), torch.softmax(logits, -1).detach().numpy(), atol=1e-6
    )
