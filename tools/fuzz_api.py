#!/usr/bin/env python3
"""Atheris (libFuzzer) harness for csoftmax's public API.

Usage:
    python tools/fuzz_api.py -max_total_time=60 [other libFuzzer flags] [corpus dir]
    python tools/fuzz_api.py -runs=20000
    python tools/fuzz_api.py crash-<sha1>              # replay one input

Each input is decoded (atheris.FuzzedDataProvider) into one call of
logsumexp / softmax / log_softmax / cross_entropy / cross_entropy_with_grad
with small arrays of arbitrary dtype (float16/32/64, longdouble, integers,
bool, complex, object, byte-swapped), layout (transposes, negative and
non-unit steps, zero-stride broadcasts, fields of packed structured arrays,
misaligned buffers, read-only, Fortran order), axis, labels (every integer
dtype, out-of-range, negative, int64 min/max, uint64 above int64 max, float
soft targets, wrong shapes), options (weight, sample_weight, ignore_index,
reduction, label_smoothing, z_loss, softcap, grad_scale, return_lse) and
out= buffers (fresh, exact alias, partial overlap, wrong shape / dtype,
read-only) -- and the kernel path (scalar / avx2 / avx512, as available) is
switched per input.

A call may raise only TypeError or ValueError (numpy's AxisError is a
ValueError); after an exception no argument (out= included) may have
changed.  After a success, arguments other than the output must be
unchanged, and the result must satisfy:

* the documented result dtype and shape, out= / inplace returned as such;
* logsumexp, softmax, log_softmax, and cross-entropy without the options the
  reference lacks: agreement with csoftmax.reference (float64 oracle) in the
  NaN / inf pattern and, loosely, in value;
* softmax of finite input in [0, 1]; log_softmax of finite input <= 0;
* cross-entropy with any options: an invalid label (not ignore_index) must
  have raised; ignored samples have loss 0 and a gradient of exactly 0 (even
  with NaN logits); for finite logits and options, the loss is >= 0 and
  finite, the gradient finite, and (without z_loss / softcap) every gradient
  row sums to ~0.

Where csoftmax.reference and scipy.special disagree (weighted logsumexp whose
negative sum underflows: the reference says NaN, SciPy -inf), SciPy decides
("ref!=scipy" in the summary).  Labels that live inside the out= buffer are
generated too (they crashed csoftmax once: test_labels_living_in_the_output).

The harness stops itself at -max_total_time / -runs (libFuzzer never sees
those flags) and prints the number of executions; FUZZ_API_VERBOSE=1 prints
each decoded call (for replaying a crash file).  Any other failure is an
uncaught exception or a signal: atheris prints it, writes the crashing input
and exits non-zero.
"""
from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np

import atheris

with atheris.instrument_imports(include=["csoftmax"], exclude=["csoftmax.reference"]):
    import csoftmax
    from csoftmax import _core
    from csoftmax import reference as ref

try:
    import scipy.special as sps
except ImportError:                                 # pragma: no cover
    sps = None

AVAILABLE_ISA = _core.isa_available()
FUNCS = ("logsumexp", "softmax", "log_softmax", "cross_entropy", "cross_entropy_with_grad")
LOGIT_DTYPES = ("float64", "float32", "float16", "longdouble", ">f8", ">f4", "int8", "int64",
                "uint8", "uint64", "bool", "complex64", "object")
LABEL_DTYPES = ("int64", "int8", "int16", "int32", "uint8", "uint16", "uint32", "uint64",
                ">i8", ">u2", "bool", "float64", "float32", "object")
SPECIAL = (0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e38, -1e38, 3e38, 1e300, -1e300,
           1e-45, 5e-324, 1e-310, 88.7, -103.0, 709.0, -745.0, 65504.0, 0.5)
LABEL_SPECIAL = (-100, -1, -(2**63), 2**63 - 1, 2**63, 2**64 - 1, 255, 65535, 2**31, -129)

STATS = {"runs": 0, "ok": 0}


def pick(fdp, seq):
    return fdp.PickValueInList(list(seq))


class Bad(Exception):
    """An invariant violation (never caught: atheris reports it)."""


def expect(cond, msg, *ctx):
    if not cond:
        raise Bad(msg + "".join(f"\n  {c!r}" for c in ctx))


# --------------------------------------------------------------------------- arrays

def small_shape(fdp, max_ndim=3):
    nd = fdp.ConsumeIntInRange(0, max_ndim)
    shape = [fdp.ConsumeIntInRange(0, 5) for _ in range(nd)]
    if nd and fdp.ConsumeProbability() < 0.25:     # one longer axis: SIMD tails
        shape[fdp.ConsumeIntInRange(0, nd - 1)] = pick(fdp, 
            [7, 8, 9, 15, 16, 17, 31, 33, 64, 67])
    return tuple(shape)


