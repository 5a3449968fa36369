// Run-time choice of the CPU instruction set for fastrnn's own kernels, so one build runs on any
// x86-64: the best of AVX-512, AVX2 and baseline that the CPU (and OS) supports, lowered by the
// environment variable FASTRNN_CPU_ISA=avx2|baseline (read once, at first use).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "cpu/step_kernels.h"

namespace fastrnn::cpu {

enum class Isa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

Isa detected_isa();  // what this CPU supports
Isa active_isa();    // what the kernels use
const char* isa_name(Isa isa);
// The CPU features the instruction-set choice reads, each with whether this CPU (and OS) has it,
// in GCC's names: avx2, fma, avx512f, avx512dq, avx512bw, avx512vl, avx512bf16 (x86-64; empty
// elsewhere). For python -m fastrnn.info and benchmark headers.
std::vector<std::pair<std::string, bool>> cpu_features();
// Whether the AVX-512 kernels may use the AVX512_BF16 products (Panels::bf16): the CPU has
// AVX512_BF16 and FASTRNN_CPU_BF16 is not 0. Whether bfloat16 calls use them is
// step_kernels<float>().bf16_products (the active instruction set's table).
bool bf16_products_enabled();

// The step kernels of the active instruction set (double: always baseline).
template <class T>
const StepKernels<T>& step_kernels();

// The float kernels of a given instruction set, or null when this CPU lacks it (for tests).
const StepKernels<float>* step_kernels_f32_for(Isa isa);

}  // namespace fastrnn::cpu
