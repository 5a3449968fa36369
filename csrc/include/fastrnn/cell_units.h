// Each cell's step kernel body for one hidden unit of one row: what it reads, the cell math of
// cell_math.h, what it writes (the new state, the outputs, and what backward needs). Written
// once for the CPU kernels (V a SIMD vector: a block of units, csrc/cpu) and the CUDA kernels
// (V a scalar: one unit per thread, csrc/cuda), which differ only in how they loop over units
// and in `Io`, their access to a unit's element of a row:
//
//   struct Io {
//     template <class U> V load(const U* row, int64_t j) const;          // row[j] as V
//     template <class U> V load_or_zero(const U* row, int64_t j) const;  // 0 when row is null
//     template <class U> void store(U* row, int64_t j, const V& value) const;
//   };
//
// Forward functions take the pre-activations from the caller, who forms them with the
// recurrent product (the CPU kernels fuse that product into the step: fused_kernels_impl.h).
// The gate blocks of a row are H apart: gate k of unit j is at k * H + j (steps.h).
//
// CellUnits<kCell>::backward<V>(io, step, r, j) is cell kCell's backward unit, so a backward
// kernel is one template for every cell. Included like cell_math.h (each CPU instruction set's
// copy in its own inline namespace).
#pragma once

#include <cstdint>

#include "fastrnn/cell_math.h"
#include "fastrnn/cells.h"
#include "fastrnn/steps.h"

