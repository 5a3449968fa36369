// Constants of the float exp and tanh approximations used by the SIMD vector types.
// The polynomials are the classic Cephes single-precision ones (exp on |r| <= ln2/2 after
// reduction x = n ln2 + r; tanh on |x| < 0.625), accurate to about 1 ulp.
#pragma once

namespace fastrnn::cpu::exp_constants {

// exp(88.8) overflows float and exp(-150) underflows to 0, so clamping there changes no result
// and keeps n = round(x / ln2) small enough to build 2^n without integer overflow.
constexpr float kMaxArg = 88.8f;
constexpr float kMinArg = -150.0f;
constexpr float kLog2e = 1.44269504088896341f;
// ln 2 split so that n * kLn2Hi is exact for the n in range.
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f;
constexpr float kP1 = 1.3981999507e-3f;
constexpr float kP2 = 8.3334519073e-3f;
constexpr float kP3 = 4.1665795894e-2f;
constexpr float kP4 = 1.6666665459e-1f;
constexpr float kP5 = 5.0000001201e-1f;

constexpr float kTanhSmall = 0.625f;
constexpr float kTanhP0 = -5.70498872745e-3f;
constexpr float kTanhP1 = 2.06390887954e-2f;
constexpr float kTanhP2 = -5.37397155531e-2f;
constexpr float kTanhP3 = 1.33314422036e-1f;
constexpr float kTanhP4 = -3.33332819422e-1f;

}  // namespace fastrnn::cpu::exp_constants
