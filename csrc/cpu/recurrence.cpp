#include "cpu/recurrence.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>

#include "cpu/blas.h"
#include "cpu/isa.h"
#include "fastrnn/debug.h"

namespace fastrnn::cpu {

SequenceShape::SequenceShape(int64_t steps, int64_t batch)
    : steps_(steps), batch_(batch), uniform_(true), offsets_(steps + 1) {
  for (int64_t t = 0; t <= steps; ++t) offsets_[t] = t * batch;
}

SequenceShape::SequenceShape(const int64_t* batch_sizes, int64_t steps)
    : steps_(steps), batch_(steps > 0 ? batch_sizes[0] : 0), uniform_(true), offsets_(steps + 1) {
  offsets_[0] = 0;
  for (int64_t t = 0; t < steps; ++t) {
    offsets_[t + 1] = offsets_[t] + batch_sizes[t];
    uniform_ = uniform_ && batch_sizes[t] == batch_;
  }
}

namespace {

// Scratch memory from torch's CPU allocator (NaN-filled under FASTRNN_DEBUG_POISON=1).
template <class T>
at::Tensor scratch(int64_t elements) {
  at::Tensor buffer =
      at::empty({elements}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
  if (debug_poison()) buffer.fill_(NAN);
  return buffer;
}

template <class T>
void copy_rows(const T* src, int64_t src_ld, T* dst, int64_t dst_ld, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * dst_ld, src + r * src_ld, sizeof(T) * cols);
  }
}

// Sums the rows of a [rows, cols] matrix into out[cols] (torch's reduction, for its accuracy).
template <class T>
void sum_rows(const T* matrix, int64_t rows, int64_t cols, T* out) {
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor result = at::from_blob(out, {cols}, options);
  at::sum_out(result, at::from_blob(const_cast<T*>(matrix), {rows, cols}, options), {0});
}

// b_ih + b_hh, for the cells that add both to the same pre-activation (LSTM, RNN); empty when
// the layer has no bias.
template <class T>
std::vector<T> combined_bias(const LayerWeights<T>& w, int64_t gates) {
  std::vector<T> bias;
  if (w.b_ih == nullptr && w.b_hh == nullptr) return bias;
  bias.assign(gates, T(0));
  for (int64_t j = 0; j < gates; ++j) {
    if (w.b_ih) bias[j] += w.b_ih[j];
    if (w.b_hh) bias[j] += w.b_hh[j];
  }
  return bias;
}

// Runs a step kernel over a step's rows, split across torch's intra-op threads when the step
// is big enough to pay for the fork.
template <class Step>
void run_step(void (*kernel)(const Step&), const Step& step) {
  constexpr int64_t kUnitsPerTask = 16384;
  if (step.rows <= 0) return;
  if (step.rows < 2 || step.rows * step.hidden < 2 * kUnitsPerTask || at::get_num_threads() < 2) {
    kernel(step);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kUnitsPerTask / std::max<int64_t>(1, step.hidden));
  at::parallel_for(0, step.rows, grain,
                   [&](int64_t begin, int64_t end) { kernel(step.slice(begin, end)); });
}

// Where the state entering step t came from: rows [0, split) from the outputs of the step
// before it in the recurrence's order (at row offset `offset`), rows [split, rows(t)) from the
// initial state (sequences that start at t: only in the reverse direction of a packed batch).
struct PreviousStep {
  int64_t offset = 0;
  int64_t split = 0;
};

PreviousStep previous_step(const SequenceShape& shape, int64_t t, bool reverse) {
  const int64_t prev = reverse ? t + 1 : t - 1;
  if (prev < 0 || prev >= shape.steps()) return {};
  return {shape.offset(prev), std::min(shape.rows(t), shape.rows(prev))};
}

// Runs a backward step kernel whose `prev` matrix (c_{t-1} or h_{t-1}) comes from two places.
template <class Step, class T>
void run_step_with_previous(void (*kernel)(const Step&), const Step& step,
                            Rows<const T> Step::*prev, const PreviousStep& from,
                            Rows<const T> previous_outputs, Rows<const T> initial) {
  if (from.split > 0) {
    Step head = step.slice(0, from.split);
    head.*prev = previous_outputs.skip(from.offset);
    run_step(kernel, head);
  }
  if (from.split < step.rows) {
    Step tail = step.slice(from.split, step.rows);
    tail.*prev = initial.skip(from.split);
    run_step(kernel, tail);
  }
}

template <CellKind kCell, class T>
auto rnn_forward_kernel(const StepKernels<T>& k) {
  return kCell == CellKind::kRnnTanh ? k.rnn_tanh_forward : k.rnn_relu_forward;
}

template <CellKind kCell, class T>
auto rnn_backward_kernel(const StepKernels<T>& k) {
  return kCell == CellKind::kRnnTanh ? k.rnn_tanh_backward : k.rnn_relu_backward;
}

// dW_hh = sum over steps of dgates_hh[t]^T h_{t-1}: two GEMMs straight from y and h0 when every
// step has all rows, else one GEMM over h_{t-1} gathered for every row.
template <class T>
void recurrent_weight_grad(const SequenceShape& shape, bool reverse, int64_t gates, int64_t out,
                           const T* dgates_hh, const T* y, const T* h0, T* dw_hh) {
  const int64_t N = shape.total_rows(), B = shape.batch();
  if (shape.uniform()) {
    // Rows whose h_{t-1} is h0: the first step in the recurrence's order.
    const int64_t first = reverse ? N - B : 0;
    gemm<T>(true, false, gates, out, B, 1, dgates_hh + first * gates, gates, h0, out, 0, dw_hh,
            out);
    // The other rows: h_{t-1} is the output one step earlier in that order.
    const T* dg_rest = dgates_hh + (reverse ? 0 : B * gates);
    const T* h_rest = y + (reverse ? B * out : 0);
    gemm<T>(true, false, gates, out, N - B, 1, dg_rest, gates, h_rest, out, 1, dw_hh, out);
    return;
  }
  at::Tensor gathered = scratch<T>(N * out);
  T* h_prev = gathered.data_ptr<T>();
  for (int64_t t = 0; t < shape.steps(); ++t) {
    const PreviousStep from = previous_step(shape, t, reverse);
    T* dst = h_prev + shape.offset(t) * out;
    copy_rows(y + from.offset * out, out, dst, out, from.split, out);
    copy_rows(h0 + from.split * out, out, dst + from.split * out, out,
              shape.rows(t) - from.split, out);
  }
  gemm<T>(true, false, gates, out, N, 1, dgates_hh, gates, h_prev, out, 0, dw_hh, out);
}

}  // namespace

