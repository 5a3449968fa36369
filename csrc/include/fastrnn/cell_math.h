// fastrnn cell math: gate activations, their derivatives and the per-unit state update of every
// cell, written once and shared by the CPU kernels (scalar and SIMD) and the CUDA kernels.
//
// Every cell function is a template over the value type V: a scalar (float or double: one unit)
// or a CPU SIMD vector type (several units at once). Arithmetic uses V's operators; activations
// are called unqualified, so ordinary lookup finds the scalar overloads defined here and
// argument-dependent lookup finds the SIMD overloads defined next to each vector type.
//
// The formulas are torch.nn's, term for term:
//   LSTM (gate order i, f, g, o)          GRU (gate order r, z, n)
//     i = sigmoid(x_i + h_i)                r = sigmoid(x_r + h_r)
//     f = sigmoid(x_f + h_f)                z = sigmoid(x_z + h_z)
//     g = tanh(x_g + h_g)                   n = tanh(x_n + r * h_n)      (h_n includes b_hn)
//     o = sigmoid(x_o + h_o)                h' = n + z * (h - n)         (= (1 - z) * n + z * h)
//     c' = f * c + i * g
//     h' = o * tanh(c')                   RNN: h' = act(x + h), act = tanh or relu
// where x_* = W_i* x + b_i* and h_* = W_h* h + b_h*.
//
// Each CPU instruction-set translation unit includes this header inside its own target region
// with FASTRNN_CELL_NAMESPACE set (see csrc/cpu/step_kernels_impl.h), so every copy of these
// inline functions has a distinct mangled name and the linker never merges an AVX-512 copy
// with the baseline one.
#pragma once

#include <math.h>

#include "fastrnn/host_device.h"

#ifndef FASTRNN_CELL_NAMESPACE
#define FASTRNN_CELL_NAMESPACE portable
#endif

