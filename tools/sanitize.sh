#!/usr/bin/env bash
# Build csoftmax with AddressSanitizer + UndefinedBehaviorSanitizer into a
# fresh virtual environment, run the test suite (tests/) under the sanitizers
# once per kernel path this CPU has (CSOFTMAX_ISA=scalar|avx2|avx512), then run
# the atheris fuzz harness (tools/fuzz_api.py) under them for a bounded time.
#
# Usage: bash tools/sanitize.sh [fuzz_seconds]        (default 60; 0 skips fuzzing)
#
# The venv gets pyproject.toml's build requirements and `test` extra, plus the
# optional peers .ci/run installs (torch==2.13.0, mypy), so no test skips for
# lack of a dependency.  libasan and libstdc++ are preloaded into Python.
#
# Exits non-zero if the build, any test, or the fuzzer fails, or if any
# sanitizer report appears in any log.  Logs are kept in the work directory
# (printed at the end) when something failed or SANITIZE_KEEP=1.
#
# Environment:
#   PYTHON                interpreter for the venv (default python3; >= 3.11: the
#                         requirements are read from pyproject.toml with tomllib)
#   SANITIZE_PYTEST_ARGS  pytest selection per ISA (default:
#                         -m "not slow" -k "not past_2_31": the tests of
#                         test_reliability.py that read 2**31+ elements take
#                         seconds natively but ~6 minutes under ASan)
#   SANITIZE_SLOW=1       also run the zero-stride 2**31-element logsumexp
#                         tests once (best ISA path)
#   SANITIZE_JOBS         parallel compiler jobs and parallel ISA test runs
#                         (default: number of CPUs)
#   SANITIZE_ISAS         the ISA paths to instrument and test (e.g. "avx2"; default:
#                         every path this CPU has).  The kernel files of the other
#                         paths are compiled without the sanitizers.  .ci/run's CI
#                         setting passes the best path alone (one instrumented
#                         kernel family instead of two halves the build, the
#                         longest step of CI); its full setting, and this script
#                         run by hand, test every path.  When fewer paths than
#                         SANITIZE_JOBS are tested, each path's tests are split
#                         over SANITIZE_JOBS / paths processes (CSOFTMAX_TEST_SHARD,
#                         tests/conftest.py), so both cores stay busy.
#   SANITIZE_UBSAN_SKIP   UBSan checks to leave out (-fno-sanitize=...), see SAN_CFLAGS
#   SANITIZE_ALL_ISAS=1   instrument the kernels of ISA paths this CPU cannot
#                         run too (by default such a file -- e.g. the AVX-512
#                         kernels on an AVX2 machine -- is compiled without the
#                         sanitizers: it is never executed here, and each
#                         instrumented kernel file costs GCC minutes)
#   SANITIZE_KEEP=1       keep the work directory
#
# Runtime on the 2-core machine: GCC needs ~4-5x its -O3 time per instrumented
# kernel file at -O1 (kernels_<isa>.c ~10 min, partial_<isa>.c ~5, losses_<isa>.c
# ~3-4; the files compile in parallel): one instrumented path (SANITIZE_ISAS=avx2)
# builds in ~10 min, every path in ~25-30 min; the suite takes ~2-3x its native
# time per path, and fuzz_seconds.

# Flags.  setup.py passes -O3 -std=c11 ... itself and then appends
# CSOFTMAX_EXTRA_CFLAGS / CSOFTMAX_EXTRA_LDFLAGS, so the sanitizer flags go
# there (a later -O1 wins over -O3; CFLAGS would come *before* -O3).  The
# script checks every compiler command line in the build log.  -fno-wrapv
# undoes Python's -fwrapv so that signed overflow is reported by UBSan.
# pytest runs with --capture=sys so reports written by the C runtime to file
# descriptor 2 reach the log even when the process dies.
#
# The whole script is one compound command, parsed before it runs: editing
# the file during a run cannot change the run.
{
set -uo pipefail

FUZZ_SECONDS=${1:-60}
case "$FUZZ_SECONDS" in
    ''|*[!0-9]*) echo "usage: bash tools/sanitize.sh [fuzz_seconds]  (a whole number)" >&2; exit 2 ;;
