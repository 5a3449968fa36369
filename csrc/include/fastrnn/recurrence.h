// The recurrence driver: a whole sequence of one layer and one direction, forward or backward,
// for any cell and any device. Torch-free: the backend supplies GEMMs, kernels and scratch.
// (About 550 lines in one file: forward and backward share the Backend contract below, the
// call structs and the row bookkeeping of packed sequences.) The driver knows no cell by name:
// cells differ in their step kernels and in which buffers they carry (a cell state and an
// optional projection; a separate recurrent product), which cells.h's CellInfo and
// cell_steps.h's CellSteps<kCell> say; the devices differ only in their Backend:
//
//   struct Backend {
//     static constexpr int64_t kChunkRows;  // rows per chunk of the whole-sequence GEMMs
//     using T = ...;  // storage type of the layer's tensors
//     using A = ...;  // type of pre-activations, saved gates, cell state, carried gradients
//     // Row-major C[m, n] (+)= op(A)[m, k] op(B)[k, n]; Out is T or A.
//     template <class Out> void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n,
//         int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb, bool accumulate,
//         Out* c, int64_t ldc) const;
//     // Scratch memory: Buffer<U> owns `elements` values of U (uninitialized), data() points
//     // at them; a default-constructed Buffer owns nothing (data() null).
//     template <class U> using Buffer = ...;
//     template <class U> Buffer<U> scratch(int64_t elements) const;
//     template <class Dst, class Src> void copy(Dst* dst, const Src* src, int64_t n) const;
//     void copy_rows(const T* src, int64_t src_ld, T* dst, int64_t dst_ld, int64_t rows,
//                    int64_t cols) const;
//     void add(T* out, const T* a, const A* b, int64_t n) const;   // out = a + b
//     // Optional (the CPU's): when the backend holds x W_ih^T already (computed before the
//     // call in its own precision), writes rows [row0, row0 + rows) of it into pre (leading
//     // dimension ld) and returns true; false: the driver's GEMM computes them.
//     bool input_projection(int64_t row0, int64_t rows, int64_t G, A* pre, int64_t ld) const;
//     void sum_rows(const T* matrix, int64_t rows, int64_t cols, T* out, bool accumulate) const;
//     // Cell kCell's step kernels (cell_steps.h: CellSteps<kCell>::BackwardStep<T, A>, and
//     // ForwardStep where forward_step runs gemm_then_step; a backend whose forward steps are
//     // fused, the CPU's, has the backward ones only).
//     template <CellKind kCell, class Step> void step(const Step& step) const;
//     // The recurrent product of a forward step and its step kernel (gemm_then_step below,
//     // or fused), with whatever prepare_forward made of the weights once per call of `steps`
//     // steps of at most `rows` rows. When the prepared weights say `input_in_steps`, the
//     // step also computes its input projection x_t W_ih^T (into the step's pre-activation
//     // rows) and the driver skips its whole-sequence GEMM.
//     template <CellKind> auto prepare_forward(const LayerWeights<T>& w, int64_t rows,
//                                              int64_t steps) const;
//     template <CellKind, class Step, class Prepared> void forward_step(const Step& step,
//         Rows<const T> h_prev, Rows<const T> x, const Prepared& prepared, A* hh_scratch,
//         bool training) const;
//     // All steps, in order: forward_step(step_at(s)...) for s = 0 .. steps - 1, step_at(s)
//     // giving (step, h_prev, x) (run_steps_in_order below), or the backend's own schedule
//     // with the same result.
//     template <CellKind, class StepAt, class Prepared> void forward_steps(int64_t steps,
//         const StepAt& step_at, const Prepared& prepared, A* hh_scratch, bool training) const;
//     // Backward: dh[:, c0:c1] (+)= dgates [rows, G] W_hh[:, c0:c1], and the iterations
//     // [k0, k1): pointwise(k, 0, units) then recurrent(k, 0, columns) for each k in order
//     // (run_backward_in_order below), or split by units/columns when `splittable`.
//     void hidden_grad(int64_t rows, Rows<const T> dgates, const T* w_hh, int64_t G, int64_t P,
//                      Rows<A> dh, int64_t c0, int64_t c1, bool accumulate) const;
//     template <CellKind, class Pointwise, class Recurrent> void backward_steps(int64_t k0,
//         int64_t k1, const Pointwise&, const Recurrent&, int64_t units, int64_t columns,
//         bool splittable, int64_t flops_per_step) const;
//   };
//
// Per layer and direction, forward: the input projection of every step as one GEMM, then per
// step the recurrent GEMM and one fused step kernel (on the CPU, float steps of 4 or more rows
// in calls of 256 rows or more, and single-step calls of one row, compute the input projection
// in the step kernel instead). Backward, in reverse order: one fused
// gate-gradient kernel and the dh GEMM per step, then the input, weight and bias gradients as
// whole-sequence GEMMs.
//
// Shapes, with N rows in the sequence matrices (T * B padded, or sum(batch_sizes) packed),
// B = rows of the state, I = input size, H = hidden size, P = output size (the projection
// size for an LSTM with projection, else H), G = gates * H, W = workspace_blocks * H:
//   x [N, I]   y [N, P]   h [B, P]   c [B, H]   workspace [N, W] (type A)
//   w_ih [G, I]   w_hh [G, P]   b_ih, b_hh [G]   w_hr [P, H]
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "fastrnn/cell_steps.h"
#include "fastrnn/cells.h"
#include "fastrnn/steps.h"

