"""Training the paper's DMoN model on one graph: `cluster` (also `dmon.cluster`), its
result and the files it writes.

- `loop`: `cluster`, the epochs, checkpoints, Ctrl-C, evaluation;
- `model`: the model, defined once (parameters, initial values, forward pass);
- `engine`: the `Engine` protocol each framework implements
  (`dmon.backends.<name>.engine`); `launch`: where a sharded run runs;
- `optimizer`: Keras' Adam; `prepared`: what a fit computes once;
- `outputs`: `write_outputs`, the files of a run; `backend`: choosing Keras' backend.
"""

from dmon.training.backend import BackendError
from dmon.training.launch import Launch
from dmon.training.loop import cluster, evaluate
from dmon.training.outputs import write_outputs
from dmon.training.result import ClusterResult, TrainingDiverged

__all__ = [
    "BackendError",
    "ClusterResult",
    "Launch",
    "TrainingDiverged",
    "cluster",
    "evaluate",
    "write_outputs",
]
