"""PyTorch backend."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from dmon.sparse_graph import remembered


class TorchOps:
    name = "torch"
    framework = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def is_array(self, x: object) -> bool:
        return isinstance(x, self.torch.Tensor)

    def asarray(self, x: object) -> Any:
        if isinstance(x, self.torch.Tensor):
            return x
        import numpy

        return self.torch.from_numpy(numpy.array(x))

    def shape(self, x: Any) -> tuple[int | None, ...]:
        return tuple(x.shape)

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype).removeprefix("torch.")

    def astype(self, x: Any, dtype: str) -> Any:
        return x.to(getattr(self.torch, dtype))

    def expand_dims(self, x: Any, axis: int) -> Any:
        return x.unsqueeze(axis)

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any:
        return x.reshape(shape)

    def ones_like(self, x: Any) -> Any:
        return self.torch.ones_like(x)

    def eye(self, n: int, like: Any) -> Any:
        return self.torch.eye(n, dtype=like.dtype, device=like.device)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return self.torch.cat(list(xs), dim=axis)

    def matmul(self, a: Any, b: Any) -> Any:
        out = _large_cpu_result(self.torch, a, b)
        return self.torch.matmul(a, b) if out is None else self.torch.matmul(a, b, out=out)

    def matmul_sum(self, pairs: Sequence[tuple[Any, Any]]) -> Any:
        torch = self.torch
        out = self.matmul(*pairs[0])
        if torch.is_grad_enabled() and any(v.requires_grad for pair in pairs for v in pair):
            return sum((torch.matmul(a, b) for a, b in pairs[1:]), out)  # autograd records
        for a, b in pairs[1:]:  # accumulate into the first product: no (N, ·) temporaries
            if out.dim() == a.dim() == b.dim() == 3:
                out.baddbmm_(a, b)
            elif out.dim() == a.dim() == b.dim() == 2:
                out.addmm_(a, b)
            else:
                out.add_(torch.matmul(a, b))
        return out

    def transpose(self, x: Any) -> Any:
        return x.transpose(-1, -2)

    def diagonal(self, x: Any) -> Any:
        return self.torch.diagonal(x, dim1=-2, dim2=-1)

    def sum(self, x: Any, axis: int | tuple[int, ...], keepdims: bool = False) -> Any:
        return self.torch.sum(x, dim=axis, keepdim=keepdims)

    def mean(self, x: Any) -> Any:
        return self.torch.mean(x)

    def sqrt(self, x: Any) -> Any:
        return self.torch.sqrt(x)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return self.torch.where(cond, a, b)

    def softmax(self, x: Any) -> Any:
        return self.torch.softmax(x, dim=-1)

    def selu(self, x: Any) -> Any:
        return self.torch.nn.functional.selu(x)

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def with_gradient(self, forward: Any, backward: Any, *args: Any) -> Any:
        return _custom_function(self.torch).apply(forward, backward, *args)

    # --- sparse ----------------------------------------------------------------------

    def is_sparse(self, x: object) -> bool:
        return isinstance(x, self.torch.Tensor) and x.layout in (
            self.torch.sparse_coo,
            self.torch.sparse_csr,
        )

    def sparse_coo(self, x: Any) -> tuple[Any, Any, Any, tuple[int, ...]]:
        if x.layout == self.torch.sparse_csr:
            crow, col = x.crow_indices(), x.col_indices()
            row = self.torch.repeat_interleave(
                self.torch.arange(x.shape[0], device=x.device), crow.diff()
            )
            return row, col.long(), x.values(), tuple(x.shape)
        x = x.coalesce()
        return x.indices()[0], x.indices()[1], x.values(), tuple(x.shape)

    def sparse_matrix(
        self,
        row: Any,
        col: Any,
        weight: Any,
        n: int,
        cache: dict[str, Any] | None = None,
        cols: int | None = None,
        symmetric: bool = False,
        constant: bool = False,
        slots: int = 0,
    ) -> Any:
        if self.torch.compiler.is_compiling():  # inductor has no sparse kernels
            return (row, col, weight, n)
        m = n if cols is None else cols

        # CSR: ~30x faster than an index_add and ~15x faster than COO spmm on CPU. Built in
        # O(E) (a binary search per row; a stable sort by row only if the rows are
        # unsorted), never through COO's coalesce, which sorts. Duplicates are summed by
        # the product. The index structure is cached on the SparseGraph; weights are not.
        def build() -> _CsrIndex:
            # contiguous: edge_index[0] is a strided view, and searchsorted would copy it
            # (with a warning to the user) on every search otherwise
            index_dtype = _index_dtype(self.torch, row.numel(), max(n, m))
            r, c, order = row.contiguous().to(index_dtype), col.contiguous().to(index_dtype), None
            if r.numel() > 1 and not bool((r[1:] >= r[:-1]).all()):
                order = self.torch.sort(r, stable=True).indices
                r, c = r[order], c[order]
            return _CsrIndex(_crow(self.torch, r, n), r, c, order, n, m, symmetric and n == m)

        key = f"torch-csr-{n}-{m}-{symmetric}-{row.device}"
        index = remembered(cache, key, build)

        def ordered() -> _Csr:
            # index_select, not weight[order]: advanced indexing is ~8x slower on CPU (17 ms
            # for ogbn-arxiv's 2.3M weights)
            order = index.order
            w = weight if order is None else weight.index_select(0, order)
            return _Csr(index, w, constant)

        if constant:  # the same weights on every call: kept, with the transpose's
            return remembered(cache, f"{key}-weights-{weight.dtype}", ordered)
        return ordered()

    def spmm(self, matrix: Any, dense: Any) -> Any:
        if isinstance(matrix, tuple):
            row, col, weight, n = matrix
            msgs = dense.index_select(0, col) * weight.unsqueeze(-1)
            return self.torch.zeros(
                n, dense.shape[-1], dtype=dense.dtype, device=dense.device
            ).index_add(0, row, msgs)
        return _csr_spmm(self.torch).apply(matrix.weight, dense, matrix)

    def segment_sum(self, values: Any, ids: Any, num_segments: int) -> Any:
        out = self.torch.zeros(
            (num_segments, *values.shape[1:]), dtype=values.dtype, device=values.device
        )
        return out.index_add(0, ids, values)

    def take(self, x: Any, index: Any) -> Any:
        return x.index_select(0, index)

    def arange(self, n: int, like: Any) -> Any:
        return self.torch.arange(n, dtype=like.dtype, device=like.device)

    def cumsum(self, x: Any) -> Any:
        return self.torch.cumsum(x, dim=0)

    def device(self, x: Any) -> str | None:
        return str(x.device)

    def to_numpy(self, x: Any) -> Any:
        if self.torch.compiler.is_compiling():
            return None
        x = x.detach().cpu()
        # NumPy has no bfloat16: read half precision as float32
        return (x.float() if x.dtype in (self.torch.bfloat16, self.torch.float16) else x).numpy()


# glibc serves a block over 32 MiB (the ceiling of its dynamic mmap threshold) as a fresh
# mapping and unmaps it when freed, so such a tensor is page-faulted in 4 KiB pages on
# every step: ~20 ms for the 87 MB gradient of ogbn-arxiv's features, as long as the
# product that writes it.
_LARGE_BYTES = 32 << 20


def _large_cpu_result(torch: Any, a: Any, b: Any) -> Any | None:
    """An empty CPU tensor for the product `a @ b` when it is large (see `_LARGE_BYTES`),
    allocated by NumPy, which asks Linux for transparent huge pages for large arrays
    (`madvise`; 512× fewer page faults); `None` (let torch allocate) otherwise: small,
    not on the CPU, mixed or non-float32/64 dtypes, shapes that broadcast, autograd
    recording (`out=` cannot be differentiated), compiling, tensor subclasses and
    `torch.func` transforms (no `out=` under `vmap`). Its storage, NumPy's, cannot be
    resized in place."""
    if torch.compiler.is_compiling():
        return None
    shape = (*a.shape[:-1], b.shape[-1])
    # the size next: nearly every product is small, and this runs on each one
    if math.prod(shape) * a.element_size() < _LARGE_BYTES:
        return None
    functorch = torch._C._functorch
    if (
        type(a) is not torch.Tensor
        or type(b) is not torch.Tensor
        or functorch.is_functorch_wrapped_tensor(a)
        or functorch.is_functorch_wrapped_tensor(b)
        or a.dtype not in (torch.float32, torch.float64)
        or a.dtype != b.dtype
        or a.device.type != "cpu"
        or b.device.type != "cpu"
        or a.dim() != b.dim()
        or a.dim() < 2
        or a.shape[:-2] != b.shape[:-2]
        or a.shape[-1] != b.shape[-2]
        or (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))
    ):
        return None
    import numpy

    dtype = numpy.float32 if a.dtype == torch.float32 else numpy.float64
    return torch.from_numpy(numpy.empty(shape, dtype))


class _CsrIndex:
    """The index part of a CSR matrix (rows sorted), and lazily of its transpose."""

    __slots__ = ("_transpose", "col", "cols", "crow", "n", "order", "row", "symmetric")

    def __init__(
        self, crow: Any, row: Any, col: Any, order: Any, n: int, cols: int, symmetric: bool = False
    ) -> None:
        self.crow, self.row, self.col, self.order, self.n = crow, row, col, order, n
        self.cols = cols  # an (n, cols) matrix: a shard's rows of a larger graph
        self.symmetric = symmetric  # A = Aᵀ: the transpose is this matrix itself
        self._transpose: tuple[_CsrIndex, Any] | None = None

    def transpose(self, torch: Any) -> tuple[_CsrIndex, Any]:
        """The transpose's index and the permutation of this matrix's entries into it
        (`None`: the same order, for a symmetric matrix)."""
        if self.symmetric:
            return self, None
        if self._transpose is None:
            perm = torch.sort(self.col, stable=True).indices
            rows = self.col[perm]
            self._transpose = (
                _CsrIndex(
                    _crow(torch, rows, self.cols), rows, self.row[perm], None, self.cols, self.n
                ),
                perm,
            )
        return self._transpose


class _Csr:
    """A CSR matrix: a (cached) index and this call's weights; `constant` weights (the
    same on every call: a trainer's graph, an unweighted one) keep their transpose's too."""

    __slots__ = ("_transposed", "constant", "index", "weight")

    def __init__(self, index: _CsrIndex, weight: Any, constant: bool = False) -> None:
        self.index, self.weight, self.constant = index, weight, constant
        self._transposed: tuple[_CsrIndex, Any] | None = None

    def transposed(self, torch: Any) -> tuple[_CsrIndex, Any]:
        """The transpose's index and weights: this matrix's weights permuted (a gather of
        E values, ~3 ms at ogbn-arxiv's size), or they themselves for a symmetric one."""
        if self._transposed is not None:
            return self._transposed
        index, perm = self.index.transpose(torch)
        weight = self.weight.detach()
        out = (index, weight if perm is None else weight.index_select(0, perm))
        if self.constant:
            self._transposed = out
        return out

    def matrix(self, torch: Any, weight: Any) -> Any:
        i = self.index
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            # torch 2.11 on CUDA: the index is dmon's own, sorted and bounds-checked
            warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly")
            return torch.sparse_csr_tensor(
                i.crow, i.col, weight, (i.n, i.cols), check_invariants=False
            )


def _index_dtype(torch: Any, edges: int, size: int) -> Any:
    """The dtype of a CSR's row pointer and columns: int32 wherever `edges` entries of an
    `size`-wide matrix fit, else int64. MKL's CPU kernels take 32-bit indices and torch
    converts int64 ones on every product (1.5 ms of a 4.7 ms product at ogbn-arxiv's
    size). One dtype for both: the CSR is built with its invariants unchecked, and CUDA
    read an int64 pointer with int32 columns (Keras' edge_index) out of bounds."""
    return torch.int32 if edges < 2**31 and size < 2**31 else torch.int64


def _crow(torch: Any, row: Any, n: int) -> Any:
    """CSR row pointer of sorted row ids: where each row starts (a binary search per row,
    faster than a bincount here), in the row ids' dtype (int32 or int64), which the column
    indices share."""
    return torch.searchsorted(
        row,
        torch.arange(n + 1, dtype=row.dtype, device=row.device),
        out_int32=row.dtype == torch.int32,
    )


def _csr_times(torch: Any, matrix: Any, dense: Any) -> Any:
    """`matrix @ dense` written straight into an uninitialised result (`beta=0`: never
    read): `@` zero-fills one and copies it (1.7 ms of a 7 ms product at ogbn-arxiv's
    size), and `addmm` without `out=` copies its input into a new result first (`out=`
    only where autograd does not record: a double backward differentiates this)."""
    out = dense.new_empty((matrix.shape[0], *dense.shape[1:]))
    if torch.is_grad_enabled() and (dense.requires_grad or matrix.requires_grad):
        return torch.addmm(out, matrix, dense, beta=0)
    return torch.addmm(out, matrix, dense, beta=0, out=out)


_FUNCTION: Any = None


def _csr_spmm(torch: Any) -> Any:
    """`A @ dense` with a CSR forward and a backward that stays sparse.

    torch's own backward of a CSR product densifies (it asked for N² floats at N = 169k),
    so the gradients are written out: `∂/∂dense = Aᵀ G` (the transpose built by a stable
    sort on the columns, only when that gradient is needed) and
    `∂/∂w_e = ⟨G[row_e], dense[col_e]⟩`.
    """
    global _FUNCTION
    if _FUNCTION is not None:
        return _FUNCTION

    class CsrSpmm(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, weight: Any, dense: Any, csr: _Csr) -> Any:
            ctx.csr = csr
            ctx.save_for_backward(weight, dense)
            return _csr_times(torch, csr.matrix(torch, weight.detach()), dense)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            # unpacked for autograd's check that the weights were not changed in place:
            # the transpose's weights come from csr.weight (kept for a constant matrix)
            _weight, dense = ctx.saved_tensors
            csr = ctx.csr
            grad_weight = grad_dense = None
            if ctx.needs_input_grad[0]:
                i = csr.index
                grad_weight = (grad.index_select(0, i.row) * dense.index_select(0, i.col)).sum(-1)
            if ctx.needs_input_grad[1]:
                index, values = csr.transposed(torch)
                grad_dense = _csr_times(torch, _Csr(index, None).matrix(torch, values), grad)
            return grad_weight, grad_dense, None

    _FUNCTION = CsrSpmm
    return _FUNCTION


_CUSTOM: Any = None


def _custom_function(torch: Any) -> Any:
    """The `torch.autograd.Function` behind `TorchOps.with_gradient`: the forward and
    backward rules travel as its first two (non-tensor) arguments."""
    global _CUSTOM
    if _CUSTOM is not None:
        return _CUSTOM

    class WithGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, forward: Any, backward: Any, *args: Any) -> Any:
            out, residuals = forward(*args)
            ctx.backward_rule = backward
            ctx.save_for_backward(*residuals)
            return out

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            grads = ctx.backward_rule(ctx.saved_tensors, grad, tuple(ctx.needs_input_grad[2:]))
            return (None, None, *grads)

    _CUSTOM = WithGradient
    return _CUSTOM
