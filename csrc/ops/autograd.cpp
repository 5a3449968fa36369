// Autograd for the forward ops, as C++ kernels of the Autograd dispatch key: forward runs the op
// below autograd and saves what its backward op takes (the input, the states and weights, the
// output and the workspace); backward calls that op.
//
// Why not torch.library.register_autograd (fastrnn's first version): its Python wrapper cost
// 50-55 us a forward call (an LSTM call of one step, H=8: 13 us without a graph, 68 us with one,
// on the 2-core development VM), and as an autograd.Function with materialized gradients it
// made backward allocate and zero-fill a tensor for every output that did not reach the loss,
// the workspace above all ([N, 5H] floats for an LSTM: 65 MB at T=100, B=64, H=512). Here
// gradients stay unmaterialized: a missing one reaches the backward op as None (zeros there only
// where it reads them), and the workspace is marked non-differentiable.
//
// A backward with create_graph=True (autograd asks for gradients that are themselves
// differentiable: a double backward) recomputes the layer in differentiable ATen ops
// (differentiable.h) and differentiates that instead of calling the backward op.
//
// torch.compile and torch.export trace through these kernels as through ATen's own C++ autograd:
// the op calls below dispatch to the fake kernels (fastrnn/_ops.py) under tracing.
#include <torch/autograd.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

#include "ops/differentiable.h"
#include "ops/layer_ops.h"

namespace fastrnn::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

OptionalTensor optional(const at::Tensor& tensor) {
  return tensor.defined() ? OptionalTensor(tensor) : std::nullopt;
}

at::Tensor defined_or_empty(const OptionalTensor& tensor) {
  return tensor.has_value() ? *tensor : at::Tensor();
}

// A gradient for an input: returned only where that input was given (an undefined tensor
// otherwise, as autograd expects for None and non-tensor inputs).
at::Tensor grad_if(bool given, at::Tensor grad) { return given ? std::move(grad) : at::Tensor(); }

// What every cell's backward needs besides its saved tensors.
void save_flags(AutogradContext* ctx, const OptionalTensor& b_ih, const OptionalTensor& b_hh,
                bool reverse) {
  ctx->saved_data["reverse"] = reverse;
  ctx->saved_data["b_ih"] = b_ih.has_value();
  ctx->saved_data["b_hh"] = b_hh.has_value();
  ctx->set_materialize_grads(false);
}

bool flag(AutogradContext* ctx, const char* name) { return ctx->saved_data.at(name).toBool(); }

// Backward with create_graph=True: the gradients of `outputs`, the layer recomputed by
// differentiable_layer from the forward's saved inputs, given `grads` (undefined where no
// gradient reached an output), with respect to `args`, the forward's tensor arguments in order.
// Autograd records how they were computed, so they can be differentiated again. One entry per
// forward argument (`arity`): undefined where an argument is absent, not a tensor, or needs no
// gradient.
variable_list create_graph_grads(AutogradContext* ctx, const std::vector<at::Tensor>& outputs,
                                 const variable_list& grads, const std::vector<at::Tensor>& args,
                                 size_t arity) {
  std::vector<at::Tensor> reached, grad_outputs, wrt;
  std::vector<size_t> where;
  for (size_t i = 0; i < outputs.size() && i < grads.size(); ++i) {
    if (outputs[i].defined() && grads[i].defined()) {
      reached.push_back(outputs[i]);
      grad_outputs.push_back(grads[i]);
    }
  }
  size_t edge = 0;  // needs_input_grad counts the tensors given, not the arguments
  for (size_t k = 0; k < args.size(); ++k) {
    if (!args[k].defined()) continue;
    if (args[k].requires_grad() && ctx->needs_input_grad(edge)) {
      wrt.push_back(args[k]);
      where.push_back(k);
    }
    ++edge;
  }
  variable_list result(arity);
  if (reached.empty() || wrt.empty()) return result;
  const variable_list computed = torch::autograd::grad(
      reached, wrt, grad_outputs, /*retain_graph=*/true, /*create_graph=*/true,
      /*allow_unused=*/true);
  for (size_t j = 0; j < where.size(); ++j) result[where[j]] = computed[j];
  return result;
}

