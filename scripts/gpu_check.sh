#!/usr/bin/env bash
# GPU check: on a machine with a CUDA GPU and CUDA torch (no network needed), build fastrnn with
# CUDA, run the CUDA tests, run compute-sanitizer (memcheck, racecheck) on a small forward and
# backward of every cell, time fastrnn against torch.nn (cuDNN) in float32 and bfloat16, and
# write a report. Stages, so each fits one call of the device tool (10 minutes):
#
#   bash scripts/gpu_check.sh build       # CUDA build for this GPU's architecture
#   bash scripts/gpu_check.sh test        # the CUDA test suite, then the whole suite
#   bash scripts/gpu_check.sh sanitize    # compute-sanitizer memcheck and racecheck
#   bash scripts/gpu_check.sh bench       # GPU benchmark vs cuDNN, float32 and bfloat16
#   bash scripts/gpu_check.sh all         # all four
#
# Results go to $OUT (default: ./gpu-check-out): one log per stage and report.md, the summary
# that docs/gpu-report.md is updated from.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
REPORT="$OUT/report.md"
stage="${1:-all}"

note() { echo "$*" | tee -a "$REPORT"; }

environment() {
  {
    echo "## Environment"
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true
    "$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version(), 'capability', torch.cuda.get_device_capability())"
    nvcc --version | tail -1
    echo '```'
  } >> "$REPORT"
}

build() {
  local arch
  arch=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  note "## Build (TORCH_CUDA_ARCH_LIST=$arch)"
  local start=$SECONDS
  if TORCH_CUDA_ARCH_LIST="$arch" FASTRNN_FORCE_CUDA=1 MAX_JOBS="$(nproc)" \
      "$PY" -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
    note "built in $((SECONDS - start)) s; CUDA built: $("$PY" -c 'import fastrnn; print(fastrnn._C.cuda_built())')"
  else
    note "BUILD FAILED (see build.log):"; tail -30 "$OUT/build.log" | tee -a "$REPORT"; return 1
  fi
}

run_tests() {
  note "## Tests"
  "$PY" -m pytest -q tests/test_cuda.py -x -p no:cacheprovider > "$OUT/test_cuda.log" 2>&1
  local cuda_status=$?
  note "CUDA tests (tests/test_cuda.py): $(tail -1 "$OUT/test_cuda.log") [exit $cuda_status]"
  "$PY" -m pytest -q tests -p no:cacheprovider > "$OUT/test_all.log" 2>&1
  local all_status=$?
  note "whole suite: $(tail -1 "$OUT/test_all.log") [exit $all_status]"
  grep -E "^(FAILED|ERROR)" "$OUT/test_cuda.log" "$OUT/test_all.log" | head -20 | tee -a "$REPORT"
  return $((cuda_status || all_status))
}

sanitize() {
  note "## compute-sanitizer"
  local status=0 tool
  for tool in memcheck racecheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 9 "$PY" scripts/cuda_workload.py \
      > "$OUT/sanitize_$tool.log" 2>&1
    local s=$?
    note "$tool: exit $s; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize_$tool.log" | tail -1)"
    [ $s -eq 0 ] || status=1
  done
  return $status
}

bench() {
  note "## Benchmark (python -m benchmarks --device cuda)"
  "$PY" -m benchmarks --device cuda --sets fastrnns gpu packed --dtypes float32 bfloat16 \
    --out "$OUT/bench" --no-plot > "$OUT/bench.log" 2>&1
  local s=$?
  { echo; grep -E "^(machine|GEMM|peer|\|)" "$OUT/bench.log"; } >> "$REPORT"
  tail -5 "$OUT/bench.log"
  return $s
}

status=0
case "$stage" in
  build) environment; build || status=1 ;;
  test) run_tests || status=1 ;;
  sanitize) sanitize || status=1 ;;
  bench) bench || status=1 ;;
  all) environment; build && { run_tests || status=1; sanitize || status=1; bench || status=1; } || status=1 ;;
  *) echo "usage: $0 [build|test|sanitize|bench|all]" >&2; exit 2 ;;
esac
echo "--- $REPORT ---"; cat "$REPORT"
exit $status