namespace fastrnn {

// How the rows of a sequence matrix split into time steps. Packed sequences (batch_sizes, as
// torch.nn.utils.rnn.PackedSequence) have a non-increasing number of rows per step, so step t
// works on rows [0, rows(t)) of the state: the sequences still running.
class SequenceShape {
 public:
  // Padded: `steps` steps of `batch` rows each.
  SequenceShape(int64_t steps, int64_t batch)
      : steps_(steps), batch_(batch), uniform_(true), offsets_(steps + 1) {
    for (int64_t t = 0; t <= steps; ++t) offsets_[t] = t * batch;
  }
  // Packed: step t has batch_sizes[t] rows (validated by the caller: positive, non-increasing).
  SequenceShape(const int64_t* batch_sizes, int64_t steps)
      : steps_(steps), batch_(steps > 0 ? batch_sizes[0] : 0), uniform_(true), offsets_(steps + 1) {
    offsets_[0] = 0;
    for (int64_t t = 0; t < steps; ++t) {
      offsets_[t + 1] = offsets_[t] + batch_sizes[t];
      uniform_ = uniform_ && batch_sizes[t] == batch_;
    }
  }

  int64_t steps() const { return steps_; }
  int64_t batch() const { return batch_; }
  int64_t total_rows() const { return offsets_[steps_]; }
  bool uniform() const { return uniform_; }
  int64_t rows(int64_t t) const { return offsets_[t + 1] - offsets_[t]; }
  int64_t offset(int64_t t) const { return offsets_[t]; }

 private:
  int64_t steps_, batch_;
  bool uniform_;
  std::vector<int64_t> offsets_;  // [steps + 1] first row of each step
};

template <class T>
struct LayerWeights {
  int64_t input_size = 0, hidden_size = 0, proj_size = 0;  // proj_size 0: no projection
  const T* w_ih = nullptr;
  const T* w_hh = nullptr;
  const T* b_ih = nullptr;  // or null
  const T* b_hh = nullptr;  // or null
  const T* w_hr = nullptr;  // LSTM projection, or null

