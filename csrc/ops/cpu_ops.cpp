// CPU implementations of the layer ops: the device half of layer_ops.h, calling the recurrence
// driver of csrc/cpu in float32 or float64.
#include <torch/library.h>

#include "cpu/recurrence.h"
#include "ops/layer_ops.h"

namespace fastrnn::ops {
namespace {

template <class T>
const T* data_or_null(const OptionalTensor& tensor) {
  return tensor.has_value() ? tensor->data_ptr<T>() : nullptr;
}

template <class T>
T* data_or_null(const at::Tensor& tensor) {
  return tensor.defined() ? tensor.data_ptr<T>() : nullptr;
}

cpu::SequenceShape sequence_of(const LayerCall& call) {
  if (call.batch_sizes.has_value()) {
    return cpu::SequenceShape(call.batch_sizes->data_ptr<int64_t>(), call.sizes.steps);
  }
  return cpu::SequenceShape(call.sizes.steps, call.sizes.batch);
}

template <class T>
cpu::LayerWeights<T> weights_of(const LayerCall& call) {
  cpu::LayerWeights<T> w;
  w.input_size = call.sizes.input;
  w.hidden_size = call.sizes.hidden;
  w.proj_size = call.sizes.projected ? call.sizes.output : 0;
  w.w_ih = call.w_ih.data_ptr<T>();
  w.w_hh = call.w_hh.data_ptr<T>();
  w.b_ih = data_or_null<T>(call.b_ih);
  w.b_hh = data_or_null<T>(call.b_hh);
  w.w_hr = data_or_null<T>(call.w_hr);
  return w;
}

struct CpuDevice {
  static void check_dtype(const char* op, const at::Tensor& input) {
    TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble, op,
                ": the CPU kernels support float32 and float64, got ", input.scalar_type());
  }

  template <CellKind kCell>
  static void forward(const LayerCall& call, const ForwardOutputs& out) {
    AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), forward_op_name(kCell), [&] {
      cpu::ForwardIO<scalar_t> io;
      io.x = call.input.data_ptr<scalar_t>();
      io.h0 = call.hx.data_ptr<scalar_t>();
      io.c0 = data_or_null<scalar_t>(call.cx);
      io.y = out.output.data_ptr<scalar_t>();
      io.h_n = out.hy.data_ptr<scalar_t>();
      io.c_n = data_or_null<scalar_t>(out.cy);
      io.workspace = out.workspace.defined() && out.workspace.dim() == 2
                         ? out.workspace.data_ptr<scalar_t>()
                         : nullptr;
      cpu::recurrence_forward<kCell, scalar_t>(sequence_of(call), weights_of<scalar_t>(call), io,
                                               call.reverse);
    });
  }

  template <CellKind kCell>
  static void backward(const LayerCall& call, const BackwardInputs& in,
                       const BackwardOutputs& out) {
    AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), backward_op_name(kCell), [&] {
      cpu::BackwardIO<scalar_t> io;
      io.dy = in.grad_output.data_ptr<scalar_t>();
      io.dh_n = in.grad_hy.data_ptr<scalar_t>();
      io.dc_n = data_or_null<scalar_t>(in.grad_cy);
      io.x = call.input.data_ptr<scalar_t>();
      io.h0 = call.hx.data_ptr<scalar_t>();
      io.c0 = data_or_null<scalar_t>(call.cx);
      io.y = in.output.data_ptr<scalar_t>();
      io.workspace = data_or_null<scalar_t>(in.workspace);
      io.dx = out.input_grad ? out.grad_input.data_ptr<scalar_t>() : nullptr;
      io.dh0 = out.grad_hx.data_ptr<scalar_t>();
      io.dc0 = data_or_null<scalar_t>(out.grad_cx);
      io.dw_ih = out.grad_w_ih.data_ptr<scalar_t>();
      io.dw_hh = out.grad_w_hh.data_ptr<scalar_t>();
      io.db_ih = out.grad_b_ih.data_ptr<scalar_t>();
      io.db_hh = out.grad_b_hh.data_ptr<scalar_t>();
      io.dw_hr = call.w_hr.has_value() ? out.grad_w_hr.data_ptr<scalar_t>() : nullptr;
      cpu::recurrence_backward<kCell, scalar_t>(sequence_of(call), weights_of<scalar_t>(call),
                                                io, call.reverse);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) { register_layer_ops<CpuDevice>(m); }

}  // namespace fastrnn::ops
