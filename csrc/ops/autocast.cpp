// Autocast for the forward ops: under torch.autocast(device, dtype) their floating inputs
// (input, states, weights, biases) are cast to the autocast dtype, as torch.nn's RNNs run in it
// (cudnn_rnn and mkldnn_rnn_layer are on torch's lower-precision lists). The casts are torch's
// cached, differentiable casts, so autograd sees them. Backward ops get no autocast kernel: they
// run in the types their forward left (the float32 workspace must stay float32).
#include <ATen/autocast_mode.h>
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

// The autocast kernel of op `kName`, whose signature is R(Args...): casts, then calls the op
// again below autocast.
template <c10::DeviceType kDevice, const char* kName, class Signature>
struct AutocastKernel;

template <c10::DeviceType kDevice, const char* kName, class R, class... Args>
struct AutocastKernel<kDevice, kName, R(Args...)> {
  static R run(Args... args) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key<kDevice>());
    static const auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow(kName, "").template typed<R(Args...)>();
    return op.call(cast<kDevice>(args)...);
  }
};

// Only the signatures of these adapters are used.
struct SignatureOnly {};

constexpr char kRnnTanhForward[] = "fastrnn::rnn_tanh_forward";
constexpr char kRnnReluForward[] = "fastrnn::rnn_relu_forward";
constexpr char kLstmForward[] = "fastrnn::lstm_forward";
constexpr char kGruForward[] = "fastrnn::gru_forward";

template <c10::DeviceType kDevice, class Library>
void register_autocast(Library& m) {
  using RnnTanh = decltype(rnn_forward_op<SignatureOnly, CellKind::kRnnTanh>);
  using RnnRelu = decltype(rnn_forward_op<SignatureOnly, CellKind::kRnnRelu>);
  using Lstm = decltype(lstm_forward_op<SignatureOnly>);
  using Gru = decltype(gru_forward_op<SignatureOnly>);
  m.impl("rnn_tanh_forward", &AutocastKernel<kDevice, kRnnTanhForward, RnnTanh>::run);
  m.impl("rnn_relu_forward", &AutocastKernel<kDevice, kRnnReluForward, RnnRelu>::run);
  m.impl("lstm_forward", &AutocastKernel<kDevice, kLstmForward, Lstm>::run);
  m.impl("gru_forward", &AutocastKernel<kDevice, kGruForward, Gru>::run);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, AutocastCPU, m) { register_autocast<c10::DeviceType::CPU>(m); }
TORCH_LIBRARY_IMPL(fastrnn, AutocastCUDA, m) { register_autocast<c10::DeviceType::CUDA>(m); }

}  // namespace fastrnn::ops
