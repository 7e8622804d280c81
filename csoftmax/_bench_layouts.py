"""``csoftmax bench --layouts``: the memory layouts users run besides "classes
last": PyTorch's K-dimensional (N, C, H, W) loss with axis=1, reductions over
axis 0, F-ordered arrays with axis=-1 (the column family of the kernels).

Each case is timed side by side with its peers and the machine's floors in
one process, interleaved (``_bench._median_ms``), on cold data (rotated
copies of >= 96 MiB):

* ``copy floor`` = ``np.copyto`` of the logits (the traffic of loss +
  gradient or softmax), ``read floor`` = ``np.max`` of them (of logsumexp);
* PyTorch: ``F.cross_entropy(...).backward()`` on the same layout (a leaf
  over the same memory), ``torch.softmax`` / ``torch.logsumexp`` with ``dim``;
* SciPy's ``softmax`` / ``logsumexp`` with ``axis``;
* for the axis-0 log-sum-exp also "transpose + rows": ``np.ascontiguousarray(x.T)``
  then csoftmax's row kernel, what one would do without a column kernel.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

import csoftmax
from csoftmax import _bench as B

#: (label, op, shape, axis, order): the issue's cases plus F-ordered (N, C)
LAYOUT_CASES = [
    ("segmentation CE+grad", "xent", (8, 21, 128, 128), 1, "C"),
    ("segmentation CE+grad", "xent", (16, 3, 64, 64), 1, "C"),
    ("segmentation CE+grad", "xent", (4, 150, 64, 64), 1, "C"),
    ("F-ordered CE+grad", "xent", (4096, 1000), -1, "F"),
    ("softmax axis=0", "softmax", (10, 100000), 0, "C"),
    ("softmax axis=0", "softmax", (1000, 1000), 0, "C"),
    ("logsumexp axis=0", "lse", (3, 200000), 0, "C"),
    ("logsumexp axis=0", "lse", (10, 1000000), 0, "C"),
    ("F-ordered logsumexp", "lse", (4096, 1000), -1, "F"),
]


def _case_fns(op, zs, axis, torch, ss, lab, out):
    k = len(zs)
    fns: dict[str, Any] = {}
    if op == "xent":
        fns["csoftmax"] = lambda i: csoftmax.cross_entropy_with_grad(zs[i % k], lab, axis=axis,
                                                                     out=out)
    elif op == "softmax":
        fns["csoftmax"] = lambda i: csoftmax.softmax(zs[i % k], axis=axis, out=out)
    else:
        fns["csoftmax"] = lambda i: csoftmax.logsumexp(zs[i % k], axis=axis)
        if axis == 0:
            fns["transpose + rows"] = lambda i: csoftmax.logsumexp(
                np.ascontiguousarray(zs[i % k].T), axis=-1)
    if ss is not None and op != "xent":
        f = ss.softmax if op == "softmax" else ss.logsumexp
        fns["scipy"] = lambda i: f(zs[i % k], axis=axis)
    if torch is not None:
        tz = [torch.from_numpy(a) for a in zs]
        dim = axis
        if op == "xent":
            tl = torch.from_numpy(lab)
            F = torch.nn.functional

            def tx(i):
                t = tz[i % k].detach().requires_grad_(True)
                # the class axis must be dim 1 for PyTorch: (N, C) F-ordered is (N, C) too
                loss = F.cross_entropy(t, tl)
                loss.backward()
                return loss
            fns["torch fwd+bwd"] = tx
        elif op == "softmax":
            fns["torch"] = lambda i: torch.softmax(tz[i % k], dim=dim)
        else:
            fns["torch"] = lambda i: torch.logsumexp(tz[i % k], dim=dim)
    return fns


def run_layouts(dtypes=("float32", "float64"), threads=(1,), reps: int = 11, cold: bool = True,
                out=sys.stdout) -> list[dict]:
    torch = B._torch()
    ss = B._scipy_special()
    rng = np.random.default_rng(11)
    rows: list[dict] = []
    cfg = csoftmax.show_config()
    print(f"csoftmax {csoftmax.__version__} layouts  isa={cfg['isa']}  cold={cold}  reps={reps}",
          file=out)
    print(f"cpu: {B._cpu_name()} ({os.cpu_count()} cores; {B._cpu_isas()})", file=out)
    print(f"peers' ISA: ATEN_CPU_CAPABILITY={B.peer_isa()['torch']}", file=out)
    for nthr in threads:
        with B._limit_threads(nthr, torch):
            for dt in dtypes:
                for label, op, shape, axis, order in LAYOUT_CASES:
                    z0 = (3 * rng.standard_normal(shape)).astype(dt)
                    if order == "F":
                        z0 = np.asfortranarray(z0)
                    zs = B._copies(z0, cold)
                    if order == "F":
                        zs = [np.asfortranarray(z) for z in zs]
                    ax = axis % z0.ndim
                    bshape = tuple(n for i, n in enumerate(shape) if i != ax)
                    lab = rng.integers(0, shape[ax], bshape)
                    res = np.empty_like(z0) if op != "lse" else None
                    copy_floor, read_floor = B._floor_fns(zs)
                    fns = {"copy floor": copy_floor, "read floor": read_floor}
                    fns.update(_case_fns(op, zs, axis, torch, ss, lab, res))
                    t = B._median_ms(fns, reps)
                    for impl, ms in t.items():
                        rows.append({"case": label, "shape": list(shape), "axis": axis,
                                     "order": order, "dtype": dt, "threads": nthr,
                                     "impl": impl, "ms": ms})
                    _print_case(label, shape, axis, order, dt, nthr, t, out)
    return rows


def _print_case(label, shape, axis, order, dt, nthr, t, out):
    cp, rd, me = t["copy floor"], t["read floor"], t["csoftmax"]
    shp = "x".join(str(n) for n in shape)
    print(f"\n{label}: {shp} axis={axis} {order}-order {dt} threads={nthr} "
          f"isa={csoftmax.show_config()['isa']}", file=out)
    print(f"  {'implementation':20s} {'ms':>9s} {'x copy':>7s} {'x read':>7s} {'vs csoftmax':>11s}",
          file=out)
    for impl, ms in t.items():
        rel = "" if "floor" in impl else f"{ms / me:11.2f}"
        print(f"  {impl:20s} {ms:9.3f} {ms / cp:7.2f} {ms / rd:7.2f} {rel}", file=out)
