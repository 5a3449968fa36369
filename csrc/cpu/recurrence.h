// The CPU recurrence driver: a whole sequence of one layer and one direction, forward or
// backward, for any cell. Shared by the four cells, which differ only in their step kernels and
// in which buffers they carry (LSTM: a cell state and an optional projection; GRU: a separate
// recurrent product, because r multiplies W_hn h + b_hn).
//
// Shapes, with N rows in the sequence matrices (T * B padded, or sum(batch_sizes) packed),
// B = rows of the state, I = input size, H = hidden size, P = output size (the projection
// size for an LSTM with projection, else H), G = gates * H, W = workspace_blocks * H:
//   x [N, I]   y [N, P]   h [B, P]   c [B, H]   workspace [N, W]
//   w_ih [G, I]   w_hh [G, P]   b_ih, b_hh [G]   w_hr [P, H]
#pragma once

#include <cstdint>
#include <vector>

#include "fastrnn/cells.h"

namespace fastrnn::cpu {

// How the rows of a sequence matrix split into time steps. Packed sequences (batch_sizes, as
// torch.nn.utils.rnn.PackedSequence) have a non-increasing number of rows per step, so step t
// works on rows [0, rows(t)) of the state: the sequences still running.
class SequenceShape {
 public:
  // Padded: `steps` steps of `batch` rows each.
  SequenceShape(int64_t steps, int64_t batch);
  // Packed: step t has batch_sizes[t] rows; batch_sizes must be validated by the caller.
  SequenceShape(const int64_t* batch_sizes, int64_t steps);

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

template <class T>
struct ForwardIO {
  const T* x = nullptr;
  const T* h0 = nullptr;
  const T* c0 = nullptr;  // LSTM only
  T* y = nullptr;
  T* h_n = nullptr;
  T* c_n = nullptr;        // LSTM only
  T* workspace = nullptr;  // null: inference, nothing saved for backward
};

template <class T>
struct BackwardIO {
  // Inputs: the gradients of the forward outputs and what the forward pass saved.
  const T* dy = nullptr;
  const T* dh_n = nullptr;
  const T* dc_n = nullptr;  // LSTM only
  const T* x = nullptr;
  const T* h0 = nullptr;
  const T* c0 = nullptr;  // LSTM only
  const T* y = nullptr;
  const T* workspace = nullptr;  // LSTM and GRU
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

template <CellKind kCell, class T>
void recurrence_forward(const SequenceShape& shape, const LayerWeights<T>& weights,
                        const ForwardIO<T>& io, bool reverse);

template <CellKind kCell, class T>
void recurrence_backward(const SequenceShape& shape, const LayerWeights<T>& weights,
                         const BackwardIO<T>& io, bool reverse);

}  // namespace fastrnn::cpu
