// 8 x float in an AVX2 register (with FMA), with the activations fastrnn's cells need.
// Include only inside the AVX2 target region of step_kernels_avx2.cpp (after <immintrin.h> has
// been included outside it). Same algorithms and constants as vec_avx512.h.
#pragma once

#include "cpu/simd/exp_constants.h"

namespace fastrnn::cpu::avx2 {

struct VecF {
  static constexpr int kWidth = 8;
  __m256 v;

  VecF() = default;
  VecF(__m256 x) : v(x) {}
  VecF(float x) : v(_mm256_set1_ps(x)) {}

  // All-ones in lanes [0, n).
  static __m256i first(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static VecF load(const float* p) { return _mm256_loadu_ps(p); }
  static VecF load(const float* p, int n) {
    return n == kWidth ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, first(n));
  }
  // Lanes [0, n) of bfloat16 values widened to float (exact: bfloat16 is float's upper half).
  static VecF load_bf16(const uint16_t* p, int n) {
    __m128i raw;
    if (n == kWidth) {
      raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    } else {
      alignas(16) uint16_t lanes[kWidth] = {};
      for (int i = 0; i < n; ++i) lanes[i] = p[i];
      raw = _mm_load_si128(reinterpret_cast<const __m128i*>(lanes));
    }
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
  }
  void store(float* p, int n) const {
    if (n == kWidth) {
      _mm256_storeu_ps(p, v);
    } else {
      _mm256_maskstore_ps(p, first(n), v);
    }
  }
};

inline VecF operator+(VecF a, VecF b) { return _mm256_add_ps(a.v, b.v); }
inline VecF operator-(VecF a, VecF b) { return _mm256_sub_ps(a.v, b.v); }
inline VecF operator*(VecF a, VecF b) { return _mm256_mul_ps(a.v, b.v); }
inline VecF operator/(VecF a, VecF b) { return _mm256_div_ps(a.v, b.v); }
inline VecF fma(VecF a, VecF b, VecF c) { return _mm256_fmadd_ps(a.v, b.v, c.v); }  // a * b + c

// Lane j of the result is the sum of the lanes of a[j] (as vec_avx512.h, on two 128-bit halves).
inline VecF transpose_sum(const VecF (&a)[8]) {
  __m256 s[4], t[2];
  for (int i = 0; i < 4; ++i) {
    s[i] = _mm256_add_ps(_mm256_unpacklo_ps(a[2 * i].v, a[2 * i + 1].v),
                         _mm256_unpackhi_ps(a[2 * i].v, a[2 * i + 1].v));
  }
  for (int m = 0; m < 2; ++m) {
    const __m256d p = _mm256_castps_pd(s[2 * m]), q = _mm256_castps_pd(s[2 * m + 1]);
    t[m] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(p, q)),
                         _mm256_castpd_ps(_mm256_unpackhi_pd(p, q)));
  }
  return _mm256_add_ps(_mm256_permute2f128_ps(t[0], t[1], 0x20),
                       _mm256_permute2f128_ps(t[0], t[1], 0x31));
}

// 2^n for integral n in [-216, 128], as the product of two normal powers of two (n split in
// halves), so results below FLT_MIN come out as correctly scaled subnormals or 0.
inline __m256 exp2_int(__m256 n) {
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256i rest = _mm256_sub_epi32(ni, half);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 a = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
  const __m256 b = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(rest, bias), 23));
  return _mm256_mul_ps(a, b);
}

// exp(x), max error about 1 ulp; NaN propagates, +-inf give inf and 0, underflow reaches 0.
inline __m256 exp_ps(__m256 x) {
  using namespace exp_constants;
  x = _mm256_min_ps(_mm256_set1_ps(kMaxArg), x);  // NaN: second operand, so it propagates
  x = _mm256_max_ps(_mm256_set1_ps(kMinArg), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
  p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  // NaN lanes: n converts to INT_MIN and 2^n is garbage, but p is NaN and so is the product.
  return _mm256_mul_ps(p, exp2_int(n));
}

inline __m256 abs_ps(__m256 x) {
  return _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}

// See vec_avx512.h for the forms.
inline VecF sigmoid(VecF x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), abs_ps(x.v)));
  const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
  const __m256 nonnegative = _mm256_cmp_ps(x.v, _mm256_setzero_ps(), _CMP_GE_OQ);
  return _mm256_blendv_ps(_mm256_mul_ps(e, s), s, nonnegative);
}

inline VecF tanh(VecF x) {
  using namespace exp_constants;
  const __m256 a = abs_ps(x.v);
  const __m256 z = _mm256_mul_ps(x.v, x.v);
  __m256 p = _mm256_set1_ps(kTanhP0);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kTanhP1));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kTanhP2));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kTanhP3));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kTanhP4));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), a, a);  // tanh(|x|)
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 e = exp_ps(_mm256_mul_ps(a, _mm256_set1_ps(-2.0f)));
  const __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
  const __m256 sign = _mm256_and_ps(x.v, _mm256_castsi256_ps(_mm256_set1_epi32(int(0x80000000u))));
  const __m256 is_small = _mm256_cmp_ps(a, _mm256_set1_ps(kTanhSmall), _CMP_LT_OQ);
  return _mm256_or_ps(_mm256_blendv_ps(t, small, is_small), sign);
}

inline VecF relu(VecF x) { return _mm256_max_ps(_mm256_setzero_ps(), x.v); }

inline VecF relu_backward(VecF dy, VecF y) {
  const __m256 off = _mm256_cmp_ps(y.v, _mm256_setzero_ps(), _CMP_LE_OQ);
  return _mm256_blendv_ps(dy.v, _mm256_setzero_ps(), off);
}

}  // namespace fastrnn::cpu::avx2
