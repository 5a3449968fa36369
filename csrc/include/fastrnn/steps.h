// Arguments of the fused per-step pointwise kernels, shared by the CPU kernels (csrc/cpu) and the
// CUDA kernels (csrc/cuda). Torch-free.
//
// A step kernel makes one pass over the rows active at a time step: forward, it adds the biases
// to the pre-activations, applies the gate activations, updates the state and writes the outputs
// and what backward needs; backward, it turns the saved gates into gate gradients.
//
// Every matrix argument is a block of rows of a row-major matrix: row r of the step is at
// data + r * ld. Arguments marked "or null" may have data == nullptr. H is `hidden`.
// Two element types: T, the storage type of the layer's tensors (inputs, weights, outputs, the
// hidden state), and A, the type of pre-activations, saved gates, the LSTM cell state and the
// carried gradients (float for half types, else T: see acc_type below).
#pragma once

#include <cstdint>

#include "fastrnn/host_device.h"

namespace fastrnn {

template <class T>
struct Rows {
  T* data = nullptr;
  int64_t ld = 0;

  FASTRNN_HOST_DEVICE T* row(int64_t r) const { return data + r * ld; }
  // The same matrix starting `r` rows further down (null stays null).
  FASTRNN_HOST_DEVICE Rows skip(int64_t r) const { return {data ? data + r * ld : nullptr, ld}; }
  FASTRNN_HOST_DEVICE explicit operator bool() const { return data != nullptr; }
};

// Moves every matrix of a step `begin` rows down: how a step is cut into row ranges.
template <class... Matrices>
void skip_rows(int64_t begin, Matrices&... matrices) {
  ((matrices = matrices.skip(begin)), ...);
}

// Moves every matrix of a step `begin` columns right: how a backward step is cut into ranges of
// hidden units (gate blocks stay H apart, so each gate's block moves with it).
template <class... Matrices>
void skip_columns(int64_t begin, Matrices&... matrices) {
  ((matrices.data = matrices.data ? matrices.data + begin : nullptr), ...);
}

template <class T, class A = T>
struct LstmForwardStep {
  int64_t rows = 0, hidden = 0;
  Rows<A> gates;            // [rows, 4H] in: x W_ih^T + h W_hh^T; out: activated i f g o
  const T* b_ih = nullptr;  // [4H] or null
  const T* b_hh = nullptr;  // [4H] or null
  Rows<A> c;                // [rows, H] in: c_{t-1}; out: c_t
  Rows<A> c_saved;          // [rows, H] out: c_t for backward, or null
  Rows<T> h;                // [rows, H] out: o * tanh(c_t) (h_t, or the projection's input)
  Rows<T> y;                // [rows, H] out: another copy of h_t (the layer output), or null

  LstmForwardStep slice(int64_t begin, int64_t end) const {
    LstmForwardStep s = *this;
    s.rows = end - begin;
    skip_rows(begin, s.gates, s.c, s.c_saved, s.h, s.y);
    return s;
  }
};

// Backward steps may cover only `units` hidden units from each row's start (0: all of them);
// `hidden` stays the distance between gate blocks. unit_slice cuts one (CPU kernels only).
template <class T, class A = T>
struct LstmBackwardStep {
  int64_t rows = 0, hidden = 0, units = 0;
  Rows<const A> gates;   // [rows, 4H] activated i f g o
  Rows<const A> c;       // [rows, H] c_t
  Rows<const A> c_prev;  // [rows, H] c_{t-1}
  Rows<const A> dh;      // [rows, H] dL/dh_t carried from step t+1 (or all of it, see dy)
  Rows<const T> dy;      // [rows, H] dL/dh_t from this step's output, added to dh; or null
  Rows<A> dc;            // [rows, H] in: dL/dc_t; out: dL/dc_{t-1}
  Rows<T> dgates;        // [rows, 4H] out: gradients of the pre-activations i f g o
  Rows<T> r;             // [rows, H] out: o * tanh(c_t), the projection's input; or null

