"""`dmon.memory.keep_freed_memory` against glibc's own accounting (`mallinfo2`: how many
blocks are mappings, how much free memory the heap keeps) and the kernel's (resident
memory of this process), not against dmon's state.

Training inside it is covered in tests/training/test_train.py: the per-epoch losses of
`dmon.cluster` on every backend (trained inside the block) equal Keras' `fit`, and a
probe in that process sees the settings during the epochs and only then. JAX's steps
reach it only when they run on the calling thread (`dmon.backends.jax.engine`): checked
here against the kernel's count of page faults.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest
from helpers import installed
from malloc_probe import BLOCK, glibc, large_block_is_a_mapping

from dmon import memory


def _libc() -> ctypes.CDLL:
    libc = glibc()
    if libc is None:
        pytest.skip(f"needs glibc's default malloc and mallinfo2 ({memory.malloc_policy()})")
    return libc


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_large_blocks_come_from_the_heap_and_stay_there_until_the_block_ends() -> None:
    libc = _libc()
    assert large_block_is_a_mapping(libc)  # glibc's default
    with memory.keep_freed_memory() as kept:
        assert kept
        p = libc.malloc(BLOCK)
        ctypes.memset(p, 1, BLOCK)  # fault every page in
        resident = _resident_bytes()
        libc.free(p)
        info = libc.mallinfo2()
        assert info.fordblks >= BLOCK  # the freed block is kept in the heap...
        assert _resident_bytes() > resident - BLOCK // 2  # ...with its pages
        q = libc.malloc(BLOCK)  # and the next one reuses it: the heap does not grow
        assert libc.mallinfo2().arena == info.arena
        libc.free(q)
    # defaults again, and the kept memory went back to the system (malloc_trim)
    assert _resident_bytes() < resident - BLOCK // 2
    assert large_block_is_a_mapping(libc)


def test_blocks_nest_and_the_outermost_restores() -> None:
    libc = _libc()
    with memory.keep_freed_memory():
        with memory.keep_freed_memory() as inner:
            assert inner
        assert not large_block_is_a_mapping(libc)  # still kept after the inner block
    assert large_block_is_a_mapping(libc)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("MALLOC_MMAP_MAX_", "65536", "MALLOC_MMAP_MAX_"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000", "GLIBC_TUNABLES"),
        ("LD_PRELOAD", "/opt/lib/libjemalloc.so.2", "preloaded"),
    ],
)
def test_a_malloc_policy_of_the_process_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, reason: str
) -> None:
    libc = _libc()
    monkeypatch.setenv(name, value)
    assert reason in (memory.malloc_policy() or "")
    with memory.keep_freed_memory() as kept:
        assert not kept
        assert large_block_is_a_mapping(libc)  # nothing was changed
    assert not memory.one_arena()  # nor the arenas


_JAX_STEPS = """
import json, resource, sys
import jax, jax.numpy as jnp
from dmon import memory
from dmon.backends.jax.engine import Engine
if sys.argv[1] == "engine":
    Engine(None)  # dmon starts JAX
n = 400_000  # two (n, 64) temporaries: one block of ~200 MB
x, w = jnp.ones((n, 64)), jnp.full((64, 64), 0.01)
step = jax.jit(lambda x, w: ((x @ w) * jnp.tanh(jnp.tanh(x @ w) @ w)[::-1]).sum(0))
faults = []
with memory.keep_freed_memory():
    for _ in range(12):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        step(x, w).block_until_ready()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"faults": faults[4:],
                  "async": jax.config.read("jax_cpu_enable_async_dispatch")}))
"""


@pytest.mark.parametrize("start", ["engine", "jax"])
def test_jax_steps_reuse_their_temporaries_where_dmon_starts_jax(start: str) -> None:
    _libc()
    if not installed("jax"):
        pytest.skip("needs jax")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", _JAX_STEPS, start],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    pages = 2 * 400_000 * 64 * 4 // os.sysconf("SC_PAGE_SIZE")
    assert out["async"]  # the setting reads as before: only the client took it
    # calls 5 to 12: until the heap holds a free block that fits, it grows (fragmentation)
    faults = sorted(out["faults"])
    if start == "engine":  # run on this thread: the kept heap serves the calls
        assert faults[len(faults) // 2] < pages // 20, out
    else:  # JAX's default: a worker thread maps and faults in the block every call
        assert faults[0] > pages // 2, out


def test_release_hands_kept_memory_back_inside_the_block() -> None:
    libc = _libc()
    with memory.keep_freed_memory():
        p = libc.malloc(BLOCK)
        ctypes.memset(p, 1, BLOCK)
        libc.free(p)
        resident = _resident_bytes()
        assert libc.mallinfo2().fordblks >= BLOCK  # kept
        assert memory.release_freed_memory()
        # the kernel's count: glibc's still counts the block as free in its heap (a
        # free chunk below others that are in use gives its pages back but stays)
        assert _resident_bytes() < resident - BLOCK // 2
        assert not large_block_is_a_mapping(libc)  # the block's settings still hold


_ARENAS = """
import ctypes, sys, threading
from dmon import memory
if sys.argv[1] == "one":
    assert memory.one_arena()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
def work():
    p = libc.malloc(1000)
    libc.free(ctypes.c_void_p(p))
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc.malloc_stats()  # glibc's own report, one "Arena i:" per arena, on stderr
"""


@pytest.mark.parametrize("arenas", ["one", "default"])
def test_one_arena_keeps_new_threads_in_the_main_arena(arenas: str) -> None:
    _libc()
    proc = subprocess.run(
        [sys.executable, "-c", _ARENAS, arenas],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    count = proc.stderr.count("Arena ")
    assert count == 1 if arenas == "one" else count > 1, proc.stderr
