#include "cpu/blas.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>

// The Fortran BLAS interface (LP64). Declared weak: resolved from libtorch_cpu when it exports
// them, null otherwise.
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b,
            const int* ldb, const double* beta, double* c, const int* ldc) __attribute__((weak));
}

namespace fastrnn::cpu {
namespace {

bool blas_enabled() {
  static const bool enabled = [] {
    const char* forced = std::getenv("FASTRNN_CPU_BLAS");
    if (forced != nullptr && std::strcmp(forced, "aten") == 0) return false;
    return sgemm_ != nullptr && dgemm_ != nullptr;
  }();
  return enabled;
}

bool fits_int(int64_t v) { return v <= INT_MAX; }

template <class T>
void fortran_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k,
                  const T* alpha, const T* a, const int* lda, const T* b, const int* ldb,
                  const T* beta, T* c, const int* ldc) {
  if constexpr (std::is_same_v<T, float>) {
    sgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    dgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

// Views a row-major matrix stored [rows, cols] with leading dimension ld as a tensor.
template <class T>
at::Tensor matrix_view(const T* data, int64_t rows, int64_t cols, int64_t ld) {
  return at::from_blob(const_cast<T*>(data), {rows, cols}, {ld, 1},
                       at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

template <class T>
void aten_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
               int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  at::Tensor op_a = trans_a ? matrix_view(a, k, m, lda).t() : matrix_view(a, m, k, lda);
  at::Tensor op_b = trans_b ? matrix_view(b, n, k, ldb).t() : matrix_view(b, k, n, ldb);
  at::Tensor out = matrix_view(c, m, n, ldc);
  at::Tensor product = at::mm(op_a, op_b);
  if (beta == T(0)) {
    out.copy_(product.mul_(alpha));
  } else {
    out.mul_(beta).add_(product, alpha);
  }
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty product: C = beta * C
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    }
    return;
  }
  const bool small = fits_int(m) && fits_int(n) && fits_int(k) && fits_int(lda) &&
                     fits_int(ldb) && fits_int(ldc);
  if (!blas_enabled() || !small) {
    aten_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
  const int mi = static_cast<int>(n), ni = static_cast<int>(m), ki = static_cast<int>(k);
  const int lda_i = static_cast<int>(ldb), ldb_i = static_cast<int>(lda);
  const int ldc_i = static_cast<int>(ldc);
  const char* ta = trans_b ? "T" : "N";
  const char* tb = trans_a ? "T" : "N";
  fortran_gemm<T>(ta, tb, &mi, &ni, &ki, &alpha, b, &lda_i, a, &ldb_i, &beta, c, &ldc_i);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

void tiled_gemm(const StepKernels<float>& kernels, bool trans_a, int64_t m, int64_t n, int64_t k,
                const float* a, int64_t lda, const float* b, int64_t ldb, bool accumulate,
                float* c, int64_t ldc) {
  // Blocks of kRows x kCols of C, each over the whole inner dimension (no two threads write one
  // element), in row-major order. The threads take them one at a time from a shared counter, so
  // a thread that lost its core (another process on it) holds up at most its current block
  // instead of its whole static share; at least kMinFlops of blocks a thread.
  constexpr int64_t kRows = 48, kCols = 64, kMinFlops = 200000;
  if (m <= 0 || n <= 0) return;
  const int64_t row_blocks = (m + kRows - 1) / kRows, col_blocks = (n + kCols - 1) / kCols;
  const int64_t blocks = row_blocks * col_blocks;
  const int64_t block_flops = 2 * kRows * kCols * std::max<int64_t>(1, k);
  const int64_t per_thread = std::max<int64_t>(1, kMinFlops / block_flops);
  const int64_t threads =
      std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), blocks / per_thread));
  std::atomic<int64_t> next{0};
  auto run_blocks = [&] {
    GemmBlock<float> g{.a = a, .lda = lda, .trans_a = trans_a, .b = b, .ldb = ldb, .c = c,
                       .ldc = ldc, .inner = k, .accumulate = accumulate};
    for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < blocks;
         i = next.fetch_add(1, std::memory_order_relaxed)) {
      g.row_begin = i / col_blocks * kRows;
      g.row_end = std::min(m, g.row_begin + kRows);
      g.col_begin = i % col_blocks * kCols;
      g.col_end = std::min(n, g.col_begin + kCols);
      kernels.gemm_block(g);
    }
  };
  if (threads == 1) {
    run_blocks();
    return;
  }
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) { run_blocks(); });
}

bool tiled_gemm_enabled(const StepKernels<float>& kernels) {
  static const bool enabled = [] {
    const char* forced = std::getenv("FASTRNN_CPU_GEMM");
    return forced == nullptr || std::strcmp(forced, "blas") != 0;
  }();
  return enabled && kernels.vector_width >= 16;
}

const char* gemm_backend() { return blas_enabled() ? "blas" : "aten"; }

}  // namespace fastrnn::cpu