// Whether a forward call records a graph node: a gradient may be asked for. Forward-mode AD has
// no formula here: a dual tensor (torch.autograd.forward_ad) is an error, never a dropped
// tangent.
bool records_graph(const char* op, std::initializer_list<const at::Tensor*> tensors,
                   std::initializer_list<const OptionalTensor*> optionals) {
  bool requires_grad = false;
  auto visit = [&](const at::Tensor& t) {
    TORCH_CHECK(!t._fw_grad(/*level=*/0).defined(), op,
                ": forward-mode AD (dual tensors) is not supported; use reverse mode (backward)");
    requires_grad = requires_grad || t.requires_grad();
  };
  for (const at::Tensor* t : tensors) visit(*t);
  for (const OptionalTensor* t : optionals) {
    if (t->has_value()) visit(**t);
  }
  return requires_grad && at::GradMode::is_enabled();
}

// The Autograd kernel of cell kCell's forward op (`kernel`, through `Function` when a graph is
// recorded, else straight to the op below autograd: no graph node, nothing saved), one per
// signature shape of the ops (layer_ops.h, LayerOps). A graph needs the workspace whatever the
// caller asked (`train` is for calls without one: compiled forward graphs that hand it to a
// compiled backward), so a module traced by torch.jit.trace in inference (train=False in its
// graph) still trains.
template <CellKind kCell, bool kCellState = cell_info(kCell).cell_state,
          bool kWorkspace = (workspace_blocks(kCell) > 0)>
struct LayerAutograd;

// Neither a cell state nor a workspace (the vanilla RNN).
template <CellKind kCell>
struct LayerAutograd<kCell, false, false> {
  struct Function : torch::autograd::Function<Function> {
    static variable_list forward(AutogradContext* ctx, const at::Tensor& input,
                                 const OptionalTensor& hx, const at::Tensor& w_ih,
                                 const at::Tensor& w_hh, const OptionalTensor& b_ih,
                                 const OptionalTensor& b_hh, const OptionalTensor& batch_sizes,
                                 bool reverse) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      auto [output, hy] =
          op_handle<kCell>().call(input, hx, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse);
      ctx->save_for_backward({input, defined_or_empty(hx), w_ih, w_hh, output,
                              defined_or_empty(batch_sizes), defined_or_empty(b_ih),
                              defined_or_empty(b_hh)});
      save_flags(ctx, b_ih, b_hh, reverse);
      return {output, hy};
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
      const variable_list saved = ctx->get_saved_variables();
      const at::Tensor &input = saved[0], &hx = saved[1], &w_ih = saved[2], &w_hh = saved[3];
      if (at::GradMode::is_enabled()) {  // create_graph=True
        const at::Tensor &b_ih = saved[6], &b_hh = saved[7];
        return create_graph_grads(
            ctx,
            differentiable_layer(kCell, input, hx, at::Tensor(), w_ih, w_hh, b_ih, b_hh,
                                 at::Tensor(), saved[5], flag(ctx, "reverse")),
            grads, {input, hx, w_ih, w_hh, b_ih, b_hh}, 8);
      }
      const bool input_grad = ctx->needs_input_grad(0);
      auto [grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh] =
          op_handle<kCell, true>().call(optional(grads[0]), optional(grads[1]), input,
                                        optional(hx), w_ih, w_hh, saved[4], optional(saved[5]),
                                        flag(ctx, "reverse"), input_grad);
      return {grad_if(input_grad, grad_input), grad_if(hx.defined(), grad_hx), grad_w_ih,
              grad_w_hh, grad_if(flag(ctx, "b_ih"), grad_b_ih),
              grad_if(flag(ctx, "b_hh"), grad_b_hh), at::Tensor(), at::Tensor()};
    }
  };

  static std::tuple<at::Tensor, at::Tensor> kernel(
      const at::Tensor& input, const OptionalTensor& hx, const at::Tensor& w_ih,
      const at::Tensor& w_hh, const OptionalTensor& b_ih, const OptionalTensor& b_hh,
      const OptionalTensor& batch_sizes, bool reverse) {
    if (!records_graph(forward_op_name(kCell), {&input, &w_ih, &w_hh}, {&hx, &b_ih, &b_hh})) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      return op_handle<kCell>().call(input, hx, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse);
    }
    variable_list out = Function::apply(input, hx, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse);
    return {out[0], out[1]};
  }
};

