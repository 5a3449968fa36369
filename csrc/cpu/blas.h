// GEMM for the CPU recurrence, callable inside the step loop without going through the torch
// dispatcher: the Fortran BLAS that libtorch_cpu carries (MKL's sgemm_/dgemm_ in the x86-64
// wheels) when it is there, else ATen's matmul (FASTRNN_CPU_BLAS=aten forces that fallback).
#pragma once

#include <cstdint>

namespace fastrnn::cpu {

// Row-major C[m, n] = alpha * op(A) op(B) + beta * C, with op(A) [m, k] and op(B) [k, n].
// A is stored [m, k] with leading dimension lda, or [k, m] when trans_a; B is [k, n] with ldb,
// or [n, k] when trans_b. beta == 0 overwrites C without reading it.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// "blas" or "aten", for fastrnn.info.
const char* gemm_backend();

}  // namespace fastrnn::cpu
