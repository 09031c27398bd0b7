"""Where a run runs: one device, or sharded over devices and processes
(docs/distributed.md). What each framework can launch is its engine's to say
(`Engine.check_launch`); this module holds what they share."""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass

from dmon.halo import EXCHANGES
from dmon.partitioners import METHODS

_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
"""A host name or IPv4 address, or a bracketed IPv6 one: what gRPC's `HOST:PORT` takes.
A scheme (`http://`) or a second colon passed before, and JAX then aborted in C++."""


@dataclass(frozen=True)
class Launch:
    """Where a sharded run runs. JAX: `devices` local devices per process (default all),
    and, for several processes, `jax.distributed.initialize`'s `coordinator`,
    `num_processes` and `process_id`. torch: the torchrun environment. `timeout`: seconds
    that start-up and every collective may wait for another process. `partitioner` and
    `exchange`: how nodes are split into shards and how shards get each other's rows
    (`dmon.partition.partition`'s `method` and `exchange`)."""

    devices: int | None = None
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    timeout: float = 300.0
    partitioner: str = "auto"
    exchange: str = "auto"

    @property
    def processes_given(self) -> bool:
        """Some of `coordinator`, `num_processes` and `process_id` is set."""
        return any(v is not None for v in (self.coordinator, self.num_processes, self.process_id))


def check_common(launch: Launch, processes: str | None = None) -> None:
    """`ValueError` for settings no engine can use: `devices` and `timeout` out of range,
    an incomplete or malformed set of processes; `processes`: the message for an engine
    that takes no `coordinator`/`num_processes`/`process_id` (`None`: it takes them)."""
    if launch.devices is not None and (
        isinstance(launch.devices, bool)
        or not isinstance(launch.devices, int)
        or launch.devices < 1
    ):
        raise ValueError(f"devices must be an int >= 1; got {launch.devices!r}")
    if not (math.isfinite(launch.timeout) and launch.timeout > 0):
        raise ValueError(f"timeout must be a number of seconds > 0; got {launch.timeout!r}")
    if launch.partitioner not in METHODS:
        raise ValueError(
            f"partitioner must be one of {', '.join(METHODS)}; got {launch.partitioner!r}"
        )
    if launch.partitioner == "metis" and importlib.util.find_spec("pymetis") is None:
        raise ValueError("partitioner metis needs pymetis: pip install pymetis")
    if launch.exchange not in EXCHANGES:
        raise ValueError(f"exchange must be one of {', '.join(EXCHANGES)}; got {launch.exchange!r}")
    if not launch.processes_given:
        return
    if processes is not None:
        raise ValueError(processes)
    if any(v is None for v in (launch.coordinator, launch.num_processes, launch.process_id)):
        raise ValueError("several JAX processes need coordinator, num_processes and process_id")
    host, _, port = str(launch.coordinator).rpartition(":")
    if not _HOST.fullmatch(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"coordinator must be HOST:PORT (a host name, an IPv4 address or [IPv6], and a "
            f"port in 1..65535, no scheme); got {launch.coordinator!r}"
        )
    n, i = launch.num_processes, launch.process_id
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"num_processes must be an int >= 1; got {n!r}")
    if not isinstance(i, int) or not 0 <= i < n:
        raise ValueError(f"process_id must be in [0, num_processes = {n}); got {i!r}")


def check_shards(launch: Launch, num_nodes: int) -> None:
    """`ValueError` when the graph has fewer nodes than the shards asked for (each shard
    holds one node at least): 100,000 simulated devices for 34 nodes grew memory without
    end before."""
    if launch.devices is None:
        return
    shards = launch.devices * (launch.num_processes or 1)
    if shards > num_nodes:
        per = f" ({launch.devices} per process)" if (launch.num_processes or 1) > 1 else ""
        raise ValueError(
            f"devices: {shards} shards{per} for a graph of {num_nodes} nodes; each shard "
            f"holds one node at least, so at most {num_nodes}"
        )
