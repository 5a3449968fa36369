// The Python extension module fastrnn._C. Loading it registers the ops (TORCH_LIBRARY blocks in
// schemas.cpp and the *_ops.cpp files); the functions here report how the build and the CPU
// dispatch came out, for fastrnn.info and the tests, and bind the modules' inference fast path.
#include <torch/extension.h>

#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "cpu/blas.h"
#include "cpu/isa.h"
#include "cpu/stage_team.h"
#include "cpu/block_cache.h"
#include "fastrnn/cells.h"
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

// Runs `stages` stages of `chunks` chunks on `threads` threads (run_stages) with a body that
// checks the schedule's promises: it returns the number of chunks that ran before every chunk
// of the previous stage had finished, and the number of (stage, chunk) pairs that did not run
// exactly once. Chunks whose index is a multiple of `slow_every` (0: none) sleep `slow_us`
// microseconds first, as a thread that loses its core would (the others take its chunks over,
// then one thread runs the rest alone). For tests of stage_team.h.
std::tuple<int64_t, int64_t> cpu_stage_team_check(int64_t threads, int64_t stages, int64_t chunks,
                                                  int64_t slow_every, int64_t slow_us) {
  TORCH_CHECK(threads >= 1 && stages >= 0 && chunks >= threads && chunks <= threads * 0xffff,
              "cpu_stage_team_check: bad sizes");
  std::vector<std::atomic<int>> runs(static_cast<size_t>(stages * chunks));
  std::atomic<int64_t> early{0};
  fastrnn::cpu::run_stages(static_cast<int>(threads), stages, chunks,
                           [&](int64_t stage, int64_t chunk) {
    if (stage > 0) {
      for (int64_t c = 0; c < chunks; ++c) {
        if (runs[(stage - 1) * chunks + c].load() != 1) {
          early.fetch_add(1);
          break;
        }
      }
    }
    if (slow_every > 0 && chunk % slow_every == 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(slow_us));
    }
    runs[stage * chunks + chunk].fetch_add(1);
  });
  int64_t wrong = 0;
  for (const auto& count : runs) wrong += count.load() != 1;
  return {early.load(), wrong};
}

// The FMA peak of `threads` cores in GFLOP/s: fma_loop of the instruction set fastrnn's float32
// kernels use (FASTRNN_CPU_ISA), on that many threads at once, the best of five rounds of about
// 20 ms each. For the benchmark suite (% of peak).
double cpu_fma_peak(int64_t threads) {
  TORCH_CHECK(threads >= 1 && threads <= 1024, "cpu_fma_peak: threads must be in [1, 1024]");
  const auto loop = fastrnn::cpu::step_kernels<float>().fma_loop;
  int64_t iterations = 1 << 16;  // grown until one round takes 20 ms
  for (;;) {
    const auto start = std::chrono::steady_clock::now();
    loop(iterations);
    if (std::chrono::steady_clock::now() - start > std::chrono::milliseconds(20)) break;
    iterations *= 2;
  }
  double best = 0;
  for (int round = 0; round < 5; ++round) {
    std::vector<double> flops(static_cast<size_t>(threads));
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (int64_t t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] { flops[t] = loop(iterations); });
    }
    for (auto& worker : workers) worker.join();
    const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
    double total = 0;
    for (double f : flops) total += f;
    best = std::max(best, total / seconds.count() / 1e9);
  }
  return best;
}

// op(A) B (plus c when given) through one instruction set's tiled GEMM (cpu/blas.h), float32:
// op(A) is a, or a^T when trans_a; a and b may have a row stride (leading dimension) past
// their width. For tests of the micro-kernel's tiles, tails and blocks.
at::Tensor cpu_tiled_gemm(const std::string& isa_name, const at::Tensor& a, bool trans_a,
                          const at::Tensor& b, const c10::optional<at::Tensor>& c) {
  for (const at::Tensor* t : {&a, &b}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->dim() == 2 &&
                    (t->stride(1) == 1 || t->size(1) <= 1) && t->stride(0) >= t->size(1),
                "cpu_tiled_gemm takes 2-D float32 CPU matrices with unit column stride");
  }
  const int64_t m = trans_a ? a.size(1) : a.size(0), k = trans_a ? a.size(0) : a.size(1);
  TORCH_CHECK(b.size(0) == k, "cpu_tiled_gemm: inner sizes differ (", k, " vs ", b.size(0), ")");
  const int64_t n = b.size(1);
  at::Tensor out = c.has_value() ? c->contiguous().clone() : at::empty({m, n}, a.options());
  TORCH_CHECK(out.sizes() == at::IntArrayRef({m, n}) && out.scalar_type() == at::kFloat,
              "cpu_tiled_gemm: c must be float32 [", m, ", ", n, "]");
  const auto* kernels = fastrnn::cpu::step_kernels_f32_for(parse_isa(isa_name));
  TORCH_CHECK(kernels != nullptr, "this CPU does not support ", isa_name);
  fastrnn::cpu::tiled_gemm(*kernels, trans_a, m, n, k, a.data_ptr<float>(),
                           std::max<int64_t>(1, a.stride(0)), b.data_ptr<float>(),
                           std::max<int64_t>(1, b.stride(0)), c.has_value(),
                           out.data_ptr<float>(), n);
  return out;
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

// fastrnn/cells.h's list of cells, for the Python package: one dict per cell, in CellKind order
// (`code` is the CellKind, which fastrnn._C.forward_fast takes).
pybind11::list cells() {
  pybind11::list list;
  for (const fastrnn::CellInfo& info : fastrnn::kCells) {
    pybind11::dict cell;
    cell["code"] = static_cast<int>(info.kind);
    cell["name"] = info.name;
    cell["gates"] = info.gates;
    cell["workspace_blocks"] = info.workspace_blocks;
    cell["cell_state"] = info.cell_state;
    list.append(cell);
  }
  return list;
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
  m.def("cpu_fma_peak", &cpu_fma_peak,
        "The FMA peak of `threads` cores in GFLOP/s (a register-only FMA loop in fastrnn's "
        "float32 instruction set).");
  m.def("cpu_stage_team_check", &cpu_stage_team_check,
        "Test hook: run_stages' schedule checked (chunks run early, chunks not run once).");
  m.def("cpu_threads_backend", [] { return std::string(fastrnn::cpu::team_backend()); },
        "Threads of the CPU step loops (FASTRNN_CPU_THREADS): 'openmp' (torch's intra-op "
        "threads, the default) or 'pool' (fastrnn's own).");
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
  m.def("cpu_tiled_gemm", &cpu_tiled_gemm, pybind11::arg("isa"), pybind11::arg("a"),
        pybind11::arg("trans_a"), pybind11::arg("b"), pybind11::arg("c") = pybind11::none(),
        "op(A) B (+ c) through one instruction set's tiled GEMM.");
  m.def("empty_cache", &fastrnn::cpu::release_cached_blocks,
        "Frees the CPU blocks fastrnn keeps for reuse (cpu/block_cache.h); returns the bytes.");
  m.def("cached_bytes", &fastrnn::cpu::cached_free_bytes,
        "Bytes of free CPU blocks fastrnn keeps for reuse.");
  m.def("cells", &cells,
        "The recurrent cells of the ops: name, code, gates, workspace_blocks, cell_state.");
  m.def("forward_fast", &fastrnn::ops::forward_fast,
        "The modules' inference fast path on CPU (a whole stack, no autograd), or None.");
}