def values(fdp, n):
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:                                  # moderate values
        v = np.array([fdp.ConsumeIntInRange(-2000, 2000) / 100.0 for _ in range(n)])
    elif mode == 1:                                # moderate + specials
        v = np.array([pick(fdp, SPECIAL) if fdp.ConsumeProbability() < 0.2
                      else fdp.ConsumeIntInRange(-3000, 3000) / 100.0 for _ in range(n)])
    elif mode == 2:                                # arbitrary doubles
        v = np.array([fdp.ConsumeFloat() for _ in range(n)])
    else:                                          # seeded random
        rng = np.random.default_rng(fdp.ConsumeIntInRange(0, 2**16))
        v = rng.standard_normal(n) * pick(fdp, [1.0, 10.0, 100.0, 1e-3])
    return v.astype(np.float64) if v.size else np.zeros(0)


def cast(v, dt):
    dt = np.dtype(dt)
    with np.errstate(all="ignore"):
        if dt.kind in "iu":
            info = np.iinfo(dt)
            v = np.nan_to_num(v, nan=0.0, posinf=info.max, neginf=info.min)
            return np.clip(np.trunc(v), info.min, info.max).astype(dt)
        if dt.kind == "b":
            return v > 0
        if dt.kind == "O":
            return v.astype(object)
        return v.astype(dt)


def struct_field(a):
    s = np.zeros(a.shape, dtype=[("pad", "u1"), ("v", a.dtype)])
    s["v"] = a
    return s["v"]


def misaligned(a):
    if a.dtype.kind == "O" or a.itemsize == 1:
        return a
    buf = np.zeros(a.nbytes + 1, np.uint8)
    m = np.frombuffer(buf.data, dtype=a.dtype, offset=1, count=a.size).reshape(a.shape)
    m[...] = a
    return m


def layout(fdp, a):
    """Apply a few random view / copy transformations (values may be rearranged)."""
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        op = fdp.ConsumeIntInRange(0, 8)
        if op == 0 and a.ndim > 1:
            a = a.transpose(np.random.default_rng(fdp.ConsumeIntInRange(0, 99))
                            .permutation(a.ndim))
        elif op == 1 and a.ndim:
            idx = tuple(slice(None, None, pick(fdp, [1, -1, 2, -2]))
                        for _ in range(a.ndim))
            a = a[idx]
        elif op == 2 and a.ndim:                   # zero stride on one axis
            ax = fdp.ConsumeIntInRange(0, a.ndim - 1)
            sl = [slice(None)] * a.ndim
            sl[ax] = slice(0, 1)
            if a.shape[ax]:
                a = np.broadcast_to(a[tuple(sl)], a.shape)
        elif op == 3:
            a = struct_field(a)
        elif op == 4:
            a = misaligned(a)
        elif op == 5:
            a = np.asfortranarray(a)
        elif op == 6 and a.flags.writeable:
            a = a.view()
            a.flags.writeable = False
        elif op == 7 and a.dtype.kind in "fiu" and a.dtype.itemsize > 1:
            a = a.astype(a.dtype.newbyteorder())
        elif op == 8 and a.ndim:                   # a strided view of a larger array
            big = np.zeros(tuple(2 * n for n in a.shape), dtype=a.dtype)
            v = big[(slice(None, None, 2),) * a.ndim]
            v[...] = a
            a = v
    return a


def make_logits(fdp):
    shape = small_shape(fdp)
    dt = pick(fdp, LOGIT_DTYPES)
    n = int(np.prod(shape)) if shape else 1
    a = cast(values(fdp, n), dt).reshape(shape)
    a = layout(fdp, a)
    if fdp.ConsumeProbability() < 0.05:
        return a.tolist() if a.ndim else a.item()
    return a


def pick_axis(fdp, ndim, allow_tuple=True):
    k = fdp.ConsumeIntInRange(0, 4)
    if k == 0:
        return None
    if k == 4 and allow_tuple and ndim:
        m = fdp.ConsumeIntInRange(1, ndim)
        return tuple(fdp.ConsumeIntInRange(-ndim, ndim - 1) for _ in range(m))
    return fdp.ConsumeIntInRange(-ndim - 1, ndim)


def result_dtype(dt):
    dt = np.dtype(dt)
    return dt.newbyteorder("=") if dt.kind == "f" else np.dtype(np.float64)


def row_dtype(rdt):
    """Per-row results (log-sum-exp, loss) of float16 input are float32 (README)."""
    rdt = np.dtype(rdt)
    return np.dtype(np.float32) if rdt.kind == "f" and rdt.itemsize == 2 else rdt


# --------------------------------------------------------------------------- comparison

def rtol_for(rdt):
    return {2: 5e-3, 4: 5e-5}.get(np.dtype(rdt).itemsize, 1e-9)


