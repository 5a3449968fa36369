// The fused per-step pointwise kernels of the CPU recurrence: one pass over the rows active at a
// time step that adds the biases, applies the gate activations, updates the state and writes the
// outputs and saved gates (forward), or turns saved gates into gate gradients (backward).
//
// Every matrix argument is a block of rows of a row-major matrix: row r of the step is at
// data + r * ld. Arguments marked "or null" may have data == nullptr. H is `hidden`.
// The kernels are compiled once per instruction set (step_kernels_<isa>.cpp); step_kernels<T>()
// in isa.h returns the table for the instruction set chosen at run time.
#pragma once

#include <cstdint>

namespace fastrnn::cpu {

template <class T>
struct Rows {
  T* data = nullptr;
  int64_t ld = 0;

  T* row(int64_t r) const { return data + r * ld; }
  // The same matrix starting `r` rows further down (null stays null).
  Rows skip(int64_t r) const { return {data ? data + r * ld : nullptr, ld}; }
  explicit operator bool() const { return data != nullptr; }
};

// Moves every matrix of a step `begin` rows down: how a step is cut into row ranges for threads.
template <class... Matrices>
void skip_rows(int64_t begin, Matrices&... matrices) {
  ((matrices = matrices.skip(begin)), ...);
}

template <class T>
struct LstmForwardStep {
  int64_t rows = 0, hidden = 0;
  Rows<T> gates;            // [rows, 4H] in: x W_ih^T + h W_hh^T; out: activated i f g o
  const T* bias = nullptr;  // [4H] b_ih + b_hh, or null
  Rows<T> c;                // [rows, H] in: c_{t-1}; out: c_t
  Rows<T> c_saved;          // [rows, H] out: c_t for backward, or null
  Rows<T> h;                // [rows, H] out: o * tanh(c_t) (h_t, or the projection's input)
  Rows<T> y;                // [rows, H] out: another copy of h_t (the layer output), or null

  LstmForwardStep slice(int64_t begin, int64_t end) const {
    LstmForwardStep s = *this;
    s.rows = end - begin;
    skip_rows(begin, s.gates, s.c, s.c_saved, s.h, s.y);
    return s;
  }
};

template <class T>
struct LstmBackwardStep {
  int64_t rows = 0, hidden = 0;
  Rows<const T> gates;   // [rows, 4H] activated i f g o
  Rows<const T> c;       // [rows, H] c_t
  Rows<const T> c_prev;  // [rows, H] c_{t-1}
  Rows<const T> dh;      // [rows, H] dL/dh_t carried from step t+1 (or all of it, see dy)
  Rows<const T> dy;      // [rows, H] dL/dh_t from this step's output, added to dh; or null
  Rows<T> dc;            // [rows, H] in: dL/dc_t; out: dL/dc_{t-1}
  Rows<T> dgates;        // [rows, 4H] out: gradients of the pre-activations i f g o
  Rows<T> r;             // [rows, H] out: o * tanh(c_t), the projection's input; or null

  LstmBackwardStep slice(int64_t begin, int64_t end) const {
    LstmBackwardStep s = *this;
    s.rows = end - begin;
    skip_rows(begin, s.gates, s.c, s.c_prev, s.dh, s.dy, s.dc, s.dgates, s.r);
    return s;
  }
};

template <class T>
struct GruForwardStep {
  int64_t rows = 0, hidden = 0;
  Rows<T> gates;            // [rows, 4H] in: [0, 3H) = x W_ih^T; out: activated r z n | h_n
  Rows<const T> hh;         // [rows, 3H] h W_hh^T
  const T* b_ih = nullptr;  // [3H] or null
  const T* b_hh = nullptr;  // [3H] or null
  Rows<T> h;                // [rows, H] in: h_{t-1}; out: h_t
  Rows<T> y;                // [rows, H] out: another copy of h_t, or null

