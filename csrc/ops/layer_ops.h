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
#include <type_traits>

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
// A cell's ops take and return the cell state (cx, cy, grad_cy, grad_cx) and a projection
// (w_hr) when CellInfo::cell_state, and a workspace (and the forward's `train` flag) when
// CellInfo::workspace_blocks > 0: the three signature shapes below. A cell is registered by its
// shape, so a new cell of an existing shape needs no adapter of its own.

// Forward: checks, allocation and the device's kernel; the shapes differ only in the
// arguments they take and the outputs they return.
template <class Device, CellKind kCell>
ForwardOutputs forward_layer(const at::Tensor& input, const OptionalTensor& hx,
                             const OptionalTensor& cx, const at::Tensor& w_ih,
                             const at::Tensor& w_hh, const OptionalTensor& b_ih,
                             const OptionalTensor& b_hh, const OptionalTensor& w_hr,
                             const OptionalTensor& batch_sizes, bool reverse, bool train) {
  const char* op = forward_op_name(kCell);
  const LayerCall call =
      make_call(op, kCell, input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse);
  Device::check_dtype(op, call.input);
  const ForwardOutputs out = allocate_forward(kCell, call, train);
  Device::template forward<kCell>(call, out);
  return out;
}

// Backward: every gradient, with grad_hx / grad_cx already as the op returns them.
template <class Device, CellKind kCell>
BackwardOutputs backward_layer(const OptionalTensor& grad_output, const OptionalTensor& grad_hy,
                               const OptionalTensor& grad_cy, const at::Tensor& input,
                               const OptionalTensor& hx, const OptionalTensor& cx,
                               const at::Tensor& w_ih, const at::Tensor& w_hh,
                               const OptionalTensor& w_hr, const at::Tensor& output,
                               const at::Tensor* workspace, const OptionalTensor& batch_sizes,
                               bool reverse, bool input_grad) {
  const char* op = backward_op_name(kCell);
  const LayerCall call = make_call(op, kCell, input, hx, cx, w_ih, w_hh, std::nullopt,
                                   std::nullopt, w_hr, batch_sizes, reverse);
  Device::check_dtype(op, call.input);
  const BackwardInputs in =
      check_backward_inputs(kCell, call, grad_output, grad_hy, grad_cy, output, workspace);
  BackwardOutputs out = allocate_backward(kCell, call, input_grad);
  Device::template backward<kCell>(call, in, out);
  out.grad_hx = out.returned_grad_hx(call);
  if constexpr (cell_info(kCell).cell_state) out.grad_cx = out.returned_grad_cx(call);
  return out;
}

template <class Device, CellKind kCell, bool kCellState = cell_info(kCell).cell_state,
          bool kWorkspace = (workspace_blocks(kCell) > 0)>
struct LayerOps;

// Neither a cell state nor a workspace (the vanilla RNN).
template <class Device, CellKind kCell>
struct LayerOps<Device, kCell, false, false> {
  static std::tuple<at::Tensor, at::Tensor> forward(
      const at::Tensor& input, const OptionalTensor& hx, const at::Tensor& w_ih,
      const at::Tensor& w_hh, const OptionalTensor& b_ih, const OptionalTensor& b_hh,
      const OptionalTensor& batch_sizes, bool reverse) {
    const ForwardOutputs out =
        forward_layer<Device, kCell>(input, hx, std::nullopt, w_ih, w_hh, b_ih, b_hh,
                                     std::nullopt, batch_sizes, reverse, /*train=*/false);
    return {out.output, out.hy};
  }

  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
  backward(const OptionalTensor& grad_output, const OptionalTensor& grad_hy,
           const at::Tensor& input, const OptionalTensor& hx, const at::Tensor& w_ih,
           const at::Tensor& w_hh, const at::Tensor& output, const OptionalTensor& batch_sizes,
           bool reverse, bool input_grad) {
    const BackwardOutputs out = backward_layer<Device, kCell>(
        grad_output, grad_hy, std::nullopt, input, hx, std::nullopt, w_ih, w_hh, std::nullopt,
        output, nullptr, batch_sizes, reverse, input_grad);
    return {out.grad_input, out.grad_hx,   out.grad_w_ih,
            out.grad_w_hh,  out.grad_b_ih, out.grad_b_hh};
  }
};

