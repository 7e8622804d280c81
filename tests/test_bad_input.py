"""Table-driven catalogue of bad, odd and edge-case inputs to the public API.

Every row of ``CATALOGUE`` is ``Row(id, build, expect)``:

* ``build()`` makes fresh inputs and returns a ``Call`` (function, positional
  and keyword arguments, which arrays the call may legitimately write: an
  ``out=`` buffer or the logits with ``inplace=True``);
* ``expect`` is one of

  - ``Raises(exc_type, fragment)``: the call raises ``exc_type`` (an instance
    of it) whose message contains ``fragment`` (case-insensitive);
  - ``Same(...)``: the call returns what ``csoftmax.reference`` (the float64
    oracle) returns for pristine copies of the same arguments (``out=`` /
    ``inplace`` are dropped for the oracle, which must then see the data as it
    was before the call, i.e. "as if no overlap"), in the documented result
    dtype, with NaN / inf in the same places;
  - ``Check(fn)``: a property the oracle cannot express (ignored rows, options
    the reference does not implement), checked by ``fn(result, pristine)``.

For every row, every ndarray argument (inputs and ``out=``) is snapshotted
byte for byte before the call: after an exception all of them must be
unchanged; after a success all of them except the writable targets (and
arrays sharing memory with them) must be unchanged.

Rows that document a known csoftmax bug are marked ``xfail(strict=True)``
with a reason starting with "BUG:"; when the bug is fixed the row XPASSes,
fails, and the mark must be removed.

The number of rows is printed by ``test_catalogue_size`` (and by running this
file as a script).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import numpy as np
import pytest
from numpy.exceptions import AxisError

import csoftmax
from csoftmax import reference as ref

SENTINEL = 12345.0
F32, F64, F16 = np.float32, np.float64, np.float16
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


# --------------------------------------------------------------------------- machinery

class Call:
    """fn(*args, **kwargs); `targets` are the arrays the call may write."""

    def __init__(self, fn, *args, targets=(), cleanup=None, **kwargs):
        self.fn = fn
        self.args = list(args)
        self.kwargs = dict(kwargs)
        self.targets = list(targets)
        self.cleanup = cleanup

    def run(self):
        return self.fn(*self.args, **self.kwargs)

    def arrays(self):
        out = []
        for v in list(self.args) + list(self.kwargs.values()):
            if isinstance(v, np.ndarray):
                out.append(v)
            elif isinstance(v, (list, tuple)):
                out.extend(x for x in v if isinstance(x, np.ndarray))
        return out


def _pristine(v):
    if isinstance(v, np.ndarray):
        return np.array(v, copy=True, subok=False)
    return v


class Pristine:
    """Copies of a call's arguments taken before the call."""

    def __init__(self, call: Call):
        self.fn = call.fn
        self.args = [_pristine(a) for a in call.args]
        self.kwargs = {k: _pristine(v) for k, v in call.kwargs.items()}


def _bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


class Raises:
    def __init__(self, exc, fragment):
        self.exc, self.fragment = exc, fragment

    def __repr__(self):
        return f"Raises({self.exc.__name__}, {self.fragment!r})"


class Same:
    """Compare with the reference function of the same name.

    drop:   keyword arguments the oracle must not see (neutral options);
    ref_fn: another oracle callable taking (args, kwargs);
    rdt:    expected result dtype (default: from the first argument);
    scale:  magnitude added to |expected| in the tolerance (cancellation);
    is_out: the returned array (or grad) must be this keyword's object.
    """

    def __init__(self, drop=(), ref_fn=None, rdt=None, scale=0.0):
        self.drop, self.ref_fn, self.rdt, self.scale = tuple(drop), ref_fn, rdt, scale


class Check:
    def __init__(self, fn):
        self.fn = fn


class Row:
    def __init__(self, id, build, expect, bug=None):
        self.id, self.build, self.expect, self.bug = id, build, expect, bug


CATALOGUE: list[Row] = []


def row(id, build, expect, bug=None):
    CATALOGUE.append(Row(id, build, expect, bug))


# --------------------------------------------------------------------------- comparison

def result_dtype(dt) -> np.dtype:
    """Documented result dtype (byte order ignored): floats kept, ints -> float64."""
    dt = np.dtype(dt)
    if dt.kind == "f":
        return dt.newbyteorder("=")
    return np.dtype(np.float64)


def row_dtype(dt) -> np.dtype:
    """Documented dtype of per-row results (log-sum-exp, loss): float32 for float16
    input, else result_dtype."""
    dt = result_dtype(dt)
    return np.dtype(np.float32) if dt.itemsize == 2 else dt


def _rtol(dt: np.dtype) -> float:
    dt = np.dtype(dt)
    if dt.itemsize <= 2:
        return 3e-3
    if dt.itemsize <= 4:
        return 2e-5
    return 1e-12


def assert_matches(got, exp, rdt, scale=0.0, what="result"):
    """`got` (csoftmax) against `exp` (float64 oracle) for result dtype rdt (for a
    tuple result: one dtype for all, or a tuple of one per element)."""
    if isinstance(exp, tuple):
        assert isinstance(got, tuple) and len(got) == len(exp), (
            f"{what}: expected a {len(exp)}-tuple, got {type(got).__name__}")
        rdts = rdt if isinstance(rdt, tuple) else (rdt,) * len(exp)
        for i, (g, e) in enumerate(zip(got, exp)):
            assert_matches(g, e, rdts[i], scale, f"{what}[{i}]")
        return
    assert isinstance(got, (np.ndarray, np.generic)), (
        f"{what}: got {type(got).__name__}, not a NumPy array or scalar")
    assert got.dtype.newbyteorder("=") == rdt, f"{what}: dtype {got.dtype}, expected {rdt}"
    e = np.asarray(exp, dtype=np.float64)
    g = np.asarray(got).astype(np.float64)
    assert g.shape == e.shape, f"{what}: shape {g.shape}, expected {e.shape}"
    if rdt.itemsize < 8:
        with np.errstate(over="ignore"):
            e = np.where(np.isinf(e.astype(rdt)), e.astype(rdt), e).astype(np.float64)
    assert np.array_equal(np.isnan(g), np.isnan(e)), (
        f"{what}: NaN pattern differs:\n got {g}\n exp {e}")
    assert np.array_equal(np.where(np.isinf(g), g, 0), np.where(np.isinf(e), e, 0)), (
        f"{what}: infinities differ:\n got {g}\n exp {e}")
    fin = np.isfinite(e)
    if not fin.any():
        return
    rtol = _rtol(rdt)
    mag = float(np.max(np.abs(e[fin])))
    bound = rtol * (np.abs(e[fin]) + scale) + rtol * max(1.0, mag) * 1e-3
    diff = np.abs(g[fin] - e[fin])
    assert np.all(diff <= bound), (
        f"{what}: max |diff| {diff.max():.3g} (bound {bound[np.argmax(diff - bound)]:.3g})"
        f"\n got {g}\n exp {e}")


def _ref_of(fn):
    return getattr(ref, fn.__name__)


def check_same(expect: Same, got, call: Call, pr: Pristine):
    kw = {k: v for k, v in pr.kwargs.items() if k not in ("out", "inplace") + expect.drop}
    if expect.ref_fn is not None:
        exp = expect.ref_fn(pr.args, kw)
    else:
        exp = _ref_of(pr.fn)(*pr.args, **kw)
    if expect.rdt is not None:
        rdt = np.dtype(expect.rdt)
    else:
        rdt = result_dtype(np.asarray(pr.args[0]).dtype)
        # per-row results (log-sum-exp, loss, lse) are float32 for float16 input
        if call.fn in (csoftmax.logsumexp, csoftmax.cross_entropy):
            rdt = tuple(row_dtype(rdt) for _ in got) if isinstance(got, tuple) else row_dtype(rdt)
        elif call.fn is csoftmax.cross_entropy_with_grad and isinstance(got, tuple):
            rdt = tuple(rdt if i == 1 else row_dtype(rdt) for i in range(len(got)))
    assert_matches(got, exp, rdt, expect.scale)
    # out= / inplace: the written array is the one returned
    target = call.kwargs.get("out")
    if call.kwargs.get("inplace"):
        target = call.args[0]
    if target is not None:
        if call.fn in (csoftmax.softmax, csoftmax.log_softmax):
            assert got is target, "out= must be returned"
        elif call.fn is csoftmax.logsumexp:
            r = got[0] if isinstance(got, tuple) else got
            assert r is target, "out= must be returned"
        else:
            assert got[1] is target, "out=/inplace gradient must be the object returned"


