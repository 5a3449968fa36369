// How the recurrence driver (recurrence.h) turns one time step of a layer into each cell's step
// structs (steps.h): per cell, a CellSteps<kCell> that says where the step kernels read and
// write in the driver's buffers, which buffers the cell carries, and how a step kernel is run.
// The driver itself is cell-generic: it calls these and knows no cell by name. Torch-free.
//
//   template <> struct CellSteps<kCell> {
//     template <class T, class A> using ForwardStep = ...;   // the cell's step structs (steps.h)
//     template <class T, class A> using BackwardStep = ...;
//     // Width of the driver's pre-activation rows in inference, in blocks of H (training uses
//     // the workspace layout, cell_info(kCell).workspace_blocks).
//     static constexpr int64_t kInferenceBlocks;
//     // Whether the recurrent product h W_hh^T (+ b_hh) goes to its own buffer (the GRU: r
//     // multiplies its n block) instead of adding into the pre-activations.
//     static constexpr bool kSeparateProduct;
//     // Whether the backward step leaves in dh a direct part of dL/dh_{t-1} (the GRU's z * dh),
//     // which the product through W_hh then adds to (else the product overwrites dh).
//     static constexpr bool kDirectHiddenGrad;
//     static auto forward(const ForwardPlace<T, A>&);         // the forward step struct
//     static Rows<A> product_rows(const ForwardStep&);        // where h W_hh^T adds (unless separate)
//     static void backward(const Backend&, const BackwardPlace<T, A>&, int64_t u0, int64_t u1);
//   };
// A step kernel runs as backend.template step<kCell>(step), forward or backward.
#pragma once

#include <algorithm>
#include <cstdint>

#include "fastrnn/cells.h"
#include "fastrnn/steps.h"

