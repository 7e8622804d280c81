/*
 * csm_seam.h -- the test seam of the dispatcher (see dispatch.c, "Test seam").
 *
 * Only a build with CSM_TEST_SEAM defined (setup.py: CSOFTMAX_TEST_SEAM=1;
 * never a release wheel) has a working seam.  In every build:
 *   csm_seam_built()      1 in a seam build, else 0
 *   csm_seam_wanted()     1 if the seam is built and CSOFTMAX_EMU_AVX512 asks
 *                         for it (set and not "0"), else 0
 *   csm_seam_install(r)   seam build: registers r as the runner of the AVX-512
 *                         kernels, which then count as available (and become
 *                         active unless CSOFTMAX_ISA asks for less); returns
 *                         CSM_OK.  Other builds: CSM_ERR_ISA, nothing changes.
 *   csm_seam_active()     1 once a runner is installed
 * A runner executes fn(arg) -- a plain C function of this library that calls
 * one AVX-512 kernel with its real arguments -- on some CPU (the tests: an
 * emulated one, tools/emu512/) and returns 0, or nonzero if that crashed; the
 * kernel call then returns CSM_ERR_SEAM.
 */
#ifndef CSM_SEAM_H
#define CSM_SEAM_H

#ifdef __cplusplus
extern "C" {
#endif

#define CSM_ERR_SEAM 99

typedef int (*csm_seam_runner)(void (*fn)(void *), void *arg);

int csm_seam_built(void);
int csm_seam_wanted(void);
int csm_seam_install(csm_seam_runner runner);
int csm_seam_active(void);
/* runs fn(arg) through the installed runner (seam_avx512.c) */
int csm_seam_run(void (*fn)(void *), void *arg);

#ifdef __cplusplus
}
#endif
#endif