// A workspace, no cell state (the GRU).
template <class Device, CellKind kCell>
struct LayerOps<Device, kCell, false, true> {
  static std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(
      const at::Tensor& input, const OptionalTensor& hx, const at::Tensor& w_ih,
      const at::Tensor& w_hh, const OptionalTensor& b_ih, const OptionalTensor& b_hh,
      const OptionalTensor& batch_sizes, bool reverse, bool train) {
    const ForwardOutputs out =
        forward_layer<Device, kCell>(input, hx, std::nullopt, w_ih, w_hh, b_ih, b_hh,
                                     std::nullopt, batch_sizes, reverse, train);
    return {out.output, out.hy, out.workspace};
  }

  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
  backward(const OptionalTensor& grad_output, const OptionalTensor& grad_hy,
           const at::Tensor& input, const OptionalTensor& hx, const at::Tensor& w_ih,
           const at::Tensor& w_hh, const at::Tensor& output, const at::Tensor& workspace,
           const OptionalTensor& batch_sizes, bool reverse, bool input_grad) {
    const BackwardOutputs out = backward_layer<Device, kCell>(
        grad_output, grad_hy, std::nullopt, input, hx, std::nullopt, w_ih, w_hh, std::nullopt,
        output, &workspace, batch_sizes, reverse, input_grad);
    return {out.grad_input, out.grad_hx,   out.grad_w_ih,
            out.grad_w_hh,  out.grad_b_ih, out.grad_b_hh};
  }
};

// A cell state (with the optional projection) and a workspace (the LSTM).
template <class Device, CellKind kCell>
struct LayerOps<Device, kCell, true, true> {
  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward(
      const at::Tensor& input, const OptionalTensor& hx, const OptionalTensor& cx,
      const at::Tensor& w_ih, const at::Tensor& w_hh, const OptionalTensor& b_ih,
      const OptionalTensor& b_hh, const OptionalTensor& w_hr, const OptionalTensor& batch_sizes,
      bool reverse, bool train) {
    const ForwardOutputs out = forward_layer<Device, kCell>(input, hx, cx, w_ih, w_hh, b_ih, b_hh,
                                                            w_hr, batch_sizes, reverse, train);
    return {out.output, out.hy, out.cy, out.workspace};
  }

  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                    at::Tensor, at::Tensor>
  backward(const OptionalTensor& grad_output, const OptionalTensor& grad_hy,
           const OptionalTensor& grad_cy, const at::Tensor& input, const OptionalTensor& hx,
           const OptionalTensor& cx, const at::Tensor& w_ih, const at::Tensor& w_hh,
           const OptionalTensor& w_hr, const at::Tensor& output, const at::Tensor& workspace,
           const OptionalTensor& batch_sizes, bool reverse, bool input_grad) {
    const BackwardOutputs out = backward_layer<Device, kCell>(
        grad_output, grad_hy, grad_cy, input, hx, cx, w_ih, w_hh, w_hr, output, &workspace,
        batch_sizes, reverse, input_grad);
    return {out.grad_input, out.grad_hx,   out.grad_cx,   out.grad_w_ih,
            out.grad_w_hh,  out.grad_b_ih, out.grad_b_hh, out.grad_w_hr};
  }
};

// A device whose code is never run: the adapters instantiated with it give each op's C++
// signature, for the typed dispatcher handles of the autocast and autograd kernels.
struct SignatureOnly {};

template <CellKind kCell>
using ForwardSignature = decltype(LayerOps<SignatureOnly, kCell>::forward);
template <CellKind kCell>
using BackwardSignature = decltype(LayerOps<SignatureOnly, kCell>::backward);

// The dispatcher's handle of cell kCell's forward op (its backward op when kBackward), looked
// up once.
template <CellKind kCell, bool kBackward = false>
const auto& op_handle() {
  using Signature =
      std::conditional_t<kBackward, BackwardSignature<kCell>, ForwardSignature<kCell>>;
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow(kBackward ? backward_op_name(kCell) : forward_op_name(kCell), "")
          .template typed<Signature>();
  return op;
}

// Registers both layer ops of every cell of `Device` in a TORCH_LIBRARY_IMPL block.
template <class Device, class Library>
void register_layer_ops(Library& m) {
  for_each_cell([&](auto cell) {
    m.impl(forward_op_name(cell()), &LayerOps<Device, cell()>::forward);
    m.impl(backward_op_name(cell()), &LayerOps<Device, cell()>::backward);
  });
}

}  // namespace fastrnn::ops
