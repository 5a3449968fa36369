// Step kernels compiled for AVX2 + FMA: selected at run time by isa.cpp on CPUs that have them
// but not AVX-512. See step_kernels_avx512.cpp for why the includes are ordered this way.
#include <immintrin.h>

#include <math.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "cpu/simd/exp_constants.h"
#include "cpu/step_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2")
#define FASTRNN_CELL_NAMESPACE avx2
#define FASTRNN_ISA avx2
#include "cpu/simd/vec_avx2.h"
#include "cpu/step_kernels_impl.h"

namespace fastrnn::cpu::avx2 {
StepKernels<float> step_kernels_f32() { return make_step_kernels<VecF, float>(); }
}  // namespace fastrnn::cpu::avx2

#pragma GCC pop_options
