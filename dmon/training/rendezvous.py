"""The processes of a sharded JAX job meet at the coordinator's port before JAX does.

`jax.distributed.initialize` aborts the process from C++ (a LOG(FATAL) and a stack
trace, not an exception) when a peer never arrives or the coordinator never answers. So
each process first meets the others over a plain TCP socket on the same port, within the
job's timeout, and a missing peer becomes one line naming it. Process 0 listens; every
other process connects, says who it is and waits for process 0's word that all are
there. Each peer closes its side first, so that process 0's port is free at once for
JAX's coordination service.
"""

from __future__ import annotations

import contextlib
import socket
import time


class RendezvousError(RuntimeError):
    """A process of the job did not arrive, or the coordinator did not answer, in time."""


GO = b"go"


def meet(coordinator: str, num_processes: int, process_id: int, timeout: float) -> None:
    """Return once all `num_processes` processes have met at `coordinator` (`HOST:PORT`),
    or raise `RendezvousError` after `timeout` seconds."""
    if num_processes <= 1:
        return
    host, _, port = coordinator.rpartition(":")
    host = host.strip("[]")
    deadline = time.monotonic() + timeout
    if process_id == 0:
        _host(int(port), num_processes, deadline, coordinator, timeout)
    else:
        _join(host, int(port), process_id, deadline, coordinator, timeout)


def _host(port: int, n: int, deadline: float, where: str, timeout: float) -> None:
    family = socket.AF_INET6 if socket.has_dualstack_ipv6() else socket.AF_INET
    try:
        server = socket.create_server(
            ("", port), family=family, dualstack_ipv6=family == socket.AF_INET6
        )
    except OSError as err:
        raise RendezvousError(
            f"process 0 cannot listen on {where}: {err.strerror or err}"
        ) from None
    peers: dict[int, socket.socket] = {}
    try:
        with server:
            while len(peers) < n - 1:
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [i for i in range(1, n) if i not in peers]
                    raise RendezvousError(
                        f"process(es) {', '.join(map(str, missing))} of {n} did not arrive at "
                        f"{where} within {timeout:g} s; start every process of the job "
                        "(or raise --timeout)"
                    )
                server.settimeout(left)
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                conn.settimeout(max(deadline - time.monotonic(), 0.1))
                try:
                    rank = int(conn.recv(16).decode() or -1)
                except (OSError, ValueError):
                    conn.close()
                    continue  # not one of ours: a port scanner, a stray client
                if not 0 < rank < n or rank in peers:
                    conn.close()
                    continue
                peers[rank] = conn
            for conn in peers.values():
                with contextlib.suppress(OSError):  # a peer gone meanwhile times out alone
                    conn.sendall(GO)
            for conn in peers.values():  # the peer closes first: no TIME_WAIT on the port
                conn.settimeout(5.0)
                with contextlib.suppress(OSError):
                    conn.recv(1)
    finally:
        for conn in peers.values():
            conn.close()


def _join(host: str, port: int, rank: int, deadline: float, where: str, timeout: float) -> None:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RendezvousError(
                f"process {rank}: the coordinator (process 0) at {where} did not answer within "
                f"{timeout:g} s; start process 0 (or raise --timeout)"
            )
        try:
            conn = socket.create_connection((host, port), timeout=min(left, 5.0))
        except OSError:  # not listening yet
            time.sleep(min(0.1, max(left, 0)))
            continue
        with conn:
            try:
                conn.sendall(str(rank).encode())
                conn.settimeout(max(deadline - time.monotonic(), 0.1))
                if conn.recv(len(GO)) == GO:
                    return
            except OSError:
                pass
        time.sleep(0.1)  # dropped (a duplicate, or process 0 restarting): try again
