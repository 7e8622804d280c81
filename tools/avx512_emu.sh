#!/usr/bin/env bash
# Run the test suite on csoftmax's AVX-512 kernels on an emulated CPU, for
# machines without AVX-512 (and, as a check of this tool, on machines with it).
#
# Usage: bash tools/avx512_emu.sh [pytest arguments]
#        (default: the whole suite but the two tests over 2**31 elements)
#
# How: a snapshot of the checkout is built with CSOFTMAX_TEST_SEAM=1 (the
# dispatcher's test seam, src_c/dispatch.c Design 3) into a venv of its own;
# with CSOFTMAX_EMU_AVX512=1 that build routes every AVX-512 kernel call
# through tools/emu512/csm_emu512.py, which executes the unmodified AVX-512
# machine code on the Bochs CPU core (bochscpu-python), inside the pytest
# process.  tools/emu512/selfcheck.py checks the emulator and the routing
# first; the pytest plugin csm_emu512_plugin fails a test whose kernel call
# crashed on the emulated CPU.  The checkout itself is only read.
#
# Environment:
#   PYTHON        interpreter for the venv (default python3, >= 3.11 for tomllib)
#   EMU_WORK      venv + snapshot + build (default ${TMPDIR:-/tmp}/csoftmax-emu512);
#                 the venv is reused, the snapshot rebuilt when the sources changed
#   EMU_CPU       core for taskset (default: the last one; the emulator is one thread)
#   EMU_SHARDS    pytest processes, one per core 0..EMU_SHARDS-1, each running every
#                 EMU_SHARDS-th test (CSOFTMAX_TEST_SHARD, tests/conftest.py); default 1
#                 (one process on EMU_CPU).  .ci/run uses one per core.
#   EMU_PEERS=0   do not install the optional test peers (torch==2.13.0, mypy,
#                 threadpoolctl): their tests then skip
#   EMU512_TRACE=1  print every page fault and call-out of the emulator
# Time on the 2-core machine: venv 1-2 min (first run), build ~1.5 min, whole
# suite ~10-15 min (about 6x the native time).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
WORK=${EMU_WORK:-${TMPDIR:-/tmp}/csoftmax-emu512}
CPU=${EMU_CPU:-$(( $(nproc) - 1 ))}
VENV=$WORK/venv
VPY=$VENV/bin/python
T0=$(date +%s)
say() { printf '\n== [%4d s] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
on_core() { taskset -c "$CPU" "$@"; }
mkdir -p "$WORK"

# ---------------------------------------------------------------- 1. venv
if ! "$VPY" -c "import bochscpu" 2>/dev/null && [ ! -f "$WORK/venv.done" ]; then
    say "venv ($VENV)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VPY" -m pip install -q --upgrade pip > "$WORK/pip.log" 2>&1
    mapfile -t REQS < <("$VPY" - "$REPO/pyproject.toml" <<'PYEOF'
import sys, tomllib
doc = tomllib.loads(open(sys.argv[1], encoding="utf-8").read())
print("\n".join(doc["build-system"]["requires"] + doc["project"]["dependencies"]
                + doc["project"]["optional-dependencies"]["test"]))
PYEOF
)
    "$VPY" -m pip install -q numpy "${REQS[@]}" "bochscpu-python==0.4.0" >> "$WORK/pip.log" 2>&1 \
        || { tail -20 "$WORK/pip.log"; exit 1; }
    if [ "${EMU_PEERS:-1}" = 1 ]; then
        "$VPY" -m pip install -q "torch==2.13.0" mypy threadpoolctl >> "$WORK/pip.log" 2>&1 \
            || echo "NOTE: torch==2.13.0 / mypy / threadpoolctl not installable: their tests skip"
    fi
    touch "$WORK/venv.done"
fi
EMU_DIR=$WORK/emu512
rm -rf "$EMU_DIR" && mkdir -p "$EMU_DIR"
cp "$REPO"/tools/emu512/*.py "$REPO"/tools/emu512/*.c "$EMU_DIR"/
# bochscpu-python's wheel wants glibc 2.38's __isoc23_* names (Debian 12 has 2.36)
gcc -O2 -fPIC -shared "$EMU_DIR/isoc23_shim.c" -o "$EMU_DIR/libcsm_isoc23.so"

# ---------------------------------------------------------------- 2. snapshot + seam build
SRC=$WORK/src
STAMP=$( (cd "$REPO" && git ls-files -co --exclude-standard -z 2>/dev/null | sort -z \
          | xargs -0 sha1sum 2>/dev/null) | sha1sum | cut -c1-16)
if [ ! -f "$SRC/.seam-build" ] || [ "$(cat "$SRC/.seam-build")" != "$STAMP" ]; then
    say "snapshot + CSOFTMAX_TEST_SEAM=1 build"
    rm -rf "$SRC" && mkdir -p "$SRC"
    tar -C "$REPO" --exclude=./.git --exclude=./build --exclude=./dist --exclude='./*.egg-info' \
        --exclude=./.hypothesis --exclude='*.so' --exclude='__pycache__' \
        --exclude=./csoftmax/_core.c -cf - . | tar -C "$SRC" -xf -
    (cd "$SRC" && CSOFTMAX_TEST_SEAM=1 "$VPY" -m pip install -q --no-deps --no-build-isolation .) \
        > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
    (cd "$WORK" && "$VPY" -c "import ctypes, csoftmax._core as c; assert ctypes.CDLL(c.__file__).csm_seam_built()") \
        || { echo "the build has no test seam"; exit 1; }
    echo "$STAMP" > "$SRC/.seam-build"
fi

# ---------------------------------------------------------------- 3. self-check
export PYTHONPATH="$EMU_DIR${PYTHONPATH:+:$PYTHONPATH}"
export CSOFTMAX_EMU_AVX512=1
# tests/test_dask.py: the threaded scheduler only (the emulator runs in this process;
# worker processes would run their kernels natively)
export CSOFTMAX_TEST_CLUSTER=0
cd "$WORK"          # not the source tree: `python -c` puts the cwd on sys.path
say "self-check of the emulator and the seam"
on_core "$VPY" "$EMU_DIR/selfcheck.py" "$WORK"

# ---------------------------------------------------------------- 4. the tests
say "pytest on the emulated AVX-512 path"
export CSOFTMAX_ISA=${CSOFTMAX_ISA:-avx512}       # as CI's per-ISA runs (test_isa checks it)
# two OpenMP threads as on a real server, so that the split-row and per-thread
# scratch paths are taken (the emulator runs each parallel region's body once)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ $# -eq 0 ]; then
    set -- -q -rfEs \
        --deselect tests/test_reliability.py::test_logsumexp_broadcast_past_2_31 \
        --deselect tests/test_reliability.py::test_inplace_float32_cross_entropy_past_2_31
fi
cd "$SRC"
SHARDS=${EMU_SHARDS:-1}
set +e
if [ "$SHARDS" -le 1 ]; then
    on_core "$VENV/bin/pytest" -p csm_emu512_plugin "$@"
    rc=$?
else
    pids=()
    for ((k = 0; k < SHARDS; k++)); do
        CSOFTMAX_TEST_SHARD="$k/$SHARDS" taskset -c "$(( k % $(nproc) ))" \
            "$VENV/bin/pytest" -p csm_emu512_plugin "$@" >"$WORK/pytest-shard$k.log" 2>&1 &
        pids+=($!)
    done
    rc=0
    for ((k = 0; k < SHARDS; k++)); do
        wait "${pids[$k]}"; r=$?
        echo "---- shard $k/$SHARDS (exit $r)"
        cat "$WORK/pytest-shard$k.log"
        [ "$r" -eq 0 ] || rc=$r
    done
fi
set -e
say "pytest exit status $rc"
exit $rc