  GruForwardStep slice(int64_t begin, int64_t end) const {
    GruForwardStep s = *this;
    s.rows = end - begin;
    skip_rows(begin, s.gates, s.hh, s.h, s.y);
    return s;
  }
};

template <class T>
struct GruBackwardStep {
  int64_t rows = 0, hidden = 0;
  Rows<const T> gates;   // [rows, 4H] activated r z n | h_n = W_hn h_{t-1} + b_hn
  Rows<const T> h_prev;  // [rows, H] h_{t-1}
  Rows<const T> dy;      // [rows, H] dL/dh_t from this step's output, or null
  Rows<T> dh;            // [rows, H] in: dL/dh_t carried; out: z * dL/dh_t (the direct part of
                         //   dL/dh_{t-1}; the caller's GEMM adds the part through W_hh)
  Rows<T> dgates_ih;     // [rows, 3H] out: dr dz dn, the gradient of x W_ih^T + b_ih
  Rows<T> dgates_hh;     // [rows, 3H] out: dr dz r*dn, the gradient of h W_hh^T + b_hh

  GruBackwardStep slice(int64_t begin, int64_t end) const {
    GruBackwardStep s = *this;
    s.rows = end - begin;
    skip_rows(begin, s.gates, s.h_prev, s.dy, s.dh, s.dgates_ih, s.dgates_hh);
    return s;
  }
};

template <class T>
struct RnnForwardStep {
  int64_t rows = 0, hidden = 0;
  Rows<const T> pre;        // [rows, H] x W_ih^T + h W_hh^T
  const T* bias = nullptr;  // [H] b_ih + b_hh, or null
  Rows<T> h;                // [rows, H] out: h_t
  Rows<T> y;                // [rows, H] out: another copy of h_t, or null

  RnnForwardStep slice(int64_t begin, int64_t end) const {
    RnnForwardStep s = *this;
    s.rows = end - begin;
    skip_rows(begin, s.pre, s.h, s.y);
    return s;
  }
};

template <class T>
struct RnnBackwardStep {
  int64_t rows = 0, hidden = 0;
  Rows<const T> h;   // [rows, H] h_t (the activation's output)
  Rows<const T> dh;  // [rows, H] dL/dh_t carried from step t+1
  Rows<const T> dy;  // [rows, H] dL/dh_t from this step's output, or null
  Rows<T> dpre;      // [rows, H] out: gradient of the pre-activation

  RnnBackwardStep slice(int64_t begin, int64_t end) const {
    RnnBackwardStep s = *this;
    s.rows = end - begin;
    skip_rows(begin, s.h, s.dh, s.dy, s.dpre);
    return s;
  }
};

// Elementwise activations of the vector math, exposed so tests can check every instruction
// set's exp/sigmoid/tanh against libm.
enum class Activation { kSigmoid, kTanh, kRelu };

template <class T>
struct StepKernels {
  void (*lstm_forward)(const LstmForwardStep<T>&);
  void (*lstm_backward)(const LstmBackwardStep<T>&);
  void (*gru_forward)(const GruForwardStep<T>&);
  void (*gru_backward)(const GruBackwardStep<T>&);
  void (*rnn_tanh_forward)(const RnnForwardStep<T>&);
  void (*rnn_tanh_backward)(const RnnBackwardStep<T>&);
  void (*rnn_relu_forward)(const RnnForwardStep<T>&);
  void (*rnn_relu_backward)(const RnnBackwardStep<T>&);
  void (*activation)(Activation kind, const T* in, T* out, int64_t n);
};

// One table per instruction set, defined in step_kernels_<isa>.cpp. Double precision runs the
// baseline (scalar, libm) kernels on every machine: it exists for accuracy, not speed.
namespace avx512 { StepKernels<float> step_kernels_f32(); }
namespace avx2 { StepKernels<float> step_kernels_f32(); }
namespace baseline {
StepKernels<float> step_kernels_f32();
StepKernels<double> step_kernels_f64();
}  // namespace baseline

}  // namespace fastrnn::cpu
