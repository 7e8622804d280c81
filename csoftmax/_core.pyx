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
from libc.stdint cimport int64_t
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
                    object row_gscale, object class_weight, double wsum, double eps,
                    double alpha, double softcap, object lse_out, Py_ssize_t nrows,
                    Py_ssize_t c) except -1:
    """Options struct from Python objects; arrays must be C-contiguous and sized."""
    cdef const double[::1] rs
    cdef const double[::1] rg
    cdef double[::1] lo
    opt.grad_scale = grad_scale
    opt.ignore_index = 0
    opt.use_ignore = 0
    opt.row_scale = NULL
    opt.row_gscale = NULL
    opt.class_weight = NULL
    opt.class_weight_sum = wsum
    opt.label_smoothing = eps
    opt.z_loss = alpha
    opt.softcap = softcap
    opt.lse_out = NULL
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
    _fill_opts(&opt, grad_scale, row_scale, row_gscale, class_weight, wsum, label_smoothing,
               z_loss, softcap, lse_out, sh.n0 * sh.n1, sh.c)
    opt.ignore_index = ignore_index
    opt.use_ignore = use_ignore
    if class_weight is not None:
        if class_weight.shape[0] != sh.c:
            raise ValueError("class_weight has the wrong length")
        opt.class_weight = &class_weight[0]
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
    _fill_opts(&opt, grad_scale, row_scale, row_gscale, class_weight, wsum, label_smoothing,
               z_loss, softcap, lse_out, sh.n0 * sh.n1, sh.c)
    if class_weight is not None:
        if class_weight.shape[0] != sh.c:
            raise ValueError("class_weight has the wrong length")
        opt.class_weight = &class_weight[0]
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


def openmp_enabled():
    """True if the extension was built with OpenMP."""
    return bool(CSM_OPENMP)


cdef extern from *:
    """
    #if defined(_OPENMP)
    #define CSM_OPENMP 1
    #else
    #define CSM_OPENMP 0
    #endif
    """
    int CSM_OPENMP
