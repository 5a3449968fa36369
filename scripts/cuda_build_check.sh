#!/usr/bin/env bash
# Tier 3 of DESIGN.md's GPU work, on a machine with nvcc and no GPU: the real CUDA build of
# fastrnn against a CUDA build of torch, packaged as a wheel, installed in a fresh venv,
# imported and tested there (the CPU suite; the CUDA tests skip without a GPU).
#
#   bash scripts/cuda_build_check.sh            # about 20 minutes on 2 cores
#
# 1. A venv with torch==2.14.1 (the CUDA 13.0 build; a local file here, about 5.5 GB) builds the
#    wheel: pip wheel --no-build-isolation with FASTRNN_FORCE_CUDA=1 and no other setting (setup.py
#    finds the toolkit and the cuBLAS/cuSPARSE/cuSOLVER headers of torch's wheels itself).
# 2. A second, fresh venv installs torch==2.14.1 and the wheel, then checks: import fastrnn,
#    fastrnn._C.cuda_built(), python -m fastrnn.info, the architectures in the binary
#    (cuobjdump --list-elf, from PyPI's nvidia-cuda-cuobjdump), and runs the test suite from
#    outside the checkout so that the installed wheel is what it imports.
# Environment: WORK (default: a new temporary directory), MAX_JOBS (default 2), PYTHON.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="${WORK:-$(mktemp -d)}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
TORCH="torch==2.14.1"
echo "cuda_build_check: working in $WORK"

start=$SECONDS
"$PY" -m venv "$WORK/build-venv"
"$WORK/build-venv/bin/pip" install -q "$TORCH" ninja numpy setuptools wheel
echo "cuda_build_check: build venv ready in $((SECONDS - start)) s"

start=$SECONDS
(cd "$ROOT" && FASTRNN_FORCE_CUDA=1 MAX_JOBS="${MAX_JOBS:-2}" \
  "$WORK/build-venv/bin/pip" wheel --no-build-isolation --no-deps -w "$WORK/dist" . \
  > "$WORK/build.log" 2>&1) || { tail -40 "$WORK/build.log"; echo "cuda_build_check: BUILD FAILED" >&2; exit 1; }
wheel=$(ls "$WORK"/dist/fastrnn-*.whl)
echo "cuda_build_check: built $(basename "$wheel") ($(du -h "$wheel" | cut -f1)) in $((SECONDS - start)) s"

start=$SECONDS
"$PY" -m venv "$WORK/test-venv"
"$WORK/test-venv/bin/pip" install -q "$TORCH" "$wheel" pytest hypothesis expecttest onnx \
  onnxruntime onnxscript nvidia-cuda-cuobjdump
echo "cuda_build_check: test venv ready in $((SECONDS - start)) s"

cd "$WORK"  # not the checkout: the tests import the installed wheel
"$WORK/test-venv/bin/python" - <<'EOF'
import fastrnn, torch
assert fastrnn._C.cuda_built(), "the wheel is a CPU build"
assert "site-packages" in fastrnn.__file__, fastrnn.__file__
print("cuda_build_check: import ok,", fastrnn.__file__, "torch", torch.__version__)
EOF
"$WORK/test-venv/bin/python" -m fastrnn.info
cuobjdump=$(find "$WORK/test-venv" -name cuobjdump -type f | head -1)
extension=$("$WORK/test-venv/bin/python" -c "import fastrnn; print(fastrnn._C.__file__)")
archs=$("$cuobjdump" --list-elf "$extension" | grep -o "sm_[0-9]*" | sort -u | tr '\n' ' ')
ptx=$("$cuobjdump" --list-ptx "$extension" | grep -o "sm_[0-9]*" | sort -u | tr '\n' ' ')
echo "cuda_build_check: cubins for $archs; PTX for $ptx"
for arch in sm_80 sm_86 sm_89 sm_90; do
  grep -q "$arch" <<< "$archs" || { echo "cuda_build_check: no $arch cubin" >&2; exit 1; }
done
grep -q sm_90 <<< "$ptx" || { echo "cuda_build_check: no sm_90 PTX" >&2; exit 1; }

start=$SECONDS
status=0
# The benchmark suite's package from the checkout (its tests import it), but not its fastrnn.
mkdir -p "$WORK/path" && ln -sfn "$ROOT/benchmarks" "$WORK/path/benchmarks"
CI=true PYTHONPATH="$WORK/path" "$WORK/test-venv/bin/python" -m pytest -q -p no:cacheprovider \
  "$ROOT/tests" || status=$?
echo "cuda_build_check: tests took $((SECONDS - start)) s (pytest exit $status)"
[ "$status" -ne 5 ] || { echo "cuda_build_check: pytest collected no tests" >&2; exit 1; }
exit "$status"