esac
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
JOBS=${SANITIZE_JOBS:-$(nproc 2>/dev/null || echo 2)}
SAN_CFLAGS="-O1 -g -fno-omit-frame-pointer -fno-wrapv -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined"
# SANITIZE_UBSAN_SKIP="null,object-size" (.ci/run's CI setting): UBSan checks left
# out because ASan covers them (a null dereference faults and ASan reports it; the
# object-size check is a coarser form of ASan's bounds check); they make GCC ~25%
# slower on the instrumented kernel files
[ -n "${SANITIZE_UBSAN_SKIP:-}" ] && SAN_CFLAGS="$SAN_CFLAGS -fno-sanitize=$SANITIZE_UBSAN_SKIP"
SAN_LDFLAGS="-fsanitize=address,undefined"
if [ -n "${SANITIZE_PYTEST_ARGS+x}" ]; then
    # shellcheck disable=SC2206
    PYTEST_SEL=($SANITIZE_PYTEST_ARGS)
else
    PYTEST_SEL=(-m "not slow" -k "not past_2_31")
fi

WORK=$(mktemp -d /tmp/csoftmax-sanitize.XXXXXX)
FAILED=()
T_START=$(date +%s)
SUMMARY=()

say() { printf '\n== [%4d s] %s\n' "$(( $(date +%s) - T_START ))" "$*"; }
fail() { FAILED+=("$1"); printf '!! FAILED: %s\n' "$1"; }
finish() {
    local rc=0
    say "summary ($(( $(date +%s) - T_START )) s total)"
    for line in "${SUMMARY[@]}"; do printf '  %s\n' "$line"; done
    if [ ${#FAILED[@]} -gt 0 ]; then
        printf '  FAILED: %s\n' "${FAILED[@]}"
        printf '  logs kept in %s\n' "$WORK"
        rc=1
    elif [ "${SANITIZE_KEEP:-0}" = 1 ]; then
        printf '  all clean; work directory kept: %s\n' "$WORK"
    else
        printf '  all clean\n'
        cd / && rm -rf "$WORK"
    fi
    exit $rc
}

# A sanitizer report in a log is a failure even if the exit code was 0.
SAN_PATTERN='ERROR: AddressSanitizer|AddressSanitizer:DEADLYSIGNAL|UndefinedBehaviorSanitizer:DEADLYSIGNAL|runtime error:|SUMMARY: UndefinedBehaviorSanitizer|ERROR: LeakSanitizer|SUMMARY: AddressSanitizer'
check_log() {   # name logfile
    if grep -Eq "$SAN_PATTERN" "$2"; then
        fail "$1: sanitizer report (see $2)"
        grep -E -m 5 -A 14 "$SAN_PATTERN" "$2" | head -60
        return 1
    fi
    return 0
}

# ---------------------------------------------------------------- 1. source snapshot
say "source snapshot -> $WORK/src"
mkdir -p "$WORK/src" "$WORK/run" "$WORK/fuzz"
# everything but build products, so nothing stale (build/, *.so, the generated
# _core.c) can be reused by the sanitizer build
tar -C "$REPO" --exclude=./.git --exclude=./build --exclude=./dist --exclude='./*.egg-info' \
    --exclude=./.hypothesis --exclude='*.so' --exclude='__pycache__' \
    --exclude=./csoftmax/_core.c -cf - . | tar -C "$WORK/src" -xf - \
    || { fail "copy sources"; finish; }

# ---------------------------------------------------------------- 2. venv + build
say "venv + sanitizer build ($JOBS compiler jobs)"
T0=$(date +%s)
VENV="$WORK/venv"
"$PY" -m venv "$VENV" || { fail "venv"; finish; }
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip >"$WORK/pip.log" 2>&1
# the build requirements ([build-system] requires) and the test extra
# ([project.optional-dependencies] test) come from pyproject.toml, so this
# venv tests with what the README's test command installs
read_reqs() {   # build | test
    "$VPY" - "$WORK/src/pyproject.toml" "$1" <<'PYEOF'
import sys
import tomllib
doc = tomllib.loads(open(sys.argv[1], encoding="utf-8").read())
if sys.argv[2] == "build":
    reqs = doc["build-system"]["requires"]
else:
    reqs = doc["project"]["optional-dependencies"]["test"]
print("\n".join(reqs))
PYEOF
}
mapfile -t BUILD_REQS < <(read_reqs build)
mapfile -t TEST_REQS < <(read_reqs test)
[ ${#BUILD_REQS[@]} -gt 0 ] && [ ${#TEST_REQS[@]} -gt 0 ] \
    || { fail "could not read build / test requirements from pyproject.toml"; finish; }
"$VPY" -m pip install -q -U numpy threadpoolctl atheris wheel "${TEST_REQS[@]}" \
    "${BUILD_REQS[@]}" >>"$WORK/pip.log" 2>&1 \
    || { tail -20 "$WORK/pip.log"; fail "pip install test and build deps (${TEST_REQS[*]} ${BUILD_REQS[*]})"; finish; }
# the optional test peers, as .ci/run installs them (torch pinned: a local CPU
# build); without them their tests would skip here
if ! "$VPY" -m pip install -q "torch==2.13.0" mypy >>"$WORK/pip.log" 2>&1; then
    SUMMARY+=("NOTE: torch==2.13.0 / mypy not installable: their tests skip here")
fi

# The AVX-512 kernel files (one per family) are compiled without the
# sanitizer flags when this CPU cannot run them (never executed here, and
# instrumenting them costs GCC minutes): setup.py's CSOFTMAX_PLAIN_SOURCES,
# in sorted order (compared below).  setup.py compiles the C files in
# parallel (CSOFTMAX_BUILD_JOBS), the kernels first.
# With SANITIZE_ISAS, the files of the paths not named there are plain too.
WANT=" ${SANITIZE_ISAS:-scalar avx2 avx512} "
plain_isa() {   # isa: 0 if its kernel files are compiled without the sanitizers
    case "$WANT" in *" $1 "*) ;; *) return 0 ;; esac
    [ "$1" = avx512 ] && [ "${SANITIZE_ALL_ISAS:-0}" != 1 ] || return 1
    for f in avx512f avx512dq avx512bw avx512vl; do
        grep -qw "$f" /proc/cpuinfo 2>/dev/null || return 0
    done
    return 1
}
PLAIN=""
for isa in scalar avx2 avx512; do
    plain_isa "$isa" && PLAIN="$PLAIN kernels_$isa.c losses_$isa.c partial_$isa.c half_$isa.c"
done
PLAIN=$(printf '%s\n' $PLAIN | sort | tr '\n' ' ' | sed 's/ *$//')
(cd "$WORK/src" && CSOFTMAX_BUILD_JOBS="$JOBS" CSOFTMAX_PLAIN_SOURCES="$PLAIN" \
    CSOFTMAX_EXTRA_CFLAGS="$SAN_CFLAGS" CSOFTMAX_EXTRA_LDFLAGS="$SAN_LDFLAGS" \
    "$VPY" -m pip install -v --no-deps --no-build-isolation --no-cache-dir .) \
    >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "sanitizer build"; finish; }

# every C translation unit of the extension must have been compiled with the
# sanitizers, with the last -O being -O1 (not setup.py's -O3), except the
# file setup.py reports as compiled without them (CSOFTMAX_PLAIN_SOURCES)
n_cc=0
UNINSTRUMENTED=$(grep -oE 'csoftmax: [^ ]+ compiled without CSOFTMAX_EXTRA_CFLAGS' \
                 "$WORK/build.log" | awk '{print $2}' | xargs -r -n1 basename | sort -u \
                 | tr '\n' ' ')
[ "$(echo $UNINSTRUMENTED)" = "$PLAIN" ] \
    || fail "uninstrumented files: asked for '${PLAIN}', setup.py reports '${UNINSTRUMENTED}'"
while IFS= read -r line; do
    n_cc=$((n_cc + 1))
    src=$(grep -oE ' -c [^ ]+' <<<"$line" | awk '{print $2}' | xargs basename)
    case " $UNINSTRUMENTED " in
        *" $src "*) continue ;;
    esac
    last_o=$(grep -oE '(^| )-O[0-9s]' <<<"$line" | tail -1 | tr -d ' ')
    [ "$last_o" = "-O1" ] || fail "compile flags of $src: last optimisation flag ${last_o:-none}"
    grep -q -- '-fsanitize=address,undefined' <<<"$line" || fail "compile flags of $src: no -fsanitize"
