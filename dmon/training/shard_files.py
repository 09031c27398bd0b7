"""A graph partitioned once into one file per shard and a manifest (`dmon partition`), of
which each process of a sharded run reads only its own shards (docs/distributed.md,
"Partition once").

A folder holds `manifest.json` (sizes, settings, the partition's cut and halos, and a
SHA-256 per file), `order.npy` (the nodes in shard order: `Partition.order`, `N`
integers, which every process reads to put the results in the graph's order),
`labels.npy` when the graph has labels (read by process 0 for NMI and F1), and
`shard-PPPPP.npz` per shard: its nodes, its rows of `A` and `Â` with the rows it sends
in a halo exchange, its features (`[Â X | X]` or sparse `X`), and the global target of
every edge (read once at the end, for the graph metrics). The arrays are exactly those
`dmon.training.prepared.prepare` computes for the whole graph, so a run from a folder
follows a run from the graph file epoch by epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmon import checkpoint as ckpt
from dmon.partition import Partition, slot_plan
from dmon.training.prepared import Prepared, prepare
from dmon.version import __version__

FORMAT = "dmon-shards/1"
MANIFEST = "manifest.json"
_POOL = ("row", "col", "weight", "valid", "batch")


class ShardFileError(ValueError):
    """A shard folder or file that cannot be used; the message names it and why."""


def shard_name(p: int) -> str:
    return f"shard-{p:05d}.npz"


@dataclass(frozen=True)
class ShardFolder:
    """A partitioned graph on disk, its manifest read and checked (`open_folder`)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def parts(self) -> int:
        return int(self.manifest["parts"])

    @property
    def num_nodes(self) -> int:
        return int(self.manifest["num_nodes"])

    @property
    def name(self) -> str:
        return str(self.manifest["graph"])

    def labels(self) -> np.ndarray | None:
        """The graph's labels `(N,)`, or `None`."""
        if not self.manifest["has_labels"]:
            return None
        return self._array("labels.npy")

    def order(self) -> np.ndarray | None:
        return None if self.manifest["partitioner"] == "contiguous" else self._array("order.npy")

    def _array(self, name: str) -> np.ndarray:
        self._verify(name)
        return np.load(self.path / name, allow_pickle=False)

    def _verify(self, name: str) -> None:
        """`ShardFileError` unless `name` is the file the manifest describes."""
        path, want = self.path / name, self.manifest["files"].get(name)
        if want is None:
            raise ShardFileError(f"{self.path}: {name} is not in its manifest")
        if not path.is_file():
            raise ShardFileError(f"{path}: missing (the manifest lists it)")
        if path.stat().st_size != want["bytes"] or _sha256(path) != want["sha256"]:
            raise ShardFileError(
                f"{path}: its contents do not match the manifest (corrupt, or from another "
                "partition); partition the graph again"
            )

    def shard(self, p: int) -> Any:
        """Shard `p`'s file, checked against the manifest, open: an `np.lib.npyio.NpzFile`
        that reads an array when it is asked for (close it, or use it in `with`)."""
        name = shard_name(p)
        self._verify(name)
        try:
            npz = np.load(self.path / name, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise ShardFileError(f"{self.path / name}: unreadable ({err})") from None
        missing = [k for k in (*_POOL, "nodes", "targets") if k not in npz.files]
        if missing:
            npz.close()
            raise ShardFileError(f"{self.path / name}: lacks {', '.join(missing)}")
        return npz


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_shard_folder(path: str | Path) -> bool:
    """Whether `path` is a folder with a manifest (it may still be refused)."""
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def open_folder(path: str | Path) -> ShardFolder:
    """The folder's manifest, checked: `ShardFileError` for a folder without one, a
    foreign or unreadable manifest, or a format this dmon does not read."""
    folder = Path(path)
    if not folder.is_dir():
        raise ShardFileError(f"{folder}: not a folder")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise ShardFileError(
            f"{folder}: not a dmon shard folder (no {MANIFEST}; dmon partition writes one)"
        ) from None
    except (OSError, ValueError) as err:
        raise ShardFileError(f"{folder / MANIFEST}: unreadable ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ShardFileError(
            f"{folder / MANIFEST}: format {got!r}, not {FORMAT!r} (written by another program "
            "or another dmon version; partition the graph again)"
        )
    return ShardFolder(folder, manifest)


def check_destination(out: Path, overwrite: bool) -> None:
    """`FileExistsError` unless `write_shards` may write `out`: a new or empty folder, or
    (with `overwrite`) one holding a partition; never a file or other files."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out}/ is not empty; replace a partition there with --overwrite "
                "(overwrite=True), or choose another folder"
            )
        if not is_shard_folder(out):
            raise FileExistsError(f"{out}/ holds other files than a partition; not replaced")


def write_shards(
    graph: Any,
    parts: int,
    out: str | Path,
    *,
    method: str = "auto",
    exchange: str = "auto",
    overwrite: bool = False,
) -> ShardFolder:
    """Partition `graph` (a `dmon.data.Graph`) into `parts` shards and write them to the
    folder `out`, atomically: into a temporary folder beside it, renamed at the end. An
    existing partition in `out` is replaced only with `overwrite`.

    The partition is `dmon.partition.partition(..., method=, exchange=)` with
    `dmon cluster`'s preparation (`prepare`). Peak memory: the whole graph, `Â` and
    `[Â X | X]` at once (the partitioner's own on top: docs/benchmarks.md,
    "Partitioners")."""
    out = Path(out)
    check_destination(out, overwrite)
    start = time.perf_counter()
    ei, w = graph.edge_index()
    data = prepare(ei, w, graph.features, parts, method, exchange)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        manifest = _write(tmp, graph, data, ei, w)
        manifest["seconds"] = round(time.perf_counter() - start, 3)
        _save_json(tmp / MANIFEST, manifest)
        _swap(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return open_folder(out)


def _write(tmp: Path, graph: Any, data: Prepared, ei: np.ndarray, w: np.ndarray) -> dict[str, Any]:
    part, a_hat = data.part, data.a_hat
    halo = part.halo()
    files: dict[str, dict[str, Any]] = {}

    def save(name: str, **arrays: np.ndarray) -> None:
        path = tmp / name
        if name.endswith(".npy"):
            np.save(path, next(iter(arrays.values())))
        else:
            np.savez(path, **arrays)  # type: ignore[arg-type]  # (numpy stubs: allow_pickle)
        files[name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}

    order = np.arange(part.num_nodes) if part.order is None else part.order
    place = np.empty(part.num_nodes, np.int64)
    place[order] = np.arange(part.num_nodes)
    # the edges in the partition's order (by source's place, stable): shard p's are a run
    by_source = np.argsort(place[ei[0]], kind="stable")
    starts = np.concatenate([[0], np.cumsum(part.num_edges)])
    if part.order is not None:
        save("order.npy", order=part.order)
    if graph.labels is not None:
        save("labels.npy", labels=np.asarray(graph.labels))
    for p in range(part.parts):
        lo, hi = part.bounds[p], part.bounds[p + 1]
        arrays: dict[str, np.ndarray] = {key: getattr(part, key)[p] for key in _POOL}
        arrays["nodes"] = order[lo:hi]
        arrays["targets"] = ei[1, by_source[starts[p] : starts[p + 1]]].astype(np.int64)
        if part.send is not None:
            arrays["send"] = part.send[p]
        if data.ax is not None:
            arrays["ax"] = data.ax["stacked"][p]
        else:
            assert a_hat is not None
            arrays.update({f"x_{k}": v[p] for k, v in data.x.items()})
            arrays.update({f"a_{k}": getattr(a_hat, k)[p] for k in ("row", "col", "weight")})
            if a_hat.send is not None:
                arrays["a_send"] = a_hat.send[p]
        save(shard_name(p), **arrays)
    return {
        "format": FORMAT,
        "dmon_version": __version__,
        "graph": graph.name,
        "graph_sha256": ckpt.arrays_sha256(ei.astype(np.int32), w, graph.features),
        "num_nodes": part.num_nodes,
        "num_edges": int(ei.shape[1]),
        "edges": int(graph.num_edges),
        "num_features": data.width,
        "num_graphs": part.num_graphs,
        "parts": part.parts,
        "block": part.block,
        "partitioner": "contiguous" if part.order is None else "metis",
        "exchange": part.exchange,
        "symmetric": data.symmetric,
        "features": "dense" if data.ax is not None else "sparse",
        "has_labels": graph.labels is not None,
        "nodes_per_shard": part.nodes_per_shard,
        "edges_per_shard": part.num_edges.astype(int).tolist(),
        "edge_cut": halo.edge_cut,
        "halo_per_shard": halo.halo_per_shard,
        "send_counts": None if part.send_counts is None else part.send_counts.tolist(),
        "slots": list(slot_plan(part)),
        "a_hat": None if a_hat is None else _layout(a_hat),
        "sparse_width": None if data.ax is not None else int(data.x["row"].shape[1]),
        "files": files,
    }


def _layout(part: Partition) -> dict[str, Any]:
    return {
        "edges_per_shard": part.num_edges.astype(int).tolist(),
        "send_counts": None if part.send_counts is None else part.send_counts.tolist(),
        "width": int(part.row.shape[1]),
    }


def _save_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=1) + "\n")


def _swap(tmp: Path, out: Path) -> None:
    """`tmp` becomes `out`; an earlier partition there goes only once the new one is in."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(old)


def load(folder: ShardFolder, shards: Sequence[int]) -> Prepared:
    """The `Prepared` of a fit of which this process holds `shards`: their arrays read
    from their files; every other shard's rows are zeros that are never written, so they
    take no memory (the pages are never touched)."""
    with contextlib.ExitStack() as stack:
        files = {p: stack.enter_context(folder.shard(p)) for p in shards}
        return _stacked_prepared(folder, files)


def _stacked_prepared(folder: ShardFolder, files: dict[int, Any]) -> Prepared:
    """`load`'s arrays, read one at a time from the open files (a shard's arrays are
    never all in memory twice)."""
    m = folder.manifest
    p_all, block, n = folder.parts, int(m["block"]), folder.num_nodes
    shards = sorted(files)

    def stacked(key: str) -> np.ndarray:
        first = files[shards[0]][key]
        if p_all == 1:
            return first[None]  # the one shard: no copy
        out = np.zeros((p_all, *first.shape), first.dtype)
        out[shards[0]] = first
        del first
        for p in shards[1:]:
            out[p] = files[p][key]
        return out

    def counts(value: Any) -> np.ndarray | None:
        return None if value is None else np.asarray(value, np.int64)

    bounds = np.concatenate([[0], np.cumsum(m["nodes_per_shard"])]).astype(np.int64)
    present = tuple(sorted(shards))
    row, col, weight, valid, batch = (stacked(k) for k in _POOL)
    part = Partition(
        n, int(m["num_graphs"]), bounds, block, row, col, weight, valid, batch,
        np.asarray(m["edges_per_shard"], np.int64),
        order=folder.order(),
        send=stacked("send") if "send" in files[shards[0]].files else None,
        send_counts=counts(m["send_counts"]),
        present=present,
    )  # fmt: skip
    width = int(m["num_features"])
    if m["features"] == "dense":
        return Prepared(part, {}, width, ax={"stacked": stacked("ax")}, symmetric=m["symmetric"])
    layout = m["a_hat"]
    a_hat = Partition(
        n, int(m["num_graphs"]), bounds, block,
        stacked("a_row"), stacked("a_col"), stacked("a_weight"), part.valid, part.batch,
        np.asarray(layout["edges_per_shard"], np.int64),
        order=part.order,
        send=stacked("a_send") if "a_send" in files[shards[0]].files else None,
        send_counts=counts(layout["send_counts"]),
        present=present,
    )  # fmt: skip
    x = {key: stacked(f"x_{key}") for key in ("row", "col", "value")}
    return Prepared(part, x, width, a_hat=a_hat, symmetric=m["symmetric"])


def local_edges(folder: ShardFolder, shards: Sequence[int]) -> tuple[np.ndarray, ...]:
    """`(src, dst, weight)` graph ids and weights of the edges of `shards`."""
    src, dst, weight = [], [], []
    for p in shards:
        with folder.shard(p) as arrays:  # these three arrays alone are read
            e = int(folder.manifest["edges_per_shard"][p])
            src.append(arrays["nodes"][arrays["row"][:e]])
            dst.append(arrays["targets"])
            weight.append(arrays["weight"][:e])
    return tuple(np.concatenate(v) for v in (src, dst, weight))
