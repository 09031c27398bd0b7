"""The training engines (`dmon.training`, `dmon.backends.<name>.engine`) against
independent oracles:

- Per-epoch losses of `dmon.cluster` (dropout 0, fixed seed) against the same model
  trained by Keras' own `model.fit` (tests/support/keras_reference_train.py: how `dmon.cluster`
  trained before the engines), on every backend, within 1e-5; for dense features
  (`(Â X) W`, precomputed `Â X`) and sparse ones (`Â (X W)`).
- The custom gradients of the sparse products (torch's CSR product, with and without the
  symmetric shortcut, square and rectangular; TensorFlow's CSR product) against autodiff
  of the dense product.
- `adam_update` against `keras.optimizers.Adam`.
- Every engine trains inside `dmon.memory.keep_freed_memory` on the CPU, and only while
  it trains: glibc's count of mapped blocks, probed after every epoch.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import SUPPORT, installed, subprocess_env

from dmon.ops import Edges

EPOCHS = 60


def _json(cmd: list[str], backend: str) -> dict:
    proc = subprocess.run(
        cmd,
        env=subprocess_env(KERAS_BACKEND=backend),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


_ENGINE = """
import json, sys
sys.path.insert(0, sys.argv[6])  # the tests' support folder: malloc_probe
from malloc_probe import glibc, large_block_is_a_mapping
from dmon import data, training
from dmon.checkpoint import arrays_sha256
from dmon.training.model import PARAMS, ModelSettings, initial_params

def on_gpu():  # where the engine trained: no host memory policy there
    torch, tf, jax = (sys.modules.get(m) for m in ("torch", "tensorflow", "jax"))
    if sys.argv[3] == "jax":
        return jax.default_backend() != "cpu"
    return bool((torch and torch.cuda.is_available())
                or (tf and tf.config.list_logical_devices("GPU")))

libc = glibc()
probe = lambda: None if libc is None else large_block_is_a_mapping(libc)
graph = data.load(sys.argv[1])
during = []
k, seed = int(sys.argv[2]), int(sys.argv[5])
initial = initial_params(graph.features.shape[1], ModelSettings(k, 64, 0.0, 1.0, 1.0, seed))
r = training.cluster(graph, k, backend=sys.argv[3], epochs=int(sys.argv[4]),
                  dropout=0.0, seed=int(sys.argv[5]),
                  on_epoch=lambda epoch, logs: during.append(probe()))
print(json.dumps({"initial_sha256": arrays_sha256(*(initial[p] for p in PARAMS)),
                  "history": r.history, "assignments": r.assignments.tolist(),
                  "mapped_during": during, "mapped_after": probe(),
                  "gpu": on_gpu()}))