done < <(grep -E ' -c [^ ]*(src_c/[a-z0-9_]+\.c|_core\.c) ' "$WORK/build.log")
[ "$n_cc" -ge 5 ] || fail "expected >= 5 compiler command lines in the build log, found $n_cc"
grep -E -- '-shared .*-fsanitize=address,undefined' "$WORK/build.log" >/dev/null \
    || fail "link line without -fsanitize"
SO=$(ls "$VENV"/lib/python3*/site-packages/csoftmax/_core*.so 2>/dev/null | head -1)
if [ -z "$SO" ] || ! ldd "$SO" | grep -q libasan; then
    fail "installed extension is not linked against libasan ($SO)"
fi
[ ${#FAILED[@]} -eq 0 ] || finish
SUMMARY+=("build: $n_cc C files at -O1, ASan+UBSan on all but: ${UNINSTRUMENTED:-none} ($(( $(date +%s) - T0 )) s incl. venv; build requires ${BUILD_REQS[*]})")

LIBASAN=$(gcc -print-file-name=libasan.so)
[ -e "$LIBASAN" ] || { fail "libasan.so not found (gcc -print-file-name=libasan.so -> $LIBASAN)"; finish; }
# libstdc++ is preloaded too: ASan looks up the real __cxa_throw when it starts,
# and without libstdc++ loaded by then, the first C++ exception thrown by an
# extension that loads it later (PyTorch, matplotlib's ft2font) stops the
# process with "CHECK failed" inside ASan's interceptor
LIBSTDCXX=$(gcc -print-file-name=libstdc++.so)
[ -e "$LIBSTDCXX" ] || { fail "libstdc++.so not found ($LIBSTDCXX)"; finish; }
san_env=(
    LD_PRELOAD="$LIBASAN $LIBSTDCXX"
    ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:exitcode=86:allocator_may_return_null=1"
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87"
    PYTHONMALLOC=malloc
    PYTHONFAULTHANDLER=1
    # tests/test_dask.py: the threaded scheduler only (worker processes would each
    # load the instrumented extension; the kernels they run are the same)
    CSOFTMAX_TEST_CLUSTER=0
)

cd "$WORK/run" || finish
AVAIL=$(env "${san_env[@]}" "$VPY" -c \
    "import csoftmax; print(' '.join(csoftmax.show_config()['available']))" 2>"$WORK/isa.log")
if [ -z "$AVAIL" ]; then
    cat "$WORK/isa.log"
    fail "import csoftmax under ASan"
    finish
fi
ISAS=""
for isa in $AVAIL; do
    case "$WANT" in *" $isa "*) ISAS="$ISAS $isa" ;; esac
done
ISAS=${ISAS# }
[ -n "$ISAS" ] || { fail "SANITIZE_ISAS='${SANITIZE_ISAS:-}' names none of this CPU's paths ($AVAIL)"; finish; }
n_isa=$(wc -w <<<"$ISAS")
SHARDS=$(( JOBS / n_isa )); [ "$SHARDS" -ge 1 ] || SHARDS=1
SUMMARY+=("ISA paths tested: $ISAS (available: $AVAIL; $SHARDS process(es) per path)")

# ---------------------------------------------------------------- 3. tests per ISA
say "tests under ASan+UBSan for CSOFTMAX_ISA in: $ISAS (${PYTEST_SEL[*]}; up to $JOBS at a time)"
RUNS=()
for isa in $ISAS; do
    for ((k = 0; k < SHARDS; k++)); do RUNS+=("$isa:$k"); done
done
run_suite() {   # isa:shard
    local isa=${1%%:*} k=${1##*:} t0 rc shard=()
    [ "$SHARDS" -gt 1 ] && shard=(CSOFTMAX_TEST_SHARD="$k/$SHARDS")
    t0=$(date +%s)
    env "${san_env[@]}" "${shard[@]}" CSOFTMAX_ISA="$isa" "$VPY" -m pytest -q -p no:cacheprovider --durations=10 \
        --import-mode=importlib --capture=sys "${PYTEST_SEL[@]}" "$WORK/src/tests" \
        >"$WORK/pytest-$isa-$k.log" 2>&1
    rc=$?
    echo "$rc $(( $(date +%s) - t0 ))" >"$WORK/pytest-$isa-$k.rc"
}
running=0
for run in "${RUNS[@]}"; do
    run_suite "$run" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n 2>/dev/null || wait
        running=$((running - 1))
    fi
done
wait
for run in "${RUNS[@]}"; do
    isa=${run%%:*} k=${run##*:}
    name="$isa"; [ "$SHARDS" -gt 1 ] && name="$isa shard $k/$SHARDS"
    log="$WORK/pytest-$isa-$k.log"
    read -r rc secs <"$WORK/pytest-$isa-$k.rc" || { rc=99; secs=0; }
    result=$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')
    printf -- '-- CSOFTMAX_ISA=%s: %s (exit %s, %s s)\n' "$name" "${result:-no summary line}" "$rc" "$secs"
    SUMMARY+=("pytest $name: ${result:-no summary line} (exit $rc, $secs s)")
    check_log "pytest $name" "$log"
    if [ "$rc" -ne 0 ]; then
        grep -E '^(FAILED|ERROR) ' "$log" | head -40
        [ -n "$result" ] || tail -30 "$log"
        fail "pytest $name (exit $rc)"
    fi
done

# ---------------------------------------------------------------- 4. slow zero-stride tests (opt-in)
if [ "${SANITIZE_SLOW:-0}" = 1 ]; then
    best=${ISAS##* }
    say "slow 2**31-element broadcast tests, CSOFTMAX_ISA=$best"
    T0=$(date +%s)
    log="$WORK/pytest-slow.log"
    env "${san_env[@]}" CSOFTMAX_ISA="$best" "$VPY" -m pytest -q -p no:cacheprovider \
        --import-mode=importlib --capture=sys -k broadcast_past_2_31 \
        "$WORK/src/tests/test_reliability.py" >"$log" 2>&1
    rc=$?
    tail -2 "$log"
    result=$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')
    SUMMARY+=("slow broadcast tests ($best): ${result:-no summary line} (exit $rc, $(( $(date +%s) - T0 )) s)")
    check_log "slow tests" "$log"
    [ $rc -eq 0 ] || fail "slow tests (exit $rc)"
fi

# ---------------------------------------------------------------- 5. fuzzing
if [ "$FUZZ_SECONDS" -gt 0 ]; then
    say "fuzz_api.py under ASan+UBSan for $FUZZ_SECONDS s (ISA path switched per input)"
    T0=$(date +%s)
    log="$WORK/fuzz.log"
    env "${san_env[@]}" "$VPY" "$WORK/src/tools/fuzz_api.py" -max_total_time="$FUZZ_SECONDS" \
        -rss_limit_mb=6144 -artifact_prefix="$WORK/fuzz/" >"$log" 2>&1
    rc=$?
    grep -E '^fuzz_api:' "$log" || tail -40 "$log"
    result=$(grep -E '^fuzz_api:' "$log" | sed 's/^fuzz_api: //')
    SUMMARY+=("fuzz: ${result:-no summary} (exit $rc, $(( $(date +%s) - T0 )) s)")
    check_log "fuzz" "$log"
    if [ $rc -ne 0 ]; then
        grep -E -A 25 'Uncaught Python exception|ERROR: libFuzzer' "$log" | head -60
        fail "fuzz (exit $rc; crashing inputs in $WORK/fuzz/)"
    fi
fi

finish
}