# --------------------------------------------------------------------------- the test

def _param(r: Row):
    marks = [pytest.mark.xfail(strict=True, reason="BUG: " + r.bug)] if r.bug else []
    return pytest.param(r, id=r.id, marks=marks)


def run_row(r: Row):
    call = r.build()
    try:
        arrays = call.arrays()
        snaps = [(a, _bytes(a)) for a in arrays]
        pr = Pristine(call)
        ex = r.expect
        if isinstance(ex, Raises):
            with pytest.raises(Exception) as ei:
                call.run()
            assert isinstance(ei.value, ex.exc), (
                f"raised {type(ei.value).__name__}: {ei.value}; expected {ex.exc.__name__}")
            assert ex.fragment.lower() in str(ei.value).lower(), (
                f"message {str(ei.value)!r} lacks {ex.fragment!r}")
            for i, (a, b) in enumerate(snaps):
                assert _bytes(a) == b, f"array argument {i} modified by a failing call"
            return
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = call.run()
        for i, (a, b) in enumerate(snaps):
            if any(np.shares_memory(a, t) for t in call.targets):
                continue
            assert _bytes(a) == b, f"array argument {i} (not an output) modified"
        if isinstance(ex, Same):
            check_same(ex, got, call, pr)
        else:
            ex.fn(got, pr)
    finally:
        if call.cleanup:
            call.cleanup()


# --------------------------------------------------------------------------- builders

