#!/usr/bin/env bash
# Build csoftmax with AddressSanitizer + UndefinedBehaviorSanitizer into a
# fresh virtual environment, run the test suite (tests/) under the sanitizers
# once per kernel path this CPU has (CSOFTMAX_ISA=scalar|avx2|avx512), then run
# the atheris fuzz harness (tools/fuzz_api.py) under them for a bounded time.
#
# Usage: bash tools/sanitize.sh [fuzz_seconds]        (default 60; 0 skips fuzzing)
#
# Exits non-zero if the build, any test, or the fuzzer fails, or if any
# sanitizer report appears in any log.  Logs are kept in the work directory
# (printed at the end) when something failed or SANITIZE_KEEP=1.
#
# Environment:
#   PYTHON                interpreter for the venv (default python3)
#   SANITIZE_PYTEST_ARGS  pytest selection per ISA (default: -m "not slow": the
#                         >2**31-element tests of test_reliability.py take minutes
#                         under ASan; the zero-stride ones are run once, below)
#   SANITIZE_SLOW=0       skip the one extra run of the slow broadcast tests
#   SANITIZE_KEEP=1       keep the work directory
#
# Runtime on the 2-core CI machine: ~1.5 min build + ~3.5 min per ISA path +
# the slow stage + fuzz_seconds (about 10 minutes in all with the default).
#
# Flags.  setup.py passes -O3 -std=c11 ... itself and then appends
# CSOFTMAX_EXTRA_CFLAGS / CSOFTMAX_EXTRA_LDFLAGS, so the sanitizer flags go
# there (a later -O1 wins over -O3; CFLAGS would come *before* -O3).  The
# script checks the compiler command lines in the build log.  -fno-wrapv
# undoes Python's -fwrapv so signed overflow is reported by UBSan.
set -uo pipefail

FUZZ_SECONDS=${1:-60}
case "$FUZZ_SECONDS" in
    ''|*[!0-9]*) echo "usage: bash tools/sanitize.sh [fuzz_seconds]  (a whole number)" >&2; exit 2 ;;
esac
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
SAN_CFLAGS="-O1 -g -fno-omit-frame-pointer -fno-wrapv -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined"
SAN_LDFLAGS="-fsanitize=address,undefined"
if [ -n "${SANITIZE_PYTEST_ARGS+x}" ]; then
    # shellcheck disable=SC2206
    PYTEST_SEL=($SANITIZE_PYTEST_ARGS)
else
    PYTEST_SEL=(-m "not slow")
fi

WORK=$(mktemp -d /tmp/csoftmax-sanitize.XXXXXX)
FAILED=()
T_START=$(date +%s)
SUMMARY=()

say() { printf '\n== %s\n' "$*"; }
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
        rm -rf "$WORK"
    fi
    exit $rc
}

# A sanitizer report in a log is a failure even if the exit code was 0.
SAN_PATTERN='ERROR: AddressSanitizer|AddressSanitizer:DEADLYSIGNAL|runtime error:|SUMMARY: UndefinedBehaviorSanitizer|ERROR: LeakSanitizer|SUMMARY: AddressSanitizer'
check_log() {   # name logfile
    if grep -Eq "$SAN_PATTERN" "$2"; then
        fail "$1: sanitizer report (see $2)"
        grep -E -m 5 -A 12 "$SAN_PATTERN" "$2" | head -60
        return 1
    fi
    return 0
}

# ---------------------------------------------------------------- 1. source snapshot
say "source snapshot -> $WORK/src"
mkdir -p "$WORK/src" "$WORK/run" "$WORK/fuzz"
# everything but build products, so nothing stale (build/, *.so, the generated
# _core.c) can be reused by the sanitizer build
tar -C "$REPO" --exclude=./.git --exclude=./build --exclude='./*.egg-info' \
    --exclude=./.hypothesis --exclude='*.so' --exclude='__pycache__' \
    --exclude=./csoftmax/_core.c -cf - . | tar -C "$WORK/src" -xf - \
    || { fail "copy sources"; finish; }

# ---------------------------------------------------------------- 2. venv + build
say "venv + sanitizer build"
T0=$(date +%s)
VENV="$WORK/venv"
"$PY" -m venv "$VENV" || { fail "venv"; finish; }
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip >"$WORK/pip.log" 2>&1
"$VPY" -m pip install -q numpy scipy pytest hypothesis threadpoolctl atheris \
    >>"$WORK/pip.log" 2>&1 || { tail -20 "$WORK/pip.log"; fail "pip install test deps"; finish; }
CSOFTMAX_EXTRA_CFLAGS="$SAN_CFLAGS" CSOFTMAX_EXTRA_LDFLAGS="$SAN_LDFLAGS" \
    "$VPY" -m pip install -v --no-cache-dir "$WORK/src" >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; fail "sanitizer build"; finish; }

# every C translation unit of the extension must have been compiled with the
# sanitizers, with the last -O being -O1 (not setup.py's -O3)
n_cc=0
while IFS= read -r line; do
    n_cc=$((n_cc + 1))
    last_o=$(grep -oE '(^| )-O[0-9s]' <<<"$line" | tail -1 | tr -d ' ')
    if ! grep -q -- '-fsanitize=address,undefined' <<<"$line" || [ "$last_o" != "-O1" ]; then
        fail "compile flags (last ${last_o:-none}): $line"
    fi
