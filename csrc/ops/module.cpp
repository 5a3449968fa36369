// The Python extension module fastrnn._C. Loading it registers the ops (TORCH_LIBRARY blocks in
// schemas.cpp and the *_ops.cpp files); the functions here report how the build and the CPU
// dispatch came out, for fastrnn.info and the tests, and bind the modules' inference fast path.
#include <torch/extension.h>

#include <torch/version.h>

#include <string>

#include "cpu/blas.h"
#include "cpu/isa.h"
#include "ops/block_cache.h"
#include "ops/fast_path.h"
#ifdef FASTRNN_WITH_CUDA
#include "cuda/build_info.h"
#endif

namespace {

fastrnn::cpu::Isa parse_isa(const std::string& name) {
  for (auto isa : {fastrnn::cpu::Isa::kBaseline, fastrnn::cpu::Isa::kAvx2,
                   fastrnn::cpu::Isa::kAvx512}) {
    if (name == fastrnn::cpu::isa_name(isa)) return isa;
  }
  TORCH_CHECK(false, "unknown instruction set '", name, "' (expected avx512, avx2 or baseline)");
}

// Applies one activation of one instruction set's vector math to a float32 (or float64: the
// baseline kernels) CPU tensor. For tests of the SIMD exp/sigmoid/tanh.
at::Tensor cpu_activation(const std::string& activation, const std::string& isa_name,
                          const at::Tensor& input) {
  using fastrnn::cpu::Activation;
  Activation kind;
  if (activation == "sigmoid") {
    kind = Activation::kSigmoid;
  } else if (activation == "tanh") {
    kind = Activation::kTanh;
  } else {
    TORCH_CHECK(activation == "relu", "unknown activation '", activation, "'");
    kind = Activation::kRelu;
  }
  TORCH_CHECK(input.device().is_cpu(), "cpu_activation takes a CPU tensor");
  const at::Tensor x = input.contiguous();
  at::Tensor y = at::empty_like(x);
  const fastrnn::cpu::Isa isa = parse_isa(isa_name);
  if (x.scalar_type() == at::kDouble) {
    TORCH_CHECK(isa == fastrnn::cpu::Isa::kBaseline, "float64 runs only the baseline kernels");
    fastrnn::cpu::step_kernels<double>().activation(kind, x.data_ptr<double>(),
                                                    y.data_ptr<double>(), x.numel());
    return y;
  }
  TORCH_CHECK(x.scalar_type() == at::kFloat, "cpu_activation takes float32 or float64");
  const auto* kernels = fastrnn::cpu::step_kernels_f32_for(isa);
  TORCH_CHECK(kernels != nullptr, "this CPU does not support ", isa_name);
  kernels->activation(kind, x.data_ptr<float>(), y.data_ptr<float>(), x.numel());
  return y;
}

// How this extension was built, as the compilers saw it (so it cannot drift from the binary):
// the C++ compiler, the torch headers, OpenMP, sanitizers, and for CUDA builds nvcc's version,
// the architectures nvcc compiled and the TORCH_CUDA_ARCH_LIST setup.py passed.
pybind11::dict build_info() {
  pybind11::dict info;
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#else
  info["compiler"] = std::string("unknown");
#endif
  info["cplusplus"] = static_cast<long>(__cplusplus);
  info["torch"] = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                  "." + std::to_string(TORCH_VERSION_PATCH);
#ifdef _OPENMP
  info["openmp"] = static_cast<long>(_OPENMP);
#else
  info["openmp"] = pybind11::none();
#endif
  pybind11::list sanitizers;  // gcc and clang >= 17 define this; UBSan has no such macro
#ifdef __SANITIZE_ADDRESS__
  sanitizers.append("address");
#endif
  info["sanitizers"] = sanitizers;
#ifdef FASTRNN_WITH_CUDA
  info["cuda"] = true;
  info["nvcc"] = std::string(fastrnn::cuda::nvcc_version());
  info["cuda_archs_compiled"] = std::string(fastrnn::cuda::compiled_archs());
#ifdef FASTRNN_CUDA_ARCH_LIST
  info["cuda_arch_list"] = std::string(FASTRNN_CUDA_ARCH_LIST);
#else
  info["cuda_arch_list"] = pybind11::none();
#endif
#else
  info["cuda"] = false;
  info["nvcc"] = pybind11::none();
  info["cuda_archs_compiled"] = pybind11::none();
  info["cuda_arch_list"] = pybind11::none();
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastrnn's compiled kernels; the ops live in torch.ops.fastrnn";
  m.def("cpu_isa", [] { return std::string(fastrnn::cpu::isa_name(fastrnn::cpu::active_isa())); },
        "Instruction set the CPU kernels use (after FASTRNN_CPU_ISA).");
  m.def("cpu_isa_detected",
        [] { return std::string(fastrnn::cpu::isa_name(fastrnn::cpu::detected_isa())); },
        "Best instruction set this CPU supports.");
  m.def("cpu_features", &fastrnn::cpu::cpu_features,
        "The CPU features the instruction-set choice reads: (name, present) pairs.");
  m.def("cpu_bf16_products",
        [] { return fastrnn::cpu::step_kernels<float>().bf16_products; },
        "Whether bfloat16 calls run their recurrent products in bfloat16 (AVX512_BF16).");
  m.def("cpu_gemm_backend", [] { return std::string(fastrnn::cpu::gemm_backend()); },
        "GEMM inside the CPU step loop: 'blas' (libtorch's Fortran BLAS) or 'aten'.");
  m.def("cuda_built", [] {
#ifdef FASTRNN_WITH_CUDA
    return true;
#else
    return false;
#endif
  });
  m.def("build_info", &build_info,
        "How the extension was built: compilers, torch headers, OpenMP, sanitizers, CUDA archs.");
  m.def("cpu_activation", &cpu_activation, "Vector-math activation of one instruction set.");
  m.def("empty_cache", &fastrnn::ops::release_cached_blocks,
        "Frees the CPU blocks fastrnn keeps for reuse (ops/block_cache.h); returns the bytes.");
  m.def("cached_bytes", &fastrnn::ops::cached_free_bytes,
        "Bytes of free CPU blocks fastrnn keeps for reuse.");
  m.def("forward_fast", &fastrnn::ops::forward_fast,
        "The modules' inference fast path on CPU (a whole stack, no autograd), or None.");
}
