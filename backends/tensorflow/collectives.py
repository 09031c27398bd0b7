"""TensorFlow's side of node sharding: a shard of a partition as tensors. TensorFlow
trains on one device (docs/distributed.md), so it has no collectives of its own: its
engine uses `dmon.distributed.LocalCollectives`."""

from __future__ import annotations

from dmon.distributed import Shard
from dmon.partition import Partition


def tf_shard(part: Partition, rank: int = 0) -> Shard:
    """Shard `rank` of `part` as TensorFlow tensors."""
    import tensorflow as tf

    a = part.shard(rank)
    return Shard(
        tf.constant(a["row"], tf.int64),
        tf.constant(a["col"], tf.int64),
        tf.constant(a["weight"], tf.float32),
        tf.constant(a["valid"]),
        tf.constant(a["batch"], tf.int64),
        part.num_graphs,
        padded=part.padded,
    )
