"""Atomic file writes: a reader (or a run killed mid-write) sees the old file or the new
one, never half of one."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_kwargs: object) -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on success it is flushed to disk
    and renamed onto `path` (`os.replace`, atomic on POSIX and Windows). On an error the
    temporary file is removed and `path` is left as it was.

    Example:
        with atomic_write(out / "metrics.json") as fh:
            fh.write(text)
    """
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as fh:  # type: ignore[call-overload]
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto `path` (with the permissions a new
    file would get) when the block ends without an error, removed otherwise. For
    writers that want a file name, such as matplotlib's `savefig`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@functools.cache
def _file_mode() -> int:
    """What `open(path, "w")` would give a new file (mkstemp's files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_writable_folder(folder: str | Path) -> Path:
    """Create `folder` (and its parents) if needed and prove that a file can be written
    in it, before any long work whose results would go there.

    Raises:
        ValueError: `folder` is an existing file, or cannot be created or written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(f"{folder}: cannot write there ({err.strerror or err})") from None
    return folder
