#!/usr/bin/env bash
# Cross-compile the C kernels for aarch64 and run the C-level kernel test
# (tests/c/test_kernels.c) under qemu-user.  The baseline path is the only
# one on aarch64: csm_vec.h's GNU vectors of 16 bytes, i.e. NEON q registers
# (4 float / 2 double lanes), no FMA (the kernels fuse only on x86 FMA paths).
#
# Usage: bash tools/cross_aarch64.sh           (needs Debian's gcc-aarch64-linux-gnu
#                                               and qemu-user; CI installs them)
# Environment: CROSS_CC (default aarch64-linux-gnu-gcc), QEMU (default qemu-aarch64),
#              CROSS_SYSROOT (default /usr/aarch64-linux-gnu), CROSS_WORK (build dir),
#              CROSS_THREADS (OpenMP thread counts to run the test with, default "1 2";
#              .ci/run's CI setting: "2", whose run takes the one-thread paths on the
#              small problems and the split ones on the large).
# The flags are setup.py's (-O3 -std=c11 -ffp-contract=off -fno-trapping-math
# -fopenmp), with -Werror on top: the kernels must build warning-free there.
# About 6-10 min on the 2-core machine (compile ~3-4 min: kernels_scalar.c alone ~3;
# each run of the test ~3-4 min emulated).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CC=${CROSS_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU:-qemu-aarch64}
SYSROOT=${CROSS_SYSROOT:-/usr/aarch64-linux-gnu}
WORK=${CROSS_WORK:-$(mktemp -d /tmp/csoftmax-aarch64.XXXXXX)}
mkdir -p "$WORK"
command -v "$CC" >/dev/null || { echo "$CC not found (apt-get install gcc-aarch64-linux-gnu)"; exit 2; }
command -v "$QEMU" >/dev/null || { echo "$QEMU not found (apt-get install qemu-user)"; exit 2; }
FLAGS=(-O3 -std=c11 -ffp-contract=off -fno-trapping-math -fopenmp -Wall -Wextra -Werror
       -Wno-psabi -I"$REPO/src_c")
SRCS=(dispatch kernels_scalar kernels_avx2 kernels_avx512 partial_scalar partial_avx2 partial_avx512 losses_scalar losses_avx2 losses_avx512
      half_scalar half_avx2 half_avx512 partial_merge seam_avx512)
echo "== $("$CC" --version | head -1)"
pids=()
for f in "${SRCS[@]}"; do
    "$CC" "${FLAGS[@]}" -c "$REPO/src_c/$f.c" -o "$WORK/$f.o" & pids+=($!)
done
"$CC" "${FLAGS[@]}" -c "$REPO/tests/c/test_kernels.c" -o "$WORK/test_kernels.o" & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
"$CC" -fopenmp "$WORK"/*.o -lm -o "$WORK/test_kernels"
file "$WORK/test_kernels" | sed 's/^.*: /== binary: /'
# NEON: the baseline kernels' float vectors are q registers (v*.4s / v*.2d)
n4s=$(aarch64-linux-gnu-objdump -d "$WORK/kernels_scalar.o" | grep -cE 'v[0-9]+\.4s' || true)
n2d=$(aarch64-linux-gnu-objdump -d "$WORK/kernels_scalar.o" | grep -cE 'v[0-9]+\.2d' || true)
echo "== kernels_scalar.o: $n4s instructions on v*.4s (4 x float), $n2d on v*.2d (2 x double)"
[ "$n4s" -gt 1000 ] && [ "$n2d" -gt 1000 ] || { echo "FAIL: the kernels are not NEON-vectorised"; exit 1; }
echo "== running under $QEMU ($(qemu-aarch64 --version | head -1))"
for threads in ${CROSS_THREADS:-1 2}; do
    OMP_NUM_THREADS=$threads "$QEMU" -L "$SYSROOT" "$WORK/test_kernels"
done
[ -n "${CROSS_WORK:-}" ] || rm -rf "$WORK"
