# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Thin Cython layer over the csoftmax C kernels.

Design
1. The Python front end (``_api.py``) settles everything NumPy-level first:
   dtype policy, axis handling, output allocation, aliasing and overlap.  It
   hands this module 3-D row views ``(n0, n1, c)`` -- rows are the (n0, n1)
   grid, classes the last axis -- whose strides are whole elements and whose
   data is aligned and in native byte order, plus 2-D per-row views ``(n0, n1)``.
2. This module only reads shapes and strides off the typed memoryviews
   (``# IN`` arguments are ``const``), converts byte strides to element
   strides, releases the GIL and calls the C kernel for the dtype (fused
   ``real`` = float or double).
3. The C kernels (``src_c/``) never allocate, never call back and never raise:
   they return a ``csm_status``.  This module turns a status into an
   exception; for a bad label the C side reports the first bad row and value
   and nothing has been written.
4. Empty problems (any of n0, n1, c zero) never reach C: the front end
   answers them, so ``&x[0, 0, 0]`` here always points at a real element.
"""
from libc.stdint cimport int64_t, uint8_t, uint16_t
from libc.math cimport INFINITY
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_STRIDES, PyBUF_WRITABLE
from ._ckernels cimport *

ctypedef fused real:
    float
    double


class LabelError(ValueError):
    """A target label outside ``[0, C)`` (and not ``ignore_index``)."""

    def __init__(self, msg, row, value):
        super().__init__(msg)
        self.row = row
        self.value = value


cdef inline csm_strides _st3(Py_ssize_t *strides, Py_ssize_t item) noexcept nogil:
    cdef csm_strides s
    s.s0 = strides[0] // item
    s.s1 = strides[1] // item
    s.sc = strides[2] // item
    return s


cdef inline csm_strides _st2(Py_ssize_t *strides, Py_ssize_t item) noexcept nogil:
    cdef csm_strides s
    s.s0 = strides[0] // item
    s.s1 = strides[1] // item
    s.sc = 0
    return s


cdef inline csm_shape _shape3(Py_ssize_t *shape) noexcept nogil:
    cdef csm_shape sh
    sh.n0 = shape[0]
    sh.n1 = shape[1]
    sh.c = shape[2]
    return sh


cdef int _check(int status) except -1:
    if status == CSM_OK:
        return 0
    if status == CSM_ERR_ARG:
        raise ValueError("csoftmax: invalid size or option passed to the C kernel")
    if status == CSM_ERR_NOMEM:
        raise MemoryError("csoftmax: could not allocate the kernel's scratch row")
    if status == CSM_ERR_SEAM:
        raise RuntimeError("csoftmax: the kernel crashed on the test seam's emulated CPU")
    raise RuntimeError(f"csoftmax: C kernel failed with status {status}")


def logsumexp_rows(const real[:, :, :] x,    # IN  (n0, n1, c)
                   real[:, :] lse):          # OUT (n0, n1)
    """lse[i, j] = log(sum_k exp(x[i, j, k]))."""
    cdef csm_shape sh = _shape3(x.shape)
    cdef csm_strides xs = _st3(x.strides, sizeof(real)), ls = _st2(lse.strides, sizeof(real))
    cdef int st
    with nogil:
        if real is float:
            st = csm_logsumexp_f32(sh, &x[0, 0, 0], xs, &lse[0, 0], ls)
        else:
            st = csm_logsumexp_f64(sh, &x[0, 0, 0], xs, &lse[0, 0], ls)
    _check(st)


def logsumexp_b_rows(const real[:, :, :] x,    # IN  (n0, n1, c)
                     const real[:, :, :] b,    # IN  (n0, n1, c), may have zero strides
                     real[:, :] lse,           # OUT (n0, n1)
                     real[:, :] sign):         # OUT (n0, n1) or None
    """Weighted log-sum-exp with SciPy's semantics; sign may be None."""
    cdef csm_shape sh = _shape3(x.shape)
    cdef csm_strides xs = _st3(x.strides, sizeof(real)), bs = _st3(b.strides, sizeof(real))
    cdef csm_strides ls = _st2(lse.strides, sizeof(real)), ss
    cdef real *sp = NULL
    cdef int st
    ss.s0 = ss.s1 = ss.sc = 0
    if sign is not None:
        ss = _st2(sign.strides, sizeof(real))
        sp = &sign[0, 0]
    with nogil:
        if real is float:
            st = csm_logsumexp_b_f32(sh, &x[0, 0, 0], xs, &b[0, 0, 0], bs, &lse[0, 0], ls, sp, ss)
        else:
            st = csm_logsumexp_b_f64(sh, &x[0, 0, 0], xs, &b[0, 0, 0], bs, &lse[0, 0], ls, sp, ss)
    _check(st)


def softmax_rows(const real[:, :, :] x,    # IN  (n0, n1, c)
                 real[:, :, :] y,          # OUT (n0, n1, c), may be x itself
                 bint log):
    """y = softmax(x) (log=False) or log_softmax(x) (log=True) along the last axis."""
    cdef csm_shape sh = _shape3(x.shape)
    cdef csm_strides xs = _st3(x.strides, sizeof(real)), ys = _st3(y.strides, sizeof(real))
    cdef int st
    with nogil:
        if real is float:
            if log:
                st = csm_log_softmax_f32(sh, &x[0, 0, 0], xs, &y[0, 0, 0], ys)
            else:
                st = csm_softmax_f32(sh, &x[0, 0, 0], xs, &y[0, 0, 0], ys)
        else:
            if log:
                st = csm_log_softmax_f64(sh, &x[0, 0, 0], xs, &y[0, 0, 0], ys)
            else:
                st = csm_softmax_f64(sh, &x[0, 0, 0], xs, &y[0, 0, 0], ys)
    _check(st)


cdef int _fill_opts(csm_xent_opts *opt, double grad_scale, object row_scale,
                    object row_gscale, const void *cw, Py_ssize_t ncw, double wsum, double eps,
                    double alpha, double softcap, object lse_out, Py_ssize_t nrows,
                    Py_ssize_t c) except -1:
    """Options struct from Python objects; arrays must be C-contiguous and sized.
    cw: the ncw class weights (of the kernel's weight dtype), or NULL."""
    cdef const double[::1] rs
    cdef const double[::1] rg
    cdef double[::1] lo
    opt.grad_scale = grad_scale
    opt.ignore_index = 0
    opt.use_ignore = 0
    opt.row_scale = NULL
    opt.row_gscale = NULL
    opt.class_weight = NULL
    if cw != NULL:
        if ncw != c:
            raise ValueError("class_weight has the wrong length")
        opt.class_weight = cw
    opt.class_weight_sum = wsum
    opt.label_smoothing = eps
    opt.z_loss = alpha
    opt.softcap = softcap
    opt.lse_out = NULL
    opt.label_offset = 0
    if row_scale is not None:
        rs = row_scale
        if rs.shape[0] != nrows:
            raise ValueError("row_scale has the wrong length")
        opt.row_scale = &rs[0]
    if row_gscale is not None:
        rg = row_gscale
        if rg.shape[0] != nrows:
            raise ValueError("row_gscale has the wrong length")
        opt.row_gscale = &rg[0]
    if lse_out is not None:
        lo = lse_out
        if lo.shape[0] != nrows:
            raise ValueError("lse_out has the wrong length")
        opt.lse_out = &lo[0]
    return 0


def xent_labels_rows(const real[:, :, :] z,        # IN  (n0, n1, c) logits
                     const int64_t[:, :] label,    # IN  (n0, n1)
                     double[:, :] loss,            # OUT (n0, n1) per-row loss
                     real[:, :, :] grad,           # OUT (n0, n1, c) or None; may be z
                     double grad_scale,
                     int64_t ignore_index,
                     bint use_ignore,
                     row_scale=None,               # IN  (n0*n1,) float64 or None
                     row_gscale=None,              # IN  (n0*n1,) float64 or None
                     const real[::1] class_weight=None,   # IN (c,) or None
                     double wsum=0.0,
                     double label_smoothing=0.0,
                     double z_loss=0.0,
                     double softcap=0.0,
                     lse_out=None):                # OUT (n0*n1,) float64 or None
    """Fused cross-entropy with integer labels; raises LabelError (nothing written)."""
    cdef csm_shape sh = _shape3(z.shape)
    cdef csm_strides zs = _st3(z.strides, sizeof(real)), gs
    cdef csm_strides lbs = _st2(label.strides, sizeof(int64_t)), ls = _st2(loss.strides, sizeof(double))
    cdef csm_xent_opts opt
    cdef csm_error err
    cdef real *gp = NULL
    cdef int st
    _fill_opts(&opt, grad_scale, row_scale, row_gscale,
               NULL if class_weight is None else &class_weight[0],
               0 if class_weight is None else class_weight.shape[0], wsum, label_smoothing,
               z_loss, softcap, lse_out, sh.n0 * sh.n1, sh.c)
    opt.ignore_index = ignore_index
    opt.use_ignore = use_ignore
    err.row = -1
    err.value = 0
    gs.s0 = gs.s1 = gs.sc = 0
    if grad is not None:
        gs = _st3(grad.strides, sizeof(real))
        gp = &grad[0, 0, 0]
    with nogil:
        if real is float:
            st = csm_xent_labels_f32(sh, &z[0, 0, 0], zs, &label[0, 0], lbs, &opt,
                                     &loss[0, 0], ls, gp, gs, &err)
        else:
            st = csm_xent_labels_f64(sh, &z[0, 0, 0], zs, &label[0, 0], lbs, &opt,
                                     &loss[0, 0], ls, gp, gs, &err)
    if st == CSM_ERR_LABEL:
        raise LabelError("bad label", err.row, err.value)
    _check(st)


# ---- the partial family: class slices (src_c/kernels_partial.h) -------------------

cdef int _slice_opts(csm_xent_opts *opt, const int64_t[:, :] label, Py_ssize_t c,
                     int64_t label_offset, int64_t ignore_index, bint use_ignore,
                     const real[::1] class_weight, double label_smoothing,
                     double softcap) except -1:
    _fill_opts(opt, 1.0, None, None, NULL if class_weight is None else &class_weight[0],
               0 if class_weight is None else class_weight.shape[0], 0.0, label_smoothing,
               0.0, softcap, None, 0, c)
    opt.label_offset = label_offset
    opt.ignore_index = ignore_index
    opt.use_ignore = use_ignore
    return 0


def partial_rows(const real[:, :, :] x,            # IN  (n0, n1, c) one slice of the classes
                 double[:, :, :] part,             # OUT (n0, n1, 6) per-row state
                 const int64_t[:, :] label=None,   # IN  (n0, n1) labels of the whole row, or None
                 int64_t label_offset=0,
                 int64_t ignore_index=0,
                 bint use_ignore=False,
                 const real[::1] class_weight=None,   # IN (c,) the slice's weights, or None
                 double label_smoothing=0.0,
                 double softcap=0.0):
    """Per-row state of a slice of the classes (csm_partial)."""
    cdef csm_shape sh = _shape3(x.shape)
    cdef csm_strides xs = _st3(x.strides, sizeof(real)), ps = _st3(part.strides, sizeof(double))
    cdef csm_strides lbs
    cdef csm_xent_opts opt
    cdef const int64_t *lp = NULL
    cdef const csm_xent_opts *op = NULL
    cdef int st
    if part.shape[0] != sh.n0 or part.shape[1] != sh.n1 or part.shape[2] != 6:
        raise ValueError("part has the wrong shape")
    if sh.n0 * sh.n1 == 0:
        return
    if sh.c == 0:
        part[:, :, :] = 0.0
        part[:, :, 0] = -INFINITY
        return
    lbs.s0 = lbs.s1 = lbs.sc = 0
    if label is not None:
        if label.shape[0] != sh.n0 or label.shape[1] != sh.n1:
            raise ValueError("label has the wrong shape")
        lbs = _st2(label.strides, sizeof(int64_t))
        lp = &label[0, 0]
        _slice_opts(&opt, label, sh.c, label_offset, ignore_index, use_ignore, class_weight,
                    label_smoothing, softcap)
        op = &opt
    with nogil:
        if real is float:
            st = csm_partial_f32(sh, &x[0, 0, 0], xs, lp, lbs, op, &part[0, 0, 0], ps)
        else:
            st = csm_partial_f64(sh, &x[0, 0, 0], xs, lp, lbs, op, &part[0, 0, 0], ps)
    _check(st)


def partial_merge(const double[:, :, :] parts,    # IN  (P, R, k >= 6) states
                  double[:, :] out):              # OUT (R, k) merged state
    """Merge P states per row, left to right (csm_partial_merge)."""
    cdef Py_ssize_t P = parts.shape[0], R = parts.shape[1]
    cdef int st
    if parts.shape[2] < 6 or out.shape[0] != R or out.shape[1] < 6:
        raise ValueError("states must have 6 fields")
    if R == 0:
        return
    if P == 0:
        out[:, :] = 0.0
        out[:, 0] = -INFINITY
        return
    with nogil:
        st = csm_partial_merge(P, R, &parts[0, 0, 0], parts.strides[0] // 8,
                               parts.strides[1] // 8, parts.strides[2] // 8, &out[0, 0],
                               out.strides[0] // 8, out.strides[1] // 8)
    _check(st)


def partial_log1p(const double[:, :] state, double[:] L):
    """L = log1p(count - 1 + s) per state row (csm_partial_log1p)."""
    cdef Py_ssize_t R = state.shape[0]
    cdef int st
    if state.shape[1] < 3 or L.shape[0] != R:
        raise ValueError("bad state or L shape")
    if R == 0:
        return
    with nogil:
        st = csm_partial_log1p(R, &state[0, 0], state.strides[0] // 8, state.strides[1] // 8,
                               &L[0], L.strides[0] // 8)
    _check(st)


def merged_rows(int mode,                         # 0 softmax, 1 log_softmax, 2 gradient
                const real[:, :, :] x,            # IN  (n0, n1, c) one slice of the classes
                const double[:, :, :] mrg,        # IN  (n0, n1, 4) per-row merged factors
                real[:, :, :] y,                  # OUT (n0, n1, c); may be x
                const int64_t[:, :] label=None,   # IN  (n0, n1) (mode 2)
                int64_t label_offset=0,
                int64_t ignore_index=0,
                bint use_ignore=False,
                const real[::1] class_weight=None,
                double label_smoothing=0.0,
                double softcap=0.0):
    """A slice written from its rows' merged state (csm_*_merged)."""
    cdef csm_shape sh = _shape3(x.shape)
    cdef csm_strides xs = _st3(x.strides, sizeof(real)), ys = _st3(y.strides, sizeof(real))
    cdef csm_strides ms = _st3(mrg.strides, sizeof(double)), lbs
    cdef csm_xent_opts opt
    cdef const int64_t *lp = NULL
    cdef const csm_xent_opts *op = NULL
    cdef int st
    if (y.shape[0] != sh.n0 or y.shape[1] != sh.n1 or y.shape[2] != sh.c
            or mrg.shape[0] != sh.n0 or mrg.shape[1] != sh.n1 or mrg.shape[2] < 4):
        raise ValueError("y or mrg has the wrong shape")
    if mode < 0 or mode > 2:
        raise ValueError("bad mode")
    if sh.n0 * sh.n1 == 0 or sh.c == 0:
        return
    lbs.s0 = lbs.s1 = lbs.sc = 0
    if mode == 2:
        if label is None or label.shape[0] != sh.n0 or label.shape[1] != sh.n1:
            raise ValueError("label missing or of the wrong shape")
        lbs = _st2(label.strides, sizeof(int64_t))
        lp = &label[0, 0]
        _slice_opts(&opt, label, sh.c, label_offset, ignore_index, use_ignore, class_weight,
                    label_smoothing, softcap)
        op = &opt
    with nogil:
        if real is float:
            if mode == 0:
                st = csm_softmax_merged_f32(sh, &x[0, 0, 0], xs, lp, lbs, op, &mrg[0, 0, 0], ms,
                                            &y[0, 0, 0], ys)
            elif mode == 1:
                st = csm_log_softmax_merged_f32(sh, &x[0, 0, 0], xs, lp, lbs, op,
                                                &mrg[0, 0, 0], ms, &y[0, 0, 0], ys)
            else:
                st = csm_xent_grad_merged_f32(sh, &x[0, 0, 0], xs, lp, lbs, op, &mrg[0, 0, 0],
                                              ms, &y[0, 0, 0], ys)
        else:
            if mode == 0:
                st = csm_softmax_merged_f64(sh, &x[0, 0, 0], xs, lp, lbs, op, &mrg[0, 0, 0], ms,
                                            &y[0, 0, 0], ys)
            elif mode == 1:
                st = csm_log_softmax_merged_f64(sh, &x[0, 0, 0], xs, lp, lbs, op,
                                                &mrg[0, 0, 0], ms, &y[0, 0, 0], ys)
            else:
                st = csm_xent_grad_merged_f64(sh, &x[0, 0, 0], xs, lp, lbs, op, &mrg[0, 0, 0],
                                              ms, &y[0, 0, 0], ys)
    _check(st)


def xent_soft_rows(const real[:, :, :] z,     # IN  (n0, n1, c) logits
                   const real[:, :, :] t,     # IN  (n0, n1, c) target distribution
                   double[:, :] loss,         # OUT (n0, n1)
                   real[:, :, :] grad,        # OUT (n0, n1, c) or None; may be z, not t
                   double grad_scale,
                   row_scale=None,
                   row_gscale=None,
                   const real[::1] class_weight=None,
                   double wsum=0.0,
                   double label_smoothing=0.0,
                   double z_loss=0.0,
                   double softcap=0.0,
                   lse_out=None):
    """Fused cross-entropy with soft targets."""
    cdef csm_shape sh = _shape3(z.shape)
    cdef csm_strides zs = _st3(z.strides, sizeof(real)), ts = _st3(t.strides, sizeof(real)), gs
    cdef csm_strides ls = _st2(loss.strides, sizeof(double))
    cdef csm_xent_opts opt
    cdef real *gp = NULL
    cdef int st
    _fill_opts(&opt, grad_scale, row_scale, row_gscale,
               NULL if class_weight is None else &class_weight[0],
               0 if class_weight is None else class_weight.shape[0], wsum, label_smoothing,
               z_loss, softcap, lse_out, sh.n0 * sh.n1, sh.c)
    gs.s0 = gs.s1 = gs.sc = 0
    if grad is not None:
        gs = _st3(grad.strides, sizeof(real))
        gp = &grad[0, 0, 0]
    with nogil:
        if real is float:
            st = csm_xent_soft_f32(sh, &z[0, 0, 0], zs, &t[0, 0, 0], ts, &opt, &loss[0, 0], ls, gp, gs)
        else:
            st = csm_xent_soft_f64(sh, &z[0, 0, 0], zs, &t[0, 0, 0], ts, &opt, &loss[0, 0], ls, gp, gs)
    _check(st)


# ---- the neighbouring losses (src_c/kernels_bce.h, kernels_kl.h, kernels_tokens.h) ----

class TargetError(ValueError):
    """A binary cross-entropy target outside ``[0, 1]`` (or NaN)."""

    def __init__(self, msg, row, index):
        super().__init__(msg)
        self.row = row
        self.index = index


def bce_rows(const real[:, :, :] z,                # IN  (n0, n1, c) logits
             const real[:, :, :] t,                # IN  (n0, n1, c) targets in [0, 1]
             double[:, :] rowloss,                 # OUT (n0, n1) per-row sums, or None
             real[:, :, :] eloss,                  # OUT (n0, n1, c) per-element loss, or None
             real[:, :, :] grad,                   # OUT (n0, n1, c) or None; may be z
             double grad_scale,
             const real[:, :, :] weight=None,      # IN  (n0, n1, c), zero strides to broadcast
             const real[:] pos_weight=None):       # IN  (c,) (stride 0: one value)
    """Binary cross-entropy with logits; raises TargetError (nothing written)."""
    cdef csm_shape sh = _shape3(z.shape)
    cdef csm_strides zs = _st3(z.strides, sizeof(real)), ts = _st3(t.strides, sizeof(real))
    cdef csm_strides rls, els, gs
    cdef csm_bce_opts opt
    cdef csm_error err
    cdef double *rp = NULL
    cdef real *ep = NULL
    cdef real *gp = NULL
    cdef int st
    if t.shape[0] != sh.n0 or t.shape[1] != sh.n1 or t.shape[2] != sh.c:
        raise ValueError("target has the wrong shape")
    rls.s0 = rls.s1 = rls.sc = 0
    els = rls
    gs = rls
    opt.grad_scale = grad_scale
    opt.weight = NULL
    opt.ws = rls
    opt.pos_weight = NULL
    opt.pws = 0
    if weight is not None:
        if weight.shape[0] != sh.n0 or weight.shape[1] != sh.n1 or weight.shape[2] != sh.c:
            raise ValueError("weight has the wrong shape")
        opt.weight = &weight[0, 0, 0]
        opt.ws = _st3(weight.strides, sizeof(real))
    if pos_weight is not None:
        if pos_weight.shape[0] != sh.c:
            raise ValueError("pos_weight has the wrong length")
        opt.pos_weight = &pos_weight[0]
        opt.pws = pos_weight.strides[0] // <Py_ssize_t>sizeof(real)
    if rowloss is not None:
        rls = _st2(rowloss.strides, sizeof(double))
        rp = &rowloss[0, 0]
    if eloss is not None:
        els = _st3(eloss.strides, sizeof(real))
        ep = &eloss[0, 0, 0]
    if grad is not None:
        gs = _st3(grad.strides, sizeof(real))
        gp = &grad[0, 0, 0]
    err.row = -1
    err.value = 0
    with nogil:
        if real is float:
            st = csm_bce_f32(sh, &z[0, 0, 0], zs, &t[0, 0, 0], ts, &opt, rp, rls, ep, els,
                             gp, gs, &err)
        else:
            st = csm_bce_f64(sh, &z[0, 0, 0], zs, &t[0, 0, 0], ts, &opt, rp, rls, ep, els,
                             gp, gs, &err)
    if st == CSM_ERR_VALUE:
        raise TargetError("bad target", err.row, err.value)
    _check(st)


def kl_div_rows(const real[:, :, :] s,             # IN  (n0, n1, c) student logits
                const real[:, :, :] t,             # IN  (n0, n1, c) teacher
                double[:, :] loss,                 # OUT (n0, n1) per-row KL
                real[:, :, :] grad,                # OUT (n0, n1, c) or None; may be s
                double temperature,
                int teacher_kind,                  # 0 logits, 1 log-probabilities
                double grad_scale,
                row_gscale=None,                   # IN  (n0*n1,) float64 or None
                row_mask=None):                    # IN  (n0*n1,) uint8 or None
    """Distillation KL(p_teacher || p_student) at temperature T, scaled by T**2."""
    cdef csm_shape sh = _shape3(s.shape)
    cdef csm_strides ss = _st3(s.strides, sizeof(real)), ts = _st3(t.strides, sizeof(real))
    cdef csm_strides ls = _st2(loss.strides, sizeof(double)), gs
    cdef csm_kl_opts opt
    cdef const double[::1] rg
    cdef const uint8_t[::1] rm
    cdef real *gp = NULL
    cdef int st
    if t.shape[0] != sh.n0 or t.shape[1] != sh.n1 or t.shape[2] != sh.c:
        raise ValueError("teacher has the wrong shape")
    opt.temperature = temperature
    opt.teacher_kind = teacher_kind
    opt.grad_scale = grad_scale
    opt.row_gscale = NULL
    opt.row_mask = NULL
    if row_gscale is not None:
        rg = row_gscale
        if rg.shape[0] != sh.n0 * sh.n1:
            raise ValueError("row_gscale has the wrong length")
        opt.row_gscale = &rg[0]
    if row_mask is not None:
        rm = row_mask
        if rm.shape[0] != sh.n0 * sh.n1:
            raise ValueError("row_mask has the wrong length")
        opt.row_mask = &rm[0]
    gs.s0 = gs.s1 = gs.sc = 0
    if grad is not None:
        gs = _st3(grad.strides, sizeof(real))
        gp = &grad[0, 0, 0]
    with nogil:
        if real is float:
            st = csm_kl_div_f32(sh, &s[0, 0, 0], ss, &t[0, 0, 0], ts, &opt, &loss[0, 0], ls,
                                gp, gs)
        else:
            st = csm_kl_div_f64(sh, &s[0, 0, 0], ss, &t[0, 0, 0], ts, &opt, &loss[0, 0], ls,
                                gp, gs)
    _check(st)


def token_logprobs_rows(const real[:, :, :] x,        # IN  (n0, n1, c) logits
                        const int64_t[:, :] label,    # IN  (n0, n1)
                        double[:, :] logp,            # OUT (n0, n1)
                        double[:, :] ent,             # OUT (n0, n1) or None
                        int64_t ignore_index,
                        bint use_ignore):
    """log_softmax(x)[label] per row and, with ent, the entropy; raises LabelError."""
    cdef csm_shape sh = _shape3(x.shape)
    cdef csm_strides xs = _st3(x.strides, sizeof(real))
    cdef csm_strides lbs = _st2(label.strides, sizeof(int64_t)), ls = _st2(logp.strides, sizeof(double))
    cdef csm_strides es
    cdef csm_error err
    cdef double *ep = NULL
    cdef int st
    es.s0 = es.s1 = es.sc = 0
    if ent is not None:
        es = _st2(ent.strides, sizeof(double))
        ep = &ent[0, 0]
    err.row = -1
    err.value = 0
    with nogil:
        if real is float:
            st = csm_token_logprobs_f32(sh, &x[0, 0, 0], xs, &label[0, 0], lbs, ignore_index,
                                        use_ignore, &logp[0, 0], ls, ep, es, &err)
        else:
            st = csm_token_logprobs_f64(sh, &x[0, 0, 0], xs, &label[0, 0], lbs, ignore_index,
                                        use_ignore, &logp[0, 0], ls, ep, es, &err)
    if st == CSM_ERR_LABEL:
        raise LabelError("bad label", err.row, err.value)
    _check(st)


# ---- half precision: float16 / bfloat16 (src_c/kernels_half.h) -------------------
# The front end passes the float16 / ml_dtypes.bfloat16 arrays themselves; they
# are read through uint16 views of the same memory (no copy) and the format
# travels as fmt (0 float16, 1 bfloat16).

cdef int _hfmt(object a) except -1:
    dt = a.dtype
    if dt.char == "e":
        return 0
    if dt.itemsize == 2 and dt.name == "bfloat16":
        return 1
    raise TypeError(f"csoftmax: expected a float16 or bfloat16 array, got {dt}")


cdef object _u16v(object a):
    return None if a is None else a.view(_np.uint16)


def logsumexp_rows_h(x,                      # IN  (n0, n1, c) float16 / bfloat16
                     float[:, :] lse):       # OUT (n0, n1) float32
    """lse[i, j] = log(sum_k exp(x[i, j, k])), computed in float32 with float64 sums."""
    cdef int fmt = _hfmt(x)
    cdef const uint16_t[:, :, :] xv = _u16v(x)
    cdef csm_shape sh = _shape3(xv.shape)
    cdef csm_strides xs = _st3(xv.strides, 2), ls = _st2(lse.strides, sizeof(float))
    cdef int st
    with nogil:
        if fmt == 0:
            st = csm_logsumexp_f16(sh, &xv[0, 0, 0], xs, &lse[0, 0], ls)
        else:
            st = csm_logsumexp_bf16(sh, &xv[0, 0, 0], xs, &lse[0, 0], ls)
    _check(st)


def logsumexp_b_rows_h(x,                    # IN  (n0, n1, c) float16 / bfloat16
                       b,                    # IN  (n0, n1, c) same dtype, may have zero strides
                       float[:, :] lse,      # OUT (n0, n1) float32
                       float[:, :] sign):    # OUT (n0, n1) float32 or None
    """Weighted log-sum-exp (SciPy's semantics) of 16-bit rows."""
    cdef int fmt = _hfmt(x)
    if _hfmt(b) != fmt:
        raise TypeError("csoftmax: a and b must have the same 16-bit dtype")
    cdef const uint16_t[:, :, :] xv = _u16v(x)
    cdef const uint16_t[:, :, :] bv = _u16v(b)
    cdef csm_shape sh = _shape3(xv.shape)
    cdef csm_strides xs = _st3(xv.strides, 2), bs = _st3(bv.strides, 2)
    cdef csm_strides ls = _st2(lse.strides, sizeof(float)), ss
    cdef float *sp = NULL
    cdef int st
    ss.s0 = ss.s1 = ss.sc = 0
    if sign is not None:
        ss = _st2(sign.strides, sizeof(float))
        sp = &sign[0, 0]
    with nogil:
        if fmt == 0:
            st = csm_logsumexp_b_f16(sh, &xv[0, 0, 0], xs, &bv[0, 0, 0], bs, &lse[0, 0], ls, sp, ss)
        else:
            st = csm_logsumexp_b_bf16(sh, &xv[0, 0, 0], xs, &bv[0, 0, 0], bs, &lse[0, 0], ls, sp, ss)
    _check(st)


def softmax_rows_h(x,                        # IN  (n0, n1, c) float16 / bfloat16
                   y,                        # OUT (n0, n1, c) same dtype, may be x itself
                   bint log):
    """y = softmax(x) or log_softmax(x) of 16-bit rows, rounded once to their dtype."""
    cdef int fmt = _hfmt(x)
    if _hfmt(y) != fmt:
        raise TypeError("csoftmax: x and y must have the same 16-bit dtype")
    cdef const uint16_t[:, :, :] xv = _u16v(x)
    cdef uint16_t[:, :, :] yv = _u16v(y)
    cdef csm_shape sh = _shape3(xv.shape)
    cdef csm_strides xs = _st3(xv.strides, 2), ys = _st3(yv.strides, 2)
    cdef int st
    with nogil:
        if fmt == 0:
            if log:
                st = csm_log_softmax_f16(sh, &xv[0, 0, 0], xs, &yv[0, 0, 0], ys)
            else:
                st = csm_softmax_f16(sh, &xv[0, 0, 0], xs, &yv[0, 0, 0], ys)
        else:
            if log:
                st = csm_log_softmax_bf16(sh, &xv[0, 0, 0], xs, &yv[0, 0, 0], ys)
            else:
                st = csm_softmax_bf16(sh, &xv[0, 0, 0], xs, &yv[0, 0, 0], ys)
    _check(st)


def xent_labels_rows_h(z,                          # IN  (n0, n1, c) float16 / bfloat16 logits
                       const int64_t[:, :] label,  # IN  (n0, n1)
                       double[:, :] loss,          # OUT (n0, n1) per-row loss
                       grad,                       # OUT (n0, n1, c) same dtype, or None; may be z
                       double grad_scale,
                       int64_t ignore_index,
                       bint use_ignore,
                       row_scale=None,
                       row_gscale=None,
                       const float[::1] class_weight=None,   # IN (c,) float32 or None
                       double wsum=0.0,
                       double label_smoothing=0.0,
                       double z_loss=0.0,
                       double softcap=0.0,
                       lse_out=None):
    """xent_labels_rows for 16-bit logits (class weights in float32)."""
    cdef int fmt = _hfmt(z)
    cdef const uint16_t[:, :, :] zv = _u16v(z)
    cdef uint16_t[:, :, :] gv
    cdef csm_shape sh = _shape3(zv.shape)
    cdef csm_strides zs = _st3(zv.strides, 2), gs
    cdef csm_strides lbs = _st2(label.strides, sizeof(int64_t)), ls = _st2(loss.strides, sizeof(double))
    cdef csm_xent_opts opt
    cdef csm_error err
    cdef uint16_t *gp = NULL
    cdef int st
    _fill_opts(&opt, grad_scale, row_scale, row_gscale,
               NULL if class_weight is None else &class_weight[0],
               0 if class_weight is None else class_weight.shape[0], wsum, label_smoothing,
               z_loss, softcap, lse_out, sh.n0 * sh.n1, sh.c)
    opt.ignore_index = ignore_index
    opt.use_ignore = use_ignore
    err.row = -1
    err.value = 0
    gs.s0 = gs.s1 = gs.sc = 0
    if grad is not None:
        if _hfmt(grad) != fmt:
            raise TypeError("csoftmax: logits and gradient must have the same 16-bit dtype")
        gv = _u16v(grad)
        gs = _st3(gv.strides, 2)
        gp = &gv[0, 0, 0]
    with nogil:
        if fmt == 0:
            st = csm_xent_labels_f16(sh, &zv[0, 0, 0], zs, &label[0, 0], lbs, &opt,
                                     &loss[0, 0], ls, gp, gs, &err)
        else:
            st = csm_xent_labels_bf16(sh, &zv[0, 0, 0], zs, &label[0, 0], lbs, &opt,
                                      &loss[0, 0], ls, gp, gs, &err)
    if st == CSM_ERR_LABEL:
        raise LabelError("bad label", err.row, err.value)
    _check(st)


def xent_soft_rows_h(z,                       # IN  (n0, n1, c) float16 / bfloat16 logits
                     t,                       # IN  (n0, n1, c) same dtype, target distribution
                     double[:, :] loss,       # OUT (n0, n1)
                     grad,                    # OUT (n0, n1, c) same dtype, or None; may be z, not t
                     double grad_scale,
                     row_scale=None,
                     row_gscale=None,
                     const float[::1] class_weight=None,
                     double wsum=0.0,
                     double label_smoothing=0.0,
                     double z_loss=0.0,
                     double softcap=0.0,
                     lse_out=None):
    """xent_soft_rows for 16-bit logits and targets (class weights in float32)."""
    cdef int fmt = _hfmt(z)
    if _hfmt(t) != fmt:
        raise TypeError("csoftmax: logits and targets must have the same 16-bit dtype")
    cdef const uint16_t[:, :, :] zv = _u16v(z)
    cdef const uint16_t[:, :, :] tv = _u16v(t)
    cdef uint16_t[:, :, :] gv
    cdef csm_shape sh = _shape3(zv.shape)
    cdef csm_strides zs = _st3(zv.strides, 2), ts = _st3(tv.strides, 2), gs
    cdef csm_strides ls = _st2(loss.strides, sizeof(double))
    cdef csm_xent_opts opt
    cdef uint16_t *gp = NULL
    cdef int st
    _fill_opts(&opt, grad_scale, row_scale, row_gscale,
               NULL if class_weight is None else &class_weight[0],
               0 if class_weight is None else class_weight.shape[0], wsum, label_smoothing,
               z_loss, softcap, lse_out, sh.n0 * sh.n1, sh.c)
    gs.s0 = gs.s1 = gs.sc = 0
    if grad is not None:
        if _hfmt(grad) != fmt:
            raise TypeError("csoftmax: logits and gradient must have the same 16-bit dtype")
        gv = _u16v(grad)
        gs = _st3(gv.strides, 2)
        gp = &gv[0, 0, 0]
    with nogil:
        if fmt == 0:
            st = csm_xent_soft_f16(sh, &zv[0, 0, 0], zs, &tv[0, 0, 0], ts, &opt, &loss[0, 0], ls,
                                   gp, gs)
        else:
            st = csm_xent_soft_bf16(sh, &zv[0, 0, 0], zs, &tv[0, 0, 0], ts, &opt, &loss[0, 0], ls,
                                    gp, gs)
    _check(st)


def half_widen(x, float[::1] out):
    """out = x (a 1-D contiguous float16 / bfloat16 array) as float32, exactly, with
    the active ISA's conversion."""
    cdef int fmt = _hfmt(x)
    cdef const uint16_t[::1] xv = _u16v(x)
    cdef Py_ssize_t n = xv.shape[0]
    if out.shape[0] != n:
        raise ValueError("out must have the length of x")
    if n == 0:
        return
    with nogil:
        if fmt == 0:
            csm_widen_f16(n, &xv[0], &out[0])
        else:
            csm_widen_bf16(n, &xv[0], &out[0])


def half_narrow(const float[::1] x, out):
    """out (a 1-D contiguous float16 / bfloat16 array) = x rounded to nearest even,
    with the active ISA's conversion."""
    cdef int fmt = _hfmt(out)
    cdef uint16_t[::1] ov = _u16v(out)
    cdef Py_ssize_t n = x.shape[0]
    if ov.shape[0] != n:
        raise ValueError("out must have the length of x")
    if n == 0:
        return
    with nogil:
        if fmt == 0:
            csm_narrow_f16(n, &x[0], &ov[0])
        else:
            csm_narrow_bf16(n, &x[0], &ov[0])


def exp_kernel(const real[::1] x, real[::1] out):
    """out = exp(x) with the kernels' vector exp (for the accuracy sweep)."""
    cdef Py_ssize_t n = x.shape[0]
    if n == 0:
        return
    if out.shape[0] != n:
        raise ValueError("out must have the length of x")
    with nogil:
        if real is float:
            csm_exp_f32(n, &x[0], &out[0])
        else:
            csm_exp_f64(n, &x[0], &out[0])


def softcap_kernel(const real[::1] x, double cap, real[::1] out):
    """out = cap * tanh(x / cap) with the kernels' soft-cap (for the accuracy sweep)."""
    cdef Py_ssize_t n = x.shape[0]
    if not cap > 0.0:
        raise ValueError("cap must be > 0")
    if out.shape[0] != n:
        raise ValueError("out must have the length of x")
    if n == 0:
        return
    with nogil:
        if real is float:
            csm_softcap_f32(n, &x[0], cap, &out[0])
        else:
            csm_softcap_f64(n, &x[0], cap, &out[0])


_ISA = {"scalar": CSM_ISA_SCALAR, "avx2": CSM_ISA_AVX2, "avx512": CSM_ISA_AVX512}


def isa_active():
    """Name of the kernel path in use: 'scalar', 'avx2' or 'avx512'."""
    return csm_isa_name(csm_isa_active()).decode()


def isa_available():
    """Names of the paths this CPU and build can run, lowest first."""
    cdef int best = <int>csm_isa_best()
    return [name for name, v in _ISA.items() if <int>v <= best]


def isa_set(str name):
    """Switch the kernel path (only to one in isa_available())."""
    if name not in _ISA:
        raise ValueError(f"unknown ISA {name!r}; choose from {list(_ISA)}")
    if csm_isa_set(_ISA[name]) != CSM_OK:
        raise ValueError(f"ISA {name!r} is not available here (available: {isa_available()})")


def max_threads():
    """Threads the kernels may use (OpenMP's limit; 1 in a build without OpenMP)."""
    return csm_max_threads()


def set_num_threads(int n):
    """Limit the kernels' OpenMP threads (for the calling thread); n >= 1."""
    if n < 1:
        raise ValueError("the number of threads must be >= 1")
    csm_set_num_threads(n)


def isa_emulated():
    """True if the AVX-512 kernels run on an emulated CPU (test seam builds only)."""
    return bool(csm_seam_active())


def openmp_enabled():
    """True if the extension was built with OpenMP."""
    return bool(CSM_OPENMP)


cdef extern from "csm_seam.h" nogil:
    int csm_seam_wanted()
    int csm_seam_active()
    enum:
        CSM_ERR_SEAM


# Test seam (src_c/dispatch.c, Design 3): only in a build made with
# CSOFTMAX_TEST_SEAM=1, and only when CSOFTMAX_EMU_AVX512=1 is set, the runner
# that executes the AVX-512 kernels on an emulated CPU is installed here, at
# import, so that every process of a test run (subprocesses too) gets it.
# tools/avx512_emu.sh puts tools/emu512 (the module csm_emu512) on PYTHONPATH.
if csm_seam_wanted():
    import csm_emu512
    csm_emu512.install(__file__)


cdef extern from *:
    """
    #if defined(_OPENMP)
    #define CSM_OPENMP 1
    #else
    #define CSM_OPENMP 0
    #endif
    """
    int CSM_OPENMP


# --------------------------------------------------------------------------- fast paths
#
# The common small-problem calls -- logsumexp over the last axis of a 2-D
# array, cross-entropy of 2-D logits with 1-D int64 labels and default
# options -- skip the general front end, whose NumPy bookkeeping costs
# microseconds.  The whole test of "is this such a call?" is done here, on
# exact types (an ndarray, not a subclass; a Python int/float option), and the
# arrays are read through the raw buffer protocol (a typed memoryview costs
# more to set up than the kernel takes on a (4, 10) problem).  Each function
# returns None when the call is not exactly such a case (dtype, byte order,
# alignment, strides, overlap, a bad label, ...); the front end then takes
# the general path, which also produces every error message.  Results are
# bit-identical to the general path: the same kernel call, the same sum
# (sum_f64).

import numpy as _np

cdef object _ndarray = _np.ndarray
cdef object _F32 = _np.dtype(_np.float32)
cdef object _F64 = _np.dtype(_np.float64)
cdef object _I64 = _np.dtype(_np.int64)
cdef object _f32 = _np.float32
cdef object _f64 = _np.float64
cdef object _empty = _np.empty
cdef double _FLT_MAX = 3.4028234663852886e38
cdef enum:
    # below this many elements the GIL is kept: releasing it costs more than the work
    _NOGIL_MIN = 16384


cdef double _psum(const double *p, Py_ssize_t n) noexcept nogil:
    """Pairwise sum (blocks of 32 summed in order): fixed order, O(eps log n) error."""
    cdef double s = 0.0
    cdef Py_ssize_t i, h
    if n <= 32:
        for i in range(n):
            s += p[i]
        return s
    h = (n // 2 + 31) // 32 * 32
    return _psum(p, h) + _psum(p + h, n - h)


def sum_f64(const double[::1] a):
    """Sum of a float64 vector in the fixed pairwise order the losses use."""
    if a.shape[0] == 0:
        return 0.0
    return _psum(&a[0], a.shape[0])


cdef inline bint _rows_ok(Py_buffer *v, int ndim, Py_ssize_t item) noexcept nogil:
    """ndim-D, non-empty, aligned, strides whole elements."""
    cdef int k
    if v.ndim != ndim or (<size_t>v.buf) % item:
        return False
    for k in range(ndim):
        if v.shape[k] == 0 or v.strides[k] % item:
            return False
    return True


cdef inline Py_ssize_t _float_item(object dt):
    """Item size of a native float32 / float64 dtype; 0 for anything else."""
    if dt is _F32:
        return 4
    if dt is _F64:
        return 8
    return 0


cdef inline csm_strides _rows_strides(Py_buffer *v, Py_ssize_t item) noexcept nogil:
    """Element strides of a checked 2-D buffer seen as (n, 1, c) rows."""
    cdef csm_strides s
    s.s0 = v.strides[0] // item
    s.s1 = 0
    s.sc = v.strides[1] // item
    return s


cdef inline void _span(Py_buffer *v, size_t *lo, size_t *hi) noexcept nogil:
    """[lo, hi) byte range touched by a non-empty buffer."""
    cdef size_t a = <size_t>v.buf, b = <size_t>v.buf
    cdef int k
    for k in range(v.ndim):
        if v.strides[k] < 0:
            a += (v.shape[k] - 1) * v.strides[k]
        else:
            b += (v.shape[k] - 1) * v.strides[k]
    lo[0] = a
    hi[0] = b + v.itemsize


cdef inline bint _overlap(Py_buffer *a, Py_buffer *b) noexcept nogil:
    cdef size_t alo, ahi, blo, bhi
    _span(a, &alo, &ahi)
    _span(b, &blo, &bhi)
    return alo < bhi and blo < ahi


def logsumexp_fast(a):
    """logsumexp(a, axis=-1) for a 2-D float32/float64 ndarray, or None."""
    cdef Py_buffer v
    cdef Py_ssize_t item, n, c
    cdef csm_shape sh
    cdef csm_strides xs, ls
    cdef int st
    cdef void *r
    dt = a.dtype
    item = _float_item(dt)
    if item == 0:
        return None
    PyObject_GetBuffer(a, &v, PyBUF_STRIDES)
    try:
        if not _rows_ok(&v, 2, item):
            return None
        n = v.shape[0]
        c = v.shape[1]
        res = _empty(n, dt)
        r = _data(res)
        sh.n0 = n; sh.n1 = 1; sh.c = c
        xs = _rows_strides(&v, item)
        ls.s0 = 1; ls.s1 = 0; ls.sc = 0
        if n * c >= _NOGIL_MIN:
            with nogil:
                st = _lse_call(item, sh, v.buf, xs, r, ls)
        else:
            st = _lse_call(item, sh, v.buf, xs, r, ls)
    finally:
        PyBuffer_Release(&v)
    _check(st)
    return res


cdef inline int _lse_call(Py_ssize_t item, csm_shape sh, const void *x, csm_strides xs,
                          void *r, csm_strides ls) noexcept nogil:
    if item == 4:
        return csm_logsumexp_f32(sh, <const float *>x, xs, <float *>r, ls)
    return csm_logsumexp_f64(sh, <const double *>x, xs, <double *>r, ls)


cdef void *_data(object arr) except NULL:
    """Data pointer of a fresh, writable, C-contiguous array."""
    cdef Py_buffer v
    PyObject_GetBuffer(arr, &v, PyBUF_WRITABLE)
    cdef void *p = v.buf
    PyBuffer_Release(&v)      # arr stays alive (the caller holds it)
    return p


cdef inline bint _pynum_zero(object v):
    return (type(v) is float or type(v) is int) and v == 0


def xent_try(logits, target, axis, weight, sample_weight, ignore_index, reduction,
             label_smoothing, z_loss, softcap, return_lse, grad_scale, out, inplace,
             bint want_grad):
    """cross_entropy[_with_grad] for 2-D logits (classes last), 1-D int64
    labels, default options, reduction "mean"/"sum", grad_scale a finite
    Python number: the loss (and gradient) exactly as the general path gives
    them, or None when the call is not such a case."""
    cdef Py_buffer zb, lb, gb
    cdef bint have_g = False, mean
    cdef Py_ssize_t item, n, c, i
    cdef double buf[64]
    cdef double *loss = buf
    cdef double den = 0.0, total, gscale, v
    cdef const int64_t *lab
    cdef Py_ssize_t lst
    cdef csm_shape sh
    cdef csm_strides zs, lbs, ls, gs
    cdef csm_xent_opts opt
    cdef csm_error err
    cdef void *gp = NULL
    cdef int st
    # ---- the exact case, on types only
    if not (type(logits) is _ndarray and type(target) is _ndarray
            and type(axis) is int and (axis == -1 or axis == 1)
            and weight is None and sample_weight is None
            and type(ignore_index) is int and ignore_index == -100
            and type(reduction) is str and (reduction == "mean" or reduction == "sum")
            and _pynum_zero(label_smoothing) and _pynum_zero(z_loss) and softcap is None
            and return_lse is False and inplace is False
            and (out is None or (want_grad and type(out) is _ndarray))):
        return None
    if type(grad_scale) is float:
        gscale = grad_scale
    elif type(grad_scale) is int and -2**62 < grad_scale < 2**62:
        gscale = grad_scale
    else:
        return None
    if not (gscale - gscale == 0.0):          # inf or NaN: the general path raises
        return None
    dt = logits.dtype
    item = _float_item(dt)
    if item == 0:
        return None
    if target.dtype is not _I64 or (out is not None and out.dtype is not dt):
        return None
    mean = reduction == "mean"
    PyObject_GetBuffer(logits, &zb, PyBUF_STRIDES)
    try:
        PyObject_GetBuffer(target, &lb, PyBUF_STRIDES)
        try:
            if not (_rows_ok(&zb, 2, item) and _rows_ok(&lb, 1, 8)
                    and lb.shape[0] == zb.shape[0]):
                return None
            n = zb.shape[0]
            c = zb.shape[1]
            lab = <const int64_t *>lb.buf
            lst = lb.strides[0] // 8
            for i in range(n):
                if lab[i * lst] != -100:
                    den += 1.0
            g = None
            if want_grad:
                if out is None:
                    g = _empty((n, c), dt)
                else:
                    g = out
                try:
                    PyObject_GetBuffer(g, &gb, PyBUF_STRIDES | PyBUF_WRITABLE)
                except (BufferError, ValueError):
                    return None               # read-only out=: the general path raises
                have_g = True
                if not (_rows_ok(&gb, 2, item) and gb.shape[0] == n and gb.shape[1] == c):
                    return None
                if out is not None:
                    if _overlap(&lb, &gb):
                        return None           # labels inside the gradient's memory
                    if _overlap(&zb, &gb) and not (
                            gb.buf == zb.buf and gb.strides[0] == zb.strides[0]
                            and gb.strides[1] == zb.strides[1]):
                        return None           # partial overlap: the general path copies
                gp = gb.buf
                gs = _rows_strides(&gb, item)
            else:
                gs.s0 = gs.s1 = gs.sc = 0
            _fill_opts(&opt, gscale * (1.0 / den if den != 0.0 else _np.nan) if mean else gscale,
                       None, None, NULL, 0, <double>c, 0.0, 0.0, 0.0, None, n, c)
            opt.ignore_index = -100
            opt.use_ignore = 1
            sh.n0 = n; sh.n1 = 1; sh.c = c
            zs = _rows_strides(&zb, item)
            lbs.s0 = lst; lbs.s1 = 0; lbs.sc = 0
            ls.s0 = 1; ls.s1 = 0; ls.sc = 0
            if n > 64:
                loss = <double *>PyMem_Malloc(n * sizeof(double))
                if loss == NULL:
                    raise MemoryError()
            if n * c >= _NOGIL_MIN:
                with nogil:
                    st = _xent_call(item, sh, zb.buf, zs, lab, lbs, &opt, loss, ls, gp, gs, &err)
            else:
                st = _xent_call(item, sh, zb.buf, zs, lab, lbs, &opt, loss, ls, gp, gs, &err)
            if st == CSM_ERR_LABEL:
                return None                   # nothing written; the general path raises
            _check(st)
            total = _psum(loss, n)
        finally:
            if loss != buf:
                PyMem_Free(loss)
            if have_g:
                PyBuffer_Release(&gb)
            PyBuffer_Release(&lb)
    finally:
        PyBuffer_Release(&zb)
    v = (total / den if den != 0.0 else _np.nan) if mean else total
    if item == 8:
        res = _f64(v)
    elif -_FLT_MAX <= v <= _FLT_MAX or v != v or v == v * 2.0:   # no overflow in the cast
        res = _f32(v)
    else:
        with _np.errstate(over="ignore"):
            res = _f32(v)
    return (res, g) if want_grad else res


cdef inline int _xent_call(Py_ssize_t item, csm_shape sh, const void *z, csm_strides zs,
                           const int64_t *lab, csm_strides lbs, const csm_xent_opts *opt,
                           double *loss, csm_strides ls, void *g, csm_strides gs,
                           csm_error *err) noexcept nogil:
    if item == 4:
        return csm_xent_labels_f32(sh, <const float *>z, zs, lab, lbs, opt, loss, ls,
                                   <float *>g, gs, err)
    return csm_xent_labels_f64(sh, <const double *>z, zs, lab, lbs, opt, loss, ls,
                               <double *>g, gs, err)