// A workspace, no cell state (the GRU).
template <CellKind kCell>
struct LayerAutograd<kCell, false, true> {
  struct Function : torch::autograd::Function<Function> {
    static variable_list forward(AutogradContext* ctx, const at::Tensor& input,
                                 const OptionalTensor& hx, const at::Tensor& w_ih,
                                 const at::Tensor& w_hh, const OptionalTensor& b_ih,
                                 const OptionalTensor& b_hh, const OptionalTensor& batch_sizes,
                                 bool reverse, bool train) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      auto [output, hy, workspace] = op_handle<kCell>().call(input, hx, w_ih, w_hh, b_ih, b_hh,
                                                             batch_sizes, reverse, train);
      ctx->save_for_backward({input, defined_or_empty(hx), w_ih, w_hh, output, workspace,
                              defined_or_empty(batch_sizes), defined_or_empty(b_ih),
                              defined_or_empty(b_hh)});
      save_flags(ctx, b_ih, b_hh, reverse);
      ctx->mark_non_differentiable({workspace});
      return {output, hy, workspace};
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
      const variable_list saved = ctx->get_saved_variables();
      const at::Tensor &input = saved[0], &hx = saved[1];
      if (at::GradMode::is_enabled()) {  // create_graph=True
        const at::Tensor &b_ih = saved[7], &b_hh = saved[8];
        return create_graph_grads(
            ctx,
            differentiable_layer(kCell, input, hx, at::Tensor(), saved[2], saved[3], b_ih, b_hh,
                                 at::Tensor(), saved[6], flag(ctx, "reverse")),
            grads, {input, hx, saved[2], saved[3], b_ih, b_hh}, 9);
      }
      const bool input_grad = ctx->needs_input_grad(0);
      auto [grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh] =
          op_handle<kCell, true>().call(optional(grads[0]), optional(grads[1]), input,
                                        optional(hx), saved[2], saved[3], saved[4], saved[5],
                                        optional(saved[6]), flag(ctx, "reverse"), input_grad);
      return {grad_if(input_grad, grad_input), grad_if(hx.defined(), grad_hx), grad_w_ih,
              grad_w_hh, grad_if(flag(ctx, "b_ih"), grad_b_ih),
              grad_if(flag(ctx, "b_hh"), grad_b_hh), at::Tensor(), at::Tensor(), at::Tensor()};
    }
  };

  static std::tuple<at::Tensor, at::Tensor, at::Tensor> kernel(
      const at::Tensor& input, const OptionalTensor& hx, const at::Tensor& w_ih,
      const at::Tensor& w_hh, const OptionalTensor& b_ih, const OptionalTensor& b_hh,
      const OptionalTensor& batch_sizes, bool reverse, bool train) {
    if (!records_graph(forward_op_name(kCell), {&input, &w_ih, &w_hh}, {&hx, &b_ih, &b_hh})) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      return op_handle<kCell>().call(input, hx, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse,
                                     train);
    }
    variable_list out = Function::apply(input, hx, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse,
                                        /*train=*/true);
    return {out[0], out[1], out[2]};
  }
};

