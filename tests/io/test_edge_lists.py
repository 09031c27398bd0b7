"""Edge lists mean what their writer meant (issue 24): a byte-order mark, spaces around
fields, the usual header names, KONECT's `%` comments and an edge listed twice give the
graph the file describes; a file that mixes id kinds, holds NUL bytes or is given a
non-integral node count is refused in one line; names come back in `assignments.csv`.
The expected graphs are written out by hand.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from dmon import data
from dmon.training.outputs import write_outputs
from dmon.training.result import ClusterResult

PATH = np.zeros((3, 3))  # 0 - 1 - 2, weight 1
PATH[0, 1] = PATH[1, 0] = PATH[1, 2] = PATH[2, 1] = 1.0


@pytest.mark.parametrize(
    ("text", "weight01"),
    [
        ("\ufeff0,1\n1,2\n", 1.0),  # Excel's "CSV UTF-8": a byte-order mark first
        ("0 ,1\n1, 2\n", 1.0),  # spaces around fields
        ("u,v\n0,1\n1,2\n", 1.0),  # header words
        ("from_node,to_node\n0,1\n1,2\n", 1.0),
        ("node_a node_b\n0 1\n1 2\n", 1.0),  # names over integer indices: a header
        ("% sym unweighted\n% 2 3 3\n0 1\n1 2\n", 1.0),  # KONECT
        ("0,1\n0,1\n1,2\n", 1.0),  # listed twice: one edge, not weight 2
        ("0,1\n1,0\n1,2\n", 1.0),  # both directions: one edge
        ("0,1,2\n1,0,3\n1,2\n", 3.0),  # the largest weight given
    ],
)
def test_an_edge_list_means_what_it_says(tmp_path, text: str, weight01: float) -> None:
    path = tmp_path / "edges.csv"
    path.write_text(text, encoding="utf-8")
    g = data.load_edgelist(path)
    want = PATH.copy()
    want[0, 1] = want[1, 0] = weight01
    np.testing.assert_array_equal(g.adjacency.toarray(), want)
    assert g.node_names is None  # integer ids are indices


@pytest.mark.parametrize(
    ("content", "kwargs", "pattern"),
    [
        (
            "0,1\n1,2.0\n",
            {},
            r"node ids mix integer indices \(such as '0'\) and other names \(such as '2.0'\)",
        ),
        ("0,1\n-1,2\n", {}, r"node ids mix integer indices .* other names \(such as '-1'\)"),
        ("0,1\x00\n1,2\n", {}, r"not a text edge list \(it holds NUL bytes\)"),
        ("0,1\n1,2\n", {"num_nodes": 4.7}, r"num_nodes must be an int >= 0; got 4.7"),
        ("0,1\n1,2\n", {"num_nodes": True}, r"num_nodes must be an int >= 0; got True"),
    ],
)
def test_an_ambiguous_edge_list_is_refused(tmp_path, content, kwargs, pattern) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(data.GraphFormatError, match=rf"bad.csv: {pattern}"):
        data.load_edgelist(path, **kwargs)


def test_node_names_come_back_in_the_assignments(tmp_path) -> None:
    path = tmp_path / "names.csv"
    path.write_text("source,target\nalice,bob\nbob,carol\n")
    g = data.load_edgelist(path)
    assert g.node_names == ["alice", "bob", "carol"]
    np.testing.assert_array_equal(g.adjacency.toarray(), PATH)
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    result = ClusterResult(
        probabilities.argmax(-1), probabilities, {"modularity": 0.0}, {"loss": [0.0]}
    )
    (tmp_path / "out").mkdir()
    write_outputs(tmp_path / "out", g, result, {})
    with open(tmp_path / "out" / "assignments.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["node", "cluster", "probability"],
        ["alice", "0", "0.900000"],
        ["bob", "1", "0.800000"],
        ["carol", "1", "0.700000"],
    ]


def test_labels_of_a_named_graph(tmp_path) -> None:
    (tmp_path / "g.csv").write_text("alice,bob\nbob,carol\n")
    g = data.load_edgelist(tmp_path / "g.csv")
    (tmp_path / "y.csv").write_text("node,label\ncarol,cats\nalice,dogs\nbob,cats\n")
    np.testing.assert_array_equal(data.load_labels(tmp_path / "y.csv", g), [0, 1, 1])
    (tmp_path / "y.tsv").write_text("0\t2\n1\t0\n2\t1\n")  # integer classes are kept
    g2 = data.from_scipy(g.adjacency)  # indices 0..2
    np.testing.assert_array_equal(data.load_labels(tmp_path / "y.tsv", g2), [2, 0, 1])


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("alice,dogs\nbob,cats\n", r"1 of 3 nodes have no label \(the first: 'carol'\)"),
        ("alice,dogs\nalice,cats\n", r"line 2: node 'alice' has two labels \('dogs', 'cats'\)"),
        ("dave,dogs\n", r"line 1: node 'dave' is not a node of the graph"),
        ("alice,dogs,x\n", r"line 1 has 3 fields"),
    ],
)
def test_a_labels_file_that_does_not_fit_is_refused(tmp_path, content, pattern) -> None:
    (tmp_path / "g.csv").write_text("alice,bob\nbob,carol\n")
    g = data.load_edgelist(tmp_path / "g.csv")
    (tmp_path / "y.csv").write_text(content)
    with pytest.raises(data.GraphFormatError, match=rf"y.csv: {pattern}"):
        data.load_labels(tmp_path / "y.csv", g)


def test_the_command_scores_an_edge_list_against_its_labels(tmp_path) -> None:
    keras = pytest.importorskip("keras")
    pytest.importorskip(keras.backend.backend())
    import json

    from dmon import cli, metrics

    # two triangles joined by one edge, named; the labels are the triangles
    (tmp_path / "g.csv").write_text("a,b\nb,c\nc,a\nd,e\ne,f\nf,d\nc,d\n")
    (tmp_path / "y.csv").write_text("a,x\nb,x\nc,x\nd,y\ne,y\nf,y\n")
    out = tmp_path / "run"
    argv = ["cluster", str(tmp_path / "g.csv"), "-k", "2", "--labels", str(tmp_path / "y.csv")]
    assert cli.main([*argv, "--epochs", "5", "--quiet", "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    with open(out / "assignments.csv", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    assert [r[0] for r in rows] == list("abcdef")
    clusters = np.array([int(r[1]) for r in rows])
    assert report["metrics"]["nmi"] == pytest.approx(metrics.nmi(np.repeat([0, 1], 3), clusters))