def Z(shape=(4, 5), dtype=F64, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(dtype)


def LAB(n=4, c=5, dtype=np.int64):
    return (np.arange(n) * 3 % c).astype(dtype)


def PROB(shape=(4, 5), dtype=F64, seed=1):
    return ref.softmax(Z(shape, F64, seed), axis=-1).astype(dtype)


def with_label(value, pos=2, dtype=np.int64, n=4, c=5):
    def build_labels():
        lab = LAB(n, c, np.int64).astype(dtype)
        lab[pos] = value
        return lab
    return build_labels


def struct_field(a: np.ndarray) -> np.ndarray:
    """`a` as field 'v' of a packed structured array: strides not a multiple
    of the itemsize."""
    s = np.zeros(a.shape, dtype=[("v", a.dtype), ("pad", "u1")])
    s["v"] = a
    v = s["v"]
    assert any(st % a.itemsize for st in v.strides) or a.ndim == 0
    return v


def misaligned(a: np.ndarray) -> np.ndarray:
    """A copy of `a` (C order) at an odd address."""
    buf = bytearray(a.nbytes + 1)
    m = np.frombuffer(buf, dtype=a.dtype, offset=1, count=a.size).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned or a.itemsize == 1
    return m


def readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def memmap_of(a: np.ndarray, mode="r+"):
    d = tempfile.mkdtemp(prefix="csm_memmap_")
    fn = os.path.join(d, "a.dat")
    m = np.memmap(fn, dtype=a.dtype, mode="w+", shape=a.shape)
    m[...] = a
    m.flush()
    del m
    m = np.memmap(fn, dtype=a.dtype, mode=mode, shape=a.shape)

    def cleanup():
        shutil.rmtree(d, ignore_errors=True)
    return m, cleanup


def overlap_pair(shape, dtype=F64, shift=1, seed=0):
    """(x, out) of `shape` in one buffer, out starting `shift` elements later."""
    n = int(np.prod(shape))
    buf = np.zeros(n + abs(shift), dtype=dtype)
    if shift >= 0:
        x = buf[:n].reshape(shape)
        out = buf[shift:shift + n].reshape(shape)
    else:
        x = buf[-shift:].reshape(shape)
        out = buf[:n].reshape(shape)
    x[...] = Z(shape, dtype, seed)
    return x, out


XE = csoftmax.cross_entropy
XG = csoftmax.cross_entropy_with_grad
SM = csoftmax.softmax
LSM = csoftmax.log_softmax
LSE = csoftmax.logsumexp
FUNCS_SOFT = (("softmax", SM), ("log_softmax", LSM))
ALL_ARRAY_FUNCS = (("softmax", SM), ("log_softmax", LSM), ("logsumexp", LSE))


def label_err(value, pos=None):
    frag = f"target label {value}"
    if pos is not None:
        frag += f" at index {pos}"
    return Raises(ValueError, frag)


# --------------------------------------------------------------------------- labels

for fname, fn in (("xent", XE), ("xgrad", XG)):
    row(f"label==C-{fname}", lambda fn=fn: Call(fn, Z(), with_label(5)()), label_err(5, "(2,)"))
    row(f"label>C-{fname}", lambda fn=fn: Call(fn, Z(), with_label(1000, 3)()),
        label_err(1000, "(3,)"))
    row(f"label-1-{fname}", lambda fn=fn: Call(fn, Z(), with_label(-1, 0)()),
        label_err(-1, "(0,)"))
    row(f"label-100-no-ignore-{fname}",
        lambda fn=fn: Call(fn, Z(), with_label(-100, 1)(), ignore_index=None),
        label_err(-100, "(1,)"))
    row(f"label-int64-min-{fname}", lambda fn=fn: Call(fn, Z(), with_label(I64_MIN)()),
        label_err(I64_MIN, "(2,)"))
    row(f"label-int64-max-{fname}", lambda fn=fn: Call(fn, Z(), with_label(I64_MAX)()),
        label_err(I64_MAX, "(2,)"))
    # 2**64 - 1 must not wrap to -1 and match ignore_index=-1
    row(f"label-uint64-max-ignore-1-{fname}",
        lambda fn=fn: Call(fn, Z(), with_label(2**64 - 1, 1, np.uint64)(), ignore_index=-1),
        label_err(2**64 - 1, "(1,)"))
    row(f"label-uint64-2**63-{fname}",
        lambda fn=fn: Call(fn, Z(), with_label(2**63, 3, np.uint64)(),
                           ignore_index=I64_MIN),
        label_err(2**63, "(3,)"))
    row(f"label-uint8-255-ignore-1-{fname}",
        lambda fn=fn: Call(fn, Z(), with_label(255, 0, np.uint8)(), ignore_index=-1),
        label_err(255, "(0,)"))
    row(f"label-bad-2d-position-{fname}",
        lambda fn=fn: Call(fn, Z((2, 5, 3)), np.array([[0, 1, 2], [3, 9, 0]]), axis=1),
        label_err(9, "(1, 1)"))
    row(f"bool-labels-{fname}",
        lambda fn=fn: Call(fn, Z(), np.array([True, False, True, False])),
        Raises(TypeError, "boolean target"))
    row(f"float-labels-wrong-shape-{fname}",
        lambda fn=fn: Call(fn, Z(), np.array([0.0, 1.0, 2.0, 3.0])),
        Raises(ValueError, "probability target has shape (4,)"))
    row(f"labels-wrong-length-{fname}", lambda fn=fn: Call(fn, Z(), LAB(3)),
        Raises(ValueError, "integer target has shape (3,)"))
    row(f"labels-too-long-{fname}", lambda fn=fn: Call(fn, Z(), LAB(5)),
        Raises(ValueError, "integer target has shape (5,)"))
    row(f"labels-wrong-rank-{fname}", lambda fn=fn: Call(fn, Z(), LAB(4)[:, None]),
        Raises(ValueError, "integer target has shape (4, 1)"))
    row(f"labels-0d-for-2d-{fname}", lambda fn=fn: Call(fn, Z(), np.int64(1)),
        Raises(ValueError, "integer target has shape ()"))
    row(f"labels-object-{fname}", lambda fn=fn: Call(fn, Z(), LAB().astype(object)),
        Raises(TypeError, "target must be integer labels"))
    row(f"labels-str-{fname}", lambda fn=fn: Call(fn, Z(), np.array(["0", "1", "2", "3"])),
        Raises(TypeError, "target must be integer labels"))
    row(f"labels-complex-{fname}", lambda fn=fn: Call(fn, Z(), np.zeros((4, 5), complex)),
        Raises(TypeError, "target"))
    row(f"labels-ragged-list-{fname}", lambda fn=fn: Call(fn, Z(), [[0], [1, 2], 3, 4]),
        Raises(ValueError, ""))
    # accepted label containers and layouts
    row(f"labels-list-{fname}", lambda fn=fn: Call(fn, Z(), [0, 3, 1, 4]), Same())
    row(f"logits-and-labels-lists-{fname}",
        lambda fn=fn: Call(fn, Z().tolist(), [0, 3, 1, 4]), Same(rdt=F64))
    row(f"labels-tuple-{fname}", lambda fn=fn: Call(fn, Z(), (0, 3, 1, 4)), Same())
    row(f"labels-noncontig-{fname}",
        lambda fn=fn: Call(fn, Z(), np.arange(8)[::2] % 5), Same())
    row(f"labels-negstride-{fname}", lambda fn=fn: Call(fn, Z(), LAB()[::-1]), Same())
    row(f"labels->i8-{fname}", lambda fn=fn: Call(fn, Z(), LAB(dtype=">i8")), Same())
    row(f"labels->u4-{fname}", lambda fn=fn: Call(fn, Z(), LAB(dtype=">u4")), Same())
    row(f"labels-struct-field-{fname}", lambda fn=fn: Call(fn, Z(), struct_field(LAB())), Same())
    row(f"labels-misaligned-{fname}", lambda fn=fn: Call(fn, Z(), misaligned(LAB())), Same())
    row(f"labels-readonly-{fname}", lambda fn=fn: Call(fn, Z(), readonly(LAB())), Same())
    row(f"labels-broadcast-{fname}",
        lambda fn=fn: Call(fn, Z(), np.broadcast_to(np.int64(2), (4,))), Same())
    row(f"labels-0d-for-1d-logits-{fname}", lambda fn=fn: Call(fn, Z((5,)), np.int64(3)), Same())
    for dt in INT_DTYPES:
        row(f"labels-{dt}-{fname}", lambda fn=fn, dt=dt: Call(fn, Z(), LAB(dtype=dt)), Same())
        hi = int(np.iinfo(dt).max)
        row(f"labels-{dt}-max-{fname}",
            lambda fn=fn, dt=dt, hi=hi: Call(fn, Z(), with_label(hi, 2, dt)()),
            label_err(hi, "(2,)"))
        lo = int(np.iinfo(dt).min)
        if lo < 0:
            row(f"labels-{dt}-min-{fname}",
                lambda fn=fn, dt=dt, lo=lo: Call(fn, Z(), with_label(lo, 1, dt)()),
                label_err(lo, "(1,)"))


def _ignored_check(ignore_value, reduction="none", **opts):
    """Ignored samples: loss 0 (none), gradient exactly 0, the rest as the
    oracle on the kept samples (when no option the oracle lacks is used)."""
    def check(got, pr):
        z, lab = pr.args[0], np.asarray(pr.args[1]).astype(np.int64)
        keep = lab != ignore_value
        loss, grad = (got[0], got[1]) if isinstance(got, tuple) else (got, None)
        if grad is not None:
            assert np.all(grad[~keep] == 0), f"ignored rows have gradient {grad[~keep]}"
        if reduction == "none":
            assert np.all(loss[~keep] == 0)
        if opts:
            if grad is not None:
                assert np.isfinite(grad[keep]).all()
            return
        rl, rg = ref.cross_entropy_with_grad(z[keep], lab[keep], reduction=reduction)
        rdt = result_dtype(np.asarray(pr.args[0]).dtype)
        if reduction == "none":
            assert_matches(loss[keep], rl, row_dtype(rdt))
        else:
            assert_matches(loss, rl, row_dtype(rdt))
        if grad is not None:
            assert_matches(grad[keep], rg, rdt)
    return check


def _ignored_build(fn, value, dtype=F64, label_dtype=np.int64, nan=True, **kw0):
    def build():
        kw = dict(kw0)
        z = Z((6, 17), dtype)
        lab = LAB(6, 17).astype(label_dtype)
        lab[[1, 4]] = value
        if nan:
            z[[1, 4]] = np.nan            # ignored rows are never read
        if kw.pop("inplace", False):
            return Call(fn, z, lab, targets=[z], inplace=True, **kw)
        return Call(fn, z, lab, **kw)
    return build


for dt in (F32, F64):
    n = np.dtype(dt).name
    for red in ("none", "mean", "sum"):
        row(f"ignored-nan-rows-xgrad-{red}-{n}",
            _ignored_build(XG, -100, dt, reduction=red), Check(_ignored_check(-100, red)))
        row(f"ignored-nan-rows-xent-{red}-{n}",
            _ignored_build(XE, -100, dt, reduction=red), Check(_ignored_check(-100, red)))
    row(f"ignored-nan-rows-inplace-{n}",
        _ignored_build(XG, -100, dt, inplace=True, reduction="none"),
        Check(_ignored_check(-100, "none")))
    for opt in (dict(label_smoothing=0.1), dict(z_loss=1e-3), dict(softcap=5.0),
                dict(weight=np.linspace(0.5, 2.0, 17).astype(dt)),
                dict(sample_weight=np.arange(1.0, 7.0))):
        key = next(iter(opt))
        row(f"ignored-nan-rows-{key}-{n}",
            _ignored_build(XG, -100, dt, reduction="none", **opt),
            Check(_ignored_check(-100, "none", **opt)))
        row(f"ignored-nan-rows-{key}-inplace-{n}",
            _ignored_build(XG, -100, dt, reduction="mean", inplace=True, **opt),
            Check(_ignored_check(-100, "mean", **opt)))
row("ignore-index-int64-min", _ignored_build(XG, I64_MIN, ignore_index=I64_MIN, reduction="none"),
    Check(_ignored_check(I64_MIN, "none")))
row("ignore-index-5-uint8", _ignored_build(XG, 200, label_dtype=np.uint8, ignore_index=200,
                                            reduction="none"),
    Check(_ignored_check(200, "none")))
row("ignore-index-negative-custom", _ignored_build(XG, -7, ignore_index=-7, reduction="sum"),
    Check(_ignored_check(-7, "sum")))
row("ignore-index-np-integer", _ignored_build(XG, 3, ignore_index=np.int16(3), nan=False,
                                               reduction="mean"),
    Check(_ignored_check(3, "mean")))
row("ignore-index-float", lambda: Call(XE, Z(), LAB(), ignore_index=1.0),
    Raises(TypeError, "ignore_index must be an integer"))
row("ignore-index-str", lambda: Call(XE, Z(), LAB(), ignore_index="-100"),
    Raises(TypeError, "ignore_index must be an integer"))
# PyTorch-style all-ignored mean: 0/0
row("all-ignored-mean-is-nan",
    lambda: Call(XG, Z(), np.full(4, -100), reduction="mean"),
    Check(lambda got, pr: (np.testing.assert_equal(np.isnan(got[0]), True),
                           np.testing.assert_array_equal(got[1], 0))))
# documented: a label equal to ignore_index is ignored -- also for uint64 values
row("label-uint64-max-equals-ignore-index",
    _ignored_build(XG, 2**64 - 1, label_dtype=np.uint64, ignore_index=2**64 - 1,
                   reduction="none"),
    Check(lambda got, pr: np.testing.assert_array_equal(got[1][[1, 4]], 0)))


# --------------------------------------------------------------------------- logits dtypes

for fname, fn in (("softmax", SM), ("log_softmax", LSM), ("logsumexp", LSE),
                  ("xent", XE), ("xgrad", XG)):
    def build_with(z, fn=fn, fname=fname):
        if fname in ("xent", "xgrad"):
            return Call(fn, z, LAB(*np.shape(z)[:1], np.shape(z)[-1]))
        return Call(fn, z, axis=-1)
    if fname in ("xent", "xgrad"):
        row(f"complex-logits-{fname}", lambda b=build_with: b(Z().astype(complex)),
            Raises(TypeError, "complex"))
    else:   # complex input is valid there (csoftmax/_complex.py, tests/test_complex.py)
        cref = {"softmax": ref.softmax_complex, "log_softmax": ref.log_softmax_complex,
                "logsumexp": ref.logsumexp_complex}[fname]
        row(f"complex-logits-{fname}", lambda b=build_with: b(Z().astype(complex)),
            Check(lambda got, pr, cref=cref: np.testing.assert_allclose(
                got, cref(pr.args[0], axis=-1), rtol=1e-13, atol=1e-15)))
    row(f"object-logits-{fname}", lambda b=build_with: b(Z().astype(object)),
        Raises(TypeError, "dtype object"))
    row(f"bool-logits-{fname}", lambda b=build_with: b(Z() > 0),
        Raises(TypeError, "dtype bool"))
    row(f"str-logits-{fname}", lambda b=build_with: b(Z().astype(str)), Raises(TypeError, "dtype"))
    row(f"datetime-logits-{fname}",
        lambda b=build_with: b(np.zeros((4, 5), "datetime64[s]")), Raises(TypeError, "dtype"))
    row(f"void-logits-{fname}", lambda b=build_with: b(np.zeros((4, 5), "V8")),
        Raises(TypeError, "dtype"))
    for dt in ("int8", "uint8", "int32", "int64", "uint64"):
        row(f"{dt}-logits-{fname}",
            lambda b=build_with, dt=dt: b((np.arange(20).reshape(4, 5) % 7).astype(dt)),
            Same())
    row(f"float16-logits-{fname}", lambda b=build_with: b(Z().astype(F16)), Same())
    row(f"longdouble-logits-{fname}", lambda b=build_with: b(Z().astype(np.longdouble)),
        Same())
    for layout, make in (("fortran", np.asfortranarray),
                         ("negstride", lambda a: np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]),
                         ("strided", lambda a: np.repeat(np.repeat(a, 2, 0), 3, 1)[::2, ::3]),
                         ("broadcast-rows", lambda a: np.broadcast_to(a[:1], a.shape)),
                         ("broadcast-cols", lambda a: np.broadcast_to(a[:, :1], a.shape)),
                         ("struct-field", struct_field),
                         ("misaligned", misaligned),
                         (">f8", lambda a: a.astype(">f8")),
                         (">f4", lambda a: a.astype(">f4")),
                         ("<f4", lambda a: a.astype("<f4")),
                         ("readonly", readonly)):
        row(f"logits-{layout}-{fname}", lambda b=build_with, m=make: b(m(Z())), Same())

    def memmap_build(fn=fn, fname=fname, dtype=F32):
        m, cleanup = memmap_of(Z(dtype=dtype), mode="r")
        c = build_with(m, fn, fname)
        c.cleanup = cleanup
        return c
    row(f"logits-memmap-readonly-{fname}", memmap_build, Same())

