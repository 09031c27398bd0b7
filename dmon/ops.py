"""The small array-ops interface every backend implements, and dispatch by input type.

The core (`dmon.pooling`) is written once against `ArrayOps`. A backend is one
class in `backends/<name>/ops.py` (installed as `dmon.backends.<name>.ops`) that imports
its framework lazily and implements every op below. Which backend serves a call is decided by
the *type* of the input arrays, looking only at frameworks that are already imported
(`sys.modules`), so `import dmon` never imports a framework and a JAX user never needs
torch. The answer is cached per type.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, NoReturn, Protocol, runtime_checkable

from dmon.sparse_graph import Edges

Array = Any
"""A framework array: `numpy.ndarray`, `torch.Tensor`, `tf.Tensor` or `jax.Array`."""

FLOATING = ("float16", "bfloat16", "float32", "float64")
HALF = ("float16", "bfloat16")


@runtime_checkable
class ArrayOps(Protocol):
    """What the core needs from a framework. Shapes are batched: `(B, N, C)` etc.

    Arithmetic (`+ - * /`, comparisons, basic slicing `x[..., :k]`) is taken from the
    arrays' own operators, which all four frameworks share; only what differs is here.
    """

    name: str
    """Backend name, e.g. `"torch"`."""
    framework: str
    """Top-level module whose presence in `sys.modules` makes this backend eligible."""

    def is_array(self, x: object) -> bool:
        """True for this framework's dense array type (tracers included)."""
        ...

    def asarray(self, x: object) -> Array:
        """Convert an array of another framework (or NumPy) to this one."""
        ...

    def shape(self, x: Array) -> tuple[int | None, ...]:
        """Static shape; `None` for a dimension unknown at trace time."""
        ...

    def dtype_name(self, x: Array) -> str:
        """Dtype as a NumPy-style name: `"float32"`, `"bfloat16"`, `"bool"`, ..."""
        ...

    def astype(self, x: Array, dtype: str) -> Array:
        """Cast `x` to the dtype named `dtype`."""
        ...

    def expand_dims(self, x: Array, axis: int) -> Array:
        """Insert a length-1 axis."""
        ...

    def reshape(self, x: Array, shape: tuple[int, ...]) -> Array:
        """`x` with a new static shape."""
        ...

    def ones_like(self, x: Array) -> Array:
        """Ones with the shape, dtype and device of `x`."""
        ...

    def eye(self, n: int, like: Array) -> Array:
        """`(n, n)` identity in the dtype and device of `like`."""
        ...

    def concat(self, xs: Sequence[Array], axis: int) -> Array:
        """Concatenate along `axis`."""
        ...

    def matmul(self, a: Array, b: Array) -> Array:
        """Batched matrix product `(B, N, K) @ (B, K, M) -> (B, N, M)`."""
        ...

    def matmul_sum(self, pairs: Sequence[tuple[Array, Array]]) -> Array:
        """`Σᵢ aᵢ @ bᵢ` for pairs `(B, N, Kᵢ) @ (B, Kᵢ, M)` (or 2-D), one `(B, N, M)`
        result: a sum of large products such as a hand-written gradient. Backends may
        accumulate in place into the first product (torch, when autograd is not
        recording), so the sum writes one result instead of one per product and one per
        addition."""
        ...

    def transpose(self, x: Array) -> Array:
        """Swap the last two axes."""
        ...

    def diagonal(self, x: Array) -> Array:
        """Diagonal of the last two axes: `(B, C, C) -> (B, C)`."""
        ...

    def sum(self, x: Array, axis: int | tuple[int, ...], keepdims: bool = False) -> Array:
        """Sum over `axis`."""
        ...

    def mean(self, x: Array) -> Array:
        """Mean of all elements, a 0-d array."""
        ...

    def sqrt(self, x: Array) -> Array:
        """Element-wise square root."""
        ...

    def where(self, cond: Array, a: Array | float, b: Array | float) -> Array:
        """Element-wise select; `a` or `b` may be a Python number."""
        ...

    def norm(self, x: Array, axis: int | tuple[int, ...]) -> Array:
        """Euclidean norm over `axis`, with value and gradient 0 where it is 0 (not the
        NaN of `sqrt`'s infinite slope); NaN stays NaN."""
        ...

    def softmax(self, x: Array) -> Array:
        """Softmax over the last axis."""
        ...

    def selu(self, x: Array) -> Array:
        """Scaled exponential linear unit (Klambauer et al., 2017)."""
        ...

    def stop_gradient(self, x: Array) -> Array:
        """`x` as a constant: its value, with no gradient flowing back through it."""
        ...

    def with_gradient(
        self,
        forward: Callable[..., tuple[Array, tuple[Array, ...]]],
        backward: Callable[[tuple[Array, ...], Array, tuple[bool, ...]], tuple[Array | None, ...]],
        *args: Array,
    ) -> Array:
        """`forward(*args)[0]`, differentiated by a hand-written rule instead of autodiff
        (`torch.autograd.Function`, `jax.custom_vjp`, `tf.custom_gradient`; NumPy has no
        gradients and only runs `forward`).

        `forward(*args)` returns `(out, residuals)`; `backward(residuals, grad_out,
        needs)` returns one gradient per arg (`None` for none), where `needs[i]` says
        whether arg `i`'s gradient is wanted (all `True` where the framework cannot
        tell; compiled code then drops the unused ones). `forward` and `backward` must
        be module-level functions, not closures made per call: backends cache by them.
        """
        ...

    # --- sparse adjacency --------------------------------------------------------------

    def is_sparse(self, x: object) -> bool:
        """True for this framework's native sparse matrix type (torch sparse COO/CSR,
        `tf.SparseTensor`, JAX `BCOO`, `scipy.sparse`)."""
        ...

    def sparse_coo(self, x: Any) -> tuple[Array, Array, Array, tuple[int, ...]]:
        """`(row, col, weight, shape)` of a native sparse matrix (checked to be square
        by the caller); differentiable in `weight` where the framework allows."""
        ...

    def sparse_matrix(self, edges: Edges) -> Any:
        """`edges` as a matrix in the form this framework multiplies fastest (CSR in
        torch and SciPy, a `CSRSparseMatrix` in TensorFlow; the COO triple where only a
        segment sum compiles). Built once per call, at the boundary; what `edges.cache`
        may keep across calls is said in `Edges`."""
        ...

    def spmm(self, matrix: Any, dense: Array) -> Array:
        """`A @ dense` for `matrix` from `sparse_matrix`: `(N, N) @ (N, C) -> (N, C)`."""
        ...

    def segment_sum(self, values: Array, ids: Array, num_segments: int) -> Array:
        """`out[k] = Σ_{i: ids[i] = k} values[i]` along axis 0."""
        ...

    def take(self, x: Array, index: Array) -> Array:
        """`x[index]` along axis 0."""
        ...

    def arange(self, n: int, like: Array) -> Array:
        """`[0, 1, ..., n-1]` with the integer dtype and device of `like`."""
        ...

    def cumsum(self, x: Array) -> Array:
        """Inclusive cumulative sum along axis 0."""
        ...

    def to_numpy(self, x: Array) -> Any:
        """`x` as a NumPy array when its values are known (eager), else `None` (traced
        under `jit`/`tf.function`/`torch.compile`): value checks run only when not None."""
        ...

    def device(self, x: Array) -> str | None:
        """Where `x` lives, for frameworks whose operations need every operand on one
        device (torch: `"cpu"`, `"cuda:0"`, ...); `None` where the framework moves arrays
        between devices itself (NumPy, JAX's uncommitted arrays, TensorFlow)."""
        ...

    def on_accelerator(self, x: Array) -> bool:
        """Whether `x` is in an accelerator's memory (GPU, TPU), where reading its values
        makes the host wait for the device (`dmon.value_checks`); `False` for a traced
        array."""
        ...

    def version(self, x: Array) -> int | None:
        """A number that changes whenever `x`'s values change in place (torch's version
        counter; 0 for the immutable arrays of JAX and TensorFlow); `None` where changes
        cannot be seen (NumPy). A value check of a reused array may then be skipped."""
        ...