  int64_t output_size() const { return proj_size > 0 ? proj_size : hidden_size; }
};

template <class T, class A>
struct ForwardIO {
  const T* x = nullptr;
  const T* h0 = nullptr;
  const T* c0 = nullptr;  // LSTM only
  T* y = nullptr;
  T* h_n = nullptr;
  T* c_n = nullptr;        // LSTM only
  A* workspace = nullptr;  // null: inference, nothing saved for backward
};

template <class T, class A>
struct BackwardIO {
  // Inputs: the gradients of the forward outputs and what the forward pass saved.
  const T* dy = nullptr;
  const T* dh_n = nullptr;
  const T* dc_n = nullptr;  // LSTM only
  const T* x = nullptr;
  const T* h0 = nullptr;
  const T* c0 = nullptr;  // LSTM only
  const T* y = nullptr;
  const A* workspace = nullptr;  // LSTM and GRU
  // Outputs.
  T* dx = nullptr;  // or null: not needed
  T* dh0 = nullptr;
  T* dc0 = nullptr;  // LSTM only
  T* dw_ih = nullptr;
  T* dw_hh = nullptr;
  T* db_ih = nullptr;
  T* db_hh = nullptr;
  T* dw_hr = nullptr;  // LSTM with projection only
};

namespace detail {

template <class Backend, class U>
using Buffer = typename Backend::template Buffer<U>;

// A writable buffer of type A holding a copy of `source` (type T): `in_place` (an output of
// type T the caller will overwrite anyway) when A is T, else scratch kept in `holder`.
template <class A, class T, class Backend>
A* as_acc(const Backend& backend, Buffer<Backend, A>& holder, T* in_place, const T* source,
          int64_t n) {
  A* buffer;
  if constexpr (std::is_same_v<A, T>) {
    buffer = in_place;
  } else {
    holder = backend.template scratch<A>(n);
    buffer = holder.data();
  }
  backend.copy(buffer, source, n);
  return buffer;
}

// `source` (type T) read as type A: itself when A is T, else a converted copy kept in `holder`.
template <class A, class T, class Backend>
const A* read_as_acc(const Backend& backend, Buffer<Backend, A>& holder, const T* source,
                     int64_t n) {
  if constexpr (std::is_same_v<A, T>) {
    return source;
  } else {
    holder = backend.template scratch<A>(n);
    backend.copy(holder.data(), source, n);
    return holder.data();
  }
}

// Where the state entering step t came from (cell_steps.h).
inline PreviousStep previous_step(const SequenceShape& shape, int64_t t, bool reverse) {
  const int64_t prev = reverse ? t + 1 : t - 1;
  if (prev < 0 || prev >= shape.steps()) return {};
  return {shape.offset(prev), std::min(shape.rows(t), shape.rows(prev))};
}

}  // namespace detail

// The recurrent product of one forward step followed by the cell's step kernel, as separate
// calls: the generic Backend::forward_step (the CPU backend fuses the two). `step` is the
// cell's step with its x W_ih^T rows; h_prev [rows, P] is the state entering the step;
// hh [B, G] is scratch for the GRU's W_hh h.
template <CellKind kCell, class Backend, class Step>
void gemm_then_step(const Backend& backend, Step step,
                    Rows<const typename Backend::T> h_prev,
                    const typename Backend::T* w_hh, int64_t G, int64_t P,
                    typename Backend::A* hh) {
  using Cell = CellSteps<kCell>;
  if constexpr (Cell::kSeparateProduct) {
    backend.gemm(false, true, step.rows, G, P, h_prev.data, h_prev.ld, w_hh, P, false, hh, G);
    step.hh = {hh, G};
  } else {
    const auto product = Cell::product_rows(step);
    backend.gemm(false, true, step.rows, G, P, h_prev.data, h_prev.ld, w_hh, P, true,
                 product.data, product.ld);
  }
  backend.template step<kCell>(step);
}

// The weights gemm_then_step needs: what a backend without fused steps prepares.
template <class T>
struct UnfusedWeights {
  static constexpr bool input_in_steps = false;
  const T* w_hh;
  int64_t gates, inner;  // W_hh is [gates, inner]: G and P