"""


@pytest.mark.parametrize("backend", ["jax", "torch", "tensorflow"])
@pytest.mark.parametrize(("graph", "k"), [("karate", 2), ("sbm", 4)])
def test_engines_follow_keras_fit_epoch_by_epoch(backend: str, graph: str, k: int) -> None:
    if not (installed(backend) and installed("keras")):
        pytest.skip(f"needs {backend} and keras")
    args = [graph, str(k)]
    ref = _json(
        [sys.executable, str(SUPPORT / "keras_reference_train.py"), *args, str(EPOCHS), "3"],
        backend,
    )
    new = _json(
        [sys.executable, "-c", _ENGINE, *args, backend, str(EPOCHS), "3", str(SUPPORT)], backend
    )
    # the model's initial values are those the Keras layers draw, bit for bit
    assert new["initial_sha256"] == ref["initial_sha256"]
    for key, values in ref["history"].items():
        a, b = np.array(values), np.array(new["history"][key])
        assert a.shape == b.shape == (EPOCHS,)
        assert np.abs(a - b).max() <= 1e-5, (key, np.abs(a - b).max())
    assert abs(ref["history"]["loss"][-1] - ref["history"]["loss"][0]) > 1e-3  # it trained
    assert np.mean(np.array(ref["assignments"]) == np.array(new["assignments"])) >= 0.99
    # every engine trains on the CPU keeping freed memory (dmon.memory)
    if new["mapped_after"] is not None:
        assert new["mapped_during"] == [new["gpu"]] * EPOCHS
        assert new["mapped_after"]


def test_prepare_chooses_the_form_of_the_gcn_product() -> None:
    from dmon.data import load
    from dmon.training.prepared import prepare

    sparse = load("karate")  # identity features: 1/34 non-zeros
    ei, w = sparse.edge_index()
    data = prepare(ei, w, sparse.features, 2)
    assert data.ax is None and data.a_hat is not None and "row" in data.x
    assert data.symmetric
    dense = load("sbm")
    ei, w = dense.edge_index()
    data = prepare(ei, w, dense.features, 3)
    assert data.a_hat is None and data.ax is not None and not data.x
    # [Â X | X] against Â built densely: D^-1/2 (A + I) D^-1/2 X
    a = dense.adjacency.toarray().astype(np.float64) + np.eye(dense.num_nodes)
    d = a.sum(1) ** -0.5
    want = (d[:, None] * a * d[None, :]) @ dense.features.astype(np.float64)
    got = data.part.gather(data.ax["stacked"])
    f = dense.features.shape[1]
    np.testing.assert_allclose(got[:, :f], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[:, f:], dense.features.astype(np.float32))


def _problem(n: int, cols: int, symmetric: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = (rng.random((n, cols)) < 0.3) * rng.uniform(0.5, 2.0, (n, cols))
    if symmetric:
        a = np.triu(a, 1)
        a = a + a.T
    row, col = np.nonzero(a)
    perm = rng.permutation(row.size)  # unsorted edges, as users pass them
    return a, row[perm], col[perm], a[row[perm], col[perm]], rng.normal(size=(cols, 5))


@pytest.mark.parametrize(("n", "cols", "symmetric"), [(9, 9, True), (9, 9, False), (6, 14, False)])
def test_torch_sparse_product_gradients_equal_autodiff_of_the_dense_one(
    n: int, cols: int, symmetric: bool
) -> None:
    torch = pytest.importorskip("torch")
    from dmon.ops import backend_by_name

    ops = backend_by_name("torch")
    a, row, col, w, s = _problem(n, cols, symmetric)
    weight = torch.tensor(w, requires_grad=True)
    dense_s = torch.tensor(s, requires_grad=True)
    g = torch.tensor(np.random.default_rng(1).normal(size=(n, 5)))
    m = ops.sparse_matrix(
        Edges(torch.as_tensor(row), torch.as_tensor(col), weight, n, cols, {}, symmetric)
    )
    out = ops.spmm(m, dense_s)
    np.testing.assert_allclose(out.detach().numpy(), a @ s, rtol=1e-12, atol=1e-12)
    (out * g).sum().backward()
    a_t = torch.zeros(n, cols, dtype=torch.float64)
    w_ref = torch.tensor(w, requires_grad=True)
    s_ref = torch.tensor(s, requires_grad=True)
    a_t = a_t.index_put((torch.as_tensor(row), torch.as_tensor(col)), w_ref)
    ((a_t @ s_ref) * g).sum().backward()
    torch.testing.assert_close(dense_s.grad, s_ref.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(weight.grad, w_ref.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("n", "cols"), [(9, 9), (6, 14)])
def test_tensorflow_sparse_product_gradients_equal_autodiff_of_the_dense_one(
    n: int, cols: int
) -> None:
    tf = pytest.importorskip("tensorflow")
    from dmon.ops import backend_by_name

    ops = backend_by_name("tensorflow")
    a, row, col, w, s = _problem(n, cols, symmetric=False)
    weight, dense_s = tf.Variable(w), tf.Variable(s)
    g = tf.constant(np.random.default_rng(1).normal(size=(n, 5)))
    with tf.GradientTape() as tape:
        m = ops.sparse_matrix(Edges(tf.constant(row), tf.constant(col), weight, n, cols, {}))
        total = tf.reduce_sum(ops.spmm(m, dense_s) * g)
    got = tape.gradient(total, [weight, dense_s])
    np.testing.assert_allclose(ops.spmm(m, tf.constant(s)).numpy(), a @ s, rtol=1e-12)
    np.testing.assert_allclose(got[1].numpy(), a.T @ g.numpy(), rtol=1e-12, atol=1e-12)
    want_w = (g.numpy()[row] * s[col]).sum(-1)
    np.testing.assert_allclose(got[0].numpy(), want_w, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not (installed("jax") and installed("keras")), reason="needs jax and keras")
def test_adam_update_is_keras_adam() -> None:
    import subprocess

    code = """