namespace fastrnn {

// Where the state entering step t came from: rows [0, split) from the outputs of the step
// before it in the recurrence's order (at row offset `offset`), rows [split, rows(t)) from the
// initial state (sequences that start at t: only in the reverse direction of a packed batch).
struct PreviousStep {
  int64_t offset = 0;
  int64_t split = 0;
};

// Forward step t: its rows and where they are. All [rows, H] unless said otherwise.
template <class T, class A>
struct ForwardPlace {
  int64_t rows = 0, hidden = 0;
  Rows<A> pre;              // x W_ih^T (in) and, in training, the step's workspace rows (out)
  bool training = false;
  const T* b_ih = nullptr;  // or null
  const T* b_hh = nullptr;  // or null
  const T* h_prev = nullptr;
  T* h = nullptr;           // h_t, the state the next step reads
  T* y = nullptr;           // the step's output rows
  A* c = nullptr;           // cells with a cell state: c_{t-1} in, c_t out (in place)
  T* r = nullptr;           // with a projection: o * tanh(c_t), which the driver projects into
                            // h and y (then h and y are not written here), else null
};

// Backward step t, units [u0, u1) of it (whole rows when projected). Sequence matrices (y,
// workspace) are whole; the rest are the step's rows.
template <class T, class A>
struct BackwardPlace {
  int64_t rows = 0, hidden = 0, offset = 0;  // offset: the step's first row in the sequence
  PreviousStep from;
  const A* workspace = nullptr;  // [N, ld] what forward saved
  int64_t ld = 0;
  const T* y = nullptr;          // [N, H] the layer output, h_t of every step
  const T* h0 = nullptr;         // [B, H]
  const A* c0 = nullptr;         // [B, H] cells with a cell state
  const T* dy = nullptr;         // this step's rows of dL/dy
  A* dh = nullptr;               // [B, H] dL/dh carried from step t+1 (in), to step t-1 (out)
  A* dc = nullptr;               // [B, H] the same for the cell state
  Rows<T> dgates_ih;             // out: gradient of x W_ih^T + b_ih
  Rows<T> dgates_hh;             // out: gradient of h W_hh^T + b_hh (kSeparateProduct cells)
  // With a projection (h = r W_hr^T): this step's rows of dL/dh [rows, P] and of r (out), and
  // scratch for dL/dr.
  T* dh_projected = nullptr;
  T* r = nullptr;
  A* dr = nullptr;
  const T* w_hr = nullptr;
  int64_t output_size = 0;       // P
};

namespace detail {

// Runs a backward step whose `prev` matrix (c_{t-1} or h_{t-1}) comes from two places.
template <CellKind kCell, class Backend, class Step, class U>
void step_with_previous(const Backend& backend, const Step& step, Rows<const U> Step::*prev,
                        const PreviousStep& from, Rows<const U> previous_outputs,
                        Rows<const U> initial) {
  if (from.split > 0) {
    Step head = step.slice(0, from.split);
    head.*prev = previous_outputs.skip(from.offset);
    backend.template step<kCell>(head);
  }
  if (from.split < step.rows) {
    Step tail = step.slice(from.split, step.rows);
    tail.*prev = initial.skip(from.split);
    backend.template step<kCell>(tail);
  }
}

// A forward step struct with what every cell's has: rows, hidden size, biases, h_t and y.
template <class Step, class Place>
Step forward_step_of(const Place& p) {
  Step step;
  step.rows = p.rows;
  step.hidden = p.hidden;
  step.b_ih = p.b_ih;
  step.b_hh = p.b_hh;
  step.h = {p.h, p.hidden};
  step.y = {p.y, p.hidden};
  return step;
}

// A backward step struct with its rows and hidden size.
template <class Step, class Place>
Step backward_step_of(const Place& p) {
  Step step;
  step.rows = p.rows;
  step.hidden = p.hidden;
  return step;
}

}  // namespace detail

template <CellKind kCell>
struct CellSteps;

// LSTM: i f g o into one pre-activation row with c_t saved after them; a cell state; optional
// projection.
template <>
struct CellSteps<CellKind::kLstm> {
  template <class T, class A>
  using ForwardStep = LstmForwardStep<T, A>;
  template <class T, class A>
  using BackwardStep = LstmBackwardStep<T, A>;
  static constexpr int64_t kInferenceBlocks = 4;
  static constexpr bool kSeparateProduct = false;
  static constexpr bool kDirectHiddenGrad = false;

  template <class T, class A>
  static LstmForwardStep<T, A> forward(const ForwardPlace<T, A>& p) {
    auto step = detail::forward_step_of<LstmForwardStep<T, A>>(p);
    const int64_t H = p.hidden;
    step.gates = p.pre;
    step.c = {p.c, H};
    if (p.training) step.c_saved = {p.pre.data + 4 * H, p.pre.ld};
    if (p.r != nullptr) {  // the projection's input; the driver writes h and y
      step.h = {p.r, H};
      step.y = {};
    }
    return step;
  }
  template <class T, class A>
  static Rows<A> product_rows(const LstmForwardStep<T, A>& step) { return step.gates; }

