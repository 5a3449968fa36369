#include "ops/layer_ops.h"

#include <ATen/OpMathType.h>

#include "cpu/block_cache.h"
#include "fastrnn/debug.h"

namespace fastrnn::ops {

at::Tensor allocate(at::IntArrayRef shape, const at::TensorOptions& options) {
  const bool cpu = options.device().is_cpu() && options.layout() == at::kStrided &&
                   !options.pinned_memory();
  at::Tensor tensor = cpu ? cpu::empty_cached(shape, options.dtype().toScalarType())
                          : at::empty(shape, options);
  if (debug_poison() && at::isFloatingType(tensor.scalar_type())) tensor.fill_(NAN);
  return tensor;
}

at::Tensor contiguous_copy(const at::Tensor& tensor) {
  if (tensor.is_contiguous()) return tensor;
  return allocate(tensor.sizes(), tensor.options()).copy_(tensor);
}

namespace {

OptionalTensor contiguous(const OptionalTensor& tensor) {
  if (!tensor.has_value()) return std::nullopt;
  return tensor->contiguous();
}

// Zeros of `shape`, for an absent gradient, from `allocate` (the block cache on the CPU).
at::Tensor zeros(at::IntArrayRef shape, const at::TensorOptions& options) {
  return allocate(shape, options).zero_();
}

}  // namespace

LayerCall make_call(const char* op, CellKind cell, const at::Tensor& input, const OptionalTensor& hx,
                    const OptionalTensor& cx, const at::Tensor& w_ih, const at::Tensor& w_hh,
                    const OptionalTensor& b_ih, const OptionalTensor& b_hh,
                    const OptionalTensor& w_hr, const OptionalTensor& batch_sizes, bool reverse) {
  LayerCall call;
  call.op = op;
  call.sizes =
      check_layer(op, cell, LayerTensors{input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes});
  const LayerSizes& s = call.sizes;
  const auto options = input.options();
  call.input = contiguous_copy(input);  // batch_first input arrives transposed
  call.hx_given = hx.has_value();
  call.hx = hx.has_value() ? hx->contiguous() : at::zeros({s.batch, s.output}, options);
  if (cell_info(cell).cell_state) {
    call.cx_given = cx.has_value();
    call.cx = cx.has_value() ? cx->contiguous() : at::zeros({s.batch, s.hidden}, options);
  }
  call.w_ih = w_ih.contiguous();
  call.w_hh = w_hh.contiguous();
  call.b_ih = contiguous(b_ih);
  call.b_hh = contiguous(b_hh);
  call.w_hr = contiguous(w_hr);
  call.batch_sizes = contiguous(batch_sizes);
  call.reverse = reverse;
  return call;
}

ForwardOutputs allocate_forward(CellKind cell, const LayerCall& call, bool train) {
  const LayerSizes& s = call.sizes;
  const auto options = call.input.options();
  ForwardOutputs out;
  out.output = allocate(sequence_shape(s, s.output), options);
  out.hy = allocate({s.batch, s.output}, options);
  if (cell_info(cell).cell_state) out.cy = allocate({s.batch, s.hidden}, options);
  const int64_t blocks = workspace_blocks(cell);
  if (blocks > 0) {
    // Saved gates and cell states stay in float32 for half types (at::opmath_type).
    const auto workspace_options = options.dtype(at::toOpMathType(call.input.scalar_type()));
    out.workspace = train ? allocate({s.rows, blocks * s.hidden}, workspace_options)
                          : allocate({0}, workspace_options);
  }
  return out;
}

BackwardInputs check_backward_inputs(CellKind cell, const LayerCall& call,
                                     const OptionalTensor& grad_output,
                                     const OptionalTensor& grad_hy, const OptionalTensor& grad_cy,
                                     const at::Tensor& output, const at::Tensor* workspace) {
  const LayerSizes& s = call.sizes;
  const char* op = call.op;
  const auto options = call.input.options();
  // A gradient that is absent is zero; one that is given must match its output.
  auto gradient = [&](const char* name, const OptionalTensor& grad, at::IntArrayRef shape) {
    if (!grad.has_value()) return zeros(shape, options);
    check_like(op, name, *grad, shape, call.input.scalar_type(), call.input.device());
    return contiguous_copy(*grad);  // e.g. the expanded gradient of output.sum()
  };
  const std::vector<int64_t> sequence = sequence_shape(s, s.output);
  check_like(op, "output", output, sequence, call.input.scalar_type(), call.input.device());
  BackwardInputs in;
  in.grad_output = gradient("grad_output", grad_output, sequence);
  in.grad_hy = gradient("grad_hy", grad_hy, {s.batch, s.output});
  in.output = output.contiguous();
  if (cell_info(cell).cell_state) in.grad_cy = gradient("grad_cy", grad_cy, {s.batch, s.hidden});
  if (workspace != nullptr) {
    TORCH_CHECK(workspace->dim() != 1, op,
                ": the workspace is empty: its forward call ran with train=False, which saves "
                "nothing for backward");
    check_like(op, "workspace", *workspace, {s.rows, workspace_blocks(cell) * s.hidden},
               at::toOpMathType(call.input.scalar_type()), call.input.device());
    in.workspace = workspace->contiguous();
  }
  return in;
}

BackwardOutputs allocate_backward(CellKind cell, const LayerCall& call, bool input_grad) {
  const LayerSizes& s = call.sizes;
  const auto options = call.input.options();
  BackwardOutputs out;
  out.input_grad = input_grad;
  out.grad_input = input_grad ? allocate(call.input.sizes(), options) : allocate({0}, options);
  out.grad_hx = allocate(call.hx.sizes(), options);
  if (cell_info(cell).cell_state) {
    out.grad_cx = allocate(call.cx.sizes(), options);
    out.grad_w_hr = call.w_hr.has_value() ? allocate(call.w_hr->sizes(), options) : allocate({0}, options);
  }
  out.grad_w_ih = allocate(call.w_ih.sizes(), options);
  out.grad_w_hh = allocate(call.w_hh.sizes(), options);
  out.grad_b_ih = allocate({s.gates}, options);
  out.grad_b_hh = allocate({s.gates}, options);
  return out;
}

at::Tensor BackwardOutputs::returned_grad_hx(const LayerCall& call) const {
  return call.hx_given ? grad_hx : at::empty({0}, grad_hx.options());
}

at::Tensor BackwardOutputs::returned_grad_cx(const LayerCall& call) const {
  return call.cx_given ? grad_cx : at::empty({0}, grad_cx.options());
}

}  // namespace fastrnn::ops