# Fortran order with the class axis first
row("fortran-axis0-softmax", lambda: Call(SM, np.asfortranarray(Z((5, 4))), axis=0), Same())
row("fortran-axis0-xgrad", lambda: Call(XG, np.asfortranarray(Z((5, 4))), LAB(4), axis=0), Same())
row("negstride-axis0-xgrad", lambda: Call(XG, Z((5, 4))[::-1, ::-1], LAB(4), axis=0), Same())
row("kdim-axis1-xgrad", lambda: Call(XG, Z((2, 5, 3, 2)), np.arange(12).reshape(2, 3, 2) % 5,
                                     axis=1), Same())
row("multi-axis-softmax", lambda: Call(SM, Z((3, 4, 5)), axis=(0, 2)), Same())
row("multi-axis-logsumexp", lambda: Call(LSE, Z((3, 4, 5)).transpose(2, 0, 1), axis=(0, 2)),
    Same())
row("memmap-inplace-xgrad", lambda: (lambda m_c: Call(XG, m_c[0], LAB(), inplace=True,
                                                      targets=[m_c[0]], cleanup=m_c[1]))(
    memmap_of(Z(dtype=F32))), Same())
row("memmap-readonly-inplace", lambda: (lambda m_c: Call(XG, m_c[0], LAB(), inplace=True,
                                                         cleanup=m_c[1]))(
    memmap_of(Z(dtype=F32), mode="r")), Raises(ValueError, "read-only"))
row("readonly-inplace", lambda: Call(XG, readonly(Z()), LAB(), inplace=True),
    Raises(ValueError, "read-only"))
row("int-logits-inplace", lambda: Call(XG, np.arange(20).reshape(4, 5), LAB(), inplace=True),
    Raises(ValueError, "floating-point logits"))
row("list-logits-inplace", lambda: Call(XG, Z().tolist(), LAB(), inplace=True),
    Raises(TypeError, "numpy.ndarray"))
row("inplace-f16", lambda: (lambda z: Call(XG, z, LAB(), inplace=True, targets=[z]))(
    Z().astype(F16)), Same())
row("inplace->f8", lambda: (lambda z: Call(XG, z, LAB(), inplace=True, targets=[z]))(
    Z().astype(">f8")), Same())
row("inplace-misaligned", lambda: (lambda z: Call(XG, z, LAB(), inplace=True, targets=[z]))(
    misaligned(Z())), Same())
row("inplace-struct-field", lambda: (lambda z: Call(XG, z, LAB(), inplace=True, targets=[z]))(
    struct_field(Z(dtype=F32))), Same())
row("inplace-fortran", lambda: (lambda z: Call(XG, z, LAB(), inplace=True, targets=[z]))(
    np.asfortranarray(Z())), Same())

# --------------------------------------------------------------------------- sizes

row("0d-softmax", lambda: Call(SM, np.float64(3.5)), Same())
row("0d-log_softmax", lambda: Call(LSM, np.float32(3.5)), Same())
row("0d-logsumexp", lambda: Call(LSE, np.float64(-2.0)), Same())
row("0d-array-softmax", lambda: Call(SM, np.array(1.0)), Same())
row("0d-xent", lambda: Call(XE, np.float64(1.0), np.int64(0)),
    Raises(ValueError, "at least one dimension"))
row("0d-xgrad", lambda: Call(XG, np.array(1.0), np.int64(0)),
    Raises(ValueError, "at least one dimension"))
row("python-float-softmax", lambda: Call(SM, 2.0), Same())
for fname, fn in (("softmax", SM), ("log_softmax", LSM)):
    row(f"N=0-{fname}", lambda fn=fn: Call(fn, np.zeros((0, 5)), axis=1), Same())
    row(f"C=0-{fname}", lambda fn=fn: Call(fn, np.zeros((3, 0)), axis=1), Same())
    row(f"C=1-{fname}", lambda fn=fn: Call(fn, Z((4, 1)), axis=1), Same())
    row(f"empty-axis-None-{fname}", lambda fn=fn: Call(fn, np.zeros((0, 3), F32)), Same())
row("N=0-logsumexp", lambda: Call(LSE, np.zeros((0, 5)), axis=1), Same())
row("C=0-logsumexp", lambda: Call(LSE, np.zeros((3, 0)), axis=1), Same())
row("C=0-logsumexp-sign", lambda: Call(LSE, np.zeros((3, 0)), axis=1, return_sign=True), Same())
row("C=0-logsumexp-b-sign", lambda: Call(LSE, np.zeros((3, 0)), axis=1, b=np.ones((3, 0)),
                                         return_sign=True), Same())
row("empty-logsumexp-all", lambda: Call(LSE, np.zeros((0,))), Same())
row("C=1-logsumexp", lambda: Call(LSE, Z((4, 1)), axis=1), Same())
for red in ("none", "sum", "mean"):
    row(f"N=0-xent-{red}", lambda red=red: Call(XE, np.zeros((0, 5)), np.zeros(0, int),
                                                reduction=red), Same())
    row(f"N=0-xgrad-{red}", lambda red=red: Call(XG, np.zeros((0, 5), F32), np.zeros(0, int),
                                                 reduction=red), Same())
    row(f"C=1-xgrad-{red}", lambda red=red: Call(XG, Z((4, 1)), np.zeros(4, int),
                                                 reduction=red), Same())