# name -> framework module that must be in sys.modules. Order is the probing order.
_BACKENDS: dict[str, str] = {
    "torch": "torch",
    "tensorflow": "tensorflow",
    "jax": "jax",
    "numpy": "numpy",
}
_CLASS_NAMES = {
    "torch": "TorchOps",
    "tensorflow": "TensorFlowOps",
    "jax": "JaxOps",
    "numpy": "NumpyOps",
}
"""The `ArrayOps` class in each backend's `dmon.backends.<name>.ops`."""
_instances: dict[str, ArrayOps] = {}
_type_cache: dict[type, ArrayOps] = {}


def type_name(x: object) -> str:
    t = type(x)
    return f"{t.__module__}.{t.__qualname__}"


def backend_by_name(name: str) -> ArrayOps:
    """The backend object named `name` (`"numpy"`, `"torch"`, `"tensorflow"`,
    `"jax"`), importing its framework. Raises `ValueError` for an unknown name and
    `ImportError` (with the `pip install` hint) when the framework is missing."""
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {sorted(_BACKENDS)}; got {name!r}")
    if name not in _instances:
        framework = _BACKENDS[name]
        if framework not in sys.modules and importlib.util.find_spec(framework) is None:
            raise ImportError(
                f"backend {name!r} needs the {framework!r} package, which is not "
                f"installed: pip install 'dmon[{name}]'"
            )
        _instances[name] = getattr(_ops_module(name), _CLASS_NAMES[name])()
    return _instances[name]


