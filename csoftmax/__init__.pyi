# Type stubs for csoftmax's public API (the runtime is csoftmax/_api.py).
#
# Return types follow the runtime exactly where the options decide them:
#   logsumexp:      return_sign=True -> (result, sign); axis=None & keepdims=False
#                   -> a NumPy scalar; out=arr -> that very array.
#   cross_entropy*: reduction="none" -> per-sample ndarray, "mean"/"sum" -> NumPy
#                   scalar; return_lse=True appends the per-sample lse (ndarray).
#   dtype:          a float32, float64 or longdouble input array keeps its scalar
#                   type (softmax / log_softmax: float16 too); anything else, and
#                   any call with `dtype=` (the loss / lse dtype), is typed
#                   np.floating[Any].
# One simplification: softmax/log_softmax of a *0-d array* returns a NumPy scalar
# at run time, typed here as an ndarray (Python/NumPy scalars are typed exactly).
#
# Defaults are written out (not `...`) so tests/test_typing.py can check them
# against the runtime signatures.
from typing import Any, Literal, TypedDict, TypeVar, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

__version__: str

__all__ = [
    "__version__",
    "logsumexp",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "cross_entropy_with_grad",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "kl_div",
    "kl_div_with_grad",
    "token_logprobs",
    "partial_logsumexp",
    "partial_cross_entropy",
    "merge_partials",
    "merge_logsumexp",
    "merge_cross_entropy",
    "STATE_FIELDS",
    "show_config",
    "set_num_threads",
]

# float16 / bfloat16 input: the loss and log-sum-exp come back as float32 (or as
# `dtype=`), so the precise overloads take the other floating types only
_SCT = TypeVar("_SCT", np.float32, np.float64, np.longdouble)
_CSCT = TypeVar("_CSCT", bound=np.complexfloating[Any, Any])
# real or complex: softmax and log_softmax keep the input's type
_ISCT = TypeVar("_ISCT", bound=np.inexact[Any])
# logsumexp without b keeps it too, but for float16 / bfloat16 (float32)
_LSCT = TypeVar("_LSCT", np.float32, np.float64, np.longdouble, np.complex64, np.complex128,
                np.clongdouble)
_Complex = np.complexfloating[Any, Any]
_ArrayT = TypeVar("_ArrayT", bound=NDArray[Any])

_Float = np.floating[Any]
_FloatArray = NDArray[np.floating[Any]]
_Axis = int | tuple[int, ...] | None
_Scalar = float | np.floating[Any] | np.integer[Any]
_Reduced = Literal["mean", "sum"]
_Reduction = Literal["none", "mean", "sum"]

class _Config(TypedDict):
    version: str
    isa: str
    available: list[str]
    openmp: bool
    max_threads: int
    emulated: bool

def show_config(print_it: bool = False) -> _Config: ...
def set_num_threads(n: int) -> None: ...

