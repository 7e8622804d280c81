/*
 * kernels_impl.h -- the kernels, written once and expanded per dtype and ISA.
 *
 * Before including, define:
 *   CSM_T      float or double
 *   CSM_SFX    f32 or f64         (dtype suffix of public names)
 *   CSM_ISA    scalar, avx2, ...  (ISA suffix)
 *   CSM_IS_F32 1 for float, 0 for double
 * and, once per unit, include csm_vec.h and csm_exp.h (vector types and exp for the ISA).
 * The file is included twice per translation unit (float, double) and undefines
 * them at the end.
 *
 * Files, included in this order (each family on the shared parts before it):
 *   kernels_common.h   names, vector loads/stores, lane sums, the row grid
 *   kernels_chunks.h   the chunked online pass over one row and its helpers
 *   kernels_row1.h     the operations on one row (lse, softmax, log-softmax, xent)
 *   kernels_tiles.h    short contiguous rows, one row per lane
 *   kernels_cols.h     the column family: strided classes, contiguous positions
 *   kernels_rows.h     the public kernels: the row family, and the choice of
 *                      the column family from the strides (csm_col_pick)
 * or, in the partial family's own translation units (CSM_FAMILY_PARTIAL,
 * partial_<isa>.c, compiled in parallel with kernels_<isa>.c):
 *   kernels_partial.h  class slices: per-slice states, and slices written from
 *                      a merged state
 * or, in the neighbouring losses' translation units (CSM_FAMILY_LOSSES,
 * losses_<isa>.c), one file per loss on the shared parts above:
 *   kernels_bce.h      binary (sigmoid) cross-entropy, elementwise
 *   kernels_kl.h       distillation KL between two rows' softmaxes
 *   kernels_tokens.h   per-row log-probability of the label and entropy
 *
 * Design
 *   1. Every loop over a row works on whole vectors of the ISA (csm_vec.h:
 *      GNU vector types of CSM_VB bytes; one lane under MSVC).  A vector is
 *      loaded, computed, then stored, so exact aliasing of input and output
 *      (in-place) is safe.  The tail of a row is one padded vector whose
 *      extra lanes are masked out of every sum, so the tail runs the same
 *      polynomial as the body and element i always feeds lane i % VL of the
 *      same accumulator: for one ISA, a row-path result never depends on the
 *      row's stride or on the thread count.  (The rows-per-lane path for
 *      c <= CSM_TILE_MAXC, taken only with contiguous classes, sums in another
 *      order: its last bit may differ from the row path's.)
 *   2. The same always-inline helpers are called with a literal stride 1 for
 *      contiguous rows (plain vector loads) and with the real stride
 *      otherwise (lane-by-lane gathers); both give the same bits.
 *   3. A row is processed in chunks (csm_chunk_len).  Per chunk: max m_c
 *      (reads memory), then exp(x - m_c) summed in lanes, excluding the
 *      elements equal to m_c, which are counted instead (second read, from
 *      cache), optionally storing exp(x - m_c) into the output.  The running
 *      state (M, count of elements equal to M, sum of the others scaled to M)
 *      is combined across chunks in double.  Then lse = M + log1p(count - 1 +
 *      sum): exact for [0, -40], and a loss near zero keeps full relative
 *      accuracy.  A final pass rescales the stored exponentials per chunk.
 *   4. Rows whose max is +inf, or -inf (all -inf or NaN), take a slow path that
 *      reproduces SciPy's results; NaN with a finite max propagates naturally.
 */

#include "kernels_common.h"
#include "kernels_chunks.h"
#if defined(CSM_FAMILY_PARTIAL)
#  include "kernels_partial.h"
#elif defined(CSM_FAMILY_LOSSES)
#  include "kernels_bce.h"
#  include "kernels_kl.h"
#  include "kernels_tokens.h"
#else
#  include "kernels_row1.h"
#  include "kernels_tiles.h"
#  include "kernels_cols.h"
#  include "kernels_rows.h"
#endif

#undef T
#undef V
#undef U
#undef VL
#undef VSPLAT
#undef VMAX
#undef VMIN
#undef VSEL
#undef VMASK
#undef VANYM
#undef VEXPB_LO
#undef VIS1
#undef VEXP
#undef VEXPB
#undef VEXPBN
#undef VLOG1P01
#undef VMADD
#undef CSM_EXPB_MAXCAP
#undef VLMASK
#undef VMLOAD
#undef VMSTORE
#undef VCTANH
#undef CSM_TSPEC_CASES
#undef CSM_IS_F32
#undef D
#undef CSM_WIDEN_T
#undef CSM_NARROW_T
#undef CSM_TILES
#undef CSM_ROW_INDEX
#undef CSM_PARALLEL_FOR
#undef CSM_T
#undef CSM_SFX
