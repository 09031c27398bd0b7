"""JAX backend (eager and ``jax.jit``)."""

from __future__ import annotations

import sys
from typing import Any

from dmon.backends.array_api import NumpyApiOps
from dmon.backends.jax.pytree import register_sparse_graph

from dmon.sparse_graph import Edges


class JaxOps(NumpyApiOps):
    name = "jax"
    framework = "jax"

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp

        self.jax = jax
        self.np = jnp  # the namespace NumpyApiOps' shared ops use
        register_sparse_graph()

    def is_array(self, x: object) -> bool:
        return isinstance(x, self.jax.Array)  # tracers are jax.Array too

    def asarray(self, x: object) -> Any:
        if isinstance(x, self.jax.Array):
            return x
        import numpy

        if hasattr(x, "detach"):  # torch: leave autograd and the device first
            x = x.detach().cpu()
        return self.np.asarray(numpy.asarray(x))

    def matmul(self, a: Any, b: Any) -> Any:
        # Full float32 precision: on NVIDIA GPUs (Ampere and later) JAX's default runs a
        # float32 product in TF32 (a 10-bit mantissa): on an H200 the pooled features
        # `SᵀX` of the suite's graphs were off by up to 1.7e-3 against float64, 100x the
        # float32 tolerance that torch (whose float32 products PyG uses) meets. DMoN's
        # products are thin (C columns), so full precision costs little. No effect on the
        # CPU or on float64.
        return self.np.matmul(a, b, precision=self.jax.lax.Precision.HIGHEST)

    def mean(self, x: Any) -> Any:
        return self.np.mean(x)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return self.np.where(cond, a, b)

    def softmax(self, x: Any) -> Any:
        return self.jax.nn.softmax(x, axis=-1)

    def selu(self, x: Any) -> Any:
        return self.jax.nn.selu(x)

    def stop_gradient(self, x: Any) -> Any:
        return self.jax.lax.stop_gradient(x)

    def with_gradient(self, forward: Any, backward: Any, *args: Any) -> Any:
        key = (forward, backward, len(args))
        fn = _CUSTOM.get(key)
        if fn is None:
            # JAX cannot say which cotangents are wanted: all are asked for, and under jit
            # the unused ones are dead code that XLA drops
            needs = (True,) * len(args)
            fn = self.jax.custom_vjp(lambda *a: forward(*a)[0])
            fn.defvjp(forward, lambda res, g: tuple(backward(res, g, needs)))
            _CUSTOM[key] = fn
        return fn(*args)

    # --- sparse ----------------------------------------------------------------------

    def is_sparse(self, x: object) -> bool:
        sparse = sys.modules.get("jax.experimental.sparse")
        return sparse is not None and isinstance(x, sparse.BCOO)

    def sparse_coo(self, x: Any) -> tuple[Any, Any, Any, tuple[int, ...]]:
        if x.n_batch or x.n_dense:
            raise ValueError(
                f"dmon: a BCOO adjacency must have n_batch=0 and n_dense=0; got {x.n_batch}, {x.n_dense}"
            )
        return x.indices[:, 0], x.indices[:, 1], x.data, tuple(x.shape)

    def sparse_matrix(self, edges: Edges) -> Any:
        # A gather and a segment sum: what BCOO's matmul lowers to on CPU, and it jits;
        # for edges in slot order, a gather per slot first (XLA:CPU's scatter is serial)
        return (edges.row, edges.col, edges.weight, edges.n, edges.slots)

    def spmm(self, matrix: Any, dense: Any) -> Any:
        row, col, weight, n, slots = matrix
        out = None
        for j in range(slots):  # row i's j-th neighbour of every row at once: fused, parallel
            at = slice(j * n, (j + 1) * n)
            term = dense[col[at]] * weight[at, None]
            out = term if out is None else out + term
        head = slots * n
        rest = self.jax.ops.segment_sum(
            dense[col[head:]] * weight[head:, None], row[head:], num_segments=n
        )
        return rest if out is None else out + rest

    def segment_sum(self, values: Any, ids: Any, num_segments: int) -> Any:
        return self.jax.ops.segment_sum(values, ids, num_segments=num_segments)

    def to_numpy(self, x: Any) -> Any:
        if isinstance(x, self.jax.core.Tracer):
            return None
        import numpy

        return numpy.asarray(x)

    def on_accelerator(self, x: Any) -> bool:
        if isinstance(x, self.jax.core.Tracer):
            return False
        return any(d.platform != "cpu" for d in x.devices())

    def version(self, x: Any) -> int | None:
        return 0  # immutable


_CUSTOM: dict[Any, Any] = {}  # (forward, backward, arity) -> jax.custom_vjp