def close(got, exp, rdt, scale, what, mask=None):
    """Loose agreement with the float64 oracle, specials exact (where mask)."""
    g = np.asarray(got).astype(np.float64)
    e = np.asarray(exp, dtype=np.float64)
    expect(g.shape == e.shape, f"{what}: shape {g.shape} != {e.shape}")
    if mask is not None:
        mask = np.broadcast_to(mask, g.shape)
        g, e = g[mask], e[mask]
    rdt = np.dtype(rdt)
    if rdt.itemsize < 8:
        with np.errstate(all="ignore"):
            ec = e.astype(rdt).astype(np.float64)
        ovf = np.isinf(ec) & np.isfinite(e)        # beyond the result dtype's range
        e = np.where(ovf, ec, e)
    expect(np.array_equal(np.isnan(g), np.isnan(e)), f"{what}: NaN pattern", g, e)
    expect(np.array_equal(np.where(np.isinf(g), g, 0), np.where(np.isinf(e), e, 0)),
           f"{what}: inf pattern", g, e)
    fin = np.isfinite(e)
    if fin.any():
        rt = rtol_for(rdt)
        tiny = float(np.finfo(rdt).tiny) if rdt.kind == "f" else 0.0
        with np.errstate(all="ignore"):
            bound = rt * (np.abs(e[fin]) + scale) + 4 * tiny
            diff = np.abs(g[fin] - e[fin])
        expect(np.all(diff <= bound), f"{what}: values differ (max {diff.max():.3g})", g, e)


def finite_scale(x):
    """Magnitude of the finite inputs (for cancellation in the tolerance)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.size == 0:
        return 1.0
    x = x.astype(np.float64)
    f = np.abs(x[np.isfinite(x)])
    return 1.0 + (float(f.max()) if f.size else 0.0)


def float_input(x):
    x = np.asarray(x)
    return x.dtype.kind in "fiu"


# --------------------------------------------------------------------------- snapshots

def arrays_in(args, kwargs):
    out = []
    for v in list(args) + list(kwargs.values()):
        if isinstance(v, np.ndarray) and v.dtype.kind != "O":
            out.append(v)
    return out


def snap(arrays):
    return [(a, np.ascontiguousarray(a).tobytes()) for a in arrays]


def unchanged(snaps, except_for=()):
    for i, (a, b) in enumerate(snaps):
        if any(np.shares_memory(a, t) for t in except_for):
            continue
        expect(np.ascontiguousarray(a).tobytes() == b, f"argument {i} was modified")


# --------------------------------------------------------------------------- out buffers

def make_out(fdp, x, shape, rdt):
    """A fresh / aliased / wrong out= buffer, or None."""
    k = fdp.ConsumeIntInRange(0, 9)
    if k <= 3:
        return None
    if k == 5 and isinstance(x, np.ndarray) and x.shape == tuple(shape) \
            and x.dtype == rdt and x.flags.writeable:
        return x                                    # exact alias
    if k == 6 and isinstance(x, np.ndarray) and x.ndim > 1 and x.shape[0] == x.shape[1] \
            and x.shape == tuple(shape) and x.dtype == rdt and x.flags.writeable:
        return np.swapaxes(x, 0, 1)                 # same memory, other order
    if k == 7:
        return np.zeros(tuple(shape) + (1,), dtype=rdt)     # wrong shape
    if k == 8:
        return np.zeros(shape, dtype=np.float32 if rdt != np.float32 else np.float64)
    if k == 9:
        o = np.zeros(shape, dtype=rdt)
        o.flags.writeable = False
        return o
    o = np.full(shape, 7.0, dtype=rdt)
    if fdp.ConsumeBool() and o.ndim:
        o = layout(fdp, o)
        if not o.flags.writeable or o.shape != tuple(shape) or o.dtype != rdt:
            o = np.full(shape, 7.0, dtype=rdt)
    return o


def overlapping(fdp, x, shift_max=3):
    """(x2, out): x's values in a buffer that out (same shape) partially overlaps."""
    x = np.asarray(x)
    n = x.size
    s = fdp.ConsumeIntInRange(1, shift_max)
    buf = np.zeros(n + s, dtype=x.dtype.newbyteorder("="))
    if fdp.ConsumeBool():
        xv, ov = buf[:n], buf[s:]
    else:
        xv, ov = buf[s:], buf[:n]
    xv = xv.reshape(x.shape)
    xv[...] = x
    return xv, ov.reshape(x.shape)


# --------------------------------------------------------------------------- per function