// A cell state (with the optional projection) and a workspace (the LSTM).
template <CellKind kCell>
struct LayerAutograd<kCell, true, true> {
  struct Function : torch::autograd::Function<Function> {
    static variable_list forward(AutogradContext* ctx, const at::Tensor& input,
                                 const OptionalTensor& hx, const OptionalTensor& cx,
                                 const at::Tensor& w_ih, const at::Tensor& w_hh,
                                 const OptionalTensor& b_ih, const OptionalTensor& b_hh,
                                 const OptionalTensor& w_hr, const OptionalTensor& batch_sizes,
                                 bool reverse, bool train) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      auto [output, hy, cy, workspace] = op_handle<kCell>().call(
          input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, train);
      ctx->save_for_backward({input, defined_or_empty(hx), defined_or_empty(cx), w_ih, w_hh,
                              defined_or_empty(w_hr), output, workspace,
                              defined_or_empty(batch_sizes), defined_or_empty(b_ih),
                              defined_or_empty(b_hh)});
      save_flags(ctx, b_ih, b_hh, reverse);
      ctx->mark_non_differentiable({workspace});
      return {output, hy, cy, workspace};
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
      const variable_list saved = ctx->get_saved_variables();
      const at::Tensor &input = saved[0], &hx = saved[1], &cx = saved[2], &w_hr = saved[5];
      if (at::GradMode::is_enabled()) {  // create_graph=True
        const at::Tensor &b_ih = saved[9], &b_hh = saved[10];
        return create_graph_grads(
            ctx,
            differentiable_layer(kCell, input, hx, cx, saved[3], saved[4], b_ih, b_hh, w_hr,
                                 saved[8], flag(ctx, "reverse")),
            grads, {input, hx, cx, saved[3], saved[4], b_ih, b_hh, w_hr}, 11);
      }
      const bool input_grad = ctx->needs_input_grad(0);
      auto [grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh,
            grad_w_hr] =
          op_handle<kCell, true>().call(optional(grads[0]), optional(grads[1]),
                                        optional(grads[2]), input, optional(hx), optional(cx),
                                        saved[3], saved[4], optional(w_hr), saved[6], saved[7],
                                        optional(saved[8]), flag(ctx, "reverse"), input_grad);
      return {grad_if(input_grad, grad_input), grad_if(hx.defined(), grad_hx),
              grad_if(cx.defined(), grad_cx), grad_w_ih, grad_w_hh,
              grad_if(flag(ctx, "b_ih"), grad_b_ih), grad_if(flag(ctx, "b_hh"), grad_b_hh),
              grad_if(w_hr.defined(), grad_w_hr), at::Tensor(), at::Tensor(), at::Tensor()};
    }
  };

  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kernel(
      const at::Tensor& input, const OptionalTensor& hx, const OptionalTensor& cx,
      const at::Tensor& w_ih, const at::Tensor& w_hh, const OptionalTensor& b_ih,
      const OptionalTensor& b_hh, const OptionalTensor& w_hr, const OptionalTensor& batch_sizes,
      bool reverse, bool train) {
    if (!records_graph(forward_op_name(kCell), {&input, &w_ih, &w_hh},
                       {&hx, &cx, &b_ih, &b_hh, &w_hr})) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      return op_handle<kCell>().call(input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes,
                                     reverse, train);
    }
    variable_list out = Function::apply(input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes,
                                        reverse, /*train=*/true);
    return {out[0], out[1], out[2], out[3]};
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, Autograd, m) {
  for_each_cell([&](auto cell) {
    m.impl(forward_op_name(cell()), &LayerAutograd<cell()>::kernel);
  });
  // The backward ops themselves are not differentiable (a double backward goes through
  // create_graph_grads instead): one called directly and then differentiated raises "the
  // derivative ... is not implemented", where torch's default for custom ops would only warn
  // and return wrong gradients.
  for (const CellInfo& cell : kCells) {
    m.impl(cell.backward_op, torch::autograd::autogradNotImplementedFallback());
  }
}

}  // namespace fastrnn::ops
