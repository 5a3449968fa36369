// One float or double dressed as a one-lane vector, so the baseline kernels are the same
// templates as the SIMD ones. Activations are the scalar ones of cell_math.h (libm).
#pragma once

namespace fastrnn::cpu::baseline {

template <class T>
struct Vec1 {
  static constexpr int kWidth = 1;
  T v;

  Vec1() = default;
  Vec1(T x) : v(x) {}

  static Vec1 load(const T* p) { return *p; }
  static Vec1 load(const T* p, int /*n*/) { return *p; }
  // A bfloat16 value widened to float (exact: bfloat16 is float's upper half).
  static Vec1 load_bf16(const uint16_t* p, int /*n*/) {
    const uint32_t bits = static_cast<uint32_t>(*p) << 16;
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return static_cast<T>(value);
  }
  void store(T* p, int /*n*/) const { *p = v; }
};

template <class T> inline Vec1<T> operator+(Vec1<T> a, Vec1<T> b) { return a.v + b.v; }
template <class T> inline Vec1<T> operator-(Vec1<T> a, Vec1<T> b) { return a.v - b.v; }
template <class T> inline Vec1<T> operator*(Vec1<T> a, Vec1<T> b) { return a.v * b.v; }
template <class T> inline Vec1<T> operator/(Vec1<T> a, Vec1<T> b) { return a.v / b.v; }
template <class T> inline Vec1<T> fma(Vec1<T> a, Vec1<T> b, Vec1<T> c) { return a.v * b.v + c.v; }
template <class T> inline Vec1<T> transpose_sum(const Vec1<T> (&a)[1]) { return a[0]; }

template <class T> inline Vec1<T> sigmoid(Vec1<T> x) { return cell::sigmoid(x.v); }
template <class T> inline Vec1<T> tanh(Vec1<T> x) { return cell::tanh(x.v); }
template <class T> inline Vec1<T> relu(Vec1<T> x) { return cell::relu(x.v); }
template <class T> inline Vec1<T> relu_backward(Vec1<T> dy, Vec1<T> y) {
  return cell::relu_backward(dy.v, y.v);
}

}  // namespace fastrnn::cpu::baseline
