// Device-independent glue of the layer ops: argument checks, contiguous copies, output
// allocation and the adapters from each op's schema to one generic call. A device provides
//   struct Device {
//     static constexpr const char* kName;
//     static void check_dtype(const char* op, const at::Tensor& input);
//     template <CellKind> static void forward(const LayerCall&, const ForwardOutputs&);
//     template <CellKind> static void backward(const LayerCall&, const BackwardInputs&,
//                                              const BackwardOutputs&);
//   };
// and registers the adapters below for its dispatch key (cpu_ops.cpp, cuda_ops.cpp).
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <tuple>

#include "fastrnn/cells.h"
#include "ops/layer_args.h"

namespace fastrnn::ops {

using OptionalTensor = std::optional<at::Tensor>;

// The forward arguments of one call, checked and made contiguous. hx (and the LSTM's cx) are
// zeros when the caller passed none; hx_given / cx_given say whether it did.
struct LayerCall {
  const char* op;
  LayerSizes sizes;
  at::Tensor input, hx, cx, w_ih, w_hh;  // cx: LSTM only
  OptionalTensor b_ih, b_hh, w_hr, batch_sizes;
  bool reverse = false;
  bool hx_given = false, cx_given = false;
};

struct ForwardOutputs {
  at::Tensor output, hy, cy, workspace;  // cy: LSTM only; workspace: LSTM and GRU
};

struct BackwardInputs {
  at::Tensor grad_output, grad_hy, grad_cy, output, workspace;  // grad_cy: LSTM; workspace: LSTM, GRU
};

struct BackwardOutputs {
  at::Tensor grad_input;  // [0] when not requested
  at::Tensor grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr;
  bool input_grad = false;