def run_array_func(fdp, name):
    x = make_logits(fdp)
    xa = np.asarray(x)
    nd = max(xa.ndim, 1)
    axis = pick_axis(fdp, nd)
    kwargs = {}
    args = [x]
    fn = getattr(csoftmax, name)
    out = None
    rdt = None
    try:
        rdt = result_dtype(xa.dtype)
    except Exception:                               # noqa: BLE001
        rdt = np.dtype(np.float64)
    if name == "logsumexp":
        rdt = row_dtype(rdt)
        if fdp.ConsumeBool():
            bshape = xa.shape[fdp.ConsumeIntInRange(0, xa.ndim):] if xa.ndim else ()
            b = cast(values(fdp, int(np.prod(bshape)) if bshape else 1),
                     pick(fdp, ["float64", "float32", "int8", "complex128",
                                          "float16"])).reshape(bshape)
            if fdp.ConsumeProbability() < 0.3 and b.size:
                b = np.where(values(fdp, b.size).reshape(b.shape) > 0, 0, b).astype(b.dtype)
            kwargs["b"] = layout(fdp, b)
        kwargs["keepdims"] = fdp.ConsumeBool()
        kwargs["return_sign"] = fdp.ConsumeBool()
        if axis is not None:
            kwargs["axis"] = axis
        # out= of the result shape, if it can be computed
        try:
            from numpy.lib.array_utils import normalize_axis_tuple
            shp = xa.shape if xa.ndim else (1,)
            ax = tuple(range(len(shp))) if axis is None else normalize_axis_tuple(
                axis if isinstance(axis, tuple) else (axis,), len(shp))
            if "b" in kwargs:
                shp = np.broadcast_shapes(shp, np.shape(kwargs["b"]))
            rs = (tuple(1 if i in ax else n for i, n in enumerate(shp)) if kwargs["keepdims"]
                  else tuple(n for i, n in enumerate(shp) if i not in ax))
            if "b" in kwargs:
                rdt = row_dtype(result_dtype(np.result_type(xa.dtype,
                                                            np.asarray(kwargs["b"]).dtype)))
            out = make_out(fdp, x, rs, rdt)
        except Exception:                           # noqa: BLE001
            out = None
    else:
        if axis is not None:
            kwargs["axis"] = axis
        try:
            if xa.size and xa.dtype == rdt and fdp.ConsumeProbability() < 0.15:
                x, out = overlapping(fdp, xa)
                args = [x]
            else:
                out = make_out(fdp, x, xa.shape, rdt)
        except Exception:                           # noqa: BLE001
            out = None
    if out is not None:
        kwargs["out"] = out
    return fn, args, kwargs, rdt


def make_labels(fdp, batch_shape, c, ignore_index):
    dt = pick(fdp, LABEL_DTYPES)
    shape = tuple(batch_shape)
    r = fdp.ConsumeIntInRange(0, 9)
    if r == 0:                                      # wrong shape
        shape = small_shape(fdp, 2)
    n = int(np.prod(shape)) if shape else 1
    if np.dtype(dt).kind == "f":                    # soft target: logits' shape
        return None, dt
    vals = []
    for _ in range(n):
        p = fdp.ConsumeProbability()
        if p < 0.08:
            vals.append(pick(fdp, LABEL_SPECIAL))
        elif p < 0.15 and ignore_index is not None:
            vals.append(ignore_index)
        elif p < 0.2:
            vals.append(fdp.ConsumeIntInRange(-3, c + 2))
        else:
            vals.append(fdp.ConsumeIntInRange(0, max(c - 1, 0)))
    dtn = np.dtype(dt)
    if dtn.kind in "iu":
        info = np.iinfo(dtn)
        vals = [v for v in vals]
        arr = np.array([min(max(v, int(info.min)), int(info.max)) for v in vals],
                       dtype=np.dtype(dtn).newbyteorder("=")).astype(dtn).reshape(shape)
    elif dtn.kind == "b":
        arr = np.array([bool(v % 2) for v in vals]).reshape(shape)
    else:
        arr = np.array(vals, dtype=object).reshape(shape)
    arr = layout(fdp, arr)
    if fdp.ConsumeProbability() < 0.05:
        return arr.tolist(), dt
    return arr, dt


def run_xent(fdp, name):
    z = make_logits(fdp)
    za = np.asarray(z)
    kwargs = {}
    axis = fdp.ConsumeIntInRange(-max(za.ndim, 1) - 1, max(za.ndim, 1))
    if fdp.ConsumeProbability() < 0.7:
        axis = -1
    kwargs["axis"] = axis
    ignore_index = pick(fdp, [-100, -100, -100, None, -1, 0, 3, 2**64 - 1,
                                        -(2**63)])
    kwargs["ignore_index"] = ignore_index
    nd = za.ndim
    ok_axis = nd >= 1 and -nd <= axis < nd
    c = za.shape[axis] if ok_axis else 3
    batch = (za.shape[:axis % nd] + za.shape[axis % nd + 1:]) if ok_axis else ()
    labels, ldt = make_labels(fdp, batch, c, ignore_index)
    if labels is None:                              # soft target
        shape = za.shape if fdp.ConsumeProbability() < 0.9 else small_shape(fdp)
        n = int(np.prod(shape)) if shape else 1
        q = np.abs(values(fdp, n)).reshape(shape)
        with np.errstate(all="ignore"):
            q = q / max(float(np.nansum(q[np.isfinite(q)])) if q.size else 1.0, 1e-300)
        labels = layout(fdp, cast(q, ldt))
    opt = fdp.ConsumeIntInRange(0, 255)
    if opt & 1:
        w = values(fdp, c if fdp.ConsumeProbability() < 0.9 else c + 1)
        if fdp.ConsumeProbability() < 0.8:
            w = np.abs(np.nan_to_num(w, nan=1.0, posinf=2.0, neginf=0.5)) % 4
        kwargs["weight"] = layout(fdp, cast(w, pick(fdp, 
            ["float64", "float32", "int8", "bool", "float16"])))
    if opt & 2:
        n = int(np.prod(batch)) if batch else 1
        s = values(fdp, n)
        if fdp.ConsumeProbability() < 0.8:
            s = np.abs(np.nan_to_num(s, nan=1.0, posinf=2.0, neginf=0.5)) % 4
        kwargs["sample_weight"] = cast(s, "float64").reshape(batch)
    if opt & 4:
        kwargs["label_smoothing"] = pick(fdp, [0.0, 0.1, 0.5, 1.0, 1.5, -0.1, np.nan])
    if opt & 8:
        kwargs["z_loss"] = pick(fdp, [0.0, 1e-4, 0.5, -1.0, np.inf])
    if opt & 16:
        kwargs["softcap"] = pick(fdp, [None, 1.0, 5.0, 30.0, 0.0, -2.0, np.nan, 1e-3])
    if opt & 32:
        kwargs["reduction"] = pick(fdp, ["none", "sum", "mean", "avg", None])
    else:
        kwargs["reduction"] = pick(fdp, ["none", "sum", "mean"])
    if opt & 64:
        kwargs["return_lse"] = True
    rdt = result_dtype(za.dtype) if za.dtype.kind in "fiu" else np.dtype(np.float64)
    targets = []
    if name == "cross_entropy_with_grad":
        if opt & 128:
            if kwargs["reduction"] == "none" and fdp.ConsumeBool():
                kwargs["grad_scale"] = cast(values(fdp, int(np.prod(batch)) if batch else 1),
                                            "float64").reshape(batch)
            else:
                kwargs["grad_scale"] = pick(fdp, [1.0, 0.5, -2.0, 0.0, np.nan])
        mode = fdp.ConsumeIntInRange(0, 5)
        if mode == 5:
            # int64 labels living inside the float64 gradient buffer (out=)
            lab_in_out = labels_in_output(za, labels, axis, rdt)
            if lab_in_out is not None:
                labels, kwargs["out"] = lab_in_out
        elif mode == 1:
            kwargs["inplace"] = True
        elif mode == 2 and za.size and za.dtype == rdt:
            z, o = overlapping(fdp, za)
            kwargs["out"] = o
        elif mode >= 2:
            o = make_out(fdp, z, za.shape, rdt)
            if o is not None:
                kwargs["out"] = o
                if mode == 4:
                    kwargs["inplace"] = True
    return getattr(csoftmax, name), [z, labels], kwargs, rdt