  template <class Backend, class T, class A>
  static void backward(const Backend& backend, const BackwardPlace<T, A>& p, int64_t u0,
                       int64_t u1) {
    const int64_t H = p.hidden;
    const A* saved = p.workspace + p.offset * p.ld;
    auto step = detail::backward_step_of<LstmBackwardStep<T, A>>(p);
    step.gates = {saved, p.ld};
    step.c = {saved + 4 * H, p.ld};
    step.dc = {p.dc, H};
    step.dgates = p.dgates_ih;
    if (p.dh_projected != nullptr) {  // whole steps only (u0 = 0, u1 = H)
      // dL/dh_t = dy_t + the carried part, then back through h = r W_hr^T.
      const int64_t P = p.output_size;
      backend.add(p.dh_projected, p.dy, p.dh, p.rows * P);
      backend.gemm(false, false, p.rows, H, P, p.dh_projected, P, p.w_hr, H, false, p.dr, H);
      step.dh = {p.dr, H};
      step.r = {p.r, H};
    } else {
      step.dh = {p.dh, H};
      step.dy = {p.dy, H};
    }
    detail::step_with_previous<CellKind::kLstm>(backend, step.unit_slice(u0, u1),
                                                &LstmBackwardStep<T, A>::c_prev, p.from,
                               Rows<const A>{p.workspace + 4 * H + u0, p.ld},
                               Rows<const A>{p.c0 + u0, H});
  }
};

// GRU: x W_ih^T and the separate h W_hh^T + b_hh meet in the step kernel, which saves r z n and
// h_n = W_hn h + b_hn (also in inference: the rows are 4H wide either way).
template <>
struct CellSteps<CellKind::kGru> {
  template <class T, class A>
  using ForwardStep = GruForwardStep<T, A>;
  template <class T, class A>
  using BackwardStep = GruBackwardStep<T, A>;
  static constexpr int64_t kInferenceBlocks = 4;
  static constexpr bool kSeparateProduct = true;
  static constexpr bool kDirectHiddenGrad = true;

  template <class T, class A>
  static GruForwardStep<T, A> forward(const ForwardPlace<T, A>& p) {
    auto step = detail::forward_step_of<GruForwardStep<T, A>>(p);
    step.gates = p.pre;
    step.h_prev = {p.h_prev, p.hidden};
    return step;
  }

  template <class Backend, class T, class A>
  static void backward(const Backend& backend, const BackwardPlace<T, A>& p, int64_t u0,
                       int64_t u1) {
    const int64_t H = p.hidden;
    auto step = detail::backward_step_of<GruBackwardStep<T, A>>(p);
    step.gates = {p.workspace + p.offset * p.ld, p.ld};
    step.dy = {p.dy, H};
    step.dh = {p.dh, H};
    step.dgates_ih = p.dgates_ih;
    step.dgates_hh = p.dgates_hh;
    detail::step_with_previous<CellKind::kGru>(backend, step.unit_slice(u0, u1),
                                               &GruBackwardStep<T, A>::h_prev, p.from, Rows<const T>{p.y + u0, H}, Rows<const T>{p.h0 + u0, H});
  }
};

// Vanilla RNN (tanh or relu): one block, nothing saved but the output.
template <CellKind kCell>
struct RnnCellSteps {
  template <class T, class A>
  using ForwardStep = RnnForwardStep<T, A>;
  template <class T, class A>
  using BackwardStep = RnnBackwardStep<T, A>;
  static constexpr int64_t kInferenceBlocks = 1;
  static constexpr bool kSeparateProduct = false;
  static constexpr bool kDirectHiddenGrad = false;

  template <class T, class A>
  static RnnForwardStep<T, A> forward(const ForwardPlace<T, A>& p) {
    auto step = detail::forward_step_of<RnnForwardStep<T, A>>(p);
    step.pre = p.pre;
    return step;
  }
  template <class T, class A>
  static Rows<A> product_rows(const RnnForwardStep<T, A>& step) { return step.pre; }

  template <class Backend, class T, class A>
  static void backward(const Backend& backend, const BackwardPlace<T, A>& p, int64_t u0,
                       int64_t u1) {
    const int64_t H = p.hidden;
    auto step = detail::backward_step_of<RnnBackwardStep<T, A>>(p);
    step.h = {p.y + p.offset * H, H};
    step.dh = {p.dh, H};
    step.dy = {p.dy, H};
    step.dpre = p.dgates_ih;
    backend.template step<kCell>(step.unit_slice(u0, u1));
  }
};
template <>
struct CellSteps<CellKind::kRnnTanh> : RnnCellSteps<CellKind::kRnnTanh> {};
template <>
struct CellSteps<CellKind::kRnnRelu> : RnnCellSteps<CellKind::kRnnRelu> {};

}  // namespace fastrnn
