#!/usr/bin/env bash
# Sanitizer run: builds the CPU extension with AddressSanitizer and UndefinedBehaviorSanitizer in
# a copy of the tree (never touching the normal build), then runs the tests that exercise the
# extension against it; then the emulated CUDA kernels' threaded modes under ThreadSanitizer
# (step 5). Fails on any test failure and on any sanitizer report.
#
#   bash scripts/sanitize.sh                 # the core tests (SANITIZE_TESTS below), then TSan
#   bash scripts/sanitize.sh tests/test_ops.py -k lstm   # any pytest arguments instead, no TSan
#
# Environment: SANITIZE_DIR (the copy and its build; default /tmp/fastrnn-sanitize, reused, so a
# second run rebuilds only what changed), MAX_JOBS (build jobs, default 1), PYTHON,
# SANITIZE_THREADS=1 (the TSan step after explicit pytest arguments too). The TSan step imports
# the checkout's own build of fastrnn (pip install -e . or setup.py build_ext --inplace first).
#
# How it runs under python, which is not instrumented:
# - libasan is LD_PRELOADed (ASan's runtime must be the first library loaded), with libstdc++
#   (else ASan's __cxa_throw interceptor finds no real __cxa_throw and the first C++ exception
#   aborts); libubsan comes in as a dependency of the instrumented fastrnn/_C.so.
# - detect_leaks=0: LeakSanitizer would report, at exit, every allocation the interpreter, torch
#   and pybind11 keep for the life of the process (interned objects, module state, registries):
#   thousands of reports, none of them fastrnn's. fastrnn's own leaks are for the RSS check of a
#   long training loop (issue 7, item 3).
# - -fno-wrapv: python's CFLAGS (which setuptools adds) make signed overflow wrap, which would
#   also switch UBSan's signed-integer-overflow check off; index arithmetic must not overflow.
# - Every finding stops the process it happens in: ASan does by default, UBSan with
#   halt_on_error=1 (so a finding in a test's subprocess fails that test, and one in pytest's
#   process fails the run). pytest captures sys.stdout/err only (--capture=sys), so reports,
#   which the runtimes write to file descriptor 2, reach this script's output; they are also
#   searched for there. ASan's reports also go to $SANITIZE_DIR/logs (UBSan ignores log_path
#   when ASan's runtime is preloaded). No suppressions: only fastrnn's code is instrumented,
#   and nothing from python or torch reports.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="${SANITIZE_DIR:-/tmp/fastrnn-sanitize}"
SRC="$WORK/src"
LOGS="$WORK/logs"
# The tests that run fastrnn's kernels (everything but the pure build checks test_cpp and
# test_cuda_build, the CUDA tests, and the benchmark harness's timing loops).
SANITIZE_TESTS=(tests/test_ops.py tests/test_parity.py tests/test_modules.py tests/test_cells.py
                tests/test_convert.py tests/test_conformance.py tests/test_property.py
                tests/test_autocast.py tests/test_cpu_dispatch.py tests/test_compile.py
                tests/test_info.py tests/test_threads.py tests/test_cuda_emulation.py)

