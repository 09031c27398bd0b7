"""Keeping freed memory in the process while a CPU training loop runs.

glibc's malloc serves every block over 32 MiB (the ceiling of its dynamic mmap
threshold) as a fresh mapping and unmaps it when it is freed. torch's, TensorFlow's and
XLA's CPU buffers come straight from malloc, so each training step's large tensors (the
`N × 64` activations and gradients of an ogbn-arxiv-size graph) are page-faulted in
again, 4 KiB at a time: a quarter to a third of the epoch at 169k nodes
(docs/benchmarks.md, "Training"). jemalloc and tcmalloc keep freed memory for reuse,
which is why PyTorch's CPU tuning guide advises them. `keep_freed_memory` asks glibc for
the same while a block runs (`mallopt`: no mappings for large blocks, no trimming of the
heap), then restores glibc's defaults and hands the free memory back to the system
(`malloc_trim`).

The settings reach the blocks of glibc's main arena: a thread with an arena of its own
gets every block over 64 MiB as a mapping whatever they say (such an arena grows in
heaps of at most 64 MiB). `dmon.cluster` trains inside the block on the CPU, on every
backend; its JAX engine runs steps on the trainer's thread so that XLA's block of a
step's temporaries is one of them (`dmon.backends.jax.engine`). Nothing is changed where
the process already has a malloc policy of its own (see `malloc_policy`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
import threading
from collections.abc import Iterator

# mallopt parameters (glibc's malloc.h) and glibc's defaults for them
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int

_lock = threading.Lock()
_users = 0  # nested or concurrent blocks: the outermost sets and restores


def malloc_policy() -> str | None:
    """Why this process's malloc is not glibc's with its defaults, or `None` if it is.

    Another C library, a preloaded allocator (`LD_PRELOAD` naming jemalloc, tcmalloc,
    mimalloc, ...), or malloc settings in the environment (`MALLOC_*_`, glibc.malloc
    tunables): `keep_freed_memory` then leaves the process as it is.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return "the C library is not glibc"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        return "an allocator is preloaded (LD_PRELOAD)"
    settings = sorted(k for k in os.environ if k.startswith("MALLOC_") and k.endswith("_"))
    if settings:
        return f"glibc's malloc is configured by {settings[0]}"
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return "glibc's malloc is configured by GLIBC_TUNABLES"
    return None


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """Within the block, glibc serves large blocks from its heap and keeps freed memory
    for reuse instead of returning it to the system; afterwards its defaults come back
    and the free memory is returned (`malloc_trim(0)`).

    Yields whether the settings were changed: `False` where `malloc_policy()` names a
    reason (not glibc, a preloaded allocator, settings in the environment). Blocks may
    nest or overlap across threads; the settings hold until the last one ends. The
    process's peak memory can grow by about its largest step's temporaries (+1–8% for
    `dmon.cluster` at ogbn-arxiv's size), or by a few of them where the heap fragments
    (a freed block carved for alignment may not fit the next request of the same size).
    Afterwards glibc's mmap threshold stays where it was but no longer adapts, as after
    any `mallopt`.

        with dmon.memory.keep_freed_memory():
            for epoch in range(epochs):
                train_step()
    """
    global _users
    if malloc_policy() is not None:
        yield False
        return
    libc = ctypes.CDLL(None)
    with _lock:
        if _users == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)
        _users += 1
    try:
        yield True
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)


def one_arena() -> bool:
    """From now on, threads that have not allocated yet share glibc's main arena instead
    of getting arenas of their own; returns whether it was set (not where
    `malloc_policy()` names a reason). For the rest of the process: an arena, once
    made, is never undone.

    Under `keep_freed_memory`, with arenas per thread, the freed block of one step's
    temporaries now and then no longer takes the next step's, and the heap grows by a
    whole block, at random (JAX processes on CPUs: docs/distributed.md, "Partition
    once"); with one arena it was reused every time in the runs measured there.
    """
    if malloc_policy() is not None:
        return False
    ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 1)
    return True


def release_freed_memory() -> bool:
    """Hand the memory glibc holds free back to the system now (`malloc_trim(0)`, every
    arena), whatever `keep_freed_memory` says; returns whether it could (glibc only).

    For a one-off burst of small blocks on many threads, such as XLA compiling a step:
    glibc keeps them in its arenas, where the step's one large block of temporaries
    cannot reuse them, so without this they stay in the process's peak.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    ctypes.CDLL(None).malloc_trim(0)
    return True


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MB, or `None` where the platform does not
    say (no `resource` module)."""
    try:
        import resource
    except ImportError:
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return float(kib / (1 << 20) if sys.platform == "darwin" else kib / 1024)
