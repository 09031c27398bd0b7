"""TensorFlow's training engine: one `tf.function` step (without XLA: TensorFlow's sparse
product has no XLA kernel) on one device."""

from __future__ import annotations

from typing import Any

import numpy as np
from dmon.backends.tensorflow.collectives import tf_shard

from dmon.distributed import LocalCollectives, Shard, shard_spmm
from dmon.training.engine import Defaults
from dmon.training.launch import Launch
from dmon.training.model import ModelSettings, by_name, forward, sparse_features_times
from dmon.training.optimizer import adam_update
from dmon.training.prepared import Prepared


class Engine(Defaults):
    """One `tf.function` step (without XLA: TensorFlow's sparse product has no XLA kernel)
    on one device."""

    def __init__(self, launch: Launch | None) -> None:
        import tensorflow as tf

        if launch is not None:
            raise ValueError("TensorFlow trains on one device (see docs/distributed.md)")
        self.tf = tf
        self.rank, self.parts, self.processes = 0, 1, 1

    @classmethod
    def check_launch(cls, launch: Launch) -> None:
        raise ValueError(
            "sharded training runs on jax or torch; got backend 'tensorflow' (TensorFlow: "
            "see docs/distributed.md)"
        )

    def setup(self, data: Prepared, params: list[np.ndarray], settings: ModelSettings) -> None:
        tf = self.tf
        self.part = data.part
        comm = LocalCollectives()
        k, dropout, seed = settings.k, settings.dropout, settings.seed

        def tensors(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
            local = data.local(arrays, 0)
            return {
                key: tf.constant(v, dtype=tf.float32 if v.dtype.kind == "f" else tf.int64)
                for key, v in local.items()
            }

        self.x = tensors(data.x)
        self.ax = tensors(data.ax) if data.ax is not None else tf_shard(data.a_hat_part())
        self.shard = tf_shard(data.part)
        data.mark(self.shard, self.ax)
        self.params = [tf.Variable(p, dtype=tf.float32) for p in params]
        self.m = [tf.Variable(tf.zeros_like(p)) for p in self.params]
        self.v = [tf.Variable(tf.zeros_like(p)) for p in self.params]
        cache: dict = {}
        block, width = data.part.block, data.width
        # the sparse structures, built eagerly once: the traced step reads them as constants
        if isinstance(self.ax, Shard):  # sparse features (dmon.training.prepared)
            shard_spmm(self.ax, tf.zeros((block, 1)), comm)
            sparse_features_times(self.x, tf.zeros((width, 1)), block, width, cache)
        shard_spmm(self.shard, tf.zeros((block, 1)), comm)

        def run(train: bool, epoch: Any) -> Any:
            keep = None
            if train and dropout > 0:
                mask = tf.random.stateless_uniform(
                    (block, k), tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
                )
                keep = tf.cast(mask >= dropout, tf.float32) / (1.0 - dropout)
            return forward(
                by_name(list(self.params)), self.ax, self.x, self.shard, comm, keep, settings,
                width, cache,
            )  # fmt: skip

        @tf.function
        def step(alpha: Any, epoch: Any) -> Any:
            with tf.GradientTape() as tape:
                loss, out = run(True, epoch)
            # a gather's gradient is IndexedSlices: dense for Adam
            grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, self.params)]
            new, m, v = adam_update(list(self.params), grads, list(self.m), list(self.v), alpha)
            for var, value in zip([*self.params, *self.m, *self.v], [*new, *m, *v], strict=True):
                var.assign(value)
            return tf.stack([loss, out.spectral_loss, out.cluster_loss])

        @tf.function
        def predict() -> Any:
            return run(False, 0)[1].s

        self._step, self._predict = step, predict

    def step(self, alpha: np.float32, epoch: int) -> Any:
        return self._step(self.tf.constant(alpha), self.tf.constant(epoch, self.tf.int64))

    def read(self, values: list[Any]) -> np.ndarray:
        return self.tf.stack(values).numpy().astype(np.float64)

    def state(self) -> list[np.ndarray]:
        return [v.numpy() for v in (*self.params, *self.m, *self.v)]

    def set_state(self, arrays: list[np.ndarray]) -> None:
        for var, a in zip([*self.params, *self.m, *self.v], arrays, strict=True):
            var.assign(a)

    def predict(self) -> np.ndarray:
        return self.part.gather(self._predict().numpy()[None])

    def device_kind(self) -> str:
        return "gpu" if self.tf.config.list_logical_devices("GPU") else "cpu"
