"""Loaders on small files written by the test (every format, and malformed ones); the
synthetic generator's determinism and community signal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from dmon import data, metrics


def _write_npz(path, a, features=None, labels=None, **extra) -> None:
    a = sparse.csr_matrix(a)
    arrays = {
        "adj_data": a.data,
        "adj_indices": a.indices,
        "adj_indptr": a.indptr,
        "adj_shape": np.array(a.shape),
    }
    if features is not None:
        f = sparse.csr_matrix(features)
        arrays.update(
            attr_data=f.data,
            attr_indices=f.indices,
            attr_indptr=f.indptr,
            attr_shape=np.array(f.shape),
        )
    if labels is not None:
        arrays["labels"] = labels
    np.savez(path, **arrays, **extra)


def test_npz_round_trip_and_preprocessing(tmp_path) -> None:
    a = np.array([[1, 1, 0], [0, 0, 2], [0, 0, 0]], float)  # directed, a self-loop, weight 2
    f = np.array([[0, 3.0], [1, 0], [0, 0]])
    _write_npz(tmp_path / "g.npz", a, f, np.array([0, 1, 1]))
    g = data.load_npz(tmp_path / "g.npz")
    np.testing.assert_array_equal(g.adjacency.toarray(), [[0, 1, 0], [1, 0, 2], [0, 2, 0]])
    np.testing.assert_array_equal(g.features, [[0, 1], [1, 0], [0, 0]])
    np.testing.assert_array_equal(g.labels, [0, 1, 1])
    raw = data.load_npz(
        tmp_path / "g.npz", symmetrize=False, drop_self_loops=False, binarize_features=False
    )
    np.testing.assert_array_equal(raw.adjacency.toarray(), a)
    np.testing.assert_array_equal(raw.features, f)
    assert g.num_edges == 2


def test_npz_structure_only_gets_identity_features(tmp_path) -> None:
    _write_npz(tmp_path / "s.npz", np.ones((3, 3)))
    g = data.load_npz(tmp_path / "s.npz")
    np.testing.assert_array_equal(g.features, np.eye(3))
    assert g.notes == ["identity features"]


def test_malformed_npz(tmp_path) -> None:
    np.savez(tmp_path / "nokeys.npz", x=np.ones(3))
    with pytest.raises(
        data.GraphFormatError, match=r"nokeys.npz: not a gnn-benchmark graph: missing keys"
    ):
        data.load_npz(tmp_path / "nokeys.npz")
    # an object array (pickled) in a key that is read: refused, never unpickled
    _write_npz(
        tmp_path / "pickle.npz", np.ones((2, 2)), labels=np.array([{"a": 1}, None], dtype=object)
    )
    with pytest.raises(
        data.GraphFormatError, match=r"pickle.npz: cannot read as .npz without unpickling"
    ):
        data.load_npz(tmp_path / "pickle.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(data.GraphFormatError, match=r"text.npz: not a .npz \(zip\) file"):
        data.load_npz(tmp_path / "text.npz")
    _write_npz(tmp_path / "badlabels.npz", np.ones((3, 3)), labels=np.array([0, 1]))
    with pytest.raises(
        data.GraphFormatError,
        match=r"badlabels.npz: labels must have shape \(N,\) = \(3,\); got \(2,\)",
    ):
        data.load_npz(tmp_path / "badlabels.npz")
    with pytest.raises(data.GraphFormatError, match=r"missing.npz: no such file"):
        data.load(str(tmp_path / "missing.npz"))


@pytest.mark.parametrize(
    "text,weights",
    [
        ("src,dst,weight\na,b,2.5\nb,c,1\n", [2.5, 1.0]),  # CSV with header and weights
        ("a\tb\nb\tc\n", [1.0, 1.0]),  # TSV, no header
        ("# comment\na b 2\n\nb  c 3\n", [2.0, 3.0]),  # spaces, comments, blank lines
    ],
)
def test_edge_lists(tmp_path, text, weights) -> None:
    path = tmp_path / "edges.csv"
    path.write_text(text)
    g = data.load(str(path))
    want = np.zeros((3, 3))
    want[0, 1] = want[1, 0] = weights[0]
    want[1, 2] = want[2, 1] = weights[1]
    np.testing.assert_array_equal(g.adjacency.toarray(), want)
    np.testing.assert_array_equal(g.features, np.eye(3))
    assert g.labels is None


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("a,b,c,d\n1,2,3,4\n", r"edge 1 has 4 fields"),
        ("1,2,heavy\n", r"edge 1: weight 'heavy' is not a number"),
        ("1,2,-1\n", r"edge 1: weight -1.0 must be finite and non-negative"),
        ("# only a comment\n", r"no edges"),
    ],
)
def test_malformed_edge_lists(tmp_path, text, pattern) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(data.GraphFormatError, match=rf"bad.csv: {pattern}"):
        data.load(str(path))


def test_unknown_suffix(tmp_path) -> None:
    (tmp_path / "g.json").write_text("{}")
    with pytest.raises(data.GraphFormatError, match=r"unknown format '.json'"):
        data.load(str(tmp_path / "g.json"))


def test_networkx_and_scipy_sources() -> None:
    nx = pytest.importorskip("networkx")
    g = data.karate_club()
    assert (g.num_nodes, g.num_edges) == (34, 78)
    assert set(np.unique(g.labels)) == {0, 1}
    assert metrics.modularity(g.adjacency, g.labels) == pytest.approx(
        nx.community.modularity(
            nx.karate_club_graph(),
            [set(np.flatnonzero(g.labels == k)) for k in (0, 1)],
            weight=None,
        )
    )
    s = data.from_scipy(sparse.eye(5, k=1), name="path")
    assert s.num_edges == 4 and s.adjacency[1, 0] == 1


def test_degree_features_for_large_structure_only_graphs() -> None:
    n = data.IDENTITY_FEATURES_MAX_NODES + 1
    ring = sparse.diags([np.ones(n - 1)], [1], shape=(n, n))
    g = data.from_scipy(ring)
    assert g.features.shape == (n, 32) and g.notes == ["degree features"]
    np.testing.assert_array_equal(g.features.sum(1), 1)


def test_sbm_is_seeded_and_carries_the_communities() -> None:
    a, b, c = data.synthetic_sbm(seed=1), data.synthetic_sbm(seed=1), data.synthetic_sbm(seed=2)
    assert (a.adjacency != b.adjacency).nnz == 0 and np.array_equal(a.features, b.features)
    assert (a.adjacency != c.adjacency).nnz > 0
    q_true = metrics.modularity(a.adjacency, a.labels)
    q_random = metrics.modularity(a.adjacency, np.random.default_rng(0).permutation(a.labels))
    assert q_true > 0.5 and abs(q_random) < 0.05
    centroid = np.stack([a.features[a.labels == k].mean(0) for k in range(4)])
    nearest = np.argmin(((a.features[:, None] - centroid[None]) ** 2).sum(-1), axis=1)
    assert (nearest == a.labels).mean() > 0.9  # features correlate with the communities
    dc = data.synthetic_sbm(degree_correction=1.0, seed=1)
    deg = np.asarray(dc.adjacency.sum(1)).ravel()
    assert deg.std() > 2 * np.asarray(a.adjacency.sum(1)).ravel().std()  # heavier-tailed degrees


def test_integer_ids_are_indices_and_features_attach(tmp_path) -> None:
    (tmp_path / "e.csv").write_text("3,1\n1,0\n")  # ids 0..3, node 2 isolated
    g = data.load(str(tmp_path / "e.csv"))
    assert g.num_nodes == 4 and g.node_names is None
    assert g.adjacency[3, 1] == 1 and g.adjacency[0, 1] == 1 and g.adjacency[2].nnz == 0
    np.savetxt(tmp_path / "f.csv", np.arange(8).reshape(4, 2), delimiter=",")
    np.testing.assert_array_equal(
        data.load_features(tmp_path / "f.csv", 4), np.arange(8).reshape(4, 2)
    )
    np.save(tmp_path / "f.npy", np.ones((4, 3)))
    assert data.load_features(tmp_path / "f.npy", 4).shape == (4, 3)
    with pytest.raises(
        data.GraphFormatError,
        match=r"f.npy: features must have shape \(N, F\) with N = 5 nodes; got \(4, 3\)",
    ):
        data.load_features(tmp_path / "f.npy", 5)
    (tmp_path / "names.csv").write_text("alice,bob\nbob,carol\n")
    assert data.load(str(tmp_path / "names.csv")).node_names == ["alice", "bob", "carol"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p_in": float("nan")}, "`p_in` must be a probability in [0, 1]; got nan"),
        ({"p_out": 1.5}, "`p_out` must be a probability in [0, 1]; got 1.5"),
        ({"p_in": True}, "`p_in` must be a probability in [0, 1]; got True"),
        ({"sizes": (30, 0)}, "`sizes` must be community sizes, ints >= 1"),
        ({"num_features": 0}, "`num_features` must be an int >= 1; got 0"),
        ({"degree_correction": float("inf")}, "`degree_correction` must be a finite number"),
        ({"seed": -1}, "`seed` must be an int in [0, 2**32)"),
    ],
)
def test_synthetic_sbm_refuses_what_is_no_model(kwargs, message) -> None:
    with pytest.raises(ValueError) as info:
        data.synthetic_sbm(**kwargs)
    assert str(info.value) == f"dmon.data.synthetic_sbm: {message}" or message in str(info.value)


def test_features_files_that_are_no_matrix_are_named(tmp_path) -> None:
    text = tmp_path / "feats.npy"
    text.write_text("1,2\n3,4\n")  # a CSV given a .npy name
    with pytest.raises(data.GraphFormatError, match=r"not a NumPy .npy array file.*a text file"):
        data.load_features(text)
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((5, 0)))
    with pytest.raises(data.GraphFormatError, match=r"features have no columns \(shape \(5, 0\)\)"):
        data.load_features(empty)
    graph = data.synthetic_sbm(sizes=(5, 5))
    graph.features = np.zeros((10, 0), np.float32)
    with pytest.raises(
        data.GraphFormatError, match=r"features have no columns \(shape \(10, 0\)\)"
    ):
        data.check_graph(graph.name, graph.adjacency, graph.features, graph.labels)
