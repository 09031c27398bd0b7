"""A `torch.nn.Module` that is a drop-in for `torch_geometric.nn.DMoNPooling`.

Same constructor, parameter names (a PyG `state_dict` loads unchanged), forward and six
outputs; the math is `dmon.pool`. `torch_geometric` is not needed.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from dmon.checks import check_argument, check_resolution
from dmon.pooling import DMoNOutput, pool, zero_masked_rows


class MLP(torch.nn.Module):
    """The linear stack PyG's `DMoNPooling` builds: `MLP(channels + [k], act=None,
    norm=None)`, i.e. Linear layers with no activation in between.

    Parameters are named `lins.<i>.weight`/`lins.<i>.bias` like PyG's `MLP`.
    """

    def __init__(self, channel_list: list[int]) -> None:
        super().__init__()
        if len(channel_list) < 2:
            raise ValueError(f"channel_list needs at least 2 sizes; got {channel_list}")
        self.channel_list = list(channel_list)
        self.lins = torch.nn.ModuleList(
            torch.nn.Linear(a, b) for a, b in itertools.pairwise(channel_list)
        )

    @property
    def in_channels(self) -> int:
        return self.channel_list[0]

    @property
    def out_channels(self) -> int:
        return self.channel_list[-1]

    def reset_parameters(self) -> None:
        for lin in self.lins:
            assert isinstance(lin, torch.nn.Linear)
            lin.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        for lin in self.lins:
            x = lin(x)
        return x

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({', '.join(map(str, self.channel_list))})"


class DMoNPooling(torch.nn.Module):
    """DMoN pooling (Tsitsulin et al., JMLR 2023) as `torch_geometric.nn.DMoNPooling`.

    `logits = dropout(MLP(x))`, then `dmon.pool`: `S = softmax(logits)`,
    `X' = selu(SᵀX)`, `A' = D^-1/2 offdiag(SᵀAS) D^-1/2` and the spectral, orthogonality
    and cluster losses.

    Args:
        channels: input feature size `F`, or a list of sizes for a deeper MLP.
        k: number of clusters `C`.
        dropout: dropout probability on the logits (training only).
        resolution: `γ` of the generalized modularity in the spectral loss (default 1,
            PyG's loss; an addition to PyG's signature).
        symmetric: promise that every `adj` is symmetric (undirected graphs): the
            backward then never reads `adj` again (`dmon.pool(..., symmetric=True)`,
            about half the forward+backward cost at large `N`). An addition to PyG's
            signature; default `False`, PyG's general path.
    """

    def __init__(
        self,
        channels: int | list[int],
        k: int,
        dropout: float = 0.0,
        resolution: float = 1.0,
        symmetric: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int | list | tuple):
            raise TypeError(
                f"channels must be an int or a list of ints; got {type(channels).__name__}"
            )
        channels = [channels] if isinstance(channels, int) else list(channels)
        if not channels or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels
        ):
            raise ValueError(f"channels must be positive ints; got {channels!r}")
        check_argument("DMoNPooling", "k", k)
        check_argument("DMoNPooling", "dropout", dropout)
        self.mlp = MLP([*channels, k])
        self.dropout = dropout
        self.resolution = check_resolution("DMoNPooling", resolution)
        self.symmetric = bool(symmetric)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.mlp.reset_parameters()

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor | None = None) -> DMoNOutput:
        """Args: `x` `(B, N, F)`/`(N, F)`, `adj` `(B, N, N)`/`(N, N)`, `mask`
        `(B, N)`. Returns the `dmon.DMoNOutput` 6-tuple `(s (B,N,C), x (B,C,F),
        adj (B,C,C), spectral_loss, ortho_loss, cluster_loss)`."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
        if x.dim() not in (2, 3) or x.shape[-1] != self.mlp.in_channels:
            raise ValueError(
                f"x must have shape (B, N, {self.mlp.in_channels}) or (N, {self.mlp.in_channels}); "
                f"got {tuple(x.shape)}"
            )
        weight = self.mlp.lins[0].weight
        if x.dtype != weight.dtype:
            raise TypeError(
                f"DMoNPooling: `x` has dtype {str(x.dtype).removeprefix('torch.')} but the module's "
                f"parameters are {str(weight.dtype).removeprefix('torch.')}; convert one of them "
                f"(e.g. module.to({x.dtype}) or x.to({weight.dtype}))"
            )
        if mask is not None:  # masked rows never reach the MLP (NaN padding, gradients)
            x = zero_masked_rows(x, mask)
        logits = torch.nn.functional.dropout(self.mlp(x), self.dropout, training=self.training)
        return pool(x, adj, logits, mask, resolution=self.resolution, symmetric=self.symmetric)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.mlp.in_channels}, num_clusters={self.mlp.out_channels})"
