// Autocast for the forward ops: under torch.autocast(device, dtype) their floating inputs
// (input, states, weights, biases) are cast to the autocast dtype, as torch.nn's RNNs run in it
// (cudnn_rnn and mkldnn_rnn_layer are on torch's lower-precision lists). The casts are torch's
// cached, differentiable casts, so autograd sees them. Backward ops get no autocast kernel: they
// run in the types their forward left (the float32 workspace must stay float32).
//
// On the CPU, torch.nn does not run every RNN as one lower-precision op, and the result dtypes
// follow what it does (torch 2.13):
//   RNN (tanh, relu), and LSTM on padded input without proj_size (one oneDNN layer): everything in
//     the autocast dtype.
//   GRU, and LSTM on packed input or with proj_size: built from linear layers (lower precision)
//     and pointwise math that mixes their results with the state, so the state, and what is
//     computed from it, takes promote(autocast dtype, state dtype); the state's dtype is that of
//     the given hx (LSTM: cx), else the input's. An LSTM projection is a linear layer again: its h
//     and output are in the autocast dtype while c keeps the state dtype.
// Where the state dtype is wider, fastrnn rounds the input and weights to the autocast dtype (what
// torch's linear layers compute with), keeps the state as given, and runs in the state dtype.
#include <ATen/autocast_mode.h>
#include <c10/core/ScalarType.h>
#include <torch/library.h>

#include <optional>

#include "ops/layer_ops.h"

namespace fastrnn::ops {
namespace {

template <c10::DeviceType kDevice>
constexpr c10::DispatchKey autocast_key() {
  return kDevice == c10::DeviceType::CUDA ? c10::DispatchKey::AutocastCUDA
                                          : c10::DispatchKey::AutocastCPU;
}

template <c10::DeviceType kDevice>
at::Tensor cast(const at::Tensor& tensor) {
  return at::autocast::cached_cast(at::autocast::get_autocast_dtype(kDevice), tensor, kDevice);
}

template <c10::DeviceType kDevice>
std::optional<at::Tensor> cast(const std::optional<at::Tensor>& tensor) {
  if (!tensor.has_value()) return std::nullopt;
  return cast<kDevice>(*tensor);
}

template <c10::DeviceType kDevice>
bool cast(bool flag) {
  return flag;
}

// The autocast kernel of cell kCell's forward op, whose signature is R(Args...): casts, then
// calls the op again below autocast.
template <c10::DeviceType kDevice, CellKind kCell, class Signature = ForwardSignature<kCell>>
struct AutocastKernel;

template <c10::DeviceType kDevice, CellKind kCell, class R, class... Args>
struct AutocastKernel<kDevice, kCell, R(Args...)> {
  static R run(Args... args) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key<kDevice>());
    return op_handle<kCell>().call(cast<kDevice>(args)...);
  }
};

// ---- CPU GRU and LSTM: torch.nn's promotion to the state dtype (see the top of this file) ----

// The state dtype of a CPU GRU or decomposed-LSTM call: promote(autocast dtype, state's dtype).
at::ScalarType cpu_state_dtype(const at::Tensor& input, const OptionalTensor& state) {
  const at::ScalarType lower = at::autocast::get_autocast_dtype(c10::DeviceType::CPU);
  return c10::promoteTypes(lower, state.has_value() ? state->scalar_type() : input.scalar_type());
}

// A linear layer's operand as torch's autocast sees it (rounded to the autocast dtype), in dtype.
OptionalTensor rounded(const OptionalTensor& tensor, at::ScalarType dtype) {
  if (!tensor.has_value()) return std::nullopt;
  return cast<c10::DeviceType::CPU>(*tensor).to(dtype);
}
at::Tensor rounded(const at::Tensor& tensor, at::ScalarType dtype) {
  return cast<c10::DeviceType::CPU>(tensor).to(dtype);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_forward_autocast_cpu(
    const at::Tensor& input, const OptionalTensor& hx, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const OptionalTensor& b_ih, const OptionalTensor& b_hh,
    const OptionalTensor& batch_sizes, bool reverse, bool train) {
  const at::ScalarType state = cpu_state_dtype(input, hx);
  if (state == at::autocast::get_autocast_dtype(c10::DeviceType::CPU)) {
    return AutocastKernel<c10::DeviceType::CPU, CellKind::kGru>::run(
        input, hx, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, train);
  }
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  const auto& op = op_handle<CellKind::kGru>();
  const OptionalTensor h = hx.has_value() ? OptionalTensor(hx->to(state)) : std::nullopt;
  return op.call(rounded(input, state), h, rounded(w_ih, state), rounded(w_hh, state),
                 rounded(b_ih, state), rounded(b_hh, state), batch_sizes, reverse, train);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_forward_autocast_cpu(
    const at::Tensor& input, const OptionalTensor& hx, const OptionalTensor& cx,
    const at::Tensor& w_ih, const at::Tensor& w_hh, const OptionalTensor& b_ih,
    const OptionalTensor& b_hh, const OptionalTensor& w_hr, const OptionalTensor& batch_sizes,
    bool reverse, bool train) {
  const at::ScalarType lower = at::autocast::get_autocast_dtype(c10::DeviceType::CPU);
  const bool one_dnn_layer = !batch_sizes.has_value() && !w_hr.has_value();
  const at::ScalarType state = cpu_state_dtype(input, cx);
  if (one_dnn_layer || state == lower) {
    return AutocastKernel<c10::DeviceType::CPU, CellKind::kLstm>::run(
        input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, train);
  }
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  const auto& op = op_handle<CellKind::kLstm>();
  // h enters only the recurrent linear layer (rounded); c only pointwise math (kept).
  const OptionalTensor c = cx.has_value() ? OptionalTensor(cx->to(state)) : std::nullopt;
  auto [output, hy, cy, workspace] =
      op.call(rounded(input, state), rounded(hx, state), c, rounded(w_ih, state),
              rounded(w_hh, state), rounded(b_ih, state), rounded(b_hh, state),
              rounded(w_hr, state), batch_sizes, reverse, train);
  if (w_hr.has_value()) {  // h = W_hr (o * tanh(c)) is a linear layer: autocast dtype
    output = output.to(lower);
    hy = hy.to(lower);
  }
  return {output, hy, cy, workspace};
}

// Every cell's forward op in the autocast dtype (AutocastKernel), except where torch.nn's CPU
// layers of that cell mix in the state dtype (the top of this file).
template <c10::DeviceType kDevice, class Library>
void register_autocast(Library& m) {
  for_each_cell([&](auto cell) {
    constexpr CellKind kCell = cell();
    constexpr bool kCpu = kDevice == c10::DeviceType::CPU;
    if constexpr (kCpu && kCell == CellKind::kLstm) {
      m.impl(forward_op_name(kCell), &lstm_forward_autocast_cpu);
    } else if constexpr (kCpu && kCell == CellKind::kGru) {
      m.impl(forward_op_name(kCell), &gru_forward_autocast_cpu);
    } else {
      m.impl(forward_op_name(kCell), &AutocastKernel<kDevice, kCell>::run);
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, AutocastCPU, m) { register_autocast<c10::DeviceType::CPU>(m); }
TORCH_LIBRARY_IMPL(fastrnn, AutocastCUDA, m) { register_autocast<c10::DeviceType::CUDA>(m); }

}  // namespace fastrnn::ops
