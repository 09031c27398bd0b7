"""A graph partitioned once into per-shard files (`dmon partition`,
`dmon.training.shard_files`): the files hold exactly the arrays `prepare` computes for
the whole graph; a process reads only its own shard; a run from the folder follows the
run from the graph file epoch by epoch (4 JAX devices, 2 torch processes, 2 JAX
processes each reading its own shard), and each of its processes keeps its own nodes'
soft assignment while every node's cluster reaches all of them; the metrics summed over shards equal the whole
graph's; corrupt, missing, mismatched and foreign folders are refused with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import free_port, installed, jax_job, subprocess_env

from dmon import data, metrics
from dmon.training import shard_files
from dmon.training.prepared import prepare

pytest.importorskip("pymetis")
RUN = ("-k", "3", "--epochs", "40", "--dropout", "0", "--seed", "1", "--quiet")


def _dmon(*args: str, torchrun: int = 0, timeout: float = 600) -> subprocess.CompletedProcess:
    head = [sys.executable, "-m", "dmon"]
    if torchrun:
        head = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(torchrun),
                "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "dmon"]  # fmt: skip
    return subprocess.run(
        [*head, *args], env=subprocess_env(), capture_output=True, text=True, timeout=timeout
    )


def _graph(directed: bool = False) -> data.Graph:
    g = data.synthetic_sbm((30, 25, 20), p_in=0.3, p_out=0.02, num_features=6, seed=4)
    if directed:  # drop a third of the edges one way: A ≠ Aᵀ
        a = g.adjacency.tocoo()
        keep = (a.row < a.col) | (np.arange(a.nnz) % 3 != 0)
        g.adjacency = type(g.adjacency)((a.data[keep], (a.row[keep], a.col[keep])), a.shape)
    return g


@pytest.mark.parametrize("directed", [False, True])
@pytest.mark.parametrize(("method", "exchange"), [("metis", "halo"), ("contiguous", "all-gather")])
def test_the_files_hold_what_prepare_computes(
    tmp_path: Path, directed: bool, method: str, exchange: str
) -> None:
    g = _graph(directed)
    folder = shard_files.write_shards(g, 3, tmp_path / "s", method=method, exchange=exchange)
    ei, w = g.edge_index()
    whole = prepare(ei, w, g.features, 3, method, exchange)
    assert folder.manifest["symmetric"] is not directed
    for p in range(3):
        opened: list[str] = []
        real = shard_files._sha256

        def spy(path: Path, opened: list = opened, real=real) -> str:
            opened.append(path.name)
            return real(path)

        shard_files._sha256 = spy  # type: ignore[assignment]
        try:
            local = shard_files.load(folder, [p])
        finally:
            shard_files._sha256 = real
        # this process read its own shard (and the node order), nothing else
        assert sorted(opened) == sorted(
            {shard_files.shard_name(p), *(["order.npy"] if method == "metis" else [])}
        )
        for key in ("row", "col", "weight", "valid", "batch"):
            np.testing.assert_array_equal(getattr(local.part, key)[p], getattr(whole.part, key)[p])
            assert not np.any(getattr(local.part, key)[[q for q in range(3) if q != p]])
        np.testing.assert_array_equal(local.ax["stacked"][p], whole.ax["stacked"][p])
        if exchange == "halo":
            np.testing.assert_array_equal(local.part.send[p], whole.part.send[p])
            np.testing.assert_array_equal(local.part.send_counts, whole.part.send_counts)
        assert local.part.present == (p,)
    # the graph metrics from the shards' sums are the whole graph's
    labels = np.random.default_rng(0).integers(0, 4, g.num_nodes)
    src, dst, wt = shard_files.local_edges(folder, range(3))
    between = metrics.cluster_weights(src, dst, wt, labels, 4)
    scores = metrics.graph_scores(between, directed)
    assert scores["modularity"] == pytest.approx(metrics.modularity(g.adjacency, labels), abs=1e-12)
    assert scores["average_conductance"] == pytest.approx(
        metrics.average_conductance(g.adjacency, labels), abs=1e-12
    )
    assert scores["coverage"] == pytest.approx(metrics.coverage(g.adjacency, labels), abs=1e-12)


def test_graph_scores_match_networkx_on_a_directed_graph() -> None:
    nx = pytest.importorskip("networkx")
    g = _graph(directed=True)
    labels = np.random.default_rng(1).integers(0, 3, g.num_nodes)
    ei, w = g.edge_index()
    half = ei.shape[1] // 2  # two "shards" of edges, summed
    between = sum(
        metrics.cluster_weights(ei[0, s], ei[1, s], w[s], labels, 3)
        for s in (slice(0, half), slice(half, None))
    )
    graph = nx.from_scipy_sparse_array(g.adjacency, create_using=nx.DiGraph)
    communities = [set(np.flatnonzero(labels == c).tolist()) for c in range(3)]
    want = nx.algorithms.community.modularity(graph, communities)
    assert metrics.graph_scores(between, True)["modularity"] == pytest.approx(want, abs=1e-12)


def test_checkpoints_of_the_graph_and_its_folder_are_interchangeable(tmp_path: Path) -> None:
    from dmon.training.sources import FolderSource, GraphSource

    g = _graph()
    folder = shard_files.write_shards(g, 2, tmp_path / "s")
    assert FolderSource(folder).graph_hash() == GraphSource(g).graph_hash()


def _history(out: Path) -> np.ndarray:
    rows = (out / "history.csv").read_text().splitlines()[1:]
    return np.array([[float(v) for v in r.split(",")[1:]] for r in rows])


@pytest.mark.skipif(not (installed("jax") and installed("keras")), reason="needs jax, keras")
def test_a_run_from_the_folder_follows_the_run_from_the_graph(tmp_path: Path) -> None:
    split = ("--partitioner", "metis", "--exchange", "halo")
    proc = _dmon("partition", "karate", "--parts", "4", "--out", str(tmp_path / "s"), *split)
    assert proc.returncode == 0, proc.stderr
    assert "4 shards (metis, exchange halo)" in proc.stdout
    runs = {
        "file": ("karate", "--devices", "4", *split),
        "folder": (str(tmp_path / "s"), "--devices", "4"),
    }
    for name, args in runs.items():
        proc = _dmon("cluster", *args, *RUN, "--backend", "jax", "--out", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(_history(tmp_path / "file"), _history(tmp_path / "folder"))
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in runs)
    assert a["metrics"] == b["metrics"] and a["distributed"] == b["distributed"]
    assert b["graph"]["shards"] == str(tmp_path / "s")
    assert not (tmp_path / "folder" / "clusters.png").exists()  # no process holds the graph


@pytest.mark.skipif(not (installed("torch") and installed("keras")), reason="needs torch, keras")
def test_torch_processes_read_their_own_shard(tmp_path: Path) -> None:
    proc = _dmon("partition", "karate", "--parts", "2", "--out", str(tmp_path / "s"))
    assert proc.returncode == 0, proc.stderr
    for name, args in {"file": ("karate",), "folder": (str(tmp_path / "s"),)}.items():
        out = str(tmp_path / name)
        proc = _dmon("cluster", *args, *RUN, "--backend", "torch", "--out", out, torchrun=2)
        assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(
        _history(tmp_path / "file"), _history(tmp_path / "folder"), rtol=0, atol=0
    )
    # the folder's run gathers clusters and top probabilities, not N × k: the same file
    csv = [(tmp_path / n / "assignments.csv").read_text() for n in ("file", "folder")]
    assert csv[0] == csv[1]


_LOCAL = """
import sys
import numpy as np
from dmon import data, training
graph, out = sys.argv[1], sys.argv[2]
source = data.karate_club() if graph == "karate" else training.open_folder(graph)
r = training.cluster(source, 3, backend="torch", epochs=30, dropout=0.0, seed=1,
                     launch=training.Launch())