def labels_in_output(za, labels, axis, rdt):
    """(labels view, out): out is a fresh float64 gradient buffer and the labels
    (same values) are an int64 view of its last class, rows in reverse order, so
    a row's label lives in another row's gradient; None if not applicable."""
    if rdt != np.float64 or za.ndim == 0 or not isinstance(labels, np.ndarray) \
            or labels.dtype.kind not in "iu" or za.size == 0:
        return None
    ax = axis % za.ndim
    batch = za.shape[:ax] + za.shape[ax + 1:]
    if labels.shape != batch:
        return None
    out = np.zeros(za.shape, dtype=np.float64)
    idx = [slice(None)] * za.ndim
    idx[ax] = -1
    view = out.view(np.int64)[tuple(idx)]
    if view.ndim:
        view = view[::-1]
    with np.errstate(all="ignore"):
        vals = labels.astype(object)
        view[...] = np.array([min(max(int(v), -(2**63)), 2**63 - 1) for v in vals.ravel()],
                             dtype=np.int64).reshape(batch)
    return view, out


def _nonneutral(kwargs):
    """True if an option the reference lacks is in effect."""
    if kwargs.get("weight") is not None or kwargs.get("sample_weight") is not None:
        return True
    if kwargs.get("softcap") is not None or kwargs.get("return_lse"):
        return True
    for k in ("label_smoothing", "z_loss"):
        if kwargs.get(k, 0.0) != 0.0:
            return True
    gs = kwargs.get("grad_scale", 1.0)
    return np.ndim(gs) != 0 or gs != 1.0


# --------------------------------------------------------------------------- checks

def _complex_in(v):
    return v is not None and np.asarray(v).dtype.kind == "c"


