"""How many CPU threads tensorflow computes with (`dmon cluster --threads`): environment
variables it reads when it starts, and its own setters (imported when called)."""

from __future__ import annotations

import os


def limit_threads(n: int) -> None:
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(n)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    import tensorflow as tf  # the caller trains on it next

    try:  # settable until TensorFlow's runtime has started
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:
        pass
