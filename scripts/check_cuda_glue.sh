#!/usr/bin/env bash
# Compile-checks the CUDA glue (csrc/ops/cuda/*.cpp: torch + cuBLAS code) on a machine with no
# GPU and a CPU-only torch, with g++ -fsyntax-only (templates are instantiated, nothing links).
# The CPU torch wheel ships ATen's CUDA headers but not cuBLAS/cuSPARSE/cuSOLVER's, nor the
# generated c10/cuda/impl/cuda_cmake_macros.h. Point CUDA_EXTRA_INCLUDES at directories holding
# the first three (for example the include/ folders of the nvidia-cublas, nvidia-cusparse and
# nvidia-cusolver wheels, unpacked anywhere outside the repository); the macros header is stubbed.
#
#   CUDA_EXTRA_INCLUDES="/tmp/nv/cublas/include /tmp/nv/cusparse/include ..." \
#     bash scripts/check_cuda_glue.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CUDA_EXTRA_INCLUDES:?set CUDA_EXTRA_INCLUDES to the cuBLAS/cuSPARSE/cuSOLVER include dirs}"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
torch_include=$(python3 -c "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'include'))")
stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
mkdir -p "$stub/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$stub/c10/cuda/impl/cuda_cmake_macros.h"
flags=(-std=c++20 -fsyntax-only -Wall -Icsrc -Icsrc/include "-I$torch_include"
       "-I$torch_include/torch/csrc/api/include" "-I$CUDA_HOME/include" "-I$stub"
       $(python3-config --includes) -DTORCH_EXTENSION_NAME=_C -DFASTRNN_WITH_CUDA)
for dir in $CUDA_EXTRA_INCLUDES; do flags+=("-I$dir"); done
for source in csrc/ops/cuda/*.cpp; do
  echo "g++ -fsyntax-only $source"
  g++ "${flags[@]}" "$source"
done
echo "CUDA glue: compiles"