namespace fastrnn::cell {
inline namespace FASTRNN_CELL_NAMESPACE {

// ---- scalar activations (SIMD types provide the same four functions for themselves) ----

// sigmoid from e = exp(-|x|), which cannot overflow: 1 / (1 + e) for x >= 0, e / (1 + e) below,
// so the result keeps its relative accuracy far into the negative tail (NaN takes the second
// branch and stays NaN). The SIMD versions use the same form.
FASTRNN_HOST_DEVICE float sigmoid(float x) {
  const float e = ::expf(-::fabsf(x));
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}
FASTRNN_HOST_DEVICE double sigmoid(double x) {
  const double e = ::exp(-::fabs(x));
  const double s = 1.0 / (1.0 + e);
  return x >= 0.0 ? s : e * s;
}
FASTRNN_HOST_DEVICE float tanh(float x) { return ::tanhf(x); }
FASTRNN_HOST_DEVICE double tanh(double x) { return ::tanh(x); }
// NaN passes through, as in torch.relu.
FASTRNN_HOST_DEVICE float relu(float x) { return x < 0.0f ? 0.0f : x; }
FASTRNN_HOST_DEVICE double relu(double x) { return x < 0.0 ? 0.0 : x; }
// Gradient of relu from its output y, as torch's threshold_backward: zero where y <= 0.
FASTRNN_HOST_DEVICE float relu_backward(float dy, float y) { return y <= 0.0f ? 0.0f : dy; }
FASTRNN_HOST_DEVICE double relu_backward(double dy, double y) { return y <= 0.0 ? 0.0 : dy; }

// ---- derivatives written from the activation's output, in torch's forms ----

// d sigmoid: dy * (1 - y) * y   (torch's sigmoid_backward)
template <class V>
FASTRNN_HOST_DEVICE V sigmoid_backward(const V& dy, const V& y) {
  return dy * (V(1) - y) * y;
}
// d tanh: dy * (1 - y * y)   (torch's tanh_backward)
template <class V>
FASTRNN_HOST_DEVICE V tanh_backward(const V& dy, const V& y) {
  return dy * (V(1) - y * y);
}

// ---- vanilla RNN: the activation is a policy so tanh and relu share one kernel ----

struct TanhActivation {
  template <class V>
  FASTRNN_HOST_DEVICE static V forward(const V& x) { return tanh(x); }
  template <class V>
  FASTRNN_HOST_DEVICE static V backward(const V& dy, const V& y) { return tanh_backward(dy, y); }
};

struct ReluActivation {
  template <class V>
  FASTRNN_HOST_DEVICE static V forward(const V& x) { return relu(x); }
  template <class V>
  FASTRNN_HOST_DEVICE static V backward(const V& dy, const V& y) { return relu_backward(dy, y); }
};

// ---- LSTM ----

// In: i, f, g, o hold the pre-activations (x_* + h_*); c_prev is c_{t-1}.
// Out: i, f, g, o after activation, c = c_t and h = o * tanh(c_t) (before any projection).
template <class V>
FASTRNN_HOST_DEVICE void lstm_forward(V& i, V& f, V& g, V& o, const V& c_prev, V& c, V& h) {
  i = sigmoid(i);
  f = sigmoid(f);
  g = tanh(g);
  o = sigmoid(o);
  c = f * c_prev + i * g;
  h = o * tanh(c);
}

// In: the activated gates i, f, g, o and c_prev, c of this step; dh = dL/dh_t (after any
// projection has been undone), dc = dL/dc_t arriving from step t+1.
// Out: the pre-activation gradients di, df, dg, do_, dc_prev = dL/dc_{t-1}, and
// r = o * tanh(c_t) (the projection's input, needed for its weight gradient).
template <class V>
FASTRNN_HOST_DEVICE void lstm_backward(const V& i, const V& f, const V& g, const V& o,
                                       const V& c_prev, const V& c, const V& dh, const V& dc,
                                       V& di, V& df, V& dg, V& do_, V& dc_prev, V& r) {
  const V tanh_c = tanh(c);
  r = o * tanh_c;
  const V dc_total = dc + tanh_backward(dh * o, tanh_c);
  do_ = sigmoid_backward(dh * tanh_c, o);
  di = sigmoid_backward(dc_total * g, i);
  df = sigmoid_backward(dc_total * c_prev, f);
  dg = tanh_backward(dc_total * i, g);
  dc_prev = dc_total * f;
}

// ---- GRU ----

// In: x_r, x_z, x_n = W_i* x + b_i*; h_r, h_z, h_n = W_h* h + b_h*; h_prev = h_{t-1}.
// Out: the activated gates r, z, n and h = h_t.
template <class V>
FASTRNN_HOST_DEVICE void gru_forward(const V& x_r, const V& x_z, const V& x_n, const V& h_r,
                                     const V& h_z, const V& h_n, const V& h_prev, V& r, V& z,
                                     V& n, V& h) {
  r = sigmoid(x_r + h_r);
  z = sigmoid(x_z + h_z);
  n = tanh(x_n + r * h_n);
  h = n + z * (h_prev - n);
}

// In: the activated gates r, z, n, the saved h_n (= W_hn h_{t-1} + b_hn), h_prev and
// dh = dL/dh_t. Out: the pre-activation gradients dr, dz, dn of the input side, dh_n (the
// gradient reaching W_hn h + b_hn, i.e. dn * r) and the direct part of dL/dh_{t-1} (dh * z;
// the part through W_hh is added by the caller's GEMM).
template <class V>
FASTRNN_HOST_DEVICE void gru_backward(const V& r, const V& z, const V& n, const V& h_n,
                                      const V& h_prev, const V& dh, V& dr, V& dz, V& dn,
                                      V& dh_n, V& dh_prev) {
  dn = tanh_backward(dh * (V(1) - z), n);
  dz = sigmoid_backward(dh * (h_prev - n), z);
  dr = sigmoid_backward(dn * h_n, r);
  dh_n = dn * r;
  dh_prev = dh * z;
}

}  // namespace FASTRNN_CELL_NAMESPACE
}  // namespace fastrnn::cell
