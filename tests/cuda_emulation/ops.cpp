// Tier 2 of DESIGN.md's GPU work: csrc/ops/cuda/cuda_ops.cpp compiled as it is, over the
// stand-in torch CUDA headers of tests/cuda_emulation/standins (current stream, cuBLAS handle,
// guard, check macros) and the emulated runtime and cuBLAS (csrc/cuda/emulation,
// emulated_cublas.cpp), so fastrnn's CUDA glue, the recurrence driver on its CudaBackend, the
// cuBLAS calls and the step kernels run together on host memory. The op adapters are bound as
// Python functions (the ops' C++ signatures) rather than registered for the CUDA dispatch key,
// which host tensors never reach.
#include <torch/extension.h>
#include <torch/library.h>

// The file's TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) block becomes a function nothing calls: the
// real registration belongs to a CUDA build of fastrnn.
#undef TORCH_LIBRARY_IMPL
#define TORCH_LIBRARY_IMPL(ns, key, m) \
  [[maybe_unused]] static void unregistered_##key##_kernels(torch::Library& m)

#include "ops/cuda/cuda_ops.cpp"

namespace ops = fastrnn::ops;

void bind_cuda_ops(pybind11::module& m) {
  using Device = ops::CudaDevice;
  fastrnn::for_each_cell([&](auto cell) {
    const std::string name = fastrnn::cell_info(cell()).name;
    m.def((name + "_forward").c_str(), &ops::LayerOps<Device, cell()>::forward);
    m.def((name + "_backward").c_str(), &ops::LayerOps<Device, cell()>::backward);
  });
  m.def("gemm_calls", [] { return fastrnn::emulation::gemm_calls(); });
  m.def("gemm_calls_reading_c", [] { return fastrnn::emulation::gemm_calls_reading_c(); });
  // cublasGemmEx directly, column-major, for its own checks: returns the cublasStatus_t.
  m.def("cublas_gemm_ex", [](bool trans_a, bool trans_b, int m_, int n, int k, double alpha,
                             const at::Tensor& a, int lda, const at::Tensor& b, int ldb,
                             double beta, const at::Tensor& c, int ldc, int compute) {
    auto type = [](const at::Tensor& t) {
      switch (t.scalar_type()) {
        case at::kHalf: return CUDA_R_16F;
        case at::kBFloat16: return CUDA_R_16BF;
        case at::kFloat: return CUDA_R_32F;
        default: return CUDA_R_64F;
      }
    };
    const bool f64 = compute == CUBLAS_COMPUTE_64F;
    const float alpha32 = static_cast<float>(alpha), beta32 = static_cast<float>(beta);
    const void* alpha_ptr = f64 ? static_cast<const void*>(&alpha) : &alpha32;
    const void* beta_ptr = f64 ? static_cast<const void*>(&beta) : &beta32;
    return static_cast<int>(cublasGemmEx(
        nullptr, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, m_, n,
        k, alpha_ptr, a.data_ptr(), type(a), lda, b.data_ptr(), type(b), ldb, beta_ptr,
        c.data_ptr(), type(c), ldc, static_cast<cublasComputeType_t>(compute),
        CUBLAS_GEMM_DEFAULT));
  });
}