row("C=0-labels", lambda: Call(XE, np.zeros((3, 0)), np.zeros(3, int)), label_err(0, "(0,)"))
row("C=0-xgrad-labels", lambda: Call(XG, np.zeros((3, 0)), np.array([-100, 0, -100])),
    label_err(0, "(1,)"))
row("C=0-all-ignored", lambda: Call(XG, np.zeros((3, 0)), np.full(3, -100), reduction="none"),
    Check(lambda got, pr: (np.testing.assert_array_equal(got[0], 0),
                           np.testing.assert_equal(got[1].shape, (3, 0)))))
row("C=0-soft-target", lambda: Call(XG, np.zeros((3, 0)), np.zeros((3, 0)), reduction="none"),
    Same())
row("N=C=0-xgrad", lambda: Call(XG, np.zeros((0, 0)), np.zeros(0, int), reduction="sum"), Same())
row("1d-logits-xgrad", lambda: Call(XG, Z((7,)), np.int64(6)), Same())
row("1d-soft-xgrad", lambda: Call(XG, Z((7,)), PROB((7,))), Same())

# --------------------------------------------------------------------------- special values


def special_array(kind, c, dtype):
    """Rows of length c holding special values (row 0 always clean)."""
    z = Z((4, c), dtype, seed=c)
    if kind == "nan":                       # NaN in the tail, near it, first
        z[1, c - 1] = np.nan
        z[2, c - 2] = np.nan
        z[3, 0] = np.nan
    elif kind == "+inf":
        z[1, c - 1] = np.inf
        z[2, [0, c - 1]] = np.inf
        z[3, c // 2] = np.inf
        z[3, 0] = -np.inf
    elif kind == "-inf":
        z[1, :] = -np.inf                   # all -inf
        z[2, c - 1] = -np.inf
        z[3, ::2] = -np.inf
    elif kind == "huge":
        z[1, c - 1] = 1e38
        z[2, :] = -1e38
        z[2, 3] = 1e38
        z[3, :] = 1e38 * np.sign(z[3])
    elif kind == "subnormal":
        tiny = np.finfo(dtype).smallest_subnormal
        z[1, :] = tiny
        z[2, :] = tiny * np.arange(c)
        z[3, :] = -tiny
    return z


def special_labels(kind, c):
    lab = np.array([0, c - 1, 1, c // 2])
    if kind == "-inf":
        lab = np.array([0, 0, c - 1, 0])     # -inf at the target (rows 2, 3)
    if kind == "+inf":
        lab = np.array([0, c - 1, 1, 0])     # +inf / -inf at the target
    return lab


for kind in ("nan", "+inf", "-inf", "huge", "subnormal"):
    for dt in (F32, F64):
        for c in (17, 33, 67):
            tag = f"{kind}-c{c}-{np.dtype(dt).name}"
            sc = 1e38 if kind == "huge" else 0.0
            for fname, fn in ALL_ARRAY_FUNCS:
                row(f"special-{tag}-{fname}",
                    lambda fn=fn, kind=kind, dt=dt, c=c: Call(fn, special_array(kind, c, dt),
                                                              axis=1),
                    Same(scale=sc))
            row(f"special-{tag}-xgrad",
                lambda kind=kind, dt=dt, c=c: Call(XG, special_array(kind, c, dt),
                                                   special_labels(kind, c), reduction="none"),
                Same(scale=sc))
            row(f"special-{tag}-xgrad-inplace",
                lambda kind=kind, dt=dt, c=c: (lambda z: Call(
                    XG, z, special_labels(kind, c), reduction="sum", inplace=True,
                    targets=[z]))(special_array(kind, c, dt)),
                Same(scale=sc))
            row(f"special-{tag}-soft",
                lambda kind=kind, dt=dt, c=c: Call(XG, special_array(kind, c, dt),
                                                   PROB((4, c), dt), reduction="none"),
                Same(scale=sc))
row("float32-max-logsumexp", lambda: Call(LSE, np.full((2, 40), np.finfo(F32).max, F32), axis=1),
    Same())
row("float64-max-softmax", lambda: Call(SM, np.full((2, 40), np.finfo(F64).max), axis=1), Same())

# --------------------------------------------------------------------------- out=

for fname, fn in FUNCS_SOFT:
    row(f"out-wrong-shape-{fname}", lambda fn=fn: (lambda o: Call(fn, Z(), axis=1, out=o))(
        np.full((5, 4), SENTINEL)), Raises(ValueError, "out has shape (5, 4)"))
    row(f"out-wrong-dtype-{fname}", lambda fn=fn: (lambda o: Call(fn, Z(), axis=1, out=o))(
        np.full((4, 5), SENTINEL, F32)), Raises(ValueError, "out has dtype float32"))
    row(f"out-int-dtype-{fname}", lambda fn=fn: (lambda o: Call(fn, Z(), axis=1, out=o))(
        np.zeros((4, 5), np.int64)), Raises(ValueError, "dtype"))
    row(f"out-readonly-{fname}", lambda fn=fn: (lambda o: Call(fn, Z(), axis=1, out=o))(
        readonly(np.full((4, 5), SENTINEL))), Raises(ValueError, "read-only"))
    row(f"out-list-{fname}", lambda fn=fn: Call(fn, Z(), axis=1, out=[0.0] * 20),
        Raises(TypeError, "numpy.ndarray"))
    row(f"out-f16-for-f16-{fname}", lambda fn=fn: (lambda o: Call(
        fn, Z().astype(F16), axis=1, out=o, targets=[o]))(np.zeros((4, 5), F16)), Same())
    row(f"out-f64-for-int-{fname}", lambda fn=fn: (lambda o: Call(
        fn, np.arange(20).reshape(4, 5), axis=1, out=o, targets=[o]))(np.zeros((4, 5))),
        Same())
    row(f"out-exact-alias-{fname}", lambda fn=fn: (lambda z: Call(
        fn, z, axis=1, out=z, targets=[z]))(Z()), Same())
    row(f"out-exact-alias-f32-strided-{fname}", lambda fn=fn: (lambda z: Call(
        fn, z, axis=0, out=z, targets=[z]))(Z((8, 10), F32)[::2, ::2]), Same())
    row(f"out-fortran-{fname}", lambda fn=fn: (lambda o: Call(
        fn, Z(), axis=1, out=o, targets=[o]))(np.asfortranarray(np.zeros((4, 5)))), Same())
    row(f"out-struct-field-{fname}", lambda fn=fn: (lambda o: Call(
        fn, Z(), axis=1, out=o, targets=[o]))(struct_field(np.zeros((4, 5)))), Same())
    row(f"out-misaligned-{fname}", lambda fn=fn: (lambda o: Call(
        fn, Z(), axis=1, out=o, targets=[o]))(misaligned(np.zeros((4, 5)))), Same())
    row(f"out-transposed-alias-{fname}", lambda fn=fn: (lambda z: Call(
        fn, z, axis=1, out=z.T, targets=[z]))(Z((5, 5))), Same())
    for shift in (1, -1, 5, -3):
        row(f"out-partial-overlap{shift:+d}-{fname}", lambda fn=fn, s=shift: (
            lambda xo: Call(fn, xo[0], axis=1, out=xo[1], targets=[xo[1]]))(
            overlap_pair((4, 5), F64, s)), Same())
    row(f"out-partial-overlap-f32-{fname}", lambda fn=fn: (
        lambda xo: Call(fn, xo[0], axis=1, out=xo[1], targets=[xo[1]]))(
        overlap_pair((6, 33), F32, 7)), Same())

row("lse-out-wrong-shape", lambda: Call(LSE, Z(), axis=1, out=np.zeros(5)),
    Raises(ValueError, "out has shape (5,)"))
row("lse-out-keepdims-shape", lambda: Call(LSE, Z(), axis=1, keepdims=True, out=np.zeros(4)),
    Raises(ValueError, "out has shape (4,)"))
row("lse-out-wrong-dtype", lambda: Call(LSE, Z((4, 5), F32), axis=1,
                                        out=np.zeros(4)), Raises(ValueError, "dtype"))
row("lse-out-readonly", lambda: Call(LSE, Z(), axis=1, out=readonly(np.zeros(4))),
    Raises(ValueError, "read-only"))
row("lse-out-ok", lambda: (lambda o: Call(LSE, Z(), axis=1, out=o, targets=[o]))(np.zeros(4)),
    Same())
row("lse-out-0d", lambda: (lambda o: Call(LSE, Z(), out=o, targets=[o]))(np.zeros(())), Same())
row("lse-out-overlaps-input", lambda: (lambda z: Call(LSE, z, axis=1, out=z[:, 1],
                                                      targets=[z]))(Z()), Same())
row("lse-out-sign", lambda: (lambda o: Call(LSE, Z(), axis=1, b=np.array([1, -1, 2, 0, 1.0]),
                                            return_sign=True, out=o, targets=[o]))(np.zeros(4)),
    Same())

for name, kw in (("out", {}), ("out-mean", {"reduction": "mean"})):
    row(f"xgrad-{name}-wrong-shape", lambda kw=kw: Call(XG, Z(), LAB(),
                                                        out=np.full((5, 4), SENTINEL), **kw),
        Raises(ValueError, "out has shape (5, 4)"))
    row(f"xgrad-{name}-wrong-dtype", lambda kw=kw: Call(XG, Z(), LAB(),
                                                        out=np.full((4, 5), SENTINEL, F32), **kw),
        Raises(ValueError, "out has dtype float32"))
    row(f"xgrad-{name}-readonly", lambda kw=kw: Call(XG, Z(), LAB(),
                                                     out=readonly(np.full((4, 5), SENTINEL)),
                                                     **kw),
        Raises(ValueError, "read-only"))
row("xgrad-out-and-inplace", lambda: Call(XG, Z(), LAB(), out=np.zeros((4, 5)), inplace=True),
    Raises(ValueError, "not both"))
row("xgrad-out-bad-label-untouched", lambda: Call(XG, Z(), with_label(9)(),
                                                  out=np.full((4, 5), SENTINEL)),
    label_err(9, "(2,)"))
row("xgrad-inplace-bad-label-untouched", lambda: Call(XG, Z(), with_label(-3)(), inplace=True),
    label_err(-3, "(2,)"))
row("xgrad-out-bad-option-untouched", lambda: Call(XG, Z(), LAB(), label_smoothing=2.0,
                                                   out=np.full((4, 5), SENTINEL)),
    Raises(ValueError, "label_smoothing"))
row("xgrad-out-exact-alias", lambda: (lambda z: Call(XG, z, LAB(), out=z, targets=[z]))(Z()),
    Same())
row("xgrad-out-fortran", lambda: (lambda o: Call(XG, Z(), LAB(), out=o, targets=[o]))(
    np.asfortranarray(np.zeros((4, 5)))), Same())
row("xgrad-out-misaligned", lambda: (lambda o: Call(XG, Z(), LAB(), out=o, targets=[o]))(
    misaligned(np.zeros((4, 5)))), Same())
row("xgrad-out-struct-field", lambda: (lambda o: Call(XG, Z((4, 5), F32), LAB(), out=o,
                                                      targets=[o]))(
    struct_field(np.zeros((4, 5), F32))), Same())
row("xgrad-out-f16", lambda: (lambda o: Call(XG, Z().astype(F16), LAB(), out=o, targets=[o]))(
    np.zeros((4, 5), F16)), Same())
row("xgrad-out-transposed-alias", lambda: (lambda z: Call(XG, z, LAB(5), out=z.T,
                                                          targets=[z]))(Z((5, 5))), Same())
for shift in (1, -1, 4, -6):
    row(f"xgrad-out-partial-overlap{shift:+d}", lambda s=shift: (
        lambda xo: Call(XG, xo[0], LAB(), out=xo[1], targets=[xo[1]], reduction="sum"))(
        overlap_pair((4, 5), F64, s)), Same())
row("xgrad-out-partial-overlap-f32-kdim", lambda: (
    lambda xo: Call(XG, xo[0], np.arange(6).reshape(2, 3) % 5, axis=1, out=xo[1],
                    targets=[xo[1]]))(overlap_pair((2, 5, 3), F32, 2)), Same())
row("xgrad-soft-out-is-target", lambda: (lambda t: Call(XG, Z(), t, out=t, targets=[t]))(
    PROB()), Same())
row("xgrad-soft-out-overlaps-target", lambda: (lambda b: Call(
    XG, Z(), b[:20].reshape(4, 5), out=b[2:22].reshape(4, 5), targets=[b]))(
    np.concatenate([PROB().ravel(), np.zeros(2)])), Same())
row("xgrad-soft-target-is-logits-inplace", lambda: (lambda z: Call(
    XG, z, z, inplace=True, targets=[z]))(PROB() + 0.5), Same())

# --------------------------------------------------------------------------- options

OPT_ERRORS = [
    ("weight-wrong-length", dict(weight=np.ones(4)), ValueError, "weight has shape (4,)"),
    ("weight-2d", dict(weight=np.ones((1, 5))), ValueError, "weight has shape (1, 5)"),
    ("weight-negative", dict(weight=np.array([1, 1, -1e-3, 1, 1.0])), ValueError, "negative"),
    ("weight-nan", dict(weight=np.array([1, 1, np.nan, 1, 1.0])), ValueError, "NaN"),
    ("weight-bool", dict(weight=np.ones(5, bool)), TypeError, "weight must be a real array"),
    ("weight-complex", dict(weight=np.ones(5, complex)), TypeError, "weight"),
    ("weight-str", dict(weight="abcde"), TypeError, "weight"),
    ("sample-weight-wrong-shape", dict(sample_weight=np.ones(3)), ValueError,
     "sample_weight has shape (3,)"),
    ("sample-weight-2d", dict(sample_weight=np.ones((4, 1))), ValueError,
     "sample_weight has shape (4, 1)"),
    ("sample-weight-negative", dict(sample_weight=np.array([1, -1, 1, 1.0])), ValueError,
     "negative"),
    ("sample-weight-nan", dict(sample_weight=np.array([1, np.nan, 1, 1.0])), ValueError, "NaN"),
    ("label-smoothing-above-1", dict(label_smoothing=1.5), ValueError, "label_smoothing"),
    ("label-smoothing-negative", dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
    ("label-smoothing-nan", dict(label_smoothing=np.nan), ValueError, "label_smoothing"),
    ("label-smoothing-inf", dict(label_smoothing=np.inf), ValueError, "label_smoothing"),
    ("label-smoothing-str", dict(label_smoothing="a"), TypeError, "label_smoothing"),
    ("label-smoothing-none", dict(label_smoothing=None), TypeError, "label_smoothing"),
    ("reduction-unknown", dict(reduction="avg"), ValueError, "reduction must be one of"),
    ("reduction-case", dict(reduction="MEAN"), ValueError, "reduction must be one of"),
    ("reduction-none-object", dict(reduction=None), ValueError, "reduction must be one of"),
    ("reduction-list", dict(reduction=["sum"]), ValueError, "reduction must be one of"),
    ("axis-out-of-range", dict(axis=2), AxisError, "axis 2 is out of bounds"),
    ("axis-negative-out-of-range", dict(axis=-3), AxisError, "axis -3 is out of bounds"),
    ("axis-float", dict(axis=1.0), TypeError, ""),
    ("axis-none", dict(axis=None), TypeError, ""),
    ("softcap-zero", dict(softcap=0.0), ValueError, "softcap must be > 0"),
    ("softcap-negative", dict(softcap=-1.0), ValueError, "softcap must be > 0"),
    ("softcap-nan", dict(softcap=np.nan), ValueError, "softcap"),
    ("softcap-inf", dict(softcap=np.inf), ValueError, "softcap"),
    ("softcap-str", dict(softcap="1"), TypeError, "softcap"),
    ("z-loss-str", dict(z_loss="0.5"), TypeError, "z_loss"),
    ("label-smoothing-numeric-str", dict(label_smoothing="0.1"), TypeError, "label_smoothing"),
    ("z-loss-negative", dict(z_loss=-1e-4), ValueError, "z_loss must be >= 0"),
    ("z-loss-nan", dict(z_loss=np.nan), ValueError, "z_loss"),
    ("z-loss-inf", dict(z_loss=np.inf), ValueError, "z_loss"),
]
STR_BUG = ("numeric options go through float(v), so a numeric *string* such as "
           "softcap='1' or z_loss='0.5' is accepted (while label_smoothing='a' is a "
           "TypeError 'must be a real number')")
for name, kw, exc, frag in OPT_ERRORS:
    bug = None   # STR_BUG fixed: strings are refused before float()
    row(f"opt-{name}-xent", lambda kw=kw: Call(XE, Z(), LAB(), **kw), Raises(exc, frag), bug)
    row(f"opt-{name}-xgrad-out", lambda kw=kw: Call(XG, Z(), LAB(),
                                                    out=np.full((4, 5), SENTINEL), **kw),
        Raises(exc, frag), bug)
    row(f"opt-{name}-inplace", lambda kw=kw: Call(XG, Z(), LAB(), inplace=True, **kw),
        Raises(exc, frag), bug)
row("grad-scale-nan", lambda: Call(XG, Z(), LAB(), grad_scale=np.nan),
    Raises(ValueError, "grad_scale"))
row("grad-scale-array-with-mean", lambda: Call(XG, Z(), LAB(), grad_scale=np.ones(4)),
    Raises(ValueError, "reduction='none'"))
row("grad-scale-array-wrong-shape", lambda: Call(XG, Z(), LAB(), grad_scale=np.ones(3),
                                                 reduction="none"),
    Raises(ValueError, "grad_scale has shape (3,)"))
row("soft-target-wrong-shape", lambda: Call(XG, Z(), PROB((4, 4))),
    Raises(ValueError, "probability target has shape (4, 4)"))
row("soft-target-transposed-view", lambda: Call(XG, Z((4, 5)), PROB((5, 4)).T), Same())
row("soft-target-f16-with-f64-logits", lambda: Call(XG, Z(), PROB(dtype=F16)), Same())
row("soft-target-struct-field", lambda: Call(XG, Z(), struct_field(PROB())), Same())
row("soft-target-broadcast", lambda: Call(XG, Z(), np.broadcast_to(PROB()[:1], (4, 5))), Same())

# neutral values of the options: identical to the oracle without them
NEUTRAL = [
    ("weight-ones", dict(weight=np.ones(5))),
    ("weight-ones-int", dict(weight=np.ones(5, np.int8))),
    ("weight-ones-list", dict(weight=[1, 1, 1, 1, 1])),
    ("weight-ones-struct-field", dict(weight=struct_field(np.ones(5)))),
    ("sample-weight-ones", dict(sample_weight=np.ones(4))),
    ("sample-weight-ones-f32", dict(sample_weight=np.ones(4, F32))),
    ("label-smoothing-zero", dict(label_smoothing=0.0)),
    ("z-loss-zero", dict(z_loss=0)),
    ("softcap-none", dict(softcap=None)),
    ("ignore-index-none", dict(ignore_index=None)),
    ("grad-scale-one", dict(grad_scale=1.0)),
    ("grad-scale-np-one", dict(grad_scale=np.float32(1.0))),
]
for name, kw in NEUTRAL:
    for red in ("mean", "none"):
        row(f"neutral-{name}-{red}", lambda kw=kw, red=red: Call(XG, Z(), LAB(), reduction=red,
                                                                 **kw),
            Same(drop=tuple(kw)))
row("neutral-grad-scale-array-ones", lambda: Call(XG, Z(), LAB(), reduction="none",
                                                  grad_scale=np.ones(4)),
    Same(drop=("grad_scale",)))
row("label-smoothing-one-ok", lambda: Call(XE, Z(), LAB(), label_smoothing=1.0),
    Check(lambda got, pr: np.testing.assert_(np.isfinite(got))))


def _softcap_ref(args, kw):
    """Oracle for softcap c: the reference on z' = c tanh(z / c) (NumPy's tanh in
    float64), gradient times the chain-rule factor 1 - tanh(z / c)**2."""
    c = kw["softcap"]
    z = np.asarray(args[0], dtype=np.float64)
    u = np.tanh(z / c)
    kw = {k: v for k, v in kw.items() if k != "softcap"}
    loss, grad = ref.cross_entropy_with_grad(c * u, *args[1:], **kw)
    return loss, grad * (1.0 - u * u)


SOFTCAP_PRECISION_BUG = (
    "softcap c >> |z| loses precision: tanh(u) is computed as 1 - 2/(exp(2u)+1) "
    "with absolute error ~eps, so c*tanh(z/c) has absolute error ~c*eps (float32 "
    "c=1e4: loss off by 7e-4 relative; c=1e30 or float64 c=1e300: every logit "
    "becomes 0 and every loss log(C))")
for dt, caps in ((F64, (0.5, 3.0, 30.0, 1e8, 1e300)), (F32, (0.5, 3.0, 30.0, 1e4, 1e30))):
    for cap in caps:
        bug = None   # was SOFTCAP_PRECISION_BUG: fixed by the series for small |z / c|
        for red in ("none", "mean"):
            row(f"softcap-{cap:g}-{np.dtype(dt).name}-{red}",
                lambda dt=dt, cap=cap, red=red: Call(XG, Z(dtype=dt), LAB(), softcap=cap,
                                                     reduction=red),
                Same(ref_fn=_softcap_ref), bug)
row("softcap-1e39-f32", lambda: Call(XG, Z(dtype=F32), LAB(), softcap=1e39, reduction="none"),
    Same(ref_fn=_softcap_ref))
row("softcap-tiny-f32-finite", lambda: Call(XG, Z(dtype=F32), LAB(), softcap=1e-40,
                                            reduction="none"),
    Check(lambda got, pr: (np.testing.assert_allclose(got[0], np.log(5), rtol=1e-6),
                           np.testing.assert_allclose(got[1], 0, atol=1e-6))))
row("softcap-tiny-f64-finite", lambda: Call(XG, Z(), LAB(), softcap=1e-320, reduction="none"),
    Check(lambda got, pr: (np.testing.assert_allclose(got[0], np.log(5), rtol=1e-12),
                           np.testing.assert_allclose(got[1], 0, atol=1e-12))))

def _weighted_ref(args, kw):
    """Oracle for class weights w, sample weights s and an upstream gradient g
    (labels, no smoothing): per sample l_i = s_i w_{y_i} (lse_i - z_{i,y_i}),
    gradient row g_i s_i w_{y_i} (p_i - onehot(y_i)); "sum" or "none"."""
    z, lab = np.asarray(args[0], dtype=np.float64), np.asarray(args[1]).astype(np.int64)
    red = kw.get("reduction", "mean")
    assert red in ("none", "sum")
    loss, grad = ref.cross_entropy_with_grad(z, lab, reduction="none")
    f = np.ones(lab.shape)
    if kw.get("weight") is not None:
        f = f * np.asarray(kw["weight"], np.float64)[lab]
    if kw.get("sample_weight") is not None:
        f = f * np.asarray(kw["sample_weight"], np.float64)
    gs = np.asarray(kw.get("grad_scale", 1.0), np.float64)
    loss = loss * f
    grad = grad * (f * gs)[:, None]
    return (loss if red == "none" else np.float64(loss.sum())), grad


W4 = np.array([0.5, 2.0, 1.5, 1.0])
S4 = np.array([1.0, 0.25, 3.0, 2.0])
G4 = np.array([2.0, -1.0, 0.5, 1.0])
for red in ("none", "sum"):
    row(f"weight-vs-oracle-{red}", lambda red=red: Call(XG, Z((4, 4)), LAB(4, 4), weight=W4,
                                                        reduction=red),
        Same(ref_fn=_weighted_ref))
    row(f"sample-weight-vs-oracle-{red}", lambda red=red: Call(
        XG, Z((4, 4)), LAB(4, 4), sample_weight=S4, reduction=red), Same(ref_fn=_weighted_ref))
    row(f"all-weights-vs-oracle-{red}", lambda red=red: Call(
        XG, Z((4, 4), F32), LAB(4, 4), weight=W4, sample_weight=S4, reduction=red),
        Same(ref_fn=_weighted_ref))
row("grad-scale-array-vs-oracle", lambda: Call(XG, Z((4, 4)), LAB(4, 4), grad_scale=G4,
                                               reduction="none"), Same(ref_fn=_weighted_ref))

ALIAS_BUG = ("an option array that shares memory with the gradient output (out= or the "
             "logits with inplace=True) is read by the kernel after earlier rows' "
             "gradients overwrote it: loss and gradient of later rows are wrong (out/logits "
             "overlap is handled, weight / sample_weight / grad_scale overlap is not)")


def _alias_build(opt, mode, red="none"):
    """The option array is row 0 of the out= buffer / of the in-place logits
    (float64, C-contiguous, so the front end passes it to C without a copy)."""
    def build():
        z = Z((4, 4))
        val = {"weight": W4, "sample_weight": S4, "grad_scale": G4}[opt]
        if mode == "out":
            o = np.empty((4, 4))
            o[0] = val
            return Call(XG, z, LAB(4, 4), out=o, targets=[o], reduction=red, **{opt: o[0]})
        z[0] = val
        return Call(XG, z, LAB(4, 4), inplace=True, targets=[z], reduction=red,
                    **{opt: z[0]})
    return build


for opt in ("weight", "sample_weight", "grad_scale"):
    for mode in ("out", "inplace"):
        row(f"{opt}-aliases-{mode}-row", _alias_build(opt, mode), Same(ref_fn=_weighted_ref))


# --------------------------------------------------------------------------- logsumexp / softmax options

row("lse-axis-out-of-range", lambda: Call(LSE, Z(), axis=2), Raises(AxisError, "axis 2"))
row("lse-axis-tuple-out-of-range", lambda: Call(LSE, Z(), axis=(0, 5)), Raises(AxisError, "5"))
row("lse-axis-repeated", lambda: Call(LSE, Z(), axis=(1, 1)), Raises(ValueError, "repeated"))
row("lse-axis-float", lambda: Call(LSE, Z(), axis=1.5), Raises(TypeError, ""))
row("softmax-axis-out-of-range", lambda: Call(SM, Z(), axis=-3), Raises(AxisError, "-3"))
row("log-softmax-axis-repeated", lambda: Call(LSM, Z(), axis=(0, -2)),
    Raises(ValueError, "repeated"))
row("lse-b-complex", lambda: Call(LSE, Z(), b=np.ones(5, complex) * (1 - 1j)),
    Check(lambda got, pr: np.testing.assert_allclose(
        got, ref.logsumexp_complex(pr.args[0], b=pr.kwargs["b"]), rtol=1e-13)))
row("lse-b-not-broadcastable", lambda: Call(LSE, Z(), b=np.ones(4)), Raises(ValueError, ""))
row("lse-b-object", lambda: Call(LSE, Z(), b=np.ones(5, object)), Raises(TypeError, ""))
row("lse-b-broadcast", lambda: Call(LSE, Z(), axis=1, b=np.array([1.0, 0, 2, 0.5, 1])), Same())
row("lse-b-negative-sign", lambda: Call(LSE, Z(), axis=1, b=np.array([1.0, -3, 2, -0.5, 1]),
                                        return_sign=True), Same())
row("lse-b-negative-nosign", lambda: Call(LSE, Z(), axis=1, b=-np.ones(5)), Same())
row("lse-b-zero-masks-nan", lambda: Call(LSE, special_array("nan", 17, F64), axis=1,
                                         b=np.where(np.arange(17) == 16, 0.0, 1.0)), Same())
row("lse-b-struct-field", lambda: Call(LSE, Z(), axis=1, b=struct_field(np.full((4, 5), 2.0))),
    Same())
row("lse-b-f32-a-f64", lambda: Call(LSE, Z(), axis=0, b=np.full((4, 5), 0.5, F32)), Same())
row("lse-bool-a-no-b", lambda: Call(LSE, np.array([True, False])), Raises(TypeError, "bool"))
row("lse-bool-a-with-b", lambda: Call(LSE, np.array([True, False]), b=np.array([1.0, 2.0])),
    Raises(TypeError, "bool"))
row("lse-b-int-a-int", lambda: Call(LSE, np.arange(20).reshape(4, 5), axis=1, b=3), Same())
row("lse-keepdims-multi", lambda: Call(LSE, Z((3, 4, 5)), axis=(0, 2), keepdims=True), Same())
row("lse-return-sign-0d", lambda: Call(LSE, Z((5,)), return_sign=True), Same())


# "mean" divides by sum(s_i w_{y_i}); the result must not depend on the weights'
# overall scale, even when that sum is subnormal (1/sum would overflow a double;
# was a bug: +-inf / NaN gradients)
row("tiny-sample-weight-mean", lambda: Call(XG, Z((1, 5)), LAB(1), sample_weight=[1e-310],
                                            reduction="mean"),
    Same(drop=("sample_weight",)))
row("tiny-equal-class-weights-mean", lambda: Call(XG, Z(), LAB(), weight=np.full(5, 1e-310),
                                                  reduction="mean"),
    Same(drop=("weight",)))
row("tiny-class-and-sample-weights-mean",
    lambda: Call(XG, Z(), LAB(), weight=np.full(5, 1e-160), sample_weight=np.full(4, 1e-160),
                 reduction="mean"),
    Same(drop=("weight", "sample_weight")))
row("small-equal-class-weights-mean", lambda: Call(XG, Z(), LAB(), weight=np.full(5, 1e-300),
                                                   reduction="mean"),
    Same(drop=("weight",)))


# --------------------------------------------------------------------------- labels inside the output

# Integer labels that live in the gradient's memory (out= or the logits with
# inplace=True): the kernel validates every label first, then reads each row's
# label again while earlier rows' gradients are being written.  An invalid
# label read then indexed outside the row (a segfault, now fixed by copying
# such labels first), so these cases run in a subprocess; the result must be
# as if there were no overlap.
_LABELS_IN_OUTPUT = r"""
import sys
import numpy as np
import csoftmax
mode, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
z = np.random.default_rng(0).standard_normal((n, c))
want = np.arange(n) % c
if mode == "out":
    out = np.zeros((n, c))
    lab = out.view(np.int64)[::-1, -1]      # the label of row i lives in row n-1-i
    lab[:] = want
    el, eg = csoftmax.cross_entropy_with_grad(z, want, reduction="none")
    loss, grad = csoftmax.cross_entropy_with_grad(z, lab, out=out, reduction="none")
else:
    lab = z.view(np.int64)[::-1, -1]
    lab[:] = want                            # (the logits' last column holds label bits)
    el, eg = csoftmax.cross_entropy_with_grad(z.copy(), want, reduction="none")
    loss, grad = csoftmax.cross_entropy_with_grad(z, lab, inplace=True, reduction="none")
ok = np.allclose(loss, el, rtol=1e-12, atol=0) and np.allclose(grad, eg, rtol=1e-12, atol=1e-15)
print("OK" if ok else f"WRONG\n{loss}\n{el}")
"""


@pytest.mark.parametrize("mode", ["out", "inplace"])
@pytest.mark.parametrize("n,c", [(2, 64), (64, 64)])
def test_labels_living_in_the_output(mode, n, c):
    import subprocess
    p = subprocess.run([sys.executable, "-c", _LABELS_IN_OUTPUT, mode, str(n), str(c)],
                       capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir())
    assert p.returncode == 0, (f"crashed (exit {p.returncode}): labels sharing memory with "
                               f"the gradient\n{p.stderr[-2000:]}")
    assert p.stdout.strip().startswith("OK"), p.stdout


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("r", [_param(r) for r in CATALOGUE])
def test_catalogue(r):
    run_row(r)


def test_catalogue_size(capsys):
    ids = [r.id for r in CATALOGUE]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    assert not dup, f"duplicate row ids: {dup}"
    n_raise = sum(isinstance(r.expect, Raises) for r in CATALOGUE)
    n_same = sum(isinstance(r.expect, Same) for r in CATALOGUE)
    n_bug = sum(bool(r.bug) for r in CATALOGUE)
    with capsys.disabled():
        print(f"\ntest_bad_input: {len(CATALOGUE)} catalogue rows "
              f"({n_raise} exception, {n_same} vs reference, "
              f"{len(CATALOGUE) - n_raise - n_same} property; {n_bug} known-bug xfail)")
    assert len(CATALOGUE) >= 100


if __name__ == "__main__":
    print(f"{len(CATALOGUE)} catalogue rows")
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
