#include "cpu/isa.h"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace fastrnn::cpu {

Isa detected_isa() {
#if defined(__x86_64__) || defined(__i386__)
  // __builtin_cpu_supports checks both the CPUID bits and that the OS saves the vector state.
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
      return Isa::kAvx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
    return Isa::kBaseline;
  }();
  return isa;
#else
  return Isa::kBaseline;
#endif
}

bool bf16_products_enabled() {
#if defined(__x86_64__) || defined(__i386__)
  // FASTRNN_CPU_BF16=0 keeps bfloat16 calls on the float32 products (for comparison).
  static const bool enabled = [] {
    __builtin_cpu_init();
    const char* forced = std::getenv("FASTRNN_CPU_BF16");
    if (forced != nullptr && std::strcmp(forced, "0") == 0) return false;
    return detected_isa() == Isa::kAvx512 && __builtin_cpu_supports("avx512bf16") != 0;
  }();
  return enabled;
#else
  return false;
#endif
}

std::vector<std::pair<std::string, bool>> cpu_features() {
  std::vector<std::pair<std::string, bool>> features;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // __builtin_cpu_supports takes string literals only, hence one line per feature.
  features.emplace_back("avx2", __builtin_cpu_supports("avx2") != 0);
  features.emplace_back("fma", __builtin_cpu_supports("fma") != 0);
  features.emplace_back("avx512f", __builtin_cpu_supports("avx512f") != 0);
  features.emplace_back("avx512dq", __builtin_cpu_supports("avx512dq") != 0);
  features.emplace_back("avx512bw", __builtin_cpu_supports("avx512bw") != 0);
  features.emplace_back("avx512vl", __builtin_cpu_supports("avx512vl") != 0);
  features.emplace_back("avx512bf16", __builtin_cpu_supports("avx512bf16") != 0);
#endif
  return features;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    case Isa::kBaseline: return "baseline";
  }
  return "unknown";
}

Isa active_isa() {
  static const Isa isa = [] {
    Isa best = detected_isa();
    const char* requested = std::getenv("FASTRNN_CPU_ISA");
    if (requested == nullptr || *requested == '\0') return best;
    for (Isa candidate : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512}) {
      // A request above what the CPU supports falls back to the best it does support.
      if (std::strcmp(requested, isa_name(candidate)) == 0) {
        return static_cast<int>(candidate) < static_cast<int>(best) ? candidate : best;
      }
    }
    return best;
  }();
  return isa;
}

const StepKernels<float>* step_kernels_f32_for(Isa isa) {
  // Each table is built only once its instruction set is known to be there: the function that
  // builds it is itself compiled for that instruction set.
  if (static_cast<int>(isa) > static_cast<int>(detected_isa())) return nullptr;
  switch (isa) {
    case Isa::kAvx512: {
      static const StepKernels<float> kernels = [] {
        StepKernels<float> table = avx512::step_kernels_f32();
        table.bf16_products = bf16_products_enabled();
        return table;
      }();
      return &kernels;
    }
    case Isa::kAvx2: {
      static const StepKernels<float> kernels = avx2::step_kernels_f32();
      return &kernels;
    }
    case Isa::kBaseline: break;
  }
  static const StepKernels<float> kernels = baseline::step_kernels_f32();
  return &kernels;
}

template <>
const StepKernels<float>& step_kernels<float>() {
  static const StepKernels<float>& kernels = *step_kernels_f32_for(active_isa());
  return kernels;
}

template <>
const StepKernels<double>& step_kernels<double>() {
  static const StepKernels<double> kernels = baseline::step_kernels_f64();
  return kernels;
}

}  // namespace fastrnn::cpu