# 1. A copy of the sources; cp -a keeps timestamps, so ninja rebuilds only changed files.
mkdir -p "$SRC" "$LOGS"
rm -f "$LOGS"/*
for path in setup.py pyproject.toml README.md csrc fastrnn tests benchmarks; do
  cp -a "$ROOT/$path" "$SRC/"
done
rm -f "$SRC"/fastrnn/_C*.so

# 2. The instrumented build (CFLAGS/LDFLAGS reach the compile and link lines through setuptools).
sanitizers="address,undefined"
cd "$SRC"
echo "sanitize: building in $SRC with -fsanitize=$sanitizers"
start=$SECONDS
CFLAGS="-fsanitize=$sanitizers -fno-omit-frame-pointer -fno-wrapv" \
LDFLAGS="-fsanitize=$sanitizers" FASTRNN_FORCE_CPU=1 MAX_JOBS="${MAX_JOBS:-1}" \
  "$PY" setup.py build_ext --inplace > "$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log"; echo "sanitize: BUILD FAILED" >&2; exit 1; }
echo "sanitize: built in $((SECONDS - start)) s"
extension=$(ls "$SRC"/fastrnn/_C*.so)
needed=$(readelf -d "$extension")  # captured first: grep -q would SIGPIPE the reader
for runtime in libasan libubsan; do
  grep -q "$runtime" <<< "$needed" || { echo "sanitize: $extension lacks $runtime" >&2; exit 1; }
done

# 3. The tests, against the copy.
# libstdc++ preloaded too: python does not link it, and ASan resolves the real __cxa_throw at
# start-up; without it the first C++ exception (every TORCH_CHECK) aborts in ASan's interceptor.
libasan=$(${CXX:-c++} -print-file-name=libasan.so)
libstdcxx=$(${CXX:-c++} -print-file-name=libstdc++.so)
export LD_PRELOAD="$libasan $libstdcxx"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:log_path=$LOGS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:report_error_type=1:halt_on_error=1"
# The emulated CUDA kernels' test extension is built instrumented too (compute-sanitizer's
# memcheck, on the host).
export FASTRNN_EMULATION_SANITIZE="$sanitizers"
export PYTHONPATH="$SRC"
"$PY" - <<'EOF'
import fastrnn
build = fastrnn._C.build_info()
assert "address" in build["sanitizers"], build
print("sanitize: testing", fastrnn.__file__, "built by", build["compiler"])
EOF
run_threads="${SANITIZE_THREADS:-0}"  # the TSan step: by default only after the core tests
if [ "$#" -eq 0 ]; then set -- "${SANITIZE_TESTS[@]}"; run_threads=1; fi
status=0
start=$SECONDS
"$PY" -m pytest -q -p no:cacheprovider --capture=sys "$@" 2>&1 | tee "$WORK/pytest.log" \
  || status=$?
unset LD_PRELOAD
echo "sanitize: tests took $((SECONDS - start)) s (pytest exit $status)"

# 4. Any report fails the run, even when the tests passed.
reports=$(( $(ls "$LOGS" | wc -l) + $(grep -cE "runtime error:|ERROR: AddressSanitizer" \
  "$WORK/pytest.log" || true) ))
if [ "$reports" -gt 0 ]; then
  for log in "$LOGS"/*; do [ -e "$log" ] && { echo "=== $log"; head -60 "$log"; }; done
  echo "sanitize: $reports sanitizer report(s): above, in $WORK/pytest.log and $LOGS" >&2
  status=1
else
  echo "sanitize: no ASan/UBSan reports"
fi

# 5. ThreadSanitizer, which cannot share a process with ASan, on the emulated CUDA kernels run
# with one OS thread per CUDA thread (the threaded and cooperative modes): compute-sanitizer's
# racecheck, on the host. Only the emulation's test extension is instrumented (rebuilt with
# -fsanitize=thread); fastrnn is the checkout's own, uninstrumented build. Any report stops the
# process it happens in (halt_on_error), and the log is searched for reports as well.
if [ "$run_threads" = 1 ]; then
  libtsan=$(${CXX:-c++} -print-file-name=libtsan.so)
  start=$SECONDS
  tsan_status=0
  (cd "$ROOT" && LD_PRELOAD="$libtsan $libstdcxx" PYTHONPATH="$ROOT" \
    TSAN_OPTIONS="halt_on_error=1:exitcode=66" FASTRNN_EMULATION_SANITIZE=thread \
    "$PY" -m pytest -q -p no:cacheprovider --capture=sys tests/test_cuda_emulation.py \
      -k "threaded or os_thread or cooperative or threadsanitizer" 2>&1) \
    | tee "$WORK/pytest_tsan.log" || tsan_status=$?
  echo "sanitize: ThreadSanitizer pass took $((SECONDS - start)) s (pytest exit $tsan_status)"
  passed=$(grep -oE "[0-9]+ passed" "$WORK/pytest_tsan.log" | tail -1)
  # the test that shows TSan sees a race must have run, not skipped
  if [ "$tsan_status" -ne 0 ] || [ -z "$passed" ] || grep -q " skipped" "$WORK/pytest_tsan.log" \
     || grep -q "^WARNING: ThreadSanitizer" "$WORK/pytest_tsan.log"; then
    echo "sanitize: ThreadSanitizer pass failed (reports or skips above)" >&2
    status=1
  else
    echo "sanitize: no ThreadSanitizer reports ($passed)"
  fi
fi
exit "$status"