namespace fastrnn::cell {
inline namespace FASTRNN_CELL_NAMESPACE {

// ---- LSTM ----

// i, f, g, o: the pre-activations (x W_ih^T + h W_hh^T + biases) of unit j of row r. With
// `save` (training), the activated gates and c_t go to the step's gate rows and c_saved.
template <class V, class Io, class T, class A>
FASTRNN_HOST_DEVICE void lstm_forward_unit(const Io& io, const LstmForwardStep<T, A>& s,
                                           int64_t r, int64_t j, V i, V f, V g, V o, bool save) {
  const int64_t H = s.hidden;
  A* c = s.c.row(r);
  V c_new, h_new;
  lstm_forward(i, f, g, o, io.load(c, j), c_new, h_new);
  io.store(c, j, c_new);
  io.store(s.h.row(r), j, h_new);
  if (s.y) io.store(s.y.row(r), j, h_new);
  if (save) {
    A* gates = s.gates.row(r);
    io.store(gates, j, i);
    io.store(gates, H + j, f);
    io.store(gates, 2 * H + j, g);
    io.store(gates, 3 * H + j, o);
    if (s.c_saved) io.store(s.c_saved.row(r), j, c_new);
  }
}

template <class V, class Io, class T, class A>
FASTRNN_HOST_DEVICE void lstm_backward_unit(const Io& io, const LstmBackwardStep<T, A>& s,
                                            int64_t r, int64_t j) {
  const int64_t H = s.hidden;
  const A* gates = s.gates.row(r);
  const V dh = io.load(s.dh.row(r), j) + io.load_or_zero(s.dy ? s.dy.row(r) : nullptr, j);
  V di, df, dg, do_, dc_prev, proj_in;
  lstm_backward(io.load(gates, j), io.load(gates, H + j), io.load(gates, 2 * H + j),
                io.load(gates, 3 * H + j), io.load(s.c_prev.row(r), j), io.load(s.c.row(r), j),
                dh, io.load(s.dc.row(r), j), di, df, dg, do_, dc_prev, proj_in);
  T* dgates = s.dgates.row(r);
  io.store(dgates, j, di);
  io.store(dgates, H + j, df);
  io.store(dgates, 2 * H + j, dg);
  io.store(dgates, 3 * H + j, do_);
  io.store(s.dc.row(r), j, dc_prev);
  if (s.r) io.store(s.r.row(r), j, proj_in);
}

// ---- GRU ----

// x_*: x W_i* + b_i*; h_*: h W_h* + b_h* of unit j of row r. With `save`, the activated gates
// and h_n go to the step's gate rows.
template <class V, class Io, class T, class A>
FASTRNN_HOST_DEVICE void gru_forward_unit(const Io& io, const GruForwardStep<T, A>& s, int64_t r,
                                          int64_t j, V x_r, V x_z, V x_n, V h_r, V h_z, V h_n,
                                          bool save) {
  const int64_t H = s.hidden;
  V rg, z, n, h_new;
  gru_forward(x_r, x_z, x_n, h_r, h_z, h_n, io.load(s.h_prev.row(r), j), rg, z, n, h_new);
  io.store(s.h.row(r), j, h_new);
  if (s.y) io.store(s.y.row(r), j, h_new);
  if (save) {
    A* gates = s.gates.row(r);
    io.store(gates, j, rg);
    io.store(gates, H + j, z);
    io.store(gates, 2 * H + j, n);
    io.store(gates, 3 * H + j, h_n);
  }
}

template <class V, class Io, class T, class A>
FASTRNN_HOST_DEVICE void gru_backward_unit(const Io& io, const GruBackwardStep<T, A>& s,
                                           int64_t r, int64_t j) {
  const int64_t H = s.hidden;
  const A* gates = s.gates.row(r);
  A* dh_row = s.dh.row(r);
  const V dh = io.load(dh_row, j) + io.load_or_zero(s.dy ? s.dy.row(r) : nullptr, j);
  V dr, dz, dn, dh_n, dh_prev;
  gru_backward(io.load(gates, j), io.load(gates, H + j), io.load(gates, 2 * H + j),
               io.load(gates, 3 * H + j), io.load(s.h_prev.row(r), j), dh, dr, dz, dn, dh_n,
               dh_prev);
  T* d_ih = s.dgates_ih.row(r);
  T* d_hh = s.dgates_hh.row(r);
  io.store(d_ih, j, dr);
  io.store(d_ih, H + j, dz);
  io.store(d_ih, 2 * H + j, dn);
  io.store(d_hh, j, dr);
  io.store(d_hh, H + j, dz);
  io.store(d_hh, 2 * H + j, dh_n);
  io.store(dh_row, j, dh_prev);
}

// ---- vanilla RNN (Activation: TanhActivation or ReluActivation) ----

// pre: x W_ih^T + h W_hh^T + biases of unit j of row r.
template <class Activation, class V, class Io, class T, class A>
FASTRNN_HOST_DEVICE void rnn_forward_unit(const Io& io, const RnnForwardStep<T, A>& s, int64_t r,
                                          int64_t j, V pre) {
  const V h_new = Activation::forward(pre);
  io.store(s.h.row(r), j, h_new);
  if (s.y) io.store(s.y.row(r), j, h_new);
}

template <class Activation, class V, class Io, class T, class A>
FASTRNN_HOST_DEVICE void rnn_backward_unit(const Io& io, const RnnBackwardStep<T, A>& s,
                                           int64_t r, int64_t j) {
  const V dh = io.load(s.dh.row(r), j) + io.load_or_zero(s.dy ? s.dy.row(r) : nullptr, j);
  io.store(s.dpre.row(r), j, Activation::backward(dh, io.load(s.h.row(r), j)));
}

// ---- by cell ----

template <CellKind kCell>
struct CellUnits;

template <>
struct CellUnits<CellKind::kLstm> {
  template <class V, class Io, class Step>
  FASTRNN_HOST_DEVICE static void backward(const Io& io, const Step& s, int64_t r, int64_t j) {
    lstm_backward_unit<V>(io, s, r, j);
  }
};

template <>
struct CellUnits<CellKind::kGru> {
  template <class V, class Io, class Step>
  FASTRNN_HOST_DEVICE static void backward(const Io& io, const Step& s, int64_t r, int64_t j) {
    gru_backward_unit<V>(io, s, r, j);
  }
};

template <class ActivationT>
struct RnnUnits {
  using Activation = ActivationT;
  template <class V, class Io, class Step>
  FASTRNN_HOST_DEVICE static void backward(const Io& io, const Step& s, int64_t r, int64_t j) {
    rnn_backward_unit<Activation, V>(io, s, r, j);
  }
};
template <>
struct CellUnits<CellKind::kRnnTanh> : RnnUnits<TanhActivation> {};
template <>
struct CellUnits<CellKind::kRnnRelu> : RnnUnits<ReluActivation> {};

}  // namespace FASTRNN_CELL_NAMESPACE
}  // namespace fastrnn::cell