def check_complex_result(name, res, x, rkw):
    """Complex input (csoftmax/_complex.py): SciPy's results on the input
    upcast to complex128 (csoftmax computes there), part by part, NaN and
    infinities where SciPy has them; without SciPy only the types."""
    up = (lambda v: np.asarray(v).astype(np.complex128)
          if np.asarray(v).dtype.kind in "biufc" else v)
    got = res if isinstance(res, tuple) else (res,)
    for g in got:
        expect(np.asarray(g).dtype.kind in "fc", f"{name}: complex input gave dtype "
               f"{np.asarray(g).dtype}")
    if sps is None:
        return
    kw = {k: (up(v) if k == "b" else v) for k, v in rkw.items()}
    with np.errstate(all="ignore"):
        try:
            exp = getattr(sps, name)(up(x), **kw)
        except Exception:                   # SciPy refuses (or fails): nothing to compare
            return
    exps = exp if isinstance(exp, tuple) else (exp,)
    if kw.get("return_sign") and len(exps) == 2:
        # A deliberate difference (README): where the sum is finite and non-zero
        # but subnormal, SciPy's sign overflows (1 / |sum|) to inf/NaN; csoftmax's
        # is a unit number.  Check that there, and compare the rest with SciPy.
        mag, sg = np.asarray(exps[0]), np.asarray(exps[1])
        odd = np.isfinite(mag) & ~np.isfinite(sg)
        if odd.any():
            gs = np.asarray(got[1])
            expect(np.all(np.abs(np.abs(gs[odd]) - 1) < 1e-6),
                   f"{name}: sign of a finite subnormal sum is not a unit number", gs, sg)
            exps = (mag, np.where(odd, gs, sg))
    for g, e in zip(got, exps):
        g, e = np.asarray(g), np.asarray(e)
        expect(g.shape == e.shape, f"{name}: shape {g.shape} vs SciPy {e.shape}")
        single = g.dtype in (np.dtype(np.complex64), np.dtype(np.float32))
        rt = 2e-6 if single else 1e-12
        for part in (np.real, np.imag):
            gp = part(g).astype(np.float64)
            ep = part(e).astype(np.float64)
            expect(np.array_equal(np.isnan(gp), np.isnan(ep)),
                   f"{name}: NaN positions differ from SciPy", g, e)
            fin = np.isfinite(ep)
            expect(np.array_equal(gp[~fin & ~np.isnan(ep)], ep[~fin & ~np.isnan(ep)]),
                   f"{name}: infinities differ from SciPy", g, e)
            if fin.any():
                scale = 1.0 + float(np.max(np.abs(ep[fin])))
                diff = np.abs(gp[fin] - ep[fin])
                # the phase wraps at pi: a difference of 2 pi is the same angle
                if part is np.imag:
                    diff = np.minimum(diff, np.abs(diff - 2 * np.pi))
                expect(np.all(diff <= rt * scale), f"{name}: differs from SciPy "
                       f"(max {diff.max():.3g})", g, e)


def check_array_result(name, res, args, kwargs, pristine, rdt):
    x = pristine[0]
    if _complex_in(x) or _complex_in(pristine[1].get("b")):
        if name in ("logsumexp", "softmax", "log_softmax"):
            check_complex_result(name, res, x,
                                 {k: v for k, v in pristine[1].items() if k != "out"})
            return
    if not float_input(x):
        raise Bad(f"{name} accepted dtype {np.asarray(x).dtype}")
    rkw = {k: v for k, v in pristine[1].items() if k != "out"}
    try:
        with np.errstate(all="ignore"):
            exp = getattr(ref, name)(x, **rkw)
    except (TypeError, ValueError):
        return                                      # the oracle refuses; nothing to compare
    out = kwargs.get("out")
    if name == "logsumexp" and "b" in rkw and sps is not None:
        # csoftmax follows scipy.special; where csoftmax.reference disagrees
        # with SciPy (weighted sums that are negative but underflow), SciPy
        # decides (counted as "ref!=scipy").
        try:
            _check_lse(res, exp, out, kwargs, x, rdt)
            return
        except Bad:
            try:
                with np.errstate(all="ignore"):
                    sexp = sps.logsumexp(np.asarray(x, dtype=np.float64),
                                         **{k: (np.asarray(v, dtype=np.float64) if k == "b"
                                                else v) for k, v in rkw.items()})
            except Exception:                   # noqa: BLE001
                raise
            _check_lse(res, sexp, out, kwargs, x, rdt)
            STATS["ref!=scipy"] = STATS.get("ref!=scipy", 0) + 1
            return
    if name == "logsumexp":
        _check_lse(res, exp, out, kwargs, x, rdt)
        return
    if out is not None:
        expect(res is out, "out= not returned")
    close(res, exp, rdt, finite_scale(x), name)
    expect(np.asarray(res).dtype.newbyteorder("=") == rdt, f"{name}: dtype {res.dtype} != {rdt}")
    xa = np.asarray(x).astype(np.float64)
    if name in ("softmax", "log_softmax") and np.isfinite(xa).all():
        r = np.asarray(res).astype(np.float64)
        if name == "softmax":
            expect(np.all((r >= 0) & (r <= 1)), "softmax outside [0, 1]", r)
        else:
            expect(np.all(r <= 0), "log_softmax > 0", r)


def _lse_well_conditioned(x, kwargs):
    """Mask of logsumexp results whose weighted sum is not ill-conditioned:
    log(sum|b| e^a) - log|sum b e^a| < log(1e6) (NaN counts as comparable)."""
    if "b" not in kwargs:
        return None
    kw = {k: v for k, v in kwargs.items() if k in ("axis", "keepdims")}
    try:
        with np.errstate(all="ignore"):
            b = np.asarray(kwargs["b"]).astype(np.float64)
            la = ref.logsumexp(x, b=np.abs(b), **kw)
            ls, _ = ref.logsumexp(x, b=b, return_sign=True, **kw)
            lcond = np.asarray(la) - np.asarray(ls)
            big = np.abs(b).max(initial=0.0) > 1e300
    except (TypeError, ValueError):
        return None
    return ~(lcond > 13.8) & ~big


