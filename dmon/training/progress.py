"""The progress bar of a clustering run, on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def progress_bar(total: int) -> Callable[[int, dict[str, float]], None]:
    """A text progress bar with the current losses, on stderr (`dmon cluster`, and
    `dmon.cluster(progress=True)`): one line redrawn on a terminal, every twentieth of the
    run otherwise. Says first that the first
    epoch sets up and compiles the step (seconds of silence otherwise), then how long
    that took."""
    tty = sys.stderr.isatty()
    start = time.perf_counter()
    step = max(1, total // 20)
    compiled = False
    print(
        "preparing the training step (JAX and TensorFlow compile it in the first epoch) ...",
        file=sys.stderr,
        flush=True,
    )

    def update(epoch: int, logs: dict[str, float]) -> None:
        nonlocal compiled
        if not compiled:
            compiled = True
            seconds = time.perf_counter() - start
            print(f"ready after {seconds:.1f} s (epoch {epoch})", file=sys.stderr, flush=True)
        if not tty and epoch % step and epoch != total:
            return
        done = int(30 * epoch / total)
        line = (
            f"epoch {epoch:>{len(str(total))}}/{total} [{'#' * done}{'.' * (30 - done)}] "
            f"loss {logs['loss']:+.4f} spectral {logs['spectral_loss']:+.4f} "
            f"cluster {logs['cluster_loss']:.4f} {time.perf_counter() - start:6.1f}s"
        )
        sys.stderr.write(("\r" if tty else "") + line + ("" if tty and epoch != total else "\n"))
        sys.stderr.flush()

    return update