nodes = np.arange(r.assignments.size) if r.nodes is None else r.nodes
np.savez(f"{out}-{r.distributed['process_id']}.npz", nodes=nodes, s=r.probabilities,
         assignments=r.assignments, top=r.top_probability)
"""


@pytest.mark.skipif(not (installed("torch") and installed("keras")), reason="needs torch, keras")
def test_each_process_keeps_its_own_nodes_probabilities(tmp_path: Path) -> None:
    shard_files.write_shards(data.karate_club(), 2, tmp_path / "s", method="metis")
    script = tmp_path / "local.py"
    script.write_text(_LOCAL)
    for name, graph in {"file": "karate", "folder": str(tmp_path / "s")}.items():
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
             "--master-addr", "127.0.0.1", "--master-port", str(free_port()), str(script),
             graph, str(tmp_path / name)],
            env=subprocess_env(), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    whole = np.load(tmp_path / "file-0.npz")  # every node's row, gathered N × k
    assert whole["s"].shape == (34, 3)
    mine = [np.load(tmp_path / f"folder-{r}.npz") for r in (0, 1)]
    assert sorted(np.concatenate([m["nodes"] for m in mine]).tolist()) == list(range(34))
    for m in mine:
        assert 0 < m["s"].shape[0] < 34  # its own nodes only
        np.testing.assert_allclose(m["s"], whole["s"][m["nodes"]], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(m["assignments"], whole["s"].argmax(-1))
        np.testing.assert_allclose(m["top"], whole["s"].max(-1), rtol=0, atol=1e-6)


@pytest.mark.skipif(not (installed("jax") and installed("keras")), reason="needs jax, keras")
def test_jax_processes_read_their_own_shard(tmp_path: Path) -> None:
    proc = _dmon("partition", "karate", "--parts", "2", "--out", str(tmp_path / "s"))
    assert proc.returncode == 0, proc.stderr
    jax_job(str(tmp_path / "s"), *RUN, "--timeout", "120", "--out", str(tmp_path / "jobs"))
    one = _dmon("cluster", "karate", *RUN, "--backend", "jax", "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    assert np.abs(_history(tmp_path / "one") - _history(tmp_path / "jobs")).max() <= 1e-4
    rows = [_assignments(tmp_path / n) for n in ("one", "jobs")]
    np.testing.assert_array_equal(rows[0][:, 0], rows[1][:, 0])  # clusters
    np.testing.assert_allclose(rows[0][:, 1], rows[1][:, 1], rtol=0, atol=1e-4)  # top


def _assignments(out: Path) -> np.ndarray:
    """`assignments.csv` as rows of (cluster, probability), in node order."""
    rows = (out / "assignments.csv").read_text().splitlines()[1:]
    return np.array([[float(v) for v in r.split(",")[1:]] for r in rows])


def _corrupt(folder: Path) -> None:
    path = folder / "shard-00001.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _foreign(folder: Path) -> None:
    (folder / "manifest.json").write_text(json.dumps({"format": "other/9"}))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "shard-00001.npz").unlink(), "shard-00001.npz: missing (the manifest lists it)"),
        (_corrupt, "shard-00001.npz: its contents do not match the manifest"),
        (_foreign, "format 'other/9', not 'dmon-shards/1'"),
        (lambda f: (f / "manifest.json").write_text("{"), "manifest.json: unreadable"),
    ],
)  # fmt: skip
def test_a_damaged_folder_is_refused_with_one_line(damage, message: str, tmp_path: Path) -> None:
    folder = tmp_path / "s"
    shard_files.write_shards(_graph(), 2, folder)
    damage(folder)
    with pytest.raises(
        shard_files.ShardFileError, match="^" + str(folder).replace("\\", "\\\\")
    ) as err:
        shard_files.load(shard_files.open_folder(folder), [0, 1])
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(not (installed("jax") and installed("keras")), reason="needs jax, keras")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--devices", "2"), "holds 3 shards; this run has 2 (launch with --devices D with D ×"),
        (
            ("--num-processes", "2", "--process-id", "0", "--coordinator", "127.0.0.1:1"),
            "holds 3 shards; this run has 2",
        ),
        (("--backend", "torch"), "holds 3 shards; this run has 1 (launch with python -m torch"),
        (("--devices", "3", "--labels", "x.csv"), "--labels: a shard folder's graph was fixed"),
    ],
)
def test_cli_refuses_a_run_that_does_not_fit_the_folder(
    args: tuple, message: str, tmp_path: Path
) -> None:
    if "torch" in args and not installed("torch"):
        pytest.skip("needs torch")
    shard_files.write_shards(_graph(), 3, tmp_path / "s")
    backend = () if "--backend" in args else ("--backend", "jax")
    proc = _dmon("cluster", str(tmp_path / "s"), *args, *backend, "--out", str(tmp_path / "o"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    # a folder without a manifest is no folder of shards: read as a graph file, refused
    (tmp_path / "empty").mkdir()
    proc = _dmon("cluster", str(tmp_path / "empty"), "--backend", "jax")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_partition_never_replaces_what_it_was_not_asked_to(tmp_path: Path) -> None:
    out = tmp_path / "s"
    assert _dmon("partition", "karate", "--parts", "2", "--out", str(out)).returncode == 0
    before = json.loads((out / "manifest.json").read_text())
    proc = _dmon("partition", "karate", "--parts", "3", "--out", str(out))
    assert (
        proc.returncode == 2
        and "is not empty; replace a partition there with --overwrite" in proc.stderr
    )
    assert json.loads((out / "manifest.json").read_text()) == before
    proc = _dmon("partition", "karate", "--parts", "3", "--out", str(out), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "manifest.json").read_text())["parts"] == 3
    assert not (out / "shard-00002.npz").exists() or len(list(out.glob("shard-*"))) == 3
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    proc = _dmon("partition", "karate", "--parts", "2", "--out", str(other), "--overwrite")
    assert proc.returncode == 2 and "holds other files than a partition" in proc.stderr
    assert (other / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "s"]  # no temporaries left
