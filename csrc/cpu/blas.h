// GEMM for the CPU recurrence, callable inside the step loop without going through the torch
// dispatcher: the Fortran BLAS that libtorch_cpu carries (MKL's sgemm_/dgemm_ in the x86-64
// wheels) when it is there, else ATen's matmul (FASTRNN_CPU_BLAS=aten forces that fallback).
#pragma once

#include <cstdint>

#include "cpu/step_kernels.h"

namespace fastrnn::cpu {

// Row-major C[m, n] = alpha * op(A) op(B) + beta * C, with op(A) [m, k] and op(B) [k, n].
// A is stored [m, k] with leading dimension lda, or [k, m] when trans_a; B is [k, n] with ldb,
// or [n, k] when trans_b. beta == 0 overwrites C without reading it.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Row-major C [m, n] (+)= op(A) B with the micro-kernel of `kernels` (GemmBlock), in
// blocks of C that torch's intra-op threads take one at a time; op(A) as for gemm, B as stored. Backward's
// float32 input and weight gradients run here where tiled_gemm_enabled.
void tiled_gemm(const StepKernels<float>& kernels, bool trans_a, int64_t m, int64_t n, int64_t k,
                const float* a, int64_t lda, const float* b, int64_t ldb, bool accumulate,
                float* c, int64_t ldc);

// Whether the float GEMMs with B as stored take tiled_gemm: the AVX-512 kernels, unless
// FASTRNN_CPU_GEMM=blas keeps them on gemm. MKL's sgemm takes its AVX2 code on AMD's AVX-512
// cores; on the 2-core Zen 4 a 1024-row chunk's GEMMs (G = 4H) ran, GFLOP/s, MKL against the
// micro-kernel: H = 256 dx 195 / 194, dW 167 / 163; H = 512 dx 163 / 196, dW 152 / 178; and
// training T50 B32 I=H=256 took LSTM 34.3 -> 29.8 ms, GRU 26.3 -> 23.1 (medians of 4 runs,
// alternating; inner stretches of 256 and of 128, the same within noise). The AVX2 kernels
// stay on MKL: there the micro-kernel, which reads A and B as stored, ran dW at 100-120
// against MKL's 150-180 (docs/benchmarks.md, decisions).
bool tiled_gemm_enabled(const StepKernels<float>& kernels);

// "blas" or "aten", for fastrnn.info.
const char* gemm_backend();

}  // namespace fastrnn::cpu
