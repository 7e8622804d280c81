# Type stubs for csoftmax.dask (the runtime is csoftmax/dask.py).  Results are lazy
# Dask arrays (a 0-d one for a reduced loss).
from typing import Any, Literal

import dask.array as da
from numpy.typing import ArrayLike

__all__ = ["logsumexp", "softmax", "log_softmax", "cross_entropy", "cross_entropy_with_grad",
           "threads_per_task", "set_threads_per_task"]

_SplitEvery = int | dict[int, int] | None
_Reduction = Literal["none", "mean", "sum"]

def threads_per_task() -> int: ...
def set_threads_per_task(n: int | None) -> None: ...
def logsumexp(x: da.Array, axis: int = -1, keepdims: bool = False, *,
              split_every: _SplitEvery = None) -> da.Array: ...
def softmax(x: da.Array, axis: int = -1, *, split_every: _SplitEvery = None) -> da.Array: ...
def log_softmax(x: da.Array, axis: int = -1, *,
                split_every: _SplitEvery = None) -> da.Array: ...
def cross_entropy(
    logits: da.Array,
    target: da.Array | ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: da.Array | ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    split_every: _SplitEvery = None,
) -> da.Array: ...
def cross_entropy_with_grad(
    logits: da.Array,
    target: da.Array | ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    sample_weight: da.Array | ArrayLike | None = None,
    ignore_index: int | None = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    grad_scale: float = 1.0,
    split_every: _SplitEvery = None,
) -> tuple[da.Array, da.Array]: ...
