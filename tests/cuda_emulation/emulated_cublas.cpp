// cublasGemmEx on the host, for the emulated op path (tier 2): a column-major reference GEMM
// that validates its arguments as cuBLAS documents (cublasGemmEx: dimensions, transposes,
// leading dimensions, and the supported combinations of compute type and A/B/C types, with
// CUBLAS_STATUS_INVALID_VALUE / CUBLAS_STATUS_NOT_SUPPORTED otherwise), never reads C when beta
// is 0, accumulates in the compute type (TF32 rounds the inputs to 10 mantissa bits), reads and
// writes 16F, 16BF, 32F and 64F, and rounds to C's type to nearest even.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

#include "emulated_cublas.h"

namespace {

std::atomic<unsigned long long> g_calls{0}, g_calls_reading_c{0};

bool valid_type(cudaDataType_t t) {
  return t == CUDA_R_16F || t == CUDA_R_16BF || t == CUDA_R_32F || t == CUDA_R_64F;
}

// Whether cuBLAS supports this compute type with these A/B and C types (real types only).
bool supported(cublasComputeType_t compute, cudaDataType_t ab, cudaDataType_t c) {
  switch (compute) {
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC:
      return ab == CUDA_R_64F && c == CUDA_R_64F;
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
      return (ab == CUDA_R_32F && c == CUDA_R_32F) ||
             ((ab == CUDA_R_16F || ab == CUDA_R_16BF) && (c == ab || c == CUDA_R_32F));
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
    case CUBLAS_COMPUTE_32F_FAST_TF32:
      return ab == CUDA_R_32F && c == CUDA_R_32F;
    default:
      return false;
  }
}

double load(const void* p, cudaDataType_t t, int64_t i) {
  switch (t) {
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(p)[i]);
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case CUDA_R_32F: return static_cast<const float*>(p)[i];
    default: return static_cast<const double*>(p)[i];
  }
}

void store(void* p, cudaDataType_t t, int64_t i, double value) {
  switch (t) {
    case CUDA_R_16F:
      static_cast<__half*>(p)[i] = __float2half_rn(static_cast<float>(value));
      break;
    case CUDA_R_16BF:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(static_cast<float>(value));
      break;
    case CUDA_R_32F: static_cast<float*>(p)[i] = static_cast<float>(value); break;
    default: static_cast<double*>(p)[i] = value;
  }
}

// x rounded to TF32 (10 mantissa bits, to nearest, ties away from zero), as tensor cores take
// float32 inputs.
float tf32(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + 0x1000u) & 0xffffe000u;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

}  // namespace

extern "C" cublasStatus_t cublasGemmEx(cublasHandle_t /*handle*/, cublasOperation_t transa,
                                       cublasOperation_t transb, int m, int n, int k,
                                       const void* alpha, const void* A, cudaDataType_t Atype,
                                       int lda, const void* B, cudaDataType_t Btype, int ldb,
                                       const void* beta, void* C, cudaDataType_t Ctype, int ldc,
                                       cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
  auto op_valid = [](cublasOperation_t op) {
    return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
  };
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  if (m < 0 || n < 0 || k < 0 || !op_valid(transa) || !op_valid(transb) ||
      lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) || ldc < std::max(1, m) ||
      alpha == nullptr || beta == nullptr || algo != CUBLAS_GEMM_DEFAULT) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (!valid_type(Atype) || !valid_type(Ctype) || Atype != Btype ||
      !supported(computeType, Atype, Ctype)) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  ++g_calls;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const bool f64 = computeType == CUBLAS_COMPUTE_64F || computeType == CUBLAS_COMPUTE_64F_PEDANTIC;
  const double a_scale = f64 ? *static_cast<const double*>(alpha) : *static_cast<const float*>(alpha);
  const double b_scale = f64 ? *static_cast<const double*>(beta) : *static_cast<const float*>(beta);
  const bool round_tf32 = computeType == CUBLAS_COMPUTE_32F_FAST_TF32;
  if (b_scale != 0) ++g_calls_reading_c;
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      // op(A)[i, p] and op(B)[p, j], column-major
      double sum64 = 0;
      float sum32 = 0;
      for (int p = 0; p < k; ++p) {
        const int64_t ai = ta ? int64_t(i) * lda + p : int64_t(p) * lda + i;
        const int64_t bi = tb ? int64_t(p) * ldb + j : int64_t(j) * ldb + p;
        if (f64) {
          sum64 += load(A, Atype, ai) * load(B, Btype, bi);
        } else {
          float a = static_cast<float>(load(A, Atype, ai)), b = static_cast<float>(load(B, Btype, bi));
          if (round_tf32) a = tf32(a), b = tf32(b);
          sum32 += a * b;
        }
      }
      const int64_t ci = int64_t(j) * ldc + i;
      double value = a_scale * (f64 ? sum64 : double(sum32));
      if (b_scale != 0) value += b_scale * load(C, Ctype, ci);  // beta == 0: C is not read
      if (!f64) value = static_cast<float>(value);
      store(C, Ctype, ci, value);
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

extern "C" const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_INTERNAL_ERROR";
  }
}

namespace fastrnn::emulation {
unsigned long long gemm_calls() { return g_calls; }
unsigned long long gemm_calls_reading_c() { return g_calls_reading_c; }
}  // namespace fastrnn::emulation