done < <(grep -E ' -c [^ ]*(src_c/[a-z0-9_]+\.c|_core\.c) ' "$WORK/build.log")
[ "$n_cc" -ge 5 ] || fail "expected >= 5 compiler command lines in the build log, found $n_cc"
grep -E -- '-shared .*-fsanitize=address,undefined' "$WORK/build.log" >/dev/null \
    || fail "link line without -fsanitize"
SO=$(ls "$VENV"/lib/python3*/site-packages/csoftmax/_core*.so 2>/dev/null | head -1)
if [ -z "$SO" ] || ! ldd "$SO" | grep -q libasan; then
    fail "installed extension is not linked against libasan ($SO)"
fi
[ ${#FAILED[@]} -eq 0 ] || finish
SUMMARY+=("build: $n_cc C files with ASan+UBSan at -O1 ($(( $(date +%s) - T0 )) s)")

LIBASAN=$(gcc -print-file-name=libasan.so)
[ -e "$LIBASAN" ] || { fail "libasan.so not found (gcc -print-file-name=libasan.so -> $LIBASAN)"; finish; }
san_env=(
    LD_PRELOAD="$LIBASAN"
    ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:exitcode=86:allocator_may_return_null=1"
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87"
    PYTHONMALLOC=malloc
    PYTHONFAULTHANDLER=1
)

cd "$WORK/run" || finish
ISAS=$(env "${san_env[@]}" "$VPY" -c \
    "import csoftmax; print(' '.join(csoftmax.show_config()['available']))" 2>"$WORK/isa.log")
if [ -z "$ISAS" ]; then
    cat "$WORK/isa.log"
    fail "import csoftmax under ASan"
    finish
fi
SUMMARY+=("ISA paths: $ISAS")

# ---------------------------------------------------------------- 3. tests per ISA
for isa in $ISAS; do
    say "tests under ASan+UBSan, CSOFTMAX_ISA=$isa (${PYTEST_SEL[*]})"
    T0=$(date +%s)
    log="$WORK/pytest-$isa.log"
    env "${san_env[@]}" CSOFTMAX_ISA="$isa" "$VPY" -m pytest -q -p no:cacheprovider \
        --import-mode=importlib "${PYTEST_SEL[@]}" "$WORK/src/tests" >"$log" 2>&1
    rc=$?
    tail -3 "$log"
    result=$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -1)
    SUMMARY+=("pytest $isa: ${result:-no summary line} (rc $rc, $(( $(date +%s) - T0 )) s)")
    check_log "pytest $isa" "$log"
    if [ $rc -ne 0 ]; then
        grep -E '^(FAILED|ERROR) ' "$log" | head -40
        fail "pytest $isa (exit $rc)"
    fi
done

# ---------------------------------------------------------------- 4. slow zero-stride tests once
if [ "${SANITIZE_SLOW:-1}" != 0 ]; then
    best=${ISAS##* }
    say "slow 2**31-element broadcast tests, CSOFTMAX_ISA=$best"
    T0=$(date +%s)
    log="$WORK/pytest-slow.log"
    env "${san_env[@]}" CSOFTMAX_ISA="$best" "$VPY" -m pytest -q -p no:cacheprovider \
        --import-mode=importlib -m slow -k broadcast "$WORK/src/tests/test_reliability.py" \
        >"$log" 2>&1
    rc=$?
    tail -2 "$log"
    result=$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -1)
    SUMMARY+=("slow broadcast tests ($best): ${result:-no summary line} (rc $rc, $(( $(date +%s) - T0 )) s)")
    check_log "slow tests" "$log"
    [ $rc -eq 0 ] || fail "slow tests (exit $rc)"
fi

# ---------------------------------------------------------------- 5. fuzzing
if [ "$FUZZ_SECONDS" -gt 0 ]; then
    say "fuzz_api.py under ASan+UBSan for $FUZZ_SECONDS s (all ISA paths, switched per input)"
    T0=$(date +%s)
    log="$WORK/fuzz.log"
    env "${san_env[@]}" "$VPY" "$WORK/src/tools/fuzz_api.py" -max_total_time="$FUZZ_SECONDS" \
        -rss_limit_mb=6144 -artifact_prefix="$WORK/fuzz/" >"$log" 2>&1
    rc=$?
    grep -E '^fuzz_api:' "$log" || tail -40 "$log"
    result=$(grep -E '^fuzz_api:' "$log" | sed 's/^fuzz_api: //')
    SUMMARY+=("fuzz: ${result:-no summary} (rc $rc, $(( $(date +%s) - T0 )) s)")
    check_log "fuzz" "$log"
    if [ $rc -ne 0 ]; then
        grep -E -A 25 'Uncaught Python exception|ERROR: libFuzzer' "$log" | head -60
        fail "fuzz (exit $rc; crashing inputs in $WORK/fuzz/)"
    fi
fi

finish
