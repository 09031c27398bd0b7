"""glibc's own accounting of this process's heap (`mallinfo2`), the oracle of the tests
of `dmon.memory` (tests/training/test_memory.py) and of the probe in the trainer's process
(tests/training/test_train.py)."""

from __future__ import annotations

import ctypes

from dmon import memory

BLOCK = 64 << 20  # over glibc's largest mmap threshold (32 MiB)


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def glibc() -> ctypes.CDLL | None:
    """glibc with `mallinfo2`, `malloc` and `free` typed; `None` where `dmon.memory`
    leaves malloc alone (`malloc_policy`) or glibc is older than 2.33."""
    if memory.malloc_policy() is not None:
        return None
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def large_block_is_a_mapping(libc: ctypes.CDLL) -> bool:
    """Whether glibc serves a `BLOCK` as a mapping of its own (its count of mapped
    blocks goes up by one)."""
    before = int(libc.mallinfo2().hblks)
    p = libc.malloc(BLOCK)
    assert p
    mapped = int(libc.mallinfo2().hblks) == before + 1
    libc.free(p)
    return mapped
