"""torch's CSR products: the matrix built once per graph in O(E), and a product whose
backward stays sparse (torch's own densifies)."""

from __future__ import annotations

import warnings
from typing import Any

from dmon.sparse_graph import Edges, remembered


def build(torch: Any, edges: Edges) -> Any:
    """`edges` as a `Csr` (or, under `torch.compile`, the COO triple: inductor has no
    sparse kernels).

    CSR: far faster than an index_add or COO spmm on CPU (docs/benchmarks.md, "Design measurements"). Built in
    O(E) (a binary search per row; a stable sort by row only if the rows are unsorted),
    never through COO's coalesce, which sorts. Duplicates are summed by the product. The
    index structure is cached on the SparseGraph; weights only when `constant`.
    """
    row, col, weight, n, m = edges.row, edges.col, edges.weight, edges.n, edges.width
    if torch.compiler.is_compiling():
        return (row, col, weight, n)

    def index() -> CsrIndex:
        # contiguous: edge_index[0] is a strided view, and searchsorted would copy it
        # (with a warning to the user) on every search otherwise
        dtype = index_dtype(torch, row.numel(), max(n, m))
        r, c, order = row.contiguous().to(dtype), col.contiguous().to(dtype), None
        if r.numel() > 1 and not bool((r[1:] >= r[:-1]).all()):
            order = torch.sort(r, stable=True).indices
            r, c = r[order], c[order]
        return CsrIndex(crow(torch, r, n), r, c, order, n, m, edges.symmetric and n == m)

    key = f"torch-csr-{n}-{m}-{edges.symmetric}-{row.device}"
    kept = remembered(edges.cache, key, index)

    def ordered() -> Csr:
        # index_select, not weight[order]: advanced indexing is several times slower on CPU
        order = kept.order
        w = weight if order is None else weight.index_select(0, order)
        return Csr(kept, w, edges.constant)

    if edges.constant:  # the same weights on every call: kept, with the transpose's
        return remembered(edges.cache, f"{key}-weights-{weight.dtype}", ordered)
    return ordered()


class CsrIndex:
    """The index part of a CSR matrix (rows sorted), and lazily of its transpose."""

    __slots__ = ("_transpose", "col", "cols", "crow", "n", "order", "row", "symmetric")

    def __init__(
        self, crow: Any, row: Any, col: Any, order: Any, n: int, cols: int, symmetric: bool = False
    ) -> None:
        self.crow, self.row, self.col, self.order, self.n = crow, row, col, order, n
        self.cols = cols  # an (n, cols) matrix: a shard's rows of a larger graph
        self.symmetric = symmetric  # A = Aᵀ: the transpose is this matrix itself
        self._transpose: tuple[CsrIndex, Any] | None = None

    def transpose(self, torch: Any) -> tuple[CsrIndex, Any]:
        """The transpose's index and the permutation of this matrix's entries into it
        (`None`: the same order, for a symmetric matrix)."""
        if self.symmetric:
            return self, None
        if self._transpose is None:
            perm = torch.sort(self.col, stable=True).indices
            rows = self.col[perm]
            self._transpose = (
                CsrIndex(
                    crow(torch, rows, self.cols), rows, self.row[perm], None, self.cols, self.n
                ),
                perm,
            )
        return self._transpose


class Csr:
    """A CSR matrix: a (cached) index and this call's weights; `constant` weights (the
    same on every call: a trainer's graph, an unweighted one) keep their transpose's too."""

    __slots__ = ("_transposed", "constant", "index", "weight")

    def __init__(self, index: CsrIndex, weight: Any, constant: bool = False) -> None:
        self.index, self.weight, self.constant = index, weight, constant
        self._transposed: tuple[CsrIndex, Any] | None = None

    def transposed(self, torch: Any) -> tuple[CsrIndex, Any]:
        """The transpose's index and weights: this matrix's weights permuted (a gather of
        E values), or they themselves for a symmetric one."""
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


def index_dtype(torch: Any, edges: int, size: int) -> Any:
    """The dtype of a CSR's row pointer and columns: int32 wherever `edges` entries of an
    `size`-wide matrix fit, else int64. MKL's CPU kernels take 32-bit indices and torch
    converts int64 ones on every product (docs/benchmarks.md, "Design measurements"). One dtype for both: the CSR is built with its invariants unchecked, and CUDA
    read an int64 pointer with int32 columns (Keras' edge_index) out of bounds."""
    return torch.int32 if edges < 2**31 and size < 2**31 else torch.int64


def crow(torch: Any, row: Any, n: int) -> Any:
    """CSR row pointer of sorted row ids: where each row starts (a binary search per row,
    faster than a bincount here), in the row ids' dtype (int32 or int64), which the column
    indices share."""
    return torch.searchsorted(
        row,
        torch.arange(n + 1, dtype=row.dtype, device=row.device),
        out_int32=row.dtype == torch.int32,
    )


def csr_times(torch: Any, matrix: Any, dense: Any) -> Any:
    """`matrix @ dense` written straight into an uninitialised result (`beta=0`: never
    read): `@` zero-fills one and copies it (a quarter of the product, docs/benchmarks.md, "Design measurements"), and `addmm` without `out=` copies its input into a new result first (`out=`
    only where autograd does not record: a double backward differentiates this)."""
    out = dense.new_empty((matrix.shape[0], *dense.shape[1:]))
    if torch.is_grad_enabled() and (dense.requires_grad or matrix.requires_grad):
        return torch.addmm(out, matrix, dense, beta=0)
    return torch.addmm(out, matrix, dense, beta=0, out=out)