def _ops_module(name: str) -> ModuleType:
    """`dmon.backends.<name>.ops`, by import statements: `torch.compile` traces those
    (not `importlib`), so a compiled function may be dmon's first call in a process."""
    try:
        if name == "torch":
            import dmon.backends.torch.ops as module
        elif name == "tensorflow":
            import dmon.backends.tensorflow.ops as module
        elif name == "jax":
            import dmon.backends.jax.ops as module
        else:
            import dmon.backends.numpy.ops as module
    except ModuleNotFoundError as err:
        _not_installed(name, err)
    return module


def backend_module(name: str, part: str) -> ModuleType:
    """`dmon.backends.<name>.<part>` (`ops`, `engine`, `hooks`, ...), loaded by name so
    that no core module imports a framework's folder. Importing it imports no framework.

    Raises:
        ImportError: naming the fix when the backends are not installed (a checkout on
            `sys.path` without an install: `backends/` is not `dmon/backends/`).
    """
    try:
        return importlib.import_module(f"dmon.backends.{name}.{part}")
    except ModuleNotFoundError as err:
        _not_installed(name, err)


def _not_installed(name: str, err: ModuleNotFoundError) -> NoReturn:
    if err.name not in ("dmon.backends", f"dmon.backends.{name}"):
        raise err
    raise ImportError(
        "dmon's backends are not installed: dmon runs from an install (backends/ "
        "becomes dmon.backends): pip install -e . (in the repository root)"
    ) from None


def get_backend(x: object) -> ArrayOps:
    """The backend serving arrays of `type(x)`.

    Only frameworks already imported are considered, so this never imports one. The
    answer is cached per type.

    Raises:
        TypeError: `x` is not an array of a supported framework.
    """
    t = type(x)
    cached = _type_cache.get(t)
    if cached is not None:
        return cached
    for name, framework in _BACKENDS.items():
        if framework not in sys.modules:
            continue
        ops = backend_by_name(name)
        if ops.is_array(x) or ops.is_sparse(x):
            _type_cache[t] = ops
            return ops
    raise TypeError(
        f"dmon cannot handle an input of type {type_name(x)}; expected a numpy.ndarray, "
        "torch.Tensor, tf.Tensor or jax.Array (or a sparse matrix of one of them, or scipy.sparse)"
    )


def available_backends() -> list[str]:
    """Names of the backends whose framework is installed (without importing it)."""
    return [n for n, fw in _BACKENDS.items() if importlib.util.find_spec(fw) is not None]
