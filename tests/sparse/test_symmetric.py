"""The symmetric-adjacency gradient rule (`dmon.node_sums`): its hand-written gradients
against autodiff of the plain formula, and every path that uses it (`pool(...,
symmetric=True)`, `SparseGraph(symmetric=True)`, `shard_pool` of a symmetric shard)
against the general path's values and autodiff gradients, eager and compiled."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    TOL,
    TORCH_DEVICE,
    compiled,
    edges,
    gradient,
    require,
    to_backend,
    to_numpy,
)
from oracle import random_batch

import dmon
from dmon.node_sums import node_sums, row_products
from dmon.ops import backend_by_name, backend_module

_rng = np.random.default_rng(7)


def _plain_sums(fw, adj, s, x):
    """`Sᵀ [A S | A 1 | S | X]` spelled out in the framework, differentiated by autodiff."""
    ops = backend_by_name(fw)
    p = ops.concat([ops.matmul(adj, s), ops.sum(adj, axis=-1, keepdims=True)], axis=-1)
    return ops.matmul(ops.transpose(s), ops.concat([p, s, x], axis=-1))


def _rule_sums(fw, adj, s, x):
    """The same sums through `row_products` and `node_sums`."""
    ops = backend_by_name(fw)
    s_t = ops.transpose(ops.stop_gradient(s))
    s1_t = ops.concat([s_t, ops.ones_like(s_t[:, :1])], axis=1)
    return node_sums(ops, s, ops.transpose(row_products(ops, s1_t, adj)), x)


def _general_rule_sums(fw, adj, s, x):
    """The same sums through `node_sums(symmetric=False)`, `P = [A S | A 1]` by autodiff."""
    ops = backend_by_name(fw)
    p = ops.concat([ops.matmul(adj, s), ops.sum(adj, axis=-1, keepdims=True)], axis=-1)
    return node_sums(ops, s, p, x, symmetric=False)


def _value_and_gradients(fw, fn, *arrays):
    """`[fn(*args), ∂fn/∂args...]` as NumPy, for the arrays in float64 in framework `fw`."""
    args = [to_backend(fw, v, "float64") for v in arrays]
    return [to_numpy(fn(*args)), *gradient(fw, fn, *args)]


def _assert_same(names, got, want):
    for what, g, w in zip(names, got, want, strict=True):
        np.testing.assert_allclose(g, w, **TOL["float64"], err_msg=what)


@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "general"])
@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_rule_gradients_match_autodiff_of_the_plain_formula(framework, compile_, symmetric):
    b, n, c, f = 2, 9, 3, 4
    a = _rng.random((b, n, n)) * (_rng.random((b, n, n)) < 0.5)
    if symmetric:
        a = a + a.transpose(0, 2, 1)
    rule = _rule_sums if symmetric else _general_rule_sums
    s, x = _rng.random((b, n, c)), _rng.normal(size=(b, n, f))
    w = _rng.normal(size=(b, c, 2 * c + 1 + f))
    results = []
    for sums in (_plain_sums, rule):

        def objective(adj, s_, x_, sums=sums):
            ops = backend_by_name(framework)
            return ops.sum(sums(framework, adj, s_, x_) * to_backend(ops.name, w), axis=(0, 1, 2))

        fn = compiled(framework, objective) if compile_ else objective
        results.append(_value_and_gradients(framework, fn, a, s, x))
    _assert_same(("value", "adj", "s", "x"), results[1], results[0])


def _pool_objective(out, w):
    """A scalar of all six outputs, with weights `w` for `s`, `x` and `adj`."""
    ops = dmon.get_backend(out.s)
    total = out.spectral_loss * 0.7 + out.ortho_loss * 0.3 + out.cluster_loss * 0.5
    for name in ("s", "x", "adj"):
        v = getattr(out, name)
        total = total + ops.sum(
            v * to_backend(ops.name, w[name]), axis=tuple(range(len(ops.shape(v))))
        )
    return total


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_dense_symmetric_pool_matches_general_path(framework, masked, compile_):
    x, a, logits, mask = random_batch(21, b=3, n=10, f=4, c=3, masked=masked)
    if masked:  # edges into masked nodes count in the degrees of the valid ones
        a[1, 0, -1] = a[1, -1, 0] = 1.5
    w = {
        "s": _rng.normal(size=(3, 10, 3)),
        "x": _rng.normal(size=(3, 3, 4)),
        "adj": _rng.normal(size=(3, 3, 3)),
    }
    m = None if mask is None else to_backend(framework, mask)
    results = []
    for symmetric in (False, True):

        def objective(lg, x_, adj, symmetric=symmetric):
            return _pool_objective(dmon.pool(x_, adj, lg, m, symmetric=symmetric), w)

        fn = compiled(framework, objective) if compile_ else objective
        results.append(_value_and_gradients(framework, fn, logits, x, a))
    _assert_same(("value", "logits", "x", "adj"), results[1], results[0])


def test_dense_symmetric_outputs_match_numpy_reference(backend):
    x, a, logits, mask = random_batch(5, masked=True)
    want = dmon.pool(x, a, logits, mask)
    got = dmon.pool(*(to_backend(backend, v) for v in (x, a, logits, mask)), symmetric=True)
    for name, g, e in zip(want._fields, got, want, strict=True):
        np.testing.assert_allclose(to_numpy(g), e, **TOL["float64"], err_msg=name)


def _placed(framework: str, name: str):
    """A backend's function that places a partition's shard (`dmon.backends.<framework>.collectives`)."""
    return getattr(backend_module(framework, "collectives"), name)


@pytest.mark.parametrize("graphs", [1, 3])
def test_sparse_symmetric_pool_matches_general_path(framework, graphs):
    x, a, logits, _ = random_batch(9, b=graphs, n=8, f=3, c=4)
    n = 8 * graphs
    big = np.zeros((n, n))
    for g in range(graphs):
        big[8 * g : 8 * g + 8, 8 * g : 8 * g + 8] = a[g]
    edge_index, edge_weight = edges(big)
    batch = np.repeat(np.arange(graphs), 8) if graphs > 1 else None
    x, logits = x.reshape(n, 3), logits.reshape(n, 4)
    w = {
        "s": _rng.normal(size=(n, 4)),
        "x": _rng.normal(size=(graphs, 4, 3)),
        "adj": _rng.normal(size=(graphs, 4, 4)),
    }
    ei = to_backend(framework, edge_index)
    bt = None if batch is None else to_backend(framework, batch)
    results = []
    for symmetric in (False, True):

        def objective(lg, x_, ew, symmetric=symmetric):
            graph = dmon.SparseGraph(ei, ew, batch=bt, symmetric=symmetric)
            return _pool_objective(dmon.pool(x_, graph, lg), w)

        results.append(_value_and_gradients(framework, objective, logits, x, edge_weight))
    _assert_same(("value", "logits", "x", "weight"), results[1], results[0])


def test_shard_pool_symmetric_matches_general(framework):
    from dmon import distributed as dist
    from dmon.partition import partition

    x, a, logits, _ = random_batch(3, b=1, n=12, f=5, c=3)
    edge_index, edge_weight = edges(a[0])
    part = partition(edge_index, 12, 1, edge_weight)
    results = []
    for symmetric in (False, True):
        shard = {
            "torch": lambda part, rank: _placed("torch", "torch_shard")(
                part, rank, device=TORCH_DEVICE
            ),
            "tensorflow": _placed("tensorflow", "tf_shard"),
        }.get(framework)
        if shard is None:  # JAX: on one device the global arrays are its block
            import jax

            mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("nodes",))
            sh = _placed("jax", "jax_shards")(part, mesh, dtype="float64")
        else:
            sh = shard(part, 0)
        sh.symmetric = symmetric
        ops = backend_by_name(framework)
        sh.weight = ops.astype(sh.weight, "float64")

        def objective(lg, x_, sh=sh):
            out = dist.shard_pool(x_, sh, lg, dist.LocalCollectives())
            o = backend_by_name(framework)
            return (
                out.spectral_loss
                + 0.3 * out.ortho_loss
                + 0.5 * out.cluster_loss
                + o.sum(out.x, axis=(0, 1, 2))
                + o.sum(out.adj * out.adj, axis=(0, 1, 2))
            )

        block = part.block
        lg = np.zeros((block, 3))
        xx = np.zeros((block, 5))
        lg[:12], xx[:12] = logits[0], x[0]
        results.append(_value_and_gradients(framework, objective, lg, xx))
    _assert_same(("value", "logits", "x"), results[1], results[0])


def test_a_directed_graph_breaks_the_promise_eagerly(backend):
    x, a, logits, _ = random_batch(4)
    a = np.triu(a)  # directed: in- and out-degrees differ
    args = [to_backend(backend, v) for v in (x, a, logits)]
    with pytest.raises(
        ValueError, match=r"`adj` is not symmetric although symmetric=True \(graph 0"
    ):
        dmon.pool(*args, symmetric=True)


def test_nan_adjacency_stays_nan_with_the_rule(backend):
    x, a, logits, _ = random_batch(4)
    a[0, 1, 2] = a[0, 2, 1] = np.nan
    out = dmon.pool(*(to_backend(backend, v) for v in (x, a, logits)), symmetric=True)
    assert np.isnan(to_numpy(out.spectral_loss))


def test_layers_carry_the_promise():
    torch = require("torch")
    from dmon.layers.torch import DMoNPooling

    x, a, _, mask = random_batch(2, masked=True)
    general = DMoNPooling(5, 4).double()
    symmetric = DMoNPooling(5, 4, symmetric=True).double()
    symmetric.load_state_dict(general.state_dict())
    outs = []
    for module in (general, symmetric):
        out = module(torch.tensor(x), torch.tensor(a), torch.tensor(mask))
        (out.spectral_loss + out.x.sum()).backward()
        outs.append([out.spectral_loss.detach().numpy(), module.mlp.lins[0].weight.grad.numpy()])
    np.testing.assert_allclose(outs[1][0], outs[0][0], **TOL["float64"])
    np.testing.assert_allclose(outs[1][1], outs[0][1], **TOL["float64"])


def test_jax_jit_keeps_the_promise_of_a_graph_argument():
    jax = require("jax")
    backend_by_name("jax")  # registers SparseGraph as a pytree
    x, a, logits, _ = random_batch(6, b=1, n=8, f=3, c=4)
    edge_index, edge_weight = edges(a[0])
    seen = []

    def loss(g, x_, lg):
        seen.append(g.symmetric)  # at trace time
        return dmon.pool(x_, g, lg).spectral_loss

    graph = dmon.SparseGraph(
        jax.numpy.asarray(edge_index), jax.numpy.asarray(edge_weight), symmetric=True
    )
    x, logits = jax.numpy.asarray(x[0]), jax.numpy.asarray(logits[0])
    got = jax.jit(jax.grad(loss, argnums=2))(graph, x, logits)
    general = dmon.SparseGraph(graph.edge_index, graph.edge_weight)
    want = jax.grad(loss, argnums=2)(general, x, logits)
    assert seen == [True, False]
    np.testing.assert_allclose(to_numpy(got), to_numpy(want), **TOL["float64"])


def test_keras_layer_carries_the_promise_through_config_and_torch():
    require("keras")
    require("torch")
    from dmon.layers.keras import DMoNPooling

    layer = DMoNPooling(k=3, symmetric=True)
    assert layer.get_config()["symmetric"] is True
    assert DMoNPooling.from_config(layer.get_config()).symmetric is True
    layer.build([(None, None, 5), (None, None, None)])
    module = layer.to_torch()
    assert module.symmetric is True
    assert DMoNPooling.from_torch(module).symmetric is True


def test_a_sparse_graph_promise_is_checked_edge_by_edge_once(backend):
    """A directed cycle: every node's in- and out-degree are equal, so cluster volumes by
    rows and columns agree and the dense check cannot see it; the SparseGraph's edges
    can. Checked once per graph and weights; a reversed copy of every edge passes."""
    n = 6
    cycle = np.array([np.arange(n), (np.arange(n) + 1) % n])
    x = np.random.default_rng(0).normal(size=(n, 3))
    logits = np.random.default_rng(1).normal(size=(n, 2))
    t = lambda v: to_backend(backend, v)  # noqa: E731
    directed = dmon.SparseGraph(t(cycle), symmetric=True)
    with pytest.raises(ValueError, match=r"edge 0 -> 1 has no 1 -> 0; pass symmetric=False"):
        dmon.pool(t(x), directed, t(logits))
    both = np.concatenate([cycle, cycle[::-1]], axis=1)
    w = np.arange(1.0, 2 * n + 1)
    uneven = dmon.SparseGraph(t(both), t(w), symmetric=True)
    with pytest.raises(ValueError, match=r"edge 0 -> 1 weighs 1 but 1 -> 0 weighs 7"):
        dmon.pool(t(x), uneven, t(logits))
    even = dmon.SparseGraph(t(both), t(np.concatenate([w[:n], w[:n]])), symmetric=True)
    dmon.pool(t(x), even, t(logits))
    assert "symmetric" in even._cache or backend == "numpy"  # NumPy weights can change unseen
    general = dmon.pool(
        t(x), dmon.SparseGraph(t(both), t(np.concatenate([w[:n], w[:n]]))), t(logits)
    )
    again = dmon.pool(t(x), even, t(logits))
    assert float(to_numpy(again.spectral_loss)) == pytest.approx(
        float(to_numpy(general.spectral_loss)), rel=1e-6
    )
