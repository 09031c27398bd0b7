"""Keras 3 layers over `dmon.pool`, for every Keras backend (JAX, TensorFlow, PyTorch).

Inside a Keras layer the arrays are the backend's own tensors, so `dmon.pool` dispatches
to the matching dmon backend: there is no second implementation of the math here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops as K

from dmon.adjacency import gcn_normalize, gcn_normalize_sparse, spmm
from dmon.checks import check_argument, check_resolution
from dmon.layers.keras_inputs import (
    adjacency_kind,
    check_config_keys,
    dense_shapes,
    feature_shape,
    input_list,
    sparse_inputs,
)
from dmon.pooling import pool, zero_masked_rows

_PACKAGE = "dmon"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GCNConv(keras.layers.Layer):
    """Graph convolution of the DMoN paper's encoder (google-research `gcn.py`), dense.

    `out = activation((X W) ⊙ w_skip + Â (X W) + b)` with `Â = D^-1/2 (A + I) D^-1/2`
    (`dmon.adjacency.gcn_normalize`) and a learnable per-channel skip weight `w_skip`
    (initialised to ones). Inputs `[x, adj]`: `x` `(B, N, F)` or `(N, F)`, `adj` the raw
    adjacency `(B, N, N)` or `(N, N)`; output `(B, N, units)` (or `(N, units)`).

    Args:
        units: output channels.
        activation: Keras activation (default SELU, as the paper).
        skip_connection: learn `w_skip`; without it `out = activation(Â X W + b)`.
        kernel_initializer: Keras initializer of `W`.
        bias_initializer: Keras initializer of `b`.
    """

    def __init__(
        self,
        units: int,
        activation: Any = "selu",
        skip_connection: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int | np.integer) or units < 1:
            raise ValueError(f"GCNConv: `units` must be a positive int; got {units!r}")
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.skip_connection = bool(skip_connection)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape: Any) -> None:
        x_shape = feature_shape("GCNConv", input_shape, (2, 3))
        self.kernel = self.add_weight(
            name="kernel", shape=(x_shape[-1], self.units), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.units,), initializer=self.bias_initializer
        )
        self.skip_weight = (
            self.add_weight(name="skip_weight", shape=(self.units,), initializer="ones")
            if self.skip_connection
            else None
        )

    def call(self, inputs: Any) -> Any:
        x, adj, *rest = input_list("GCNConv", inputs, (2, 3))
        x = K.cast(x, self.compute_dtype)
        if adjacency_kind("GCNConv", adj) == "dense":
            if rest:
                raise ValueError("GCNConv: with a dense `adj`, `inputs` is [x, adj]; got 3 inputs")
            h = K.matmul(x, self.kernel)
            out = K.matmul(gcn_normalize(K.cast(adj, self.compute_dtype)), h)
        else:
            x, graph, lead = sparse_inputs("GCNConv", x, adj, rest)
            h = K.matmul(x, self.kernel)
            a_hat = gcn_normalize_sparse(graph, int(x.shape[0]), dtype=self.compute_dtype)
            out = spmm(a_hat, h)
            if lead:
                h, out = h[None], out[None]
        if self.skip_weight is not None:
            out = out + h * self.skip_weight
        return self.activation(out + self.bias)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        x_shape = feature_shape("GCNConv", input_shape, (2, 3))
        return (*x_shape[:-1], self.units)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "skip_connection": self.skip_connection,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GCNConv:
        check_config_keys(cls, config)
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DMoNPooling(keras.layers.Layer):
    """DMoN pooling (Tsitsulin et al., JMLR 2023) as a Keras 3 layer over `dmon.pool`.

    `logits = dropout(MLP(x))`, then `dmon.pool(x, adj, logits, mask)`. Inputs
    `[x, adj]` or `[x, adj, mask]` with `x` `(B, N, F)`, `adj` `(B, N, N)`, `mask` `(B, N)`
    (or one graph without the batch axis). Returns `(s, x_pooled, adj_pooled)`, shapes
    `(B, N, k)`, `(B, k, F)`, `(B, k, k)` (`B = 1` for one graph).

    Three losses go to `add_loss` on every call, each times its weight:
    `spectral_weight · L_spec`, `collapse_regularization · L_clus`, `ortho_weight · L_orth`.
    The defaults (1, 1, 0) are the paper's own training setup (google-research
    `train.py`: collapse regularisation 1.0, no orthogonality term). The unweighted losses
    are logged as the layer's Keras metrics `<name>_spectral_loss`, `<name>_cluster_loss`
    and `<name>_ortho_loss` (they appear in `fit`'s logs). They are kept in three
    non-trainable scalar weights (`layer.last_losses`), so `get_weights()` lists them
    before the MLP's kernels and biases; they carry no learned state. The default name is
    `dmon_pooling` (`dmon_pooling_1`, ... for more).

    Args:
        k: number of clusters, at least 2.
        mlp_units: hidden sizes of the MLP before the `k` logits (`()`: one Dense layer,
            as the paper; a list like PyG's `channels[1:]`).
        mlp_activation: activation between hidden MLP layers; `None` as PyG's MLP.
        dropout: dropout rate on the logits, training only.
        spectral_weight: weight of the spectral (modularity) loss (≥ 0).
        collapse_regularization: weight of the cluster (collapse) loss (≥ 0).
        ortho_weight: weight of the orthogonality loss (≥ 0).
        resolution: `γ` of the generalized modularity in the spectral loss (default 1;
            google-research's loss is half of dmon's at `γ = ½`).
        kernel_initializer: for the MLP kernels (orthogonal, as the paper).
        bias_initializer: for the MLP biases (zeros).
        symmetric: promise that every dense `adj` is symmetric (undirected graphs): the
            backward then never reads `adj` again (`dmon.pool(..., symmetric=True)`).
            A sparse `adj` says it with `SparseGraph(symmetric=True)`.
    """

    loss_names = ("spectral_loss", "cluster_loss", "ortho_loss")
    """What each of the three `add_loss` losses is, in order (named by `dmon parity`)."""

    def __init__(
        self,
        k: int,
        mlp_units: Sequence[int] = (),
        mlp_activation: Any = None,
        dropout: float = 0.0,
        spectral_weight: float = 1.0,
        collapse_regularization: float = 1.0,
        ortho_weight: float = 0.0,
        kernel_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        resolution: float = 1.0,
        symmetric: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", _default_name("dmon_pooling"))
        super().__init__(**kwargs)
        self.resolution = check_resolution("DMoNPooling", resolution)
        self.symmetric = bool(symmetric)
        check_argument("DMoNPooling", "k", k)
        if isinstance(mlp_units, str) or not isinstance(mlp_units, Sequence):
            raise TypeError(
                f"DMoNPooling: `mlp_units` must be a list of hidden sizes (e.g. [{mlp_units!r}]"
                f" for one hidden layer, [] for none); got {mlp_units!r}"
            )
        units = list(mlp_units)
        if not all(
            isinstance(u, int | np.integer) and not isinstance(u, bool) and u >= 1 for u in units
        ):
            raise ValueError(f"DMoNPooling: `mlp_units` must be positive ints; got {mlp_units!r}")
        check_argument("DMoNPooling", "dropout", dropout)
        check_argument("DMoNPooling", "spectral_weight", spectral_weight)
        check_argument("DMoNPooling", "collapse_regularization", collapse_regularization)
        check_argument("DMoNPooling", "ortho_weight", ortho_weight)
        self.k = int(k)
        self.mlp_units = tuple(int(u) for u in units)
        self.mlp_activation = keras.activations.get(mlp_activation)
        self.dropout = float(dropout)
        self.spectral_weight = float(spectral_weight)
        self.collapse_regularization = float(collapse_regularization)
        self.ortho_weight = float(ortho_weight)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        sizes = [*self.mlp_units, self.k]
        self.mlp = [
            keras.layers.Dense(
                u,
                activation=self.mlp_activation if i < len(sizes) - 1 else None,
                kernel_initializer=_Float32Start(self.kernel_initializer),
                bias_initializer=_Float32Start(self.bias_initializer),
                dtype=self.dtype_policy,
                name=f"dense_{i}",
            )
            for i, u in enumerate(sizes)
        ]
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def build(self, input_shape: Any) -> None:
        shape: tuple[Any, ...] = feature_shape("DMoNPooling", input_shape, (2, 3))
        for dense in self.mlp:
            dense.build(shape)
            shape = (*shape[:-1], dense.units)
        # The unweighted losses of the last call, for logging. Non-trainable state (like
        # BatchNormalization's moving averages) is what every backend's trainer carries
        # out of a compiled step, JAX's stateless one included.
        self.last_losses = {
            key: self.add_weight(
                name=f"{key}_loss", shape=(), initializer="zeros", trainable=False, dtype="float32"
            )
            for key in ("spectral", "cluster", "ortho")
        }

    def call(self, inputs: Any, training: bool | None = None) -> tuple[Any, Any, Any]:
        x, adj, *rest = input_list("DMoNPooling", inputs, (2, 3))
        x = K.cast(x, self.compute_dtype)
        lead = False
        if adjacency_kind("DMoNPooling", adj) == "dense":
            adj, mask = K.cast(adj, self.compute_dtype), (rest[0] if rest else None)
        else:
            x, adj, lead = sparse_inputs("DMoNPooling", x, adj, rest)
            mask = None
        if mask is not None:  # masked rows never reach the MLP (NaN padding, gradients)
            x = zero_masked_rows(x, mask)
        logits = x
        for dense in self.mlp:
            logits = dense(logits)
        logits = self.dropout_layer(logits, training=training)
        out = pool(x, adj, logits, mask, resolution=self.resolution, symmetric=self.symmetric)
        weighted = {
            "spectral": (self.spectral_weight, out.spectral_loss),
            "cluster": (self.collapse_regularization, out.cluster_loss),
            "ortho": (self.ortho_weight, out.ortho_loss),
        }
        for key, (weight, value) in weighted.items():
            self.add_loss(weight * value)
            self.last_losses[key].assign(K.cast(value, "float32"))
        return (out.s[None] if lead else out.s), out.x, out.adj

    def compute_output_spec(
        self, inputs: Any, training: bool | None = None
    ) -> tuple[Any, Any, Any]:
        x = input_list("DMoNPooling", inputs, (2, 3))[0]
        if adjacency_kind("DMoNPooling", inputs[1]) == "dense":
            shapes = self.compute_output_shape([tuple(t.shape) for t in inputs])
        else:  # node-level s, one pooled graph
            shapes = ((*x.shape[:-1], self.k), (1, self.k, x.shape[-1]), (1, self.k, self.k))
        return tuple(keras.KerasTensor(shape, dtype=self.compute_dtype) for shape in shapes)

    def compute_output_shape(self, input_shape: Any) -> tuple[tuple[Any, ...], ...]:
        x_shape, a_shape = dense_shapes("DMoNPooling", input_shape)
        b = x_shape[0] if len(x_shape) == 3 else (a_shape[0] if len(a_shape) == 3 else 1)
        return (b, x_shape[-2], self.k), (b, self.k, x_shape[-1]), (b, self.k, self.k)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "k": self.k,
            "mlp_units": list(self.mlp_units),
            "mlp_activation": keras.activations.serialize(self.mlp_activation),
            "dropout": self.dropout,
            "spectral_weight": self.spectral_weight,
            "collapse_regularization": self.collapse_regularization,
            "ortho_weight": self.ortho_weight,
            "resolution": self.resolution,
            "symmetric": self.symmetric,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DMoNPooling:
        check_config_keys(cls, config)
        return cls(**config)

    # --- framework migration ------------------------------------------------------------

    @classmethod
    def from_torch(cls, module: Any, **kwargs: Any) -> DMoNPooling:
        """A built Keras `DMoNPooling` with the weights of a torch one.

        Accepts `torch_geometric.nn.DMoNPooling` or `dmon.layers.torch.DMoNPooling`
        (same parameter layout: `mlp.lins.<i>`, Linear layers with no activation between
        them). `kwargs` go to the constructor (loss weights, name, ...); `k`,
        `mlp_units`, `dropout` come from the module.
        """
        lins = list(getattr(getattr(module, "mlp", None), "lins", []))
        if not lins:
            raise TypeError(
                f"DMoNPooling.from_torch: expected a torch_geometric.nn.DMoNPooling or "
                f"dmon.layers.torch.DMoNPooling; got {type(module).__name__}"
            )
        weights = [(_to_numpy(lin.weight).T, _to_numpy(lin.bias)) for lin in lins]
        layer = cls(
            k=weights[-1][0].shape[1],
            mlp_units=[w.shape[1] for w, _ in weights[:-1]],
            dropout=float(getattr(module, "dropout", 0.0)),
            **{
                "resolution": float(getattr(module, "resolution", 1.0)),
                "symmetric": bool(getattr(module, "symmetric", False)),
                **kwargs,
            },
        )
        layer.build([(None, None, weights[0][0].shape[0]), (None, None, None)])
        for dense, (w, b) in zip(layer.mlp, weights, strict=True):
            dense.kernel.assign(w)
            dense.bias.assign(b)
        return layer

    def to_torch(self) -> Any:
        """The equivalent `dmon.layers.torch.DMoNPooling` (a PyG-compatible module)."""
        import torch

        from dmon.layers.torch import DMoNPooling as TorchDMoN

        if not self.built:
            raise ValueError(
                "DMoNPooling.to_torch: the layer is not built yet; call it on data first"
            )
        if self.mlp_units and keras.activations.serialize(self.mlp_activation) not in (
            "linear",
            None,
        ):
            raise ValueError(
                "DMoNPooling.to_torch: PyG's MLP has no activation; this layer uses mlp_activation"
            )
        first = self.mlp[0].kernel
        module = TorchDMoN(
            [int(first.shape[0]), *self.mlp_units],
            self.k,
            dropout=self.dropout,
            resolution=self.resolution,
            symmetric=self.symmetric,
        )
        with torch.no_grad():
            for lin, dense in zip(module.mlp.lins, self.mlp, strict=True):
                assert isinstance(lin, torch.nn.Linear)
                lin.weight.copy_(torch.from_numpy(np.array(K.convert_to_numpy(dense.kernel)).T))
                lin.bias.copy_(torch.from_numpy(np.array(K.convert_to_numpy(dense.bias))))
        return module


class _Float32Start(keras.initializers.Initializer):
    """An initializer run in float32 and cast to the weight's dtype: the orthogonal one
    factors a matrix (QR), which JAX and torch cannot do in half precision on a CPU, so
    `DMoNPooling(dtype="float16")` could not be built. The same draw as in float32, rounded."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        return K.cast(self.inner(shape, dtype="float32"), dtype or "float32")

    def get_config(self) -> dict[str, Any]:
        return {"inner": keras.initializers.serialize(self.inner)}


def _default_name(prefix: str) -> str:
    """Keras' naming (`prefix`, then `prefix_1`, ...), with a readable prefix: Keras
    would derive `d_mo_n_pooling` from the class name."""
    uid = keras.backend.get_uid(prefix)
    return prefix if uid == 1 else f"{prefix}_{uid - 1}"


def _to_numpy(t: Any) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy(), dtype=np.float32)


class DMoNLossLogger(keras.callbacks.Callback):
    """Adds the unweighted DMoN losses of every `DMoNPooling` layer of the model to the
    epoch logs (`<layer name>/spectral_loss`, ...), so `fit` prints and records them.

    The values are those of the last training step of the epoch.
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None or self.model is None:
            return
        for layer in self.model._flatten_layers(include_self=False):
            if isinstance(layer, DMoNPooling) and layer.built:
                for key, var in layer.last_losses.items():
                    logs[f"{layer.name}/{key}_loss"] = float(K.convert_to_numpy(var))
