// From a checked op call (layer_ops.h) to the recurrence driver (recurrence.h) on a backend:
// raw pointers of the backend's storage type T and accumulation type A out of the tensors.
// Device-independent; each device's glue calls run_forward / run_backward with its backend.
#pragma once

#include "ops/layer_ops.h"
#include "fastrnn/recurrence.h"

namespace fastrnn::ops {

template <class U>
U* pointer(const at::Tensor& tensor) {
  return tensor.defined() ? static_cast<U*>(tensor.data_ptr()) : nullptr;
}

template <class U>
const U* pointer(const OptionalTensor& tensor) {
  return tensor.has_value() ? static_cast<const U*>(tensor->data_ptr()) : nullptr;
}

inline SequenceShape sequence_of(const LayerCall& call) {
  if (call.batch_sizes.has_value()) {
    return SequenceShape(call.batch_sizes->data_ptr<int64_t>(), call.sizes.steps);
  }
  return SequenceShape(call.sizes.steps, call.sizes.batch);
}

template <class T>
LayerWeights<T> weights_of(const LayerCall& call) {
  LayerWeights<T> w;
  w.input_size = call.sizes.input;
  w.hidden_size = call.sizes.hidden;
  w.proj_size = call.sizes.projected ? call.sizes.output : 0;
  w.w_ih = pointer<T>(call.w_ih);
  w.w_hh = pointer<T>(call.w_hh);
  w.b_ih = pointer<T>(call.b_ih);
  w.b_hh = pointer<T>(call.b_hh);
  w.w_hr = pointer<T>(call.w_hr);
  return w;
}

// `x_proj`: undefined, or x W_ih^T of every row as a bfloat16 [N, G] tensor (ForwardIO::x_proj).
template <CellKind kCell, class Backend>
void run_forward(const Backend& backend, const LayerCall& call, const ForwardOutputs& out,
                 const at::Tensor& x_proj = at::Tensor()) {
  using T = typename Backend::T;
  using A = typename Backend::A;
  ForwardIO<T, A> io;
  io.x = pointer<T>(call.input);
  io.h0 = pointer<T>(call.hx);
  io.c0 = pointer<T>(call.cx);
  io.y = pointer<T>(out.output);
  io.h_n = pointer<T>(out.hy);
  io.c_n = pointer<T>(out.cy);
  // A [0] workspace means inference; an empty [0, W] one (no rows) has nothing to save either.
  io.workspace = out.workspace.defined() && out.workspace.numel() > 0 ? pointer<A>(out.workspace)
                                                                      : nullptr;
  io.x_proj = pointer<uint16_t>(x_proj);
  recurrence_forward<kCell>(backend, sequence_of(call), weights_of<T>(call), io, call.reverse);
}

template <CellKind kCell, class Backend>
void run_backward(const Backend& backend, const LayerCall& call, const BackwardInputs& in,
                  const BackwardOutputs& out) {
  using T = typename Backend::T;
  using A = typename Backend::A;
  BackwardIO<T, A> io;
  io.dy = pointer<T>(in.grad_output);
  io.dh_n = pointer<T>(in.grad_hy);
  io.dc_n = pointer<T>(in.grad_cy);
  io.x = pointer<T>(call.input);
  io.h0 = pointer<T>(call.hx);
  io.c0 = pointer<T>(call.cx);
  io.y = pointer<T>(in.output);
  io.workspace = pointer<A>(in.workspace);
  io.dx = out.input_grad ? pointer<T>(out.grad_input) : nullptr;
  io.dh0 = pointer<T>(out.grad_hx);
  io.dc0 = pointer<T>(out.grad_cx);
  io.dw_ih = pointer<T>(out.grad_w_ih);
  io.dw_hh = pointer<T>(out.grad_w_hh);
  io.db_ih = pointer<T>(out.grad_b_ih);
  io.db_hh = pointer<T>(out.grad_b_hh);
  io.dw_hr = call.w_hr.has_value() ? pointer<T>(out.grad_w_hr) : nullptr;
  recurrence_backward<kCell>(backend, sequence_of(call), weights_of<T>(call), io, call.reverse);
}

}  // namespace fastrnn::ops