template <CellKind kCell, class T>
void recurrence_forward(const SequenceShape& shape, const LayerWeights<T>& w,
                        const ForwardIO<T>& io, bool reverse) {
  constexpr bool kLstm = kCell == CellKind::kLstm;
  constexpr bool kGru = kCell == CellKind::kGru;
  const StepKernels<T>& kernels = step_kernels<T>();
  const int64_t steps = shape.steps(), B = shape.batch(), N = shape.total_rows();
  const int64_t I = w.input_size, H = w.hidden_size, P = w.output_size();
  const int64_t G = gate_count(kCell) * H;
  const bool project = kLstm && w.proj_size > 0;
  const bool training = io.workspace != nullptr;

  // Pre-activations of every step, [N, ld]. When training they live in the workspace, where the
  // step kernels overwrite them with what backward needs; else in scratch with room for what
  // the kernels write (the GRU kernel also stores h_n next to its gates).
  const int64_t ld = kGru ? 4 * H : (kLstm && training) ? 5 * H : G;
  at::Tensor pre_scratch;
  T* pre = io.workspace;
  if (pre == nullptr) {
    pre_scratch = scratch<T>(N * ld);
    pre = pre_scratch.data_ptr<T>();
  }

  // The input projection of every step at once: pre[:, :G] = x W_ih^T.
  gemm<T>(false, true, N, G, I, 1, io.x, I, w.w_ih, I, 0, pre, ld);

  // h_n (and c_n) carry the running state, rows [0, rows(t)) being updated at step t.
  std::memcpy(io.h_n, io.h0, sizeof(T) * B * P);
  if constexpr (kLstm) std::memcpy(io.c_n, io.c0, sizeof(T) * B * H);
  const std::vector<T> bias = combined_bias(w, G);
  const T* bias_data = bias.empty() ? nullptr : bias.data();
  at::Tensor hh_scratch = kGru ? scratch<T>(B * G) : at::Tensor();  // h W_hh^T of one step
  at::Tensor r_scratch = project ? scratch<T>(B * H) : at::Tensor();  // o * tanh(c) of one step

  for (int64_t s = 0; s < steps; ++s) {
    const int64_t t = reverse ? steps - 1 - s : s;
    const int64_t rows = shape.rows(t);
    T* pre_t = pre + shape.offset(t) * ld;
    T* y_t = io.y + shape.offset(t) * P;
    if constexpr (kGru) {
      T* hh = hh_scratch.data_ptr<T>();
      gemm<T>(false, true, rows, G, H, 1, io.h_n, H, w.w_hh, H, 0, hh, G);
      GruForwardStep<T> step;
      step.rows = rows;
      step.hidden = H;
      step.gates = {pre_t, ld};
      step.hh = {hh, G};
      step.b_ih = w.b_ih;
      step.b_hh = w.b_hh;
      step.h = {io.h_n, H};
      step.y = {y_t, H};
      run_step(kernels.gru_forward, step);
    } else {
      gemm<T>(false, true, rows, G, P, 1, io.h_n, P, w.w_hh, P, 1, pre_t, ld);
      if constexpr (kLstm) {
        LstmForwardStep<T> step;
        step.rows = rows;
        step.hidden = H;
        step.gates = {pre_t, ld};
        step.bias = bias_data;
        step.c = {io.c_n, H};
        if (training) step.c_saved = {pre_t + 4 * H, ld};
        if (project) {
          step.h = {r_scratch.data_ptr<T>(), H};
        } else {
          step.h = {io.h_n, H};
          step.y = {y_t, H};
        }
        run_step(kernels.lstm_forward, step);
        if (project) {
          gemm<T>(false, true, rows, P, H, 1, r_scratch.data_ptr<T>(), H, w.w_hr, H, 0, io.h_n, P);
          copy_rows<T>(io.h_n, P, y_t, P, rows, P);
        }
      } else {
        RnnForwardStep<T> step;
        step.rows = rows;
        step.hidden = H;
        step.pre = {pre_t, ld};
        step.bias = bias_data;
        step.h = {io.h_n, H};
        step.y = {y_t, H};
        run_step(rnn_forward_kernel<kCell>(kernels), step);
      }
    }
  }
}