  LstmBackwardStep slice(int64_t begin, int64_t end) const {
    LstmBackwardStep s = *this;
    s.rows = end - begin;
    skip_rows(begin, s.gates, s.c, s.c_prev, s.dh, s.dy, s.dc, s.dgates, s.r);
    return s;
  }
  LstmBackwardStep unit_slice(int64_t begin, int64_t end) const {
    LstmBackwardStep s = *this;
    s.units = end - begin;
    skip_columns(begin, s.gates, s.c, s.c_prev, s.dh, s.dy, s.dc, s.dgates, s.r);
    return s;
  }
};

template <class T, class A = T>
struct GruForwardStep {
  int64_t rows = 0, hidden = 0;
  Rows<A> gates;            // [rows, 4H] in: [0, 3H) = x W_ih^T; out: activated r z n | h_n
  Rows<const A> hh;         // [rows, 3H] h W_hh^T
  const T* b_ih = nullptr;  // [3H] or null
  const T* b_hh = nullptr;  // [3H] or null
  Rows<const T> h_prev;     // [rows, H] h_{t-1}
  Rows<T> h;                // [rows, H] out: h_t
  Rows<T> y;                // [rows, H] out: another copy of h_t, or null

  GruForwardStep slice(int64_t begin, int64_t end) const {
    GruForwardStep s = *this;
    s.rows = end - begin;
    skip_rows(begin, s.gates, s.hh, s.h_prev, s.h, s.y);
    return s;
  }
};

template <class T, class A = T>
struct GruBackwardStep {
  int64_t rows = 0, hidden = 0, units = 0;
  Rows<const A> gates;   // [rows, 4H] activated r z n | h_n = W_hn h_{t-1} + b_hn
  Rows<const T> h_prev;  // [rows, H] h_{t-1}
  Rows<const T> dy;      // [rows, H] dL/dh_t from this step's output, or null
  Rows<A> dh;            // [rows, H] in: dL/dh_t carried; out: z * dL/dh_t (the direct part of
                         //   dL/dh_{t-1}; the caller's GEMM adds the part through W_hh)
  Rows<T> dgates_ih;     // [rows, 3H] out: dr dz dn, the gradient of x W_ih^T + b_ih
  Rows<T> dgates_hh;     // [rows, 3H] out: dr dz r*dn, the gradient of h W_hh^T + b_hh

  GruBackwardStep slice(int64_t begin, int64_t end) const {
    GruBackwardStep s = *this;
    s.rows = end - begin;
    skip_rows(begin, s.gates, s.h_prev, s.dy, s.dh, s.dgates_ih, s.dgates_hh);
    return s;
  }
  GruBackwardStep unit_slice(int64_t begin, int64_t end) const {
    GruBackwardStep s = *this;
    s.units = end - begin;
    skip_columns(begin, s.gates, s.h_prev, s.dy, s.dh, s.dgates_ih, s.dgates_hh);
    return s;
  }
};

template <class T, class A = T>
struct RnnForwardStep {
  int64_t rows = 0, hidden = 0;
  Rows<A> pre;              // [rows, H] x W_ih^T + h W_hh^T (the recurrent GEMM adds into it)
  const T* b_ih = nullptr;  // [H] or null
  const T* b_hh = nullptr;  // [H] or null
  Rows<T> h;                // [rows, H] out: h_t
  Rows<T> y;                // [rows, H] out: another copy of h_t, or null

  RnnForwardStep slice(int64_t begin, int64_t end) const {
    RnnForwardStep s = *this;
    s.rows = end - begin;
    skip_rows(begin, s.pre, s.h, s.y);
    return s;
  }
};

template <class T, class A = T>
struct RnnBackwardStep {
  int64_t rows = 0, hidden = 0, units = 0;
  Rows<const T> h;   // [rows, H] h_t (the activation's output)
  Rows<const A> dh;  // [rows, H] dL/dh_t carried from step t+1
  Rows<const T> dy;  // [rows, H] dL/dh_t from this step's output, or null
  Rows<T> dpre;      // [rows, H] out: gradient of the pre-activation

  RnnBackwardStep slice(int64_t begin, int64_t end) const {
    RnnBackwardStep s = *this;
    s.rows = end - begin;
    skip_rows(begin, s.h, s.dh, s.dy, s.dpre);
    return s;
  }
  RnnBackwardStep unit_slice(int64_t begin, int64_t end) const {
    RnnBackwardStep s = *this;
    s.units = end - begin;
    skip_columns(begin, s.h, s.dh, s.dy, s.dpre);
    return s;
  }
};

}  // namespace fastrnn