import numpy as np, keras, jax.numpy as jnp
from dmon.training.optimizer import adam_alpha, adam_update
rng = np.random.default_rng(0)
w = rng.normal(size=(4, 3)).astype("float32")
var = keras.Variable(w)
opt = keras.optimizers.Adam(0.01)
p, m, v = [jnp.asarray(w)], [jnp.zeros_like(w)], [jnp.zeros_like(w)]
for t in range(1, 6):
    g = rng.normal(size=(4, 3)).astype("float32")
    opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
    p, m, v = adam_update(p, [jnp.asarray(g)], m, v, adam_alpha(0.01, t))
print(float(np.abs(np.asarray(p[0]) - keras.ops.convert_to_numpy(var)).max()))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(KERAS_BACKEND="jax"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) <= 1e-6


@pytest.mark.skipif(not installed("torch"), reason="torch not installed")
def test_torch_dropout_multiplier_is_unbiased_and_a_function_of_its_seed() -> None:
    """torch's dropout multiplier (`dmon.backends.torch.engine.torch_keep`): every entry is 0 or
    `1 / (1 - rate)`; its mean is 1 (inverted dropout keeps the expectation) within five
    standard errors, in every column; the same seed draws the same mask (a resumed run),
    another seed another one."""
    import torch
    from dmon.backends.torch.engine import torch_keep

    shape, rate = (20_000, 8), 0.3
    keep = torch_keep(torch, shape, rate, 11, "cpu").numpy()
    assert keep.dtype == np.float32 and keep.shape == shape
    scale = np.float32(1 / (1 - rate))
    assert set(np.unique(keep)) == {np.float32(0), scale}
    # each entry is Bernoulli(1 - rate) times the scale: mean 1, variance rate / (1 - rate)
    stderr = np.sqrt(rate / (1 - rate) / shape[0])
    np.testing.assert_array_less(np.abs(keep.mean(axis=0) - 1), 5 * stderr)
    np.testing.assert_array_equal(torch_keep(torch, shape, rate, 11, "cpu").numpy(), keep)
    other = torch_keep(torch, shape, rate, 12, "cpu").numpy()
    assert 0.3 < np.mean(other != keep) < 0.5  # independent masks differ in 2·0.3·0.7 = 42%


def test_python_progress_is_the_commands_bar_and_calls_on_epoch_too(capsys) -> None:
    """`dmon.cluster(progress=True)`: the command's lines on stderr (preparing, ready,
    the bar up to the last epoch), and the user's `on_epoch` still sees every epoch."""
    keras = pytest.importorskip("keras")
    pytest.importorskip(keras.backend.backend())
    import dmon

    seen: list[int] = []
    result = dmon.cluster(
        dmon.data.synthetic_sbm(sizes=(20, 20)), 2, epochs=12, progress=True,
        on_epoch=lambda epoch, logs: seen.append(epoch),
    )  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("preparing the training step") and err[1].startswith("ready after")
    assert err[-1].startswith("epoch 12/12 [") and "cluster " in err[-1]
    assert seen == list(range(1, 13))
    assert result.ms_per_epoch == pytest.approx(
        1e3 * (result.seconds - result.first_epoch_seconds) / 11
    )


_SEEDED = """
import sys
if sys.argv[1] == "tf first":
    import tensorflow  # noqa: F401
from dmon.checkpoint import arrays_sha256
from dmon.training.model import PARAMS, ModelSettings, initial_params
values = initial_params(5, ModelSettings(3, 8, 0.0, 1.0, 1.0, 7))
print(arrays_sha256(*(values[p] for p in PARAMS)), "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_initial_values_do_not_import_tensorflow_nor_depend_on_it(backend: str) -> None:
    # keras.utils.set_random_seed imports TensorFlow where installed, only to seed it
    if not all(installed(n) for n in (backend, "keras", "tensorflow")):
        pytest.skip(f"needs {backend}, keras and tensorflow")
    runs = {}
    for first in ("tf first", "no tf"):
        proc = subprocess.run(
            [sys.executable, "-c", _SEEDED, first], env=subprocess_env(KERAS_BACKEND=backend),
            capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        runs[first] = proc.stdout.split()
    assert runs["no tf"][1] == "False" and runs["tf first"][1] == "True"
    assert runs["no tf"][0] == runs["tf first"][0]
