"""csoftmax: fast, accurate softmax, log-sum-exp and fused softmax cross-entropy.

The work is done by hand-written C row kernels (``src_c/``), dispatched at
import to the best of baseline / AVX2 / AVX-512 that the CPU supports
(``CSOFTMAX_ISA=scalar|avx2|avx512`` forces a lower path), and exposed with
SciPy's signatures (``logsumexp``, ``softmax``, ``log_softmax``) plus a fused
cross-entropy loss + gradient (``cross_entropy``, ``cross_entropy_with_grad``)
and its fusion with a linear layer that never holds the logits
(``linear_cross_entropy``, ``linear_cross_entropy_with_grad``), and mergeable
per-slice states for rows whose classes are split (``partial_logsumexp``,
``partial_cross_entropy``, ``merge_*``; ``csoftmax.dask`` builds on them), and
the neighbouring losses on the same passes: the sigmoid cross-entropy
(``binary_cross_entropy(_with_grad)``), distillation KL (``kl_div(_with_grad)``)
and per-token log-probabilities with entropy (``token_logprobs``).
``csoftmax.reference`` holds the pure-NumPy float64 definitions the tests
compare against.
"""
from ._version import __version__
from ._api import (
    cross_entropy,
    cross_entropy_with_grad,
    log_softmax,
    logsumexp,
    softmax,
)
from ._linear import linear_cross_entropy, linear_cross_entropy_with_grad
from ._losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_grad,
    kl_div,
    kl_div_with_grad,
    token_logprobs,
)
from ._partial import (
    STATE_FIELDS,
    merge_cross_entropy,
    merge_logsumexp,
    merge_partials,
    partial_cross_entropy,
    partial_logsumexp,
)
from . import _core

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


def set_num_threads(n: int) -> None:
    """Limit the threads the kernels use over rows (OpenMP; default: all cores).

    Applies to calls from the calling thread, including the worker threads
    that run the BLAS blocks of ``linear_cross_entropy(_with_grad)``.
    ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` work as well.
    Results do not depend on the thread count.
    """
    _core.set_num_threads(int(n))


def show_config(print_it: bool = False) -> dict:
    """Describe the build and the kernel path in use.

    Returns a dict with ``version``, ``isa`` (active path: "scalar", "avx2"
    or "avx512"), ``available`` (paths this CPU and build can run),
    ``openmp`` (built with OpenMP), ``max_threads`` and ``emulated`` (True
    only in a test build that runs its AVX-512 kernels on an emulated CPU,
    see ``tools/avx512_emu.sh``).  With
    ``print_it=True`` it is also printed.
    """
    cfg = {
        "version": __version__,
        "isa": _core.isa_active(),
        "available": _core.isa_available(),
        "openmp": _core.openmp_enabled(),
        "max_threads": _core.max_threads(),
        "emulated": _core.isa_emulated(),
    }
    if print_it:
        for k, v in cfg.items():
            print(f"{k:12s} {v}")
    return cfg