  // What the op returns for hx / cx: their gradient, or [0] when the call had no hx / cx.
  at::Tensor returned_grad_hx(const LayerCall& call) const;
  at::Tensor returned_grad_cx(const LayerCall& call) const;
};

LayerCall make_call(const char* op, CellKind cell, const at::Tensor& input, const OptionalTensor& hx,
                    const OptionalTensor& cx, const at::Tensor& w_ih, const at::Tensor& w_hh,
                    const OptionalTensor& b_ih, const OptionalTensor& b_hh,
                    const OptionalTensor& w_hr, const OptionalTensor& batch_sizes, bool reverse);

ForwardOutputs allocate_forward(CellKind cell, const LayerCall& call, bool train);

// at::empty for the ops' outputs, NaN-filled under FASTRNN_DEBUG_POISON=1 (fastrnn/debug.h), so
// tests catch any element a kernel fails to write.
at::Tensor allocate(at::IntArrayRef shape, const at::TensorOptions& options);

// `tensor` when contiguous, else a contiguous copy in a buffer from `allocate`.
at::Tensor contiguous_copy(const at::Tensor& tensor);

// Absent gradients (outputs that did not reach the loss) are zeros.
BackwardInputs check_backward_inputs(CellKind cell, const LayerCall& call,
                                     const OptionalTensor& grad_output,
                                     const OptionalTensor& grad_hy, const OptionalTensor& grad_cy,
                                     const at::Tensor& output, const at::Tensor* workspace);

BackwardOutputs allocate_backward(CellKind cell, const LayerCall& call, bool input_grad);

constexpr const char* forward_op_name(CellKind cell) { return cell_info(cell).forward_op; }
constexpr const char* backward_op_name(CellKind cell) { return cell_info(cell).backward_op; }

// ---- adapters from the op schemas (schemas.cpp) to Device::forward / Device::backward ----

template <class Device, CellKind kCell>
std::tuple<at::Tensor, at::Tensor> rnn_forward_op(const at::Tensor& input, const OptionalTensor& hx,
                                                  const at::Tensor& w_ih, const at::Tensor& w_hh,
                                                  const OptionalTensor& b_ih,
                                                  const OptionalTensor& b_hh,
                                                  const OptionalTensor& batch_sizes,
                                                  bool reverse) {
  const char* op = forward_op_name(kCell);
  const LayerCall call = make_call(op, kCell, input, hx, std::nullopt, w_ih, w_hh, b_ih, b_hh,
                                   std::nullopt, batch_sizes, reverse);
  Device::check_dtype(op, call.input);
  const ForwardOutputs out = allocate_forward(kCell, call, /*train=*/false);
  Device::template forward<kCell>(call, out);
  return {out.output, out.hy};
}

template <class Device, CellKind kCell>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
rnn_backward_op(const OptionalTensor& grad_output, const OptionalTensor& grad_hy,
                const at::Tensor& input, const OptionalTensor& hx, const at::Tensor& w_ih,
                const at::Tensor& w_hh, const at::Tensor& output,
                const OptionalTensor& batch_sizes, bool reverse, bool input_grad) {
  const char* op = backward_op_name(kCell);
  const LayerCall call = make_call(op, kCell, input, hx, std::nullopt, w_ih, w_hh, std::nullopt,
                                   std::nullopt, std::nullopt, batch_sizes, reverse);
  Device::check_dtype(op, call.input);
  const BackwardInputs in = check_backward_inputs(kCell, call, grad_output, grad_hy,
                                                  std::nullopt, output, nullptr);
  const BackwardOutputs out = allocate_backward(kCell, call, input_grad);
  Device::template backward<kCell>(call, in, out);
  return {out.grad_input, out.returned_grad_hx(call), out.grad_w_ih, out.grad_w_hh,
          out.grad_b_ih,  out.grad_b_hh};
}

template <class Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_forward_op(
    const at::Tensor& input, const OptionalTensor& hx, const OptionalTensor& cx,
    const at::Tensor& w_ih, const at::Tensor& w_hh, const OptionalTensor& b_ih,
    const OptionalTensor& b_hh, const OptionalTensor& w_hr, const OptionalTensor& batch_sizes,
    bool reverse, bool train) {
  constexpr CellKind kCell = CellKind::kLstm;
  const char* op = forward_op_name(kCell);
  const LayerCall call =
      make_call(op, kCell, input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse);
  Device::check_dtype(op, call.input);
  const ForwardOutputs out = allocate_forward(kCell, call, train);
  Device::template forward<kCell>(call, out);
  return {out.output, out.hy, out.cy, out.workspace};
}

template <class Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
lstm_backward_op(const OptionalTensor& grad_output, const OptionalTensor& grad_hy,
                 const OptionalTensor& grad_cy, const at::Tensor& input,
                 const OptionalTensor& hx, const OptionalTensor& cx, const at::Tensor& w_ih,
                 const at::Tensor& w_hh, const OptionalTensor& w_hr, const at::Tensor& output,
                 const at::Tensor& workspace, const OptionalTensor& batch_sizes, bool reverse,
                 bool input_grad) {
  constexpr CellKind kCell = CellKind::kLstm;
  const char* op = backward_op_name(kCell);
  const LayerCall call = make_call(op, kCell, input, hx, cx, w_ih, w_hh, std::nullopt,
                                   std::nullopt, w_hr, batch_sizes, reverse);
  Device::check_dtype(op, call.input);
  const BackwardInputs in =
      check_backward_inputs(kCell, call, grad_output, grad_hy, grad_cy, output, &workspace);
  const BackwardOutputs out = allocate_backward(kCell, call, input_grad);
  Device::template backward<kCell>(call, in, out);
  return {out.grad_input,  out.returned_grad_hx(call), out.returned_grad_cx(call),
          out.grad_w_ih,   out.grad_w_hh,              out.grad_b_ih,
          out.grad_b_hh,   out.grad_w_hr};
}

template <class Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_forward_op(
    const at::Tensor& input, const OptionalTensor& hx, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const OptionalTensor& b_ih, const OptionalTensor& b_hh,
    const OptionalTensor& batch_sizes, bool reverse, bool train) {
  constexpr CellKind kCell = CellKind::kGru;
  const char* op = forward_op_name(kCell);
  const LayerCall call = make_call(op, kCell, input, hx, std::nullopt, w_ih, w_hh, b_ih, b_hh,
                                   std::nullopt, batch_sizes, reverse);
  Device::check_dtype(op, call.input);
  const ForwardOutputs out = allocate_forward(kCell, call, train);
  Device::template forward<kCell>(call, out);
  return {out.output, out.hy, out.workspace};
}

template <class Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gru_backward_op(const OptionalTensor& grad_output, const OptionalTensor& grad_hy,
                const at::Tensor& input, const OptionalTensor& hx, const at::Tensor& w_ih,
                const at::Tensor& w_hh, const at::Tensor& output, const at::Tensor& workspace,
                const OptionalTensor& batch_sizes, bool reverse, bool input_grad) {
  constexpr CellKind kCell = CellKind::kGru;
  const char* op = backward_op_name(kCell);
  const LayerCall call = make_call(op, kCell, input, hx, std::nullopt, w_ih, w_hh, std::nullopt,
                                   std::nullopt, std::nullopt, batch_sizes, reverse);
  Device::check_dtype(op, call.input);
  const BackwardInputs in = check_backward_inputs(kCell, call, grad_output, grad_hy,
                                                  std::nullopt, output, &workspace);
  const BackwardOutputs out = allocate_backward(kCell, call, input_grad);
  Device::template backward<kCell>(call, in, out);
  return {out.grad_input, out.returned_grad_hx(call), out.grad_w_ih,
          out.grad_w_hh,  out.grad_b_ih,              out.grad_b_hh};
}

// A device whose code is never run: the adapters instantiated with it give each op's C++
// signature, for the typed dispatcher handles of the autocast and autograd kernels.
struct SignatureOnly {};

using RnnForward = decltype(rnn_forward_op<SignatureOnly, CellKind::kRnnTanh>);
using RnnBackward = decltype(rnn_backward_op<SignatureOnly, CellKind::kRnnTanh>);
using LstmForward = decltype(lstm_forward_op<SignatureOnly>);
using LstmBackward = decltype(lstm_backward_op<SignatureOnly>);
using GruForward = decltype(gru_forward_op<SignatureOnly>);
using GruBackward = decltype(gru_backward_op<SignatureOnly>);

// The dispatcher's handle of cell kCell's forward op (its backward op when kBackward), whose C++
// signature is `Signature` (one of the above), looked up once.
template <CellKind kCell, class Signature, bool kBackward = false>
const c10::TypedOperatorHandle<Signature>& op_handle() {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow(kBackward ? backward_op_name(kCell) : forward_op_name(kCell), "")
          .template typed<Signature>();
  return op;
}

// Registers every layer op of `Device` in a TORCH_LIBRARY_IMPL block.
template <class Device, class Library>
void register_layer_ops(Library& m) {
  m.impl("rnn_tanh_forward", &rnn_forward_op<Device, CellKind::kRnnTanh>);
  m.impl("rnn_tanh_backward", &rnn_backward_op<Device, CellKind::kRnnTanh>);
  m.impl("rnn_relu_forward", &rnn_forward_op<Device, CellKind::kRnnRelu>);
  m.impl("rnn_relu_backward", &rnn_backward_op<Device, CellKind::kRnnRelu>);
  m.impl("lstm_forward", &lstm_forward_op<Device>);
  m.impl("lstm_backward", &lstm_backward_op<Device>);
  m.impl("gru_forward", &gru_forward_op<Device>);
  m.impl("gru_backward", &gru_backward_op<Device>);
}

}  // namespace fastrnn::ops