  template <CellKind kCell>
  static UnfusedWeights of(const LayerWeights<T>& w) {
    return {w.w_hh, gate_count(kCell) * w.hidden_size, w.output_size()};
  }
};

// forward_step for each step in order: the generic Backend::forward_steps.
template <CellKind kCell, class Backend, class StepAt, class Prepared>
void run_steps_in_order(const Backend& backend, int64_t steps, const StepAt& step_at,
                        const Prepared& prepared, typename Backend::A* hh, bool training) {
  for (int64_t s = 0; s < steps; ++s) {
    const auto [step, h_prev, x] = step_at(s);
    backend.template forward_step<kCell>(step, h_prev, x, prepared, hh, training);
  }
}

// pointwise then recurrent for each backward iteration in order: the generic
// Backend::backward_steps.
template <class Pointwise, class Recurrent>
void run_backward_in_order(int64_t k0, int64_t k1, const Pointwise& pointwise,
                           const Recurrent& recurrent, int64_t units, int64_t columns) {
  for (int64_t k = k0; k < k1; ++k) {
    pointwise(k, 0, units);
    recurrent(k, 0, columns);
  }
}

template <CellKind kCell, class Backend>
void recurrence_forward(const Backend& backend, const SequenceShape& shape,
                        const LayerWeights<typename Backend::T>& w,
                        const ForwardIO<typename Backend::T, typename Backend::A>& io,
                        bool reverse) {
  using T = typename Backend::T;
  using A = typename Backend::A;
  using detail::Buffer;
  using Cell = CellSteps<kCell>;
  constexpr bool kCellState = cell_info(kCell).cell_state;
  const int64_t steps = shape.steps(), B = shape.batch(), N = shape.total_rows();
  const int64_t I = w.input_size, H = w.hidden_size, P = w.output_size();
  const int64_t G = gate_count(kCell) * H;
  const bool project = kCellState && w.proj_size > 0;
  const bool training = io.workspace != nullptr;

  // Pre-activations x W_ih^T, rows of width ld. The input projection runs one chunk of steps at
  // a time (Backend::kChunkRows rows, a few MB on the CPU), just before those steps read
  // it: in inference the chunk lives in a small scratch buffer that stays in cache; in training
  // in the workspace, where the step kernels overwrite it with what backward needs (the GRU
  // kernel also stores h_n next to its gates).
  const int64_t ld = (training ? workspace_blocks(kCell) : Cell::kInferenceBlocks) * H;
  const int64_t chunk_steps =
      std::max<int64_t>(1, Backend::kChunkRows / std::max<int64_t>(1, B));
  Buffer<Backend, A> pre_scratch;
  if (!training) {
    pre_scratch = backend.template scratch<A>(std::min(N, chunk_steps * B) * ld);
  }
  A* pre_rows = nullptr;    // the current chunk's first row
  int64_t row_base = 0;     // its row index in the sequence

  // The hidden state alternates between two buffers: step s reads buffer s % 2 and writes the
  // other, so a step's writes never meet its reads (and threads can split a step's units).
  // Both start as h0: rows that start late (the reverse direction of a packed batch) read h0
  // from whichever buffer is current then. The LSTM cell state is updated in place, rows
  // [0, rows(t)) at step t, so it ends as c_n.
  Buffer<Backend, T> h_buffers = backend.template scratch<T>(2 * B * P);
  T* const h_even = h_buffers.data();
  T* const h_odd = h_even + B * P;
  backend.copy(h_even, io.h0, B * P);
  backend.copy(h_odd, io.h0, B * P);
  Buffer<Backend, A> c_holder;
  A* c_state = nullptr;
  if constexpr (kCellState) {
    c_state = detail::as_acc<A>(backend, c_holder, io.c_n, io.c0, B * H);
  }
  Buffer<Backend, A> hh_scratch;
  Buffer<Backend, T> r_scratch;
  if (Cell::kSeparateProduct) hh_scratch = backend.template scratch<A>(B * G);
  if (project) r_scratch = backend.template scratch<T>(B * H);
  const auto prepared = backend.template prepare_forward<kCell>(w, B, steps);

  // The cell's step for the s-th step in the recurrence's order (a pure function of s, so a
  // backend may build steps on any thread), the state it reads and its input rows.
  auto step_at = [&](int64_t s) {
    const int64_t t = reverse ? steps - 1 - s : s;
    const Rows<const T> x_t{io.x != nullptr ? io.x + shape.offset(t) * I : nullptr, I};
    ForwardPlace<T, A> place;
    place.rows = shape.rows(t);
    place.hidden = H;
    place.pre = {pre_rows + (shape.offset(t) - row_base) * ld, ld};
    place.training = training;
    place.b_ih = w.b_ih;
    place.b_hh = w.b_hh;
    place.h_prev = s % 2 == 0 ? h_even : h_odd;
    place.h = s % 2 == 0 ? h_odd : h_even;
    place.y = io.y + shape.offset(t) * P;
    place.c = c_state;
    place.r = project ? r_scratch.data() : nullptr;  // h = r W_hr^T, below
    return std::tuple{Cell::forward(place), Rows<const T>{place.h_prev, P}, x_t};
  };

  for (int64_t s0 = 0; s0 < steps; s0 += chunk_steps) {
    const int64_t s1 = std::min(steps, s0 + chunk_steps);
    // The chunk's steps cover the contiguous rows of times [t_first, t_last].
    const int64_t t_first = reverse ? steps - s1 : s0, t_last = reverse ? steps - 1 - s0 : s1 - 1;
    row_base = shape.offset(t_first);
    const int64_t chunk_rows = shape.offset(t_last + 1) - row_base;
    pre_rows = training ? io.workspace + row_base * ld : pre_scratch.data();
    bool projected = false;
    if constexpr (requires { backend.input_projection(row_base, chunk_rows, G, pre_rows, ld); }) {
      projected = backend.input_projection(row_base, chunk_rows, G, pre_rows, ld);
    }
    // Without its input (x null), a forward needs the backend's projection: nothing else
    // reads x then (a backend that holds the projection computes no input in its steps).
    if (!projected && io.x == nullptr && chunk_rows * I > 0) {
      throw std::invalid_argument(
          "fastrnn: a forward without its input needs the input projection precomputed");
    }
    if (!projected && !prepared.input_in_steps) {
      backend.gemm(false, true, chunk_rows, G, I, io.x + row_base * I, I, w.w_ih, I, false,
                   pre_rows, ld);
    }
    if (project) {
      // Each step ends with a GEMM over the whole of r: one step at a time.
      for (int64_t s = s0; s < s1; ++s) {
        const auto [step, h_prev, x] = step_at(s);
        backend.template forward_step<kCell>(step, h_prev, x, prepared,
                                             static_cast<A*>(nullptr), training);
        T* h_new = s % 2 == 0 ? h_odd : h_even;
        const int64_t t = reverse ? steps - 1 - s : s;
        backend.gemm(false, true, step.rows, P, H, r_scratch.data(), H, w.w_hr, H, false,
                     h_new, P);
        backend.copy_rows(h_new, P, io.y + shape.offset(t) * P, P, step.rows, P);
      }
    } else {
      backend.template forward_steps<kCell>(
          s1 - s0, [&](int64_t i) { return step_at(s0 + i); }, prepared,
          Cell::kSeparateProduct ? hh_scratch.data() : static_cast<A*>(nullptr), training);
    }
  }

  // h_n: each sequence's last output in the recurrence's order (its own last step forward,
  // step 0 in reverse), gathered from y; with no steps, h0.
  if (steps == 0) {
    backend.copy(io.h_n, io.h0, B * P);
  } else if (reverse || shape.uniform()) {
    const int64_t last = reverse ? 0 : steps - 1;
    backend.copy_rows(io.y + shape.offset(last) * P, P, io.h_n, P, B, P);
  } else {
    for (int64_t t = 0; t < steps; ++t) {  // rows that end at step t: [rows(t + 1), rows(t))
      const int64_t first = t + 1 < steps ? shape.rows(t + 1) : 0;
      backend.copy_rows(io.y + (shape.offset(t) + first) * P, P, io.h_n + first * P, P,
                        shape.rows(t) - first, P);
    }
  }
  if constexpr (kCellState) {
    if (c_state != static_cast<void*>(io.c_n)) backend.copy(io.c_n, c_state, B * H);
  }
}

template <CellKind kCell, class Backend>
void recurrence_backward(const Backend& backend, const SequenceShape& shape,
                         const LayerWeights<typename Backend::T>& w,
                         const BackwardIO<typename Backend::T, typename Backend::A>& io,
                         bool reverse) {
  using T = typename Backend::T;
  using A = typename Backend::A;
  using detail::Buffer;
  using Cell = CellSteps<kCell>;
  constexpr bool kCellState = cell_info(kCell).cell_state;
  constexpr bool kSeparate = Cell::kSeparateProduct;
  const int64_t steps = shape.steps(), B = shape.batch(), N = shape.total_rows();
  const int64_t I = w.input_size, H = w.hidden_size, P = w.output_size();
  const int64_t G = gate_count(kCell) * H;
  const int64_t ld = workspace_blocks(kCell) * H;
  const bool project = kCellState && w.proj_size > 0;

  // dh (and dc) carry dL/dh (dL/dc) backwards through time, starting from dh_n (dc_n); they
  // live in dh0 (dc0) when A is T.
  Buffer<Backend, A> dh_holder, dc_holder, c0_holder;
  A* dh = detail::as_acc<A>(backend, dh_holder, io.dh0, io.dh_n, B * P);
  A* dc = nullptr;
  const A* c0 = nullptr;  // c_{t-1} of the rows that start from the initial state
  if constexpr (kCellState) {
    dc = detail::as_acc<A>(backend, dc_holder, io.dc0, io.dc_n, B * H);
    c0 = detail::read_as_acc<A>(backend, c0_holder, io.c0, B * H);
  }

  // The steps run backwards in chunks of about Backend::kChunkRows rows. A chunk's gate
  // gradients [rows, G] (the input side, for dx, dW_ih, db_ih; and the recurrent side, for dh,
  // dW_hh, db_hh, which differ only for the GRU) feed the chunk's share of the input, weight and
  // bias gradients right after its steps, while they are still in cache; the weight and bias
  // gradients accumulate over the chunks.
  const int64_t chunk_steps = std::max<int64_t>(1, Backend::kChunkRows / std::max<int64_t>(1, B));
  const int64_t chunk_capacity = std::min(N, chunk_steps * B);
  Buffer<Backend, T> dgates_ih_buffer = backend.template scratch<T>(chunk_capacity * G);
  Buffer<Backend, T> dgates_hh_buffer =
      kSeparate ? backend.template scratch<T>(chunk_capacity * G) : Buffer<Backend, T>();
  T* const dgates_ih = dgates_ih_buffer.data();
  T* const dgates_hh = kSeparate ? dgates_hh_buffer.data() : dgates_ih;
  Buffer<Backend, T> h_prev_buffer = backend.template scratch<T>(chunk_capacity * P);  // h_{t-1}
  // Projection: a chunk's dL/dh [rows, P] and the projection's input r [rows, H] (for dW_hr),
  // and dL/dr of one step [B, H].
  Buffer<Backend, T> dh_chunk, r_chunk;
  Buffer<Backend, A> dr;
  if (project) {
    dh_chunk = backend.template scratch<T>(chunk_capacity * P);
    r_chunk = backend.template scratch<T>(chunk_capacity * H);
    dr = backend.template scratch<A>(B * H);
  }

  for (int64_t k0 = 0; k0 < steps; k0 += chunk_steps) {
    const int64_t k1 = std::min(steps, k0 + chunk_steps);
    // Backward iteration k runs time t = k in reverse, steps - 1 - k forward; the chunk's times
    // cover the contiguous rows [row_base, row_base + chunk_rows).
    const int64_t t_low = reverse ? k0 : steps - k1, t_high = reverse ? k1 - 1 : steps - 1 - k0;
    const int64_t row_base = shape.offset(t_low);
    const int64_t chunk_rows = shape.offset(t_high + 1) - row_base;
    const bool first_chunk = k0 == 0;

    // Backward iteration k in two halves, each over a range of hidden units or output columns,
    // so a backend may split them between threads: `pointwise` turns the saved gates into gate
    // gradients for units [u0, u1) (and gathers those columns of h_{t-1} for dW_hh);
    // `recurrent` then computes columns [c0, c1) of dL/dh_{t-1} from every unit's gate gradients
    // (the GRU adds to the direct part its pointwise half left in dh).
    auto pointwise = [&](int64_t k, int64_t u0, int64_t u1) {
      const int64_t t = reverse ? k : steps - 1 - k;
      const int64_t rows = shape.rows(t);
      const int64_t offset = shape.offset(t);
      const int64_t local = offset - row_base;  // the step's first row in the chunk buffers
      const PreviousStep from = detail::previous_step(shape, t, reverse);
      BackwardPlace<T, A> place;
      place.rows = rows;
      place.hidden = H;
      place.offset = offset;
      place.from = from;
      place.workspace = io.workspace;
      place.ld = ld;
      place.y = io.y;
      place.h0 = io.h0;
      place.c0 = c0;
      place.dy = io.dy + offset * P;
      place.dh = dh;
      place.dc = dc;
      place.dgates_ih = {dgates_ih + local * G, G};
      place.dgates_hh = {dgates_hh + local * G, G};
      if (project) {
        place.dh_projected = dh_chunk.data() + local * P;
        place.r = r_chunk.data() + local * H;
        place.dr = dr.data();
        place.w_hr = w.w_hr;
        place.output_size = P;
      }
      Cell::backward(backend, place, u0, u1);
      // h_{t-1} of the step's rows, columns [u0, u1) (P = H here unless projected, when the
      // range is whole), for dW_hh: the previous step's outputs, or h0.
      const int64_t c_begin = project ? 0 : u0, c_end = project ? P : u1;
      T* h_prev = h_prev_buffer.data() + local * P + c_begin;
      backend.copy_rows(io.y + from.offset * P + c_begin, P, h_prev, P, from.split,
                        c_end - c_begin);
      backend.copy_rows(io.h0 + from.split * P + c_begin, P, h_prev + from.split * P, P,
                        rows - from.split, c_end - c_begin);
    };
    auto recurrent = [&](int64_t k, int64_t c0, int64_t c1) {
      const int64_t t = reverse ? k : steps - 1 - k;
      const int64_t local = shape.offset(t) - row_base;
      backend.hidden_grad(shape.rows(t), Rows<const T>{dgates_hh + local * G, G}, w.w_hh, G, P,
                          Rows<A>{dh, P}, c0, c1, Cell::kDirectHiddenGrad);
    };
    backend.template backward_steps<kCell>(k0, k1, pointwise, recurrent, H, P, !project,
                                           2 * B * G * P);

    // The chunk's share of the input, weight and bias gradients.
    if (io.dx != nullptr) {
      backend.gemm(false, false, chunk_rows, I, G, dgates_ih, G, w.w_ih, I, false,
                   io.dx + row_base * I, I);
    }
    backend.gemm(true, false, G, I, chunk_rows, dgates_ih, G, io.x + row_base * I, I,
                 !first_chunk, io.dw_ih, I);
    backend.gemm(true, false, G, P, chunk_rows, dgates_hh, G, h_prev_buffer.data(), P,
                 !first_chunk, io.dw_hh, P);
    backend.sum_rows(dgates_ih, chunk_rows, G, io.db_ih, !first_chunk);
    backend.sum_rows(dgates_hh, chunk_rows, G, io.db_hh, !first_chunk);
    if (project) {
      backend.gemm(true, false, P, H, chunk_rows, dh_chunk.data(), P, r_chunk.data(),
                   H, !first_chunk, io.dw_hr, H);
    }
  }
  if (steps == 0) {  // nothing ran: the weight and bias gradients are zero
    backend.gemm(true, false, G, I, 0, dgates_ih, G, io.x, I, false, io.dw_ih, I);
    backend.gemm(true, false, G, P, 0, dgates_hh, G, io.x, P, false, io.dw_hh, P);
    backend.sum_rows(dgates_ih, 0, G, io.db_ih, false);
    backend.sum_rows(dgates_hh, 0, G, io.db_hh, false);
    if (project) backend.gemm(true, false, P, H, 0, dgates_ih, P, io.x, H, false, io.dw_hr, H);
  }
  if (dh != static_cast<void*>(io.dh0)) backend.copy(io.dh0, dh, B * P);
  if constexpr (kCellState) {
    if (dc != static_cast<void*>(io.dc0)) backend.copy(io.dc0, dc, B * H);
  }
}

}  // namespace fastrnn