template <CellKind kCell, class T>
void recurrence_backward(const SequenceShape& shape, const LayerWeights<T>& w,
                         const BackwardIO<T>& io, bool reverse) {
  constexpr bool kLstm = kCell == CellKind::kLstm;
  constexpr bool kGru = kCell == CellKind::kGru;
  const StepKernels<T>& kernels = step_kernels<T>();
  const int64_t steps = shape.steps(), B = shape.batch(), N = shape.total_rows();
  const int64_t I = w.input_size, H = w.hidden_size, P = w.output_size();
  const int64_t G = gate_count(kCell) * H;
  const int64_t ld = workspace_blocks(kCell) * H;
  const bool project = kLstm && w.proj_size > 0;

  // dh0 (and dc0) carry dL/dh (dL/dc) backwards through time, starting from dh_n (dc_n).
  std::memcpy(io.dh0, io.dh_n, sizeof(T) * B * P);
  if constexpr (kLstm) std::memcpy(io.dc0, io.dc_n, sizeof(T) * B * H);

  // Gradients of the pre-activations of every step, [N, G]: the input side (for dx, dW_ih,
  // db_ih) and the recurrent side (for dh, dW_hh, db_hh), which differ only for the GRU.
  at::Tensor dgates_ih_buffer = scratch<T>(N * G);
  at::Tensor dgates_hh_buffer = kGru ? scratch<T>(N * G) : dgates_ih_buffer;
  T* dgates_ih = dgates_ih_buffer.data_ptr<T>();
  T* dgates_hh = dgates_hh_buffer.data_ptr<T>();

  // Projection: dL/dh of every step [N, P] and the projection's input r of every step [N, H]
  // (both for dW_hr), and dL/dr of one step [B, H].
  at::Tensor dh_all, r_all, dr;
  if (project) {
    dh_all = scratch<T>(N * P);
    r_all = scratch<T>(N * H);
    dr = scratch<T>(B * H);
  }

  for (int64_t s = 0; s < steps; ++s) {
    const int64_t t = reverse ? s : steps - 1 - s;
    const int64_t rows = shape.rows(t);
    const int64_t offset = shape.offset(t);
    const PreviousStep from = previous_step(shape, t, reverse);
    const T* dy_t = io.dy + offset * P;
    if constexpr (kLstm) {
      const T* saved = io.workspace + offset * ld;
      LstmBackwardStep<T> step;
      step.rows = rows;
      step.hidden = H;
      step.gates = {saved, ld};
      step.c = {saved + 4 * H, ld};
      step.dc = {io.dc0, H};
      step.dgates = {dgates_ih + offset * G, G};
      if (project) {
        // dL/dh_t = dy_t + the carried part, then back through h = r W_hr^T.
        T* dh_t = dh_all.data_ptr<T>() + offset * P;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t j = 0; j < P; ++j) dh_t[r * P + j] = dy_t[r * P + j] + io.dh0[r * P + j];
        }
        gemm<T>(false, false, rows, H, P, 1, dh_t, P, w.w_hr, H, 0, dr.data_ptr<T>(), H);
        step.dh = {dr.data_ptr<T>(), H};
        step.r = {r_all.data_ptr<T>() + offset * H, H};
      } else {
        step.dh = {io.dh0, H};
        step.dy = {dy_t, H};
      }
      run_step_with_previous(kernels.lstm_backward, step, &LstmBackwardStep<T>::c_prev, from,
                             Rows<const T>{io.workspace + 4 * H, ld}, Rows<const T>{io.c0, H});
      gemm<T>(false, false, rows, P, G, 1, dgates_ih + offset * G, G, w.w_hh, P, 0, io.dh0, P);
    } else if constexpr (kGru) {
      GruBackwardStep<T> step;
      step.rows = rows;
      step.hidden = H;
      step.gates = {io.workspace + offset * ld, ld};
      step.dy = {dy_t, H};
      step.dh = {io.dh0, H};
      step.dgates_ih = {dgates_ih + offset * G, G};
      step.dgates_hh = {dgates_hh + offset * G, G};
      run_step_with_previous(kernels.gru_backward, step, &GruBackwardStep<T>::h_prev, from,
                             Rows<const T>{io.y, H}, Rows<const T>{io.h0, H});
      // The step kernel left z * dL/dh_t in dh0; add the part through W_hh.
      gemm<T>(false, false, rows, H, G, 1, dgates_hh + offset * G, G, w.w_hh, H, 1, io.dh0, H);
    } else {
      RnnBackwardStep<T> step;
      step.rows = rows;
      step.hidden = H;
      step.h = {io.y + offset * H, H};
      step.dh = {io.dh0, H};
      step.dy = {dy_t, H};
      step.dpre = {dgates_ih + offset * G, G};
      run_step(rnn_backward_kernel<kCell>(kernels), step);
      gemm<T>(false, false, rows, H, G, 1, dgates_ih + offset * G, G, w.w_hh, H, 0, io.dh0, H);
    }
  }

  // Whole-sequence products.
  if (io.dx != nullptr) gemm<T>(false, false, N, I, G, 1, dgates_ih, G, w.w_ih, I, 0, io.dx, I);
  gemm<T>(true, false, G, I, N, 1, dgates_ih, G, io.x, I, 0, io.dw_ih, I);
  recurrent_weight_grad<T>(shape, reverse, G, P, dgates_hh, io.y, io.h0, io.dw_hh);
  sum_rows<T>(dgates_ih, N, G, io.db_ih);
  sum_rows<T>(dgates_hh, N, G, io.db_hh);
  if (project) {
    gemm<T>(true, false, P, H, N, 1, dh_all.data_ptr<T>(), P, r_all.data_ptr<T>(), H, 0,
            io.dw_hr, H);
  }
}

#define FASTRNN_INSTANTIATE(cell, type)                                                        \
  template void recurrence_forward<cell, type>(const SequenceShape&, const LayerWeights<type>&, \
                                               const ForwardIO<type>&, bool);                  \
  template void recurrence_backward<cell, type>(const SequenceShape&,                          \
                                                const LayerWeights<type>&,                     \
                                                const BackwardIO<type>&, bool);
#define FASTRNN_INSTANTIATE_CELLS(type)          \
  FASTRNN_INSTANTIATE(CellKind::kRnnTanh, type) \
  FASTRNN_INSTANTIATE(CellKind::kRnnRelu, type) \
  FASTRNN_INSTANTIATE(CellKind::kLstm, type)    \
  FASTRNN_INSTANTIATE(CellKind::kGru, type)
FASTRNN_INSTANTIATE_CELLS(float)
FASTRNN_INSTANTIATE_CELLS(double)
#undef FASTRNN_INSTANTIATE_CELLS
#undef FASTRNN_INSTANTIATE

}  // namespace fastrnn::cpu
