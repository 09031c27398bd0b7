"""Training the paper's DMoN model on one graph: `cluster` (also `dmon.cluster`), its
result and the files it writes.

- `loop`: `cluster`, the epochs, checkpoints, Ctrl-C, evaluation;
- `model`: the model, defined once (parameters, initial values, forward pass);
- `engine`: the `Engine` protocol each framework implements
  (`dmon.backends.<name>.engine`); `launch`: where a sharded run runs;
- `optimizer`: Keras' Adam; `prepared`: what a fit computes once;
- `shard_files`: a graph partitioned once into per-shard files (`write_shards`);
  `sources`: a graph in memory or such a folder, as a fit sees them;
  `traffic`: what a sharded step communicates;
- `outputs`: `write_outputs`, the files of a run; `backend`: choosing Keras' backend.
"""

from dmon.training.backend import BackendError
from dmon.training.launch import Launch
from dmon.training.loop import cluster
from dmon.training.outputs import write_outputs
from dmon.training.result import ClusterResult, TrainingDiverged
from dmon.training.shard_files import ShardFileError, ShardFolder, open_folder, write_shards
from dmon.training.sources import evaluate

__all__ = [
    "BackendError",
    "ClusterResult",
    "Launch",
    "ShardFileError",
    "ShardFolder",
    "TrainingDiverged",
    "cluster",
    "evaluate",
    "open_folder",
    "write_outputs",
    "write_shards",
]