def _check_lse(res, exp, out, kwargs, x, rdt):
    name = "logsumexp"
    mask = _lse_well_conditioned(x, kwargs)
    if kwargs.get("return_sign"):
        expect(isinstance(res, tuple) and len(res) == 2, "return_sign must give a pair")
        r0, sgn = res
        e0, esgn = exp
        if out is not None:
            expect(r0 is out, "out= not returned")
        close(r0, e0, rdt, finite_scale(x), f"{name} value", mask)
        close(sgn, esgn, rdt, 0.0, f"{name} sign", mask)
        return
    if out is not None:
        expect(res is out, "out= not returned")
    close(res, exp, rdt, finite_scale(x), name, mask)
    expect(np.asarray(res).dtype.newbyteorder("=") == rdt, f"{name}: dtype {res.dtype} != {rdt}")


def check_xent(name, res, args, kwargs, pr_args, pr_kwargs, rdt):
    z = np.asarray(pr_args[0])
    t = np.asarray(pr_args[1])
    expect(z.dtype.kind in "fiu", f"accepted logits dtype {z.dtype}")
    axis = kwargs["axis"] % z.ndim
    c = z.shape[axis]
    ig = kwargs.get("ignore_index", -100)
    red = kwargs.get("reduction", "mean")
    soft = t.dtype.kind == "f"
    grad = None
    parts = res if isinstance(res, tuple) else (res,)
    loss = parts[0]
    if name == "cross_entropy_with_grad":
        grad = parts[1]
        target = args[0] if kwargs.get("inplace") else kwargs.get("out")
        if target is not None:
            expect(grad is target, "out= / inplace gradient not returned")
        expect(np.asarray(grad).shape == z.shape, "grad shape")
        expect(np.asarray(grad).dtype.newbyteorder("=") == rdt, f"grad dtype {grad.dtype}")
    expect(np.asarray(loss).dtype.newbyteorder("=") == row_dtype(rdt),
           f"loss dtype {np.asarray(loss).dtype}")
    zm = np.moveaxis(z.astype(np.float64), axis, -1)
    gm = None if grad is None else np.moveaxis(np.asarray(grad).astype(np.float64), axis, -1)
    lossa = np.asarray(loss).astype(np.float64)
    if red == "none":
        expect(lossa.shape == zm.shape[:-1], "loss shape")
    if not soft:
        lab = t.astype(object).reshape(-1)
        ignored = np.array([ig is not None and int(v) == int(ig) for v in lab], dtype=bool)
        invalid = np.array([not (0 <= int(v) < c) for v in lab], dtype=bool) & ~ignored
        expect(not invalid.any(), "an out-of-range label was accepted", t, c, ig)
        ignored = ignored.reshape(zm.shape[:-1])
        if gm is not None and ignored.any():
            expect(np.all(gm[ignored] == 0), "ignored rows have a non-zero gradient", gm)
        if red == "none" and ignored.any():
            expect(np.all(lossa[ignored] == 0), "ignored rows have a non-zero loss")
    else:
        ignored = np.zeros(zm.shape[:-1], bool)
    opts_ref = not _nonneutral(kwargs)
    finite_in = np.isfinite(zm).all() and (not soft or np.isfinite(t.astype(np.float64)).all())
    for k in ("weight", "sample_weight"):
        if k in kwargs:
            finite_in = finite_in and np.isfinite(np.asarray(kwargs[k], np.float64)).all()
    if "grad_scale" in kwargs:
        finite_in = finite_in and np.isfinite(np.asarray(kwargs["grad_scale"], np.float64)).all()
    if soft and not np.isfinite(t.astype(np.float64)).all():
        return          # garbage-in (inf/NaN probabilities): NaN vs inf is not specified
    if opts_ref and not ignored.any():
        kw = {"axis": kwargs["axis"], "reduction": red}
        try:
            with np.errstate(all="ignore"):
                el, eg = ref.cross_entropy_with_grad(z, t, **kw)
        except (TypeError, ValueError):
            return
        sc = finite_scale(z) * (max(int(np.prod(zm.shape[:-1])), 1) if red == "sum" else 1)
        close(loss, el, row_dtype(rdt), sc, f"{name} loss")
        if grad is not None:
            close(grad, eg, rdt, 1.0, f"{name} grad")
        return
    den = 1.0
    if red == "mean":
        # PyTorch's denominator: sum of s_i * w_{y_i} over counted samples; 0 -> NaN
        sw = kwargs.get("sample_weight")
        sw = np.ones(ignored.shape) if sw is None else np.asarray(sw, np.float64)
        if soft:
            den = float(np.sum(sw))
        else:
            w = kwargs.get("weight")
            lab = t.astype(np.int64).reshape(ignored.shape)
            wl = (np.ones(ignored.shape) if w is None or c == 0
                  else np.asarray(w, np.float64)[np.where(ignored, 0, lab)])
            den = float(np.sum(np.where(ignored, 0.0, sw * wl)))
        if den == 0.0:
            return
    big = finite_scale(z) < 1e4 and kwargs.get("z_loss", 0.0) <= 1e-3
    for k in ("weight", "sample_weight", "grad_scale"):     # no overflow by scaling
        if k in kwargs:
            big = big and finite_scale(np.abs(np.asarray(kwargs[k], np.float64))) < 1e6
    if finite_in and big and (not soft or (t.astype(np.float64) >= 0).all()):
        keep = ~ignored
        if red == "none":
            expect(np.all(np.isfinite(lossa[keep])), "non-finite loss for finite input", lossa)
            expect(np.all(lossa[keep] >= -1e-6 * finite_scale(z)), "negative loss", lossa)
        elif keep.any() or red == "sum":
            expect(np.isfinite(lossa) or (red == "mean"), "non-finite loss", lossa)
        if gm is not None:
            expect(np.all(np.isfinite(gm)), "non-finite gradient for finite input", gm)
            if not kwargs.get("z_loss") and not kwargs.get("softcap") and not soft and c:
                rows = gm.reshape(-1, c)
                s = np.abs(rows.sum(axis=1))
                tol = 1e-2 if rdt.itemsize <= 4 else 1e-9
                f = 1.0                             # natural scale of a gradient row
                for k in ("weight", "sample_weight", "grad_scale"):
                    if k in kwargs and np.size(kwargs[k]):
                        f *= float(np.max(np.abs(np.asarray(kwargs[k], np.float64))))
                if red == "mean":
                    f /= den
                floor = c * float(np.finfo(rdt).smallest_subnormal)   # rounding to subnormals
                expect(np.all(s <= tol * (np.abs(rows).sum(axis=1) + f) + floor),
                       "gradient rows do not sum to 0", rows)


