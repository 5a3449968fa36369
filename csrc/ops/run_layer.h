// From a checked op call (layer_ops.h) to the recurrence driver (fastrnn/recurrence.h) on a
// backend: raw pointers of the backend's storage type T and accumulation type A out of the
// tensors, a forward call through its one description on storage (LayerForward).
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

// One layer and direction of a forward call, on storage: what every forward entry runs (the
// op's CPU and CUDA kernels, from make_call's contiguous tensors and allocate_forward's outputs
// through forward_of; the fast path builds it straight from a stack's tensors, whose state rows
// point into the stack's [layers * directions, B, P] tensors with no views in between). Every
// pointer is to contiguous storage of `dtype` (the workspace: its accumulation type), or null
// where the call has none; `sizes` from check_layer.
struct LayerForward {
  CellKind cell = CellKind::kLstm;
  at::ScalarType dtype = at::kFloat;
  LayerSizes sizes;
  bool reverse = false;
  const int64_t* batch_sizes = nullptr;  // packed: rows per step; null: padded
  const void *x = nullptr, *h0 = nullptr, *c0 = nullptr;  // c0: LSTM only
  const void *w_ih = nullptr, *w_hh = nullptr, *b_ih = nullptr, *b_hh = nullptr,
             *w_hr = nullptr;
  void *y = nullptr, *h_n = nullptr, *c_n = nullptr;  // c_n: LSTM only
  void* workspace = nullptr;  // training: what backward needs; null: inference
};

// An op call as a LayerForward.
inline LayerForward forward_of(CellKind cell, const LayerCall& call, const ForwardOutputs& out) {
  LayerForward f;
  f.cell = cell;
  f.dtype = call.input.defined() ? call.input.scalar_type() : call.w_hh.scalar_type();
  f.sizes = call.sizes;
  f.reverse = call.reverse;
  f.batch_sizes = pointer<int64_t>(call.batch_sizes);
  f.x = pointer<void>(call.input);
  f.h0 = pointer<void>(call.hx);
  f.c0 = pointer<void>(call.cx);
  f.w_ih = pointer<void>(call.w_ih);
  f.w_hh = pointer<void>(call.w_hh);
  f.b_ih = pointer<void>(call.b_ih);
  f.b_hh = pointer<void>(call.b_hh);
  f.w_hr = pointer<void>(call.w_hr);
  f.y = pointer<void>(out.output);
  f.h_n = pointer<void>(out.hy);
  f.c_n = pointer<void>(out.cy);
  // A [0] workspace means inference; an empty [0, W] one (no rows) has nothing to save either.
  f.workspace = out.workspace.defined() && out.workspace.numel() > 0 ? out.workspace.data_ptr()
                                                                     : nullptr;
  return f;
}

inline SequenceShape sequence_of(const LayerSizes& sizes, const int64_t* batch_sizes) {
  if (batch_sizes != nullptr) return SequenceShape(batch_sizes, sizes.steps);
  return SequenceShape(sizes.steps, sizes.batch);
}

template <class T>
LayerWeights<T> weights_of(const LayerSizes& sizes, const void* w_ih, const void* w_hh,
                           const void* b_ih, const void* b_hh, const void* w_hr) {
  LayerWeights<T> w;
  w.input_size = sizes.input;
  w.hidden_size = sizes.hidden;
  w.proj_size = sizes.projected ? sizes.output : 0;
  w.w_ih = static_cast<const T*>(w_ih);
  w.w_hh = static_cast<const T*>(w_hh);
  w.b_ih = static_cast<const T*>(b_ih);
  w.b_hh = static_cast<const T*>(b_hh);
  w.w_hr = static_cast<const T*>(w_hr);
  return w;
}

// f's storage as the driver's typed pointers.
template <class T, class A>
ForwardIO<T, A> forward_io(const LayerForward& f) {
  ForwardIO<T, A> io;
  io.x = static_cast<const T*>(f.x);
  io.h0 = static_cast<const T*>(f.h0);
  io.c0 = static_cast<const T*>(f.c0);
  io.y = static_cast<T*>(f.y);
  io.h_n = static_cast<T*>(f.h_n);
  io.c_n = static_cast<T*>(f.c_n);
  io.workspace = static_cast<A*>(f.workspace);
  return io;
}

template <CellKind kCell, class Backend>
void run_forward(const Backend& backend, const LayerForward& f) {
  using T = typename Backend::T;
  recurrence_forward<kCell>(backend, sequence_of(f.sizes, f.batch_sizes),
                            weights_of<T>(f.sizes, f.w_ih, f.w_hh, f.b_ih, f.b_hh, f.w_hr),
                            forward_io<T, typename Backend::A>(f), f.reverse);
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
  const void* w_hr = pointer<void>(call.w_hr);
  recurrence_backward<kCell>(backend, sequence_of(call.sizes, pointer<int64_t>(call.batch_sizes)),
                             weights_of<T>(call.sizes, pointer<void>(call.w_ih),
                                           pointer<void>(call.w_hh), pointer<void>(call.b_ih),
                                           pointer<void>(call.b_hh), w_hr),
                             io, call.reverse);
}

}  // namespace fastrnn::ops
