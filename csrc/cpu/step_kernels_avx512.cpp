// Step kernels compiled for AVX-512 (F, DQ, BW, VL; BF16 for the bfloat16 products): selected at run time by isa.cpp on CPUs
// that have it. Everything this file defines lives in namespace fastrnn::cpu::avx512 and
// fastrnn::cell::avx512, so no AVX-512 code is shared with (or merged into) other translation
// units; every header with code of its own is included before the target region.
#include <immintrin.h>

#include <math.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "cpu/simd/exp_constants.h"
#include "cpu/step_kernels.h"

#pragma GCC push_options
// GCC 12 flags the deliberately undefined pass-through operand of some AVX-512 intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// avx512bf16: only the bfloat16 products (fused_kernels_impl.h, FASTRNN_BF16_PRODUCTS) use it,
// and isa.cpp lets them run only on CPUs that have it.
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c,bmi,bmi2")
#define FASTRNN_BF16_PRODUCTS
#define FASTRNN_CELL_NAMESPACE avx512
#define FASTRNN_ISA avx512
#include "cpu/simd/vec_avx512.h"
#include "cpu/step_kernels_impl.h"

namespace fastrnn::cpu::avx512 {
StepKernels<float> step_kernels_f32() { return make_step_kernels<VecF, float>(); }
}  // namespace fastrnn::cpu::avx512

#pragma GCC diagnostic pop
#pragma GCC pop_options
