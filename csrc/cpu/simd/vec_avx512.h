// 16 x float in an AVX-512 register, with the activations fastrnn's cells need.
// Include only inside the AVX-512 target region of step_kernels_avx512.cpp (after <immintrin.h>
// has been included outside it): every function here is compiled for AVX-512.
#pragma once

#include "cpu/simd/exp_constants.h"

namespace fastrnn::cpu::avx512 {

struct VecF {
  static constexpr int kWidth = 16;
  __m512 v;

  VecF() = default;
  VecF(__m512 x) : v(x) {}
  VecF(float x) : v(_mm512_set1_ps(x)) {}

  static __mmask16 first(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static VecF load(const float* p) { return _mm512_loadu_ps(p); }
  // Loads/stores lanes [0, n); n == kWidth is the common, unmasked case.
  static VecF load(const float* p, int n) {
    return n == kWidth ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(first(n), p);
  }
  // Lanes [0, n) of bfloat16 values widened to float (exact: bfloat16 is float's upper half).
  static VecF load_bf16(const uint16_t* p, int n) {
    const __m256i raw = n == kWidth ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                                    : _mm256_maskz_loadu_epi16(first(n), p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
  }
  void store(float* p, int n) const {
    if (n == kWidth) {
      _mm512_storeu_ps(p, v);
    } else {
      _mm512_mask_storeu_ps(p, first(n), v);
    }
  }
};

inline VecF operator+(VecF a, VecF b) { return _mm512_add_ps(a.v, b.v); }
inline VecF operator-(VecF a, VecF b) { return _mm512_sub_ps(a.v, b.v); }
inline VecF operator*(VecF a, VecF b) { return _mm512_mul_ps(a.v, b.v); }
inline VecF operator/(VecF a, VecF b) { return _mm512_div_ps(a.v, b.v); }
inline VecF fma(VecF a, VecF b, VecF c) { return _mm512_fmadd_ps(a.v, b.v, c.v); }  // a * b + c

// Lane j of the result is the sum of the lanes of a[j]: sixteen horizontal sums at once, by
// adding pairs of vectors interleaved at 32, 64 and then 128 bits.
inline VecF transpose_sum(const VecF (&a)[16]) {
  __m512 s[8], t[4];
  for (int i = 0; i < 8; ++i) {  // per 128 bits: a0+a2, b0+b2, a1+a3, b1+b3 of a = a[2i], b = a[2i+1]
    s[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i].v, a[2 * i + 1].v),
                         _mm512_unpackhi_ps(a[2 * i].v, a[2 * i + 1].v));
  }
  for (int m = 0; m < 4; ++m) {  // per 128 bits: the block's sums of a[4m] .. a[4m + 3]
    const __m512d p = _mm512_castps_pd(s[2 * m]), q = _mm512_castps_pd(s[2 * m + 1]);
    t[m] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(p, q)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(p, q)));
  }
  // 128-bit block Q of the result: the four blocks of t[Q] added.
  const __m512 v01 = _mm512_add_ps(_mm512_shuffle_f32x4(t[0], t[1], 0x88),
                                   _mm512_shuffle_f32x4(t[0], t[1], 0xDD));
  const __m512 v23 = _mm512_add_ps(_mm512_shuffle_f32x4(t[2], t[3], 0x88),
                                   _mm512_shuffle_f32x4(t[2], t[3], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(v01, v23, 0x88), _mm512_shuffle_f32x4(v01, v23, 0xDD));
}

// exp(x), max error about 1 ulp; NaN propagates, +-inf give inf and 0, underflow reaches 0.
inline __m512 exp_ps(__m512 x) {
  using namespace exp_constants;
  // min/max return their second operand when either is NaN, so NaN reaches the polynomial.
  x = _mm512_min_ps(_mm512_set1_ps(kMaxArg), x);
  x = _mm512_max_ps(_mm512_set1_ps(kMinArg), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kP0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP5));
  p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);  // p * 2^n, overflowing to inf and underflowing to 0
}

inline __m512 abs_ps(__m512 x) {
  return _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)));
}

// sigmoid(x) from e = exp(-|x|), which never overflows: 1 / (1 + e) for x >= 0, e / (1 + e)
// otherwise. NaN fails the x >= 0 test and comes out of e / (1 + e).
inline VecF sigmoid(VecF x) {
  const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), abs_ps(x.v)));
  const __m512 s = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
  const __mmask16 nonnegative = _mm512_cmp_ps_mask(x.v, _mm512_setzero_ps(), _CMP_GE_OQ);
  return _mm512_mask_blend_ps(nonnegative, _mm512_mul_ps(e, s), s);
}

// tanh(x): an odd polynomial for |x| < 0.625, else sign(x) * (1 - e) / (1 + e), e = exp(-2|x|).
inline VecF tanh(VecF x) {
  using namespace exp_constants;
  const __m512 a = abs_ps(x.v);
  const __m512 z = _mm512_mul_ps(x.v, x.v);
  __m512 p = _mm512_set1_ps(kTanhP0);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kTanhP1));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kTanhP2));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kTanhP3));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kTanhP4));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), a, a);  // tanh(|x|)
  const __m512 e = exp_ps(_mm512_mul_ps(a, _mm512_set1_ps(-2.0f)));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
  const __m512 sign = _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_castps_si512(x.v), _mm512_set1_epi32(int(0x80000000u))));
  // Both branches compute tanh(|x|); the sign goes back on last, so tanh(-0) = -0.
  const __mmask16 is_small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(kTanhSmall), _CMP_LT_OQ);
  return _mm512_or_ps(_mm512_mask_blend_ps(is_small, t, small), sign);
}

// max(0, x) returns x when x is NaN (the second operand), as torch.relu.
inline VecF relu(VecF x) { return _mm512_max_ps(_mm512_setzero_ps(), x.v); }

inline VecF relu_backward(VecF dy, VecF y) {
  const __mmask16 off = _mm512_cmp_ps_mask(y.v, _mm512_setzero_ps(), _CMP_LE_OQ);
  return _mm512_mask_mov_ps(dy.v, off, _mm512_setzero_ps());
}

}  // namespace fastrnn::cpu::avx512
