"""How many CPU threads torch computes with (`dmon cluster --threads`): environment
variables it reads when it starts, and its own setter (imported when called)."""

from __future__ import annotations

import os


def limit_threads(n: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(n)  # torch's intra-op pool reads it at start
    import torch  # the caller trains on it next

    torch.set_num_threads(n)