# --------------------------------------------------------------------------- driver

VERBOSE = bool(os.environ.get("FUZZ_API_VERBOSE"))


def _desc(v):
    if isinstance(v, np.ndarray):
        return (f"ndarray(dtype={v.dtype.str}, shape={v.shape}, strides={v.strides}, "
                f"aligned={v.flags.aligned}, writeable={v.flags.writeable},\n    "
                f"{np.array2string(v, threshold=200, max_line_width=150)})")
    return repr(v)


def describe(fn, args, kwargs):
    """Print the decoded call (FUZZ_API_VERBOSE=1, e.g. when replaying a crash)."""
    print(f"ISA {_core.isa_active()}: csoftmax.{fn.__name__}(", file=sys.stderr)
    for a in args:
        print(f"  {_desc(a)},", file=sys.stderr)
    for k, v in kwargs.items():
        print(f"  {k}={_desc(v)},", file=sys.stderr)
    print(")", file=sys.stderr, flush=True)


def TestOneInput(data):
    STATS["runs"] += 1
    if (DEADLINE is not None and time.monotonic() >= DEADLINE) or \
            (MAX_RUNS is not None and STATS["runs"] > MAX_RUNS):
        STATS["runs"] -= 1
        finish()
    fdp = atheris.FuzzedDataProvider(data)
    _core.isa_set(pick(fdp, AVAILABLE_ISA))
    name = pick(fdp, FUNCS)
    try:
        if name in ("cross_entropy", "cross_entropy_with_grad"):
            fn, args, kwargs, rdt = run_xent(fdp, name)
        else:
            fn, args, kwargs, rdt = run_array_func(fdp, name)
    except (ValueError, TypeError, OverflowError, MemoryError):
        return                                      # the harness could not build this input
    if VERBOSE:
        describe(fn, args, kwargs)
    arrays = arrays_in(args, kwargs)
    snaps = snap(arrays)
    copy = (lambda v: np.array(v, copy=True, subok=False) if isinstance(v, np.ndarray) else v)
    pr_args = [copy(a) for a in args]
    pr_kwargs = {k: copy(v) for k, v in kwargs.items()}
    targets = [kwargs["out"]] if isinstance(kwargs.get("out"), np.ndarray) else []
    if kwargs.get("inplace") and isinstance(args[0], np.ndarray):
        targets.append(args[0])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fn(*args, **kwargs)
    except (TypeError, ValueError) as e:           # AxisError is a ValueError
        STATS[type(e).__name__] = STATS.get(type(e).__name__, 0) + 1
        unchanged(snaps)
        return
    STATS["ok"] += 1
    unchanged(snaps, targets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in ("cross_entropy", "cross_entropy_with_grad"):
            check_xent(name, res, args, kwargs, pr_args, pr_kwargs, rdt)
        else:
            check_array_result(name, res, args, kwargs, (pr_args[0], pr_kwargs), rdt)


T0 = time.monotonic()
DEADLINE = None
MAX_RUNS = None


def finish():
    el = time.monotonic() - T0
    other = {k: v for k, v in STATS.items() if k not in ("runs", "ok")}
    print(f"\nfuzz_api: {STATS['runs']} executions in {el:.1f} s "
          f"({STATS['runs'] / max(el, 1e-9):.0f}/s); {STATS['ok']} returned, "
          f"exceptions {other}; ISA paths {AVAILABLE_ISA}", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main():
    global DEADLINE
    global MAX_RUNS
    argv = []
    for a in sys.argv:
        if a.startswith("-max_total_time="):
            DEADLINE = T0 + float(a.split("=", 1)[1])
        elif a.startswith("-runs="):
            MAX_RUNS = int(a.split("=", 1)[1])
        else:
            argv.append(a)
    np.seterr(all="ignore")
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()      # returns only in replay mode; failures exit non-zero
    finish()


if __name__ == "__main__":
    main()
