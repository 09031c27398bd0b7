"""A corpus of malformed graph and feature files, written by the test: each one is
refused with a `GraphFormatError` that names the file and the problem, before SciPy or
NumPy builds anything from it (a CSR index past the last node used to crash the process),
and `dmon cluster` on it exits 2 with one line on stderr. Nothing is ever unpickled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dmon import cli, data

GOOD = {
    "adj_data": np.ones(4),
    "adj_indices": np.array([1, 0, 2, 1]),
    "adj_indptr": np.array([0, 1, 3, 4]),
    "adj_shape": np.array([3, 3]),
}
ATTR = {
    "attr_data": np.ones(3),
    "attr_indices": np.array([0, 1, 0]),
    "attr_indptr": np.array([0, 1, 2, 3]),
    "attr_shape": np.array([3, 2]),
}


def _npz(**over: object) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        arrays = {k: v for k, v in {**GOOD, **over}.items() if v is not None}
        np.savez(path, **arrays)

    return write


def _bytes(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def _text(content: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(content)


def _truncated_zip(path: Path) -> None:
    _npz()(path)
    path.write_bytes(path.read_bytes()[:60])


NPZ = [
    (
        "index past last node",
        _npz(adj_indices=np.array([1, 0, 2, 99])),
        r"`adj_indices` holds column 99, out of range for 3 columns",
    ),
    ("negative index", _npz(adj_indices=np.array([1, 0, -2, 1])), r"`adj_indices` holds column -2"),
    (
        "decreasing indptr",
        _npz(adj_indptr=np.array([0, 3, 1, 4])),
        r"`adj_indptr` must start at 0 and never decrease",
    ),
    ("indptr not from 0", _npz(adj_indptr=np.array([1, 2, 3, 4])), r"`adj_indptr` must start at 0"),
    (
        "indptr too short",
        _npz(adj_indptr=np.array([0, 1, 4])),
        r"`adj_indptr` has 3 entries; a 3-row matrix needs 4",
    ),
    (
        "indptr end",
        _npz(adj_indptr=np.array([0, 1, 3, 3])),
        r"`adj_indptr` ends at 3 but there are 4 indices",
    ),
    ("data length", _npz(adj_data=np.ones(5)), r"ends at 4 but there are 4 indices and 5 values"),
    (
        "float indices",
        _npz(adj_indices=np.array([1.0, 0, 2, 1])),
        r"`adj_indices` must be a 1-D integer array",
    ),
    (
        "2-D indptr",
        _npz(adj_indptr=np.zeros((2, 2), int)),
        r"`adj_indptr` must be a 1-D integer array",
    ),
    (
        "shape of 3",
        _npz(adj_shape=np.array([3, 3, 3])),
        r"`adj_shape` must hold two non-negative sizes",
    ),
    (
        "negative shape",
        _npz(adj_shape=np.array([-3, 3])),
        r"`adj_shape` must hold two non-negative sizes",
    ),
    (
        "non-square",
        _npz(adj_shape=np.array([3, 4])),
        r"the adjacency must be square; got shape \(3, 4\)",
    ),
    (
        "huge shape",
        _npz(adj_shape=np.array([2**40, 2**40]), adj_indptr=np.array([0, 1, 3, 4])),
        r"`adj_indptr` has 4 entries; a 1099511627776-row matrix",
    ),
    (
        "no nodes",
        _npz(
            adj_data=np.ones(0),
            adj_indices=np.zeros(0, int),
            adj_indptr=np.zeros(1, int),
            adj_shape=np.array([0, 0]),
        ),
        r"the graph has no nodes",
    ),
    ("NaN weight", _npz(adj_data=np.array([1.0, np.nan, 1, 1])), r"edge weights hold NaN or Inf"),
    ("Inf weight", _npz(adj_data=np.array([1.0, np.inf, 1, 1])), r"edge weights hold NaN or Inf"),
    (
        "negative weight",
        _npz(adj_data=np.array([1.0, -1, 1, 1])),
        r"edge weights must be non-negative",
    ),
    ("complex weight", _npz(adj_data=np.ones(4, complex)), r"`adj_data` must be a 1-D real array"),
    ("string weight", _npz(adj_data=np.array(["a"] * 4)), r"`adj_data` must be a 1-D real array"),
    (
        "pickled weights",
        _npz(adj_data=np.array([1, None, 1, 1], dtype=object)),
        r"cannot read as .npz without unpickling",
    ),
    (
        "missing key",
        _npz(adj_indptr=None),
        r"not a gnn-benchmark graph: missing keys \['adj_indptr'\]",
    ),
    (
        "attr index past F",
        _npz(**{**ATTR, "attr_indices": np.array([0, 1, 7])}),
        r"`attr_indices` holds column 7, out of range for 2 columns",
    ),
    (
        "attr rows",
        _npz(**{**ATTR, "attr_shape": np.array([4, 2]), "attr_indptr": np.array([0, 1, 2, 3, 3])}),
        r"features must have shape \(N, F\) with N = 3 nodes",
    ),
    (
        "attr too large",
        _npz(**{**ATTR, "attr_shape": np.array([3, 2**40])}),
        r"`attr_shape` 3 x 1099511627776 is too large",
    ),
    (
        "attr NaN",
        _npz(**{**ATTR, "attr_data": np.array([1.0, np.nan, 1])}),
        r"features hold NaN or Inf",
    ),
    (
        "attr_matrix rows",
        _npz(attr_matrix=np.ones((2, 2))),
        r"features must have shape \(N, F\) with N = 3 nodes; got \(2, 2\)",
    ),
    ("attr_matrix 1-D", _npz(attr_matrix=np.ones(3)), r"`attr_matrix` must be a 2-D real array"),
    ("attr_matrix Inf", _npz(attr_matrix=np.full((3, 2), np.inf)), r"features hold NaN or Inf"),
    ("labels 2-D", _npz(labels=np.eye(3)), r"`labels` must be a 1-D"),
    (
        "labels length",
        _npz(labels=np.array([0, 1])),
        r"labels must have shape \(N,\) = \(3,\); got \(2,\)",
    ),
    ("labels float", _npz(labels=np.array([0.5, 1, 2])), r"`labels` must be a 1-D"),
    (
        "labels pickled",
        _npz(labels=np.array([{}, 1, 2], dtype=object)),
        r"cannot read as .npz without unpickling",
    ),
    ("text", _text("not a zip"), r"not a .npz \(zip\) file"),
    ("empty", _bytes(b""), r"not a .npz \(zip\) file"),
    ("truncated zip", _truncated_zip, r"not a readable .npz file"),
]

EDGES = [
    (
        "id 10^8 for 2 nodes",
        _text("0,100000000\n"),
        r"node id 100000000 implies 100000001 nodes but only 2 ids appear",
    ),
    ("id past int32", _text("0,99999999999\n"), r"node id 99999999999 is too large"),
    ("NaN weight", _text("0,1,nan\n"), r"edge 1: weight nan must be finite and non-negative"),
    ("Inf weight", _text("0,1,inf\n"), r"edge 1: weight inf must be finite"),
    ("negative weight", _text("0,1,-2\n"), r"edge 1: weight -2.0 must be finite and non-negative"),
    ("word weight", _text("0,1,heavy\n"), r"edge 1: weight 'heavy' is not a number"),
    ("one field", _text("0,1\n2\n"), r"edge 2 has 1 fields"),
    ("four fields", _text("0,1,1,1\n"), r"edge 1 has 4 fields"),
    ("empty field", _text("0,,1\n"), r"line 1 has an empty field"),
    ("comments only", _text("# nothing\n"), r"no edges"),
    ("header only", _text("src,dst,weight\n"), r"no edges"),
    ("binary", _bytes(bytes(range(256)) * 4), r"not a text edge list"),
]

FEATURES = [
    (
        "rows",
        "f.npy",
        lambda p: np.save(p, np.ones((2, 4))),
        r"features must have shape \(N, F\) with N = 3 nodes; got \(2, 4\)",
    ),
    ("1-D", "f.npy", lambda p: np.save(p, np.ones(3)), r"features must have shape \(N, F\)"),
    (
        "NaN",
        "f.npy",
        lambda p: np.save(p, np.full((3, 2), np.nan)),
        r"features must be finite real numbers",
    ),
    (
        "complex",
        "f.npy",
        lambda p: np.save(p, np.ones((3, 2), complex)),
        r"features must be finite real numbers; got dtype complex128",
    ),
    (
        "pickled",
        "f.npy",
        lambda p: np.save(p, np.array([[{}]] * 3, dtype=object), allow_pickle=True),
        r"not a numeric feature matrix",
    ),
    ("text garbage", "f.csv", _text("a,b\nc,d\ne,f\n"), r"not a numeric feature matrix"),
    ("binary csv", "f.csv", _bytes(bytes(range(256))), r"not a numeric feature matrix"),
    ("unknown suffix", "f.json", _text("[]"), r"unknown features format '.json'"),
]


def _cli_error(capsys: pytest.CaptureFixture, *argv: str) -> str:
    code = cli.main(["cluster", *argv, "--quiet", "--backend", "jax"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("what,write,pattern", NPZ, ids=[c[0] for c in NPZ])
def test_malformed_npz(tmp_path: Path, capsys, what: str, write, pattern: str) -> None:
    path = tmp_path / "graph.npz"
    write(path)
    with pytest.raises(data.GraphFormatError, match=rf"^{path}: .*{pattern}|^{path}: {pattern}"):
        data.load(str(path))
    assert str(path) in _cli_error(capsys, str(path))


@pytest.mark.parametrize("what,write,pattern", EDGES, ids=[c[0] for c in EDGES])
def test_malformed_edge_list(tmp_path: Path, capsys, what: str, write, pattern: str) -> None:
    path = tmp_path / "edges.csv"
    write(path)
    with pytest.raises(data.GraphFormatError, match=rf"^{path}: {pattern}"):
        data.load(str(path))
    assert str(path) in _cli_error(capsys, str(path))


@pytest.mark.parametrize("what,name,write,pattern", FEATURES, ids=[c[0] for c in FEATURES])
def test_malformed_features(
    tmp_path: Path, capsys, what: str, name: str, write, pattern: str
) -> None:
    path = tmp_path / name
    write(path)
    with pytest.raises(data.GraphFormatError, match=rf"^{path}: {pattern}"):
        data.load_features(path, num_nodes=3)
    edges = tmp_path / "e.csv"
    edges.write_text("0,1\n1,2\n")
    line = _cli_error(capsys, str(edges), "--features", str(path))
    assert str(path) in line


def test_sparse_ids_are_fine_when_the_node_count_is_given(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("0,5000\n")
    g = data.load_edgelist(path, num_nodes=6000)
    assert g.num_nodes == 6000 and g.adjacency[0, 5000] == 1
    with pytest.raises(
        data.GraphFormatError, match=r"node id 5000 is out of range for num_nodes = 4000"
    ):
        data.load_edgelist(path, num_nodes=4000)


@pytest.mark.parametrize("make", ["folder", "fifo"])
def test_not_a_regular_file(tmp_path: Path, capsys, make: str) -> None:
    import os

    for suffix in (".npz", ".csv", ""):
        path = tmp_path / f"thing{suffix}"
        if make == "folder":
            path.mkdir()
        else:
            os.mkfifo(path)
        want = "is a folder, not a file" if make == "folder" else "not a regular file"
        with pytest.raises(data.GraphFormatError, match=rf"{path}: {want}"):
            data.load(str(path))
        assert want in _cli_error(capsys, str(path))
        with pytest.raises(data.GraphFormatError, match=rf"{path}: {want}"):
            data.load_features(path, 3)


def test_unreadable_file(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = tmp_path / "e.csv"
    path.write_text("0,1\n")
    path.chmod(0)
    with pytest.raises(data.GraphFormatError, match=r"cannot read"):
        data.load(str(path))


def test_networkx_and_scipy_sources_are_checked() -> None:
    nx = pytest.importorskip("networkx")
    from scipy import sparse

    with pytest.raises(TypeError, match=r"from_networkx: `g` must be a networkx graph; got list"):
        data.from_networkx([(0, 1)])
    with pytest.raises(data.GraphFormatError, match=r"the graph has no nodes"):
        data.from_networkx(nx.Graph())
    g = nx.Graph()
    g.add_edge(0, 1, weight=-1.0)
    with pytest.raises(data.GraphFormatError, match=r"edge weights must be non-negative"):
        data.from_networkx(g)
    g.add_edge(0, 1, weight=float("nan"))
    with pytest.raises(data.GraphFormatError, match=r"edge weights hold NaN or Inf"):
        data.from_networkx(g)
    g = nx.path_graph(3)
    nx.set_node_attributes(g, {0: "a", 1: "b"}, "club")
    with pytest.raises(data.GraphFormatError, match=r"a node has no `club` attribute"):
        data.from_networkx(g, label_attribute="club")
    with pytest.raises(data.GraphFormatError, match=r"path: the adjacency must be square"):
        data.from_scipy(sparse.csr_matrix(np.ones((2, 3))), name="path")
    with pytest.raises(
        data.GraphFormatError, match=r"features must have shape \(N, F\) with N = 2"
    ):
        data.from_scipy(np.ones((2, 2)), features=np.ones((3, 1)))