# --------------------------------------------------------------------------- logsumexp
# return_sign=False
@overload
def logsumexp(
    a: ArrayLike,
    axis: _Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: Literal[False] = False,
    *,
    out: _ArrayT,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> _ArrayT: ...
@overload
def logsumexp(
    a: NDArray[_LSCT],
    axis: None = None,
    b: None = None,
    keepdims: Literal[False] = False,
    return_sign: Literal[False] = False,
    *,
    out: None = None,
    where: ArrayLike | None = None,
    dtype: None = None,
) -> _LSCT: ...
@overload
def logsumexp(
    a: NDArray[_LSCT],
    axis: _Axis = None,
    b: None = None,
    keepdims: bool = False,
    return_sign: Literal[False] = False,
    *,
    out: None = None,
    where: ArrayLike | None = None,
    dtype: None = None,
) -> NDArray[_LSCT] | _LSCT: ...
# complex a with b: complex results, of the promoted dtype (csoftmax/_complex.py)
@overload
def logsumexp(
    a: NDArray[_Complex],
    axis: _Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: Literal[False] = False,
    *,
    out: None = None,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> NDArray[_Complex] | _Complex: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: None = None,
    b: ArrayLike | None = None,
    keepdims: Literal[False] = False,
    return_sign: Literal[False] = False,
    *,
    out: None = None,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> _Float: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: _Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: Literal[False] = False,
    *,
    out: None = None,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> _FloatArray | _Float: ...

# return_sign=True: (result, sign); the sign is never written to `out`
@overload
def logsumexp(
    a: ArrayLike,
    axis: _Axis,
    b: ArrayLike | None,
    keepdims: bool,
    return_sign: Literal[True],
    *,
    out: _ArrayT,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> tuple[_ArrayT, _FloatArray | _Float]: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: _Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    *,
    return_sign: Literal[True],
    out: _ArrayT,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> tuple[_ArrayT, _FloatArray | _Float]: ...
@overload
def logsumexp(
    a: NDArray[_SCT],
    axis: None = None,
    b: None = None,
    keepdims: Literal[False] = False,
    *,
    return_sign: Literal[True],
    out: None = None,
    where: ArrayLike | None = None,
    dtype: None = None,
) -> tuple[_SCT, _SCT]: ...
@overload
def logsumexp(
    a: NDArray[_SCT],
    axis: _Axis = None,
    b: None = None,
    keepdims: bool = False,
    *,
    return_sign: Literal[True],
    out: None = None,
    where: ArrayLike | None = None,
    dtype: None = None,
) -> tuple[NDArray[_SCT] | _SCT, NDArray[_SCT] | _SCT]: ...
# complex a with return_sign: (log|sum| real, the unit complex sign)
@overload
def logsumexp(
    a: NDArray[_CSCT],
    axis: _Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    *,
    return_sign: Literal[True],
    out: None = None,
    where: ArrayLike | None = None,
    dtype: None = None,
) -> tuple[_FloatArray | _Float, NDArray[_CSCT] | _CSCT]: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: None = None,
    b: ArrayLike | None = None,
    keepdims: Literal[False] = False,
    *,
    return_sign: Literal[True],
    out: None = None,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> tuple[_Float, _Float]: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: _Axis,
    b: ArrayLike | None,
    keepdims: bool,
    return_sign: Literal[True],
    *,
    out: None = None,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> tuple[_FloatArray | _Float, _FloatArray | _Float]: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: _Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    *,
    return_sign: Literal[True],
    out: None = None,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> tuple[_FloatArray | _Float, _FloatArray | _Float]: ...

# return_sign only known as bool
@overload
def logsumexp(
    a: ArrayLike,
    axis: _Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
    *,
    out: NDArray[Any] | None = None,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> Any: ...

# --------------------------------------------------------------------------- softmax
@overload
def softmax(
    x: ArrayLike, axis: _Axis = None, *, out: _ArrayT, where: ArrayLike | None = None
) -> _ArrayT: ...
@overload
def softmax(
    x: _SCT, axis: _Axis = None, *, out: None = None, where: ArrayLike | None = None
) -> _SCT: ...
@overload
def softmax(
    x: _Scalar, axis: _Axis = None, *, out: None = None, where: ArrayLike | None = None
) -> _Float: ...
@overload
def softmax(
    x: NDArray[_ISCT], axis: _Axis = None, *, out: None = None, where: ArrayLike | None = None
) -> NDArray[_ISCT]: ...
@overload
def softmax(
    x: ArrayLike, axis: _Axis = None, *, out: None = None, where: ArrayLike | None = None
) -> _FloatArray: ...
@overload
def log_softmax(
    x: ArrayLike, axis: _Axis = None, *, out: _ArrayT, where: ArrayLike | None = None
) -> _ArrayT: ...
@overload
def log_softmax(
    x: _SCT, axis: _Axis = None, *, out: None = None, where: ArrayLike | None = None
) -> _SCT: ...
@overload
def log_softmax(
    x: _Scalar, axis: _Axis = None, *, out: None = None, where: ArrayLike | None = None
) -> _Float: ...
@overload
def log_softmax(
    x: NDArray[_ISCT], axis: _Axis = None, *, out: None = None, where: ArrayLike | None = None
) -> NDArray[_ISCT]: ...
@overload
def log_softmax(
    x: ArrayLike, axis: _Axis = None, *, out: None = None, where: ArrayLike | None = None
) -> _FloatArray: ...

# --------------------------------------------------------------------------- cross_entropy
# reduction "mean"/"sum" -> scalar; "none" -> ndarray; return_lse=True -> (loss, lse)
@overload
def cross_entropy(
    logits: NDArray[_SCT],
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    where: ArrayLike | None = None,
    dtype: None = None,
) -> _SCT: ...
@overload
def cross_entropy(
    logits: NDArray[_SCT],
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    where: ArrayLike | None = None,
    dtype: None = None,
) -> NDArray[_SCT]: ...
@overload
def cross_entropy(
    logits: NDArray[_SCT],
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[True],
    where: ArrayLike | None = None,
    dtype: None = None,
) -> tuple[_SCT, NDArray[_SCT]]: ...
@overload
def cross_entropy(
    logits: NDArray[_SCT],
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[True],
    where: ArrayLike | None = None,
    dtype: None = None,
) -> tuple[NDArray[_SCT], NDArray[_SCT]]: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> _Float: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> _FloatArray: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[True],
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> tuple[_Float, _FloatArray]: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[True],
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> tuple[_FloatArray, _FloatArray]: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: bool = False,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> _Float | _FloatArray | tuple[_Float | _FloatArray, _FloatArray]: ...

# ------------------------------------------------------------------- cross_entropy_with_grad
# (loss, grad) or (loss, grad, lse); loss as in cross_entropy.  The gradient has
# the logits' floating type (it is `out`, or `logits` itself with inplace=True,
# when given: both must have that dtype).
@overload
def cross_entropy_with_grad(
    logits: NDArray[_SCT],
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    grad_scale: ArrayLike = 1.0,
    out: NDArray[_SCT] | None = None,
    inplace: bool = False,
    where: ArrayLike | None = None,
    dtype: None = None,
) -> tuple[_SCT, NDArray[_SCT]]: ...
@overload
def cross_entropy_with_grad(
    logits: NDArray[_SCT],
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    grad_scale: ArrayLike = 1.0,
    out: NDArray[_SCT] | None = None,
    inplace: bool = False,
    where: ArrayLike | None = None,
    dtype: None = None,
) -> tuple[NDArray[_SCT], NDArray[_SCT]]: ...
@overload
def cross_entropy_with_grad(
    logits: NDArray[_SCT],
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[True],
    grad_scale: ArrayLike = 1.0,
    out: NDArray[_SCT] | None = None,
    inplace: bool = False,
    where: ArrayLike | None = None,
    dtype: None = None,
) -> tuple[_SCT, NDArray[_SCT], NDArray[_SCT]]: ...
@overload
def cross_entropy_with_grad(
    logits: NDArray[_SCT],
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[True],
    grad_scale: ArrayLike = 1.0,
    out: NDArray[_SCT] | None = None,
    inplace: bool = False,
    where: ArrayLike | None = None,
    dtype: None = None,
) -> tuple[NDArray[_SCT], NDArray[_SCT], NDArray[_SCT]]: ...
@overload
def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    grad_scale: ArrayLike = 1.0,
    out: NDArray[Any] | None = None,
    inplace: bool = False,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> tuple[_Float, _FloatArray]: ...
@overload
def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    grad_scale: ArrayLike = 1.0,
    out: NDArray[Any] | None = None,
    inplace: bool = False,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> tuple[_FloatArray, _FloatArray]: ...
@overload
def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[True],
    grad_scale: ArrayLike = 1.0,
    out: NDArray[Any] | None = None,
    inplace: bool = False,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> tuple[_Float, _FloatArray, _FloatArray]: ...
@overload
def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[True],
    grad_scale: ArrayLike = 1.0,
    out: NDArray[Any] | None = None,
    inplace: bool = False,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> tuple[_FloatArray, _FloatArray, _FloatArray]: ...
@overload
def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: bool = False,
    grad_scale: ArrayLike = 1.0,
    out: NDArray[Any] | None = None,
    inplace: bool = False,
    where: ArrayLike | None = None,
    dtype: DTypeLike = None,
) -> (
    tuple[_Float | _FloatArray, _FloatArray]
    | tuple[_Float | _FloatArray, _FloatArray, _FloatArray]
): ...

# ------------------------------------------------------------------- linear_cross_entropy
# The loss of x @ weight.T + bias, as cross_entropy's; float32/float64 x and
# weight of one type keep it.  _with_grad: (loss, dx, dweight) and dbias when
# bias is given (bias=None in the stub's first overloads), lse last with
# return_lse=True.
@overload
def linear_cross_entropy(
    x: NDArray[_SCT],
    weight: NDArray[_SCT],
    target: ArrayLike,
    *,
    bias: None = None,
    class_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    chunk_size: int | None = None,
) -> _SCT: ...
@overload
def linear_cross_entropy(
    x: NDArray[_SCT],
    weight: NDArray[_SCT],
    target: ArrayLike,
    *,
    bias: None = None,
    class_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    chunk_size: int | None = None,
) -> NDArray[_SCT]: ...
@overload
def linear_cross_entropy(
    x: NDArray[_SCT],
    weight: NDArray[_SCT],
    target: ArrayLike,
    *,
    bias: None = None,
    class_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[True],
    chunk_size: int | None = None,
) -> tuple[_SCT, NDArray[_SCT]]: ...
@overload
def linear_cross_entropy(
    x: NDArray[_SCT],
    weight: NDArray[_SCT],
    target: ArrayLike,
    *,
    bias: None = None,
    class_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[True],
    chunk_size: int | None = None,
) -> tuple[NDArray[_SCT], NDArray[_SCT]]: ...
@overload
def linear_cross_entropy(
    x: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    class_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: bool = False,
    chunk_size: int | None = None,
) -> _Float | _FloatArray | tuple[_Float | _FloatArray, _FloatArray]: ...
@overload
def linear_cross_entropy_with_grad(
    x: NDArray[_SCT],
    weight: NDArray[_SCT],
    target: ArrayLike,
    *,
    bias: None = None,
    class_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    grad_scale: ArrayLike = 1.0,
    chunk_size: int | None = None,
    accumulate_dtype: DTypeLike = None,
    out: tuple[NDArray[Any], ...] | None = None,
) -> tuple[_SCT, NDArray[_SCT], NDArray[_SCT]]: ...
@overload
def linear_cross_entropy_with_grad(
    x: NDArray[_SCT],
    weight: NDArray[_SCT],
    target: ArrayLike,
    *,
    bias: ArrayLike,
    class_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    grad_scale: ArrayLike = 1.0,
    chunk_size: int | None = None,
    accumulate_dtype: DTypeLike = None,
    out: tuple[NDArray[Any], ...] | None = None,
) -> tuple[_SCT, NDArray[_SCT], NDArray[_SCT], NDArray[_SCT]]: ...
@overload
def linear_cross_entropy_with_grad(
    x: NDArray[_SCT],
    weight: NDArray[_SCT],
    target: ArrayLike,
    *,
    bias: None = None,
    class_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    grad_scale: ArrayLike = 1.0,
    chunk_size: int | None = None,
    accumulate_dtype: DTypeLike = None,
    out: tuple[NDArray[Any], ...] | None = None,
) -> tuple[NDArray[_SCT], NDArray[_SCT], NDArray[_SCT]]: ...
@overload
def linear_cross_entropy_with_grad(
    x: NDArray[_SCT],
    weight: NDArray[_SCT],
    target: ArrayLike,
    *,
    bias: ArrayLike,
    class_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
    grad_scale: ArrayLike = 1.0,
    chunk_size: int | None = None,
    accumulate_dtype: DTypeLike = None,
    out: tuple[NDArray[Any], ...] | None = None,
) -> tuple[NDArray[_SCT], NDArray[_SCT], NDArray[_SCT], NDArray[_SCT]]: ...
@overload
def linear_cross_entropy_with_grad(
    x: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    class_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: bool = False,
    grad_scale: ArrayLike = 1.0,
    chunk_size: int | None = None,
    accumulate_dtype: DTypeLike = None,
    out: tuple[NDArray[Any], ...] | None = None,
) -> tuple[Any, ...]: ...

# --------------------------------------------------------------------------- class-slice states
_States = NDArray[np.float64] | list[NDArray[np.float64]] | tuple[NDArray[np.float64], ...]

STATE_FIELDS: tuple[str, str, str, str, str, str]

def partial_logsumexp(a: ArrayLike, axis: int = -1) -> NDArray[np.float64]: ...
def partial_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    num_classes: int,
    start: int = 0,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    label_smoothing: float = 0.0,
    softcap: float | None = None,
) -> NDArray[np.float64]: ...
def merge_partials(states: _States) -> NDArray[np.float64]: ...
def merge_logsumexp(states: _States) -> NDArray[np.float64]: ...
@overload
def merge_cross_entropy(
    states: _States,
    target: ArrayLike,
    *,
    num_classes: int,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
) -> NDArray[np.float64]: ...
@overload
def merge_cross_entropy(
    states: _States,
    target: ArrayLike,
    *,
    num_classes: int,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduced = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[False] = False,
) -> np.float64: ...
@overload
def merge_cross_entropy(
    states: _States,
    target: ArrayLike,
    *,
    num_classes: int,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: Literal[True],
) -> tuple[Any, NDArray[np.float64]]: ...

# ---- the neighbouring losses (csoftmax/_losses.py) ----
_KLReduced = Literal["batchmean", "sum", "mean"]
_TeacherKind = Literal["logits", "log_probs", "probs"]

@overload
def binary_cross_entropy(
    logits: NDArray[_SCT],
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _Reduced = "mean",
) -> _SCT: ...
@overload
def binary_cross_entropy(
    logits: NDArray[_SCT],
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: Literal["none"],
) -> NDArray[_SCT]: ...
@overload
def binary_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _Reduction = "mean",
) -> Any: ...
@overload
def binary_cross_entropy_with_grad(
    logits: NDArray[_SCT],
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _Reduced = "mean",
    grad_scale: ArrayLike = 1.0,
    out: NDArray[_SCT] | None = None,
    inplace: bool = False,
) -> tuple[_SCT, NDArray[_SCT]]: ...
@overload
def binary_cross_entropy_with_grad(
    logits: NDArray[_SCT],
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: Literal["none"],
    grad_scale: ArrayLike = 1.0,
    out: NDArray[_SCT] | None = None,
    inplace: bool = False,
) -> tuple[NDArray[_SCT], NDArray[_SCT]]: ...
@overload
def binary_cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _Reduction = "mean",
    grad_scale: ArrayLike = 1.0,
    out: NDArray[Any] | None = None,
    inplace: bool = False,
) -> tuple[Any, NDArray[Any]]: ...
@overload
def kl_div(
    student_logits: NDArray[_SCT],
    teacher: ArrayLike,
    *,
    axis: int = -1,
    temperature: float = 1.0,
    teacher_kind: _TeacherKind = "logits",
    reduction: _KLReduced = "batchmean",
    mask: ArrayLike | None = None,
) -> _SCT: ...
@overload
def kl_div(
    student_logits: NDArray[_SCT],
    teacher: ArrayLike,
    *,
    axis: int = -1,
    temperature: float = 1.0,
    teacher_kind: _TeacherKind = "logits",
    reduction: Literal["none"],
    mask: ArrayLike | None = None,
) -> NDArray[_SCT]: ...
@overload
def kl_div(
    student_logits: ArrayLike,
    teacher: ArrayLike,
    *,
    axis: int = -1,
    temperature: float = 1.0,
    teacher_kind: _TeacherKind = "logits",
    reduction: _KLReduced | Literal["none"] = "batchmean",
    mask: ArrayLike | None = None,
) -> Any: ...
@overload
def kl_div_with_grad(
    student_logits: NDArray[_SCT],
    teacher: ArrayLike,
    *,
    axis: int = -1,
    temperature: float = 1.0,
    teacher_kind: _TeacherKind = "logits",
    reduction: _KLReduced = "batchmean",
    mask: ArrayLike | None = None,
    grad_scale: ArrayLike = 1.0,
    out: NDArray[_SCT] | None = None,
) -> tuple[_SCT, NDArray[_SCT]]: ...
@overload
def kl_div_with_grad(
    student_logits: NDArray[_SCT],
    teacher: ArrayLike,
    *,
    axis: int = -1,
    temperature: float = 1.0,
    teacher_kind: _TeacherKind = "logits",
    reduction: Literal["none"],
    mask: ArrayLike | None = None,
    grad_scale: ArrayLike = 1.0,
    out: NDArray[_SCT] | None = None,
) -> tuple[NDArray[_SCT], NDArray[_SCT]]: ...
@overload
def kl_div_with_grad(
    student_logits: ArrayLike,
    teacher: ArrayLike,
    *,
    axis: int = -1,
    temperature: float = 1.0,
    teacher_kind: _TeacherKind = "logits",
    reduction: _KLReduced | Literal["none"] = "batchmean",
    mask: ArrayLike | None = None,
    grad_scale: ArrayLike = 1.0,
    out: NDArray[Any] | None = None,
) -> tuple[Any, NDArray[Any]]: ...
@overload
def token_logprobs(
    logits: NDArray[_SCT],
    labels: ArrayLike,
    *,
    axis: int = -1,
    return_entropy: Literal[False] = False,
    ignore_index: int | None = None,
) -> NDArray[_SCT]: ...
@overload
def token_logprobs(
    logits: NDArray[_SCT],
    labels: ArrayLike,
    *,
    axis: int = -1,
    return_entropy: Literal[True],
    ignore_index: int | None = None,
) -> tuple[NDArray[_SCT], NDArray[_SCT]]: ...
@overload
def token_logprobs(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    return_entropy: bool = False,
    ignore_index: int | None = None,
) -> Any: ...
