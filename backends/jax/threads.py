"""How many CPU threads jax computes with (`dmon cluster --threads`): environment
variables it reads when it starts (XLA reads its flags when the CPU client is made). Imports no framework."""

from __future__ import annotations

import os


def limit_threads(n: int) -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    multi = "false" if n == 1 else "true"
    os.environ["XLA_FLAGS"] = (
        f"{flags} --xla_cpu_multi_thread_eigen={multi} intra_op_parallelism_threads={n}"
    ).strip()
    os.environ["OMP_NUM_THREADS"] = str(n)
