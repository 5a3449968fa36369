// The modules' inference fast path: a whole stack of layers (every layer and direction) called
// straight from the module's forward, with no dispatcher, no autograd wrapper and no Python per
// layer. Those cost about 15 us per op call and 30 us per module call, more than the whole step
// of an online model (batch 1, one time step per call, state carried over), which is what this
// path is for; on long sequences it changes nothing but the call overhead.
//
// It runs only when nothing could tell it apart from the regular path (the ops through
// torch.ops.fastrnn): plain CPU tensors (exactly torch.Tensor or nn.Parameter, no subclass, no
// functorch or other wrapper keys), no gradient to record, no autocast, no torch function or
// dispatch mode, no tracer, and input and states of exactly the shapes torch.nn accepts. Anything
// else, and any error, returns None, and the module takes the regular path, which raises
// torch.nn's errors. The profiler still sees one fastrnn::<cell>_forward record per layer and
// direction.
#include <ATen/OpMathType.h>
#include <ATen/PythonTorchFunctionTLS.h>
#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/extension.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "ops/cpu_ops.h"
#include "ops/fast_path.h"
#include "ops/layer_args.h"
#include "ops/layer_ops.h"

namespace fastrnn::ops {
namespace {

// No state that would make the regular path behave differently from a direct kernel call.
bool plain_context() {
  return !at::autocast::is_autocast_enabled(at::kCPU) &&
         !at::autocast::is_autocast_enabled(at::kCUDA) &&
         c10::impl::TorchDispatchModeTLS::stack_len() == 0 &&
         !at::impl::torch_function_mode_enabled() && !torch::jit::tracer::isTracing() &&
         (c10::impl::tls_local_dispatch_key_set().included_ - c10::default_included_set).empty();
}

// The tensor of a Python object that is exactly a torch.Tensor or an nn.Parameter holding a
// dense CPU tensor with no extra dispatch keys (conjugate, negative, sparse, wrappers), that
// needs no gradient and carries no forward-mode tangent: null for anything else.
const at::Tensor* plain_tensor(PyObject* object, bool grad_mode) {
  if (!THPVariable_CheckExact(object)) return nullptr;
  const at::Tensor& tensor = THPVariable_Unpack(object);
  using c10::DispatchKey;
  static const c10::DispatchKeySet kAllowed({DispatchKey::CPU, DispatchKey::ADInplaceOrView,
                                             DispatchKey::AutogradCPU, DispatchKey::AutocastCPU});
  static const c10::DispatchKeySet kCpuOnly(c10::BackendComponent::CPUBit);
  if ((tensor.key_set() - kAllowed) != kCpuOnly) return nullptr;
  if (grad_mode && tensor.requires_grad()) return nullptr;
  if (tensor._fw_grad(/*level=*/0).defined()) return nullptr;  // a dual tensor: the op raises
  return &tensor;
}

py::object run_stack(CellKind cell, const at::Tensor& input, const at::Tensor* hx,
                     const at::Tensor* cx, const std::vector<at::Tensor>& weights,
                     int64_t num_layers, bool bidirectional, bool batch_first) {
  const py::object none = py::none();
  const bool lstm = cell_info(cell).cell_state;  // h and c, and a projection
  const int64_t directions = bidirectional ? 2 : 1, count = num_layers * directions;
  if (count <= 0 || weights.empty() || weights.size() % count != 0) return none;
  const int64_t per = static_cast<int64_t>(weights.size()) / count;
  const bool has_bias = per >= 4, has_proj = lstm && (per == 3 || per == 5);
  if (per < 2 || per > (lstm ? 5 : 4)) return none;
  const auto dtype = input.scalar_type();
  for (const at::Tensor& w : weights) {
    if (w.scalar_type() != dtype) return none;
  }

  // Input [T, B, I] (after batch_first), or unbatched [T, I] run as B = 1.
  const bool batched = input.dim() == 3;
  if (input.dim() != 2 && !batched) return none;
  const at::Tensor x = batched ? (batch_first ? input.transpose(0, 1) : input) : input.unsqueeze(1);
  const int64_t T = x.size(0), B = x.size(1);
  if (T == 0 || B == 0 || weights[0].dim() != 2 || x.size(2) != weights[0].size(1)) return none;
  const int64_t H = weights[0].size(0) / gate_count(cell);
  const int64_t P = has_proj ? weights[per - 1].size(0) : H;

  // float32, float64 and bfloat16 that reads its weights as stored (cpu_bf16_raw: batch 1,
  // short calls of a few rows), with contiguous weights, run on raw storage
  // (cpu_forward_raw: the state rows of layer and direction `index` are `index` blocks of
  // B x size into the stack's state tensors); float16, and bfloat16 calls that pack their
  // weights, take the op's own path (LayerCall, float32 copies).
  const bool raw = (dtype == at::kFloat || dtype == at::kDouble ||
                    (dtype == at::kBFloat16 && cpu_bf16_raw(B, T))) &&
                   std::all_of(weights.begin(), weights.end(),
                               [](const at::Tensor& w) { return w.is_contiguous(); });
  // Unbatched raw calls keep the states [L * D, size] as they are: the same storage as
  // [L * D, 1, size], with no views to make (each a dispatcher call).
  const bool state_views = !batched && !raw;
  const auto state_shape = [&](int64_t size) -> std::vector<int64_t> {
    if (!batched && raw) return {count, size};
    return {count, B, size};
  };

  // Initial states of exactly torch.nn's shapes ([L * D, B, P], unbatched [L * D, P]).
  auto state = [&](const at::Tensor* s, int64_t size) -> std::optional<at::Tensor> {
    if (s == nullptr) return at::Tensor();
    if (s->scalar_type() != dtype) return std::nullopt;
    const bool shaped = batched ? s->sizes() == at::IntArrayRef({count, B, size})
                                : s->sizes() == at::IntArrayRef({count, size});
    if (!shaped) return std::nullopt;
    return state_views ? s->unsqueeze(1) : *s;
  };
  const std::optional<at::Tensor> h0 = state(hx, P);
  const std::optional<at::Tensor> c0 = state(cx, H);
  if (!h0 || !c0) return none;

  const auto options = input.options();
  const at::Tensor h_n = allocate(state_shape(P), options);
  const at::Tensor c_n = lstm ? allocate(state_shape(H), options) : at::Tensor();
  const auto rows_of = [&](const at::Tensor& t, int64_t index, int64_t size) -> void* {
    return static_cast<char*>(t.data_ptr()) + index * B * size * t.element_size();
  };
  at::Tensor h_start, c_start;  // raw: the initial states, contiguous (zeros when not given)
  if (raw) {
    h_start = h0->defined() ? h0->contiguous() : at::zeros(state_shape(P), options);
    if (lstm) c_start = c0->defined() ? c0->contiguous() : at::zeros(state_shape(H), options);
  }
  at::Tensor layer_input = x;
  {
    py::gil_scoped_release no_gil;
    for (int64_t layer = 0; layer < num_layers; ++layer) {
      std::vector<at::Tensor> outputs;
      if (raw) layer_input = contiguous_copy(layer_input);
      for (int64_t direction = 0; direction < directions; ++direction) {
        const int64_t index = layer * directions + direction;
        const at::Tensor* w = weights.data() + index * per;
        const OptionalTensor b_ih = has_bias ? OptionalTensor(w[2]) : std::nullopt;
        const OptionalTensor b_hh = has_bias ? OptionalTensor(w[3]) : std::nullopt;
        const OptionalTensor w_hr = has_proj ? OptionalTensor(w[per - 1]) : std::nullopt;
        const char* op = forward_op_name(cell);
        RECORD_FUNCTION(op, std::vector<c10::IValue>());
        const at::Tensor output = allocate({T, B, P}, options);
        if (raw) {
          const OptionalTensor none_given;
          LayerForward f;
          f.cell = cell;
          f.dtype = dtype;
          f.sizes = check_layer(op, cell, LayerTensors{layer_input, none_given, none_given, w[0],
                                                       w[1], b_ih, b_hh, w_hr, none_given});
          f.reverse = direction == 1;
          f.x = layer_input.data_ptr();
          f.h0 = rows_of(h_start, index, P);
          f.w_ih = w[0].data_ptr();
          f.w_hh = w[1].data_ptr();
          f.b_ih = b_ih ? b_ih->data_ptr() : nullptr;
          f.b_hh = b_hh ? b_hh->data_ptr() : nullptr;
          f.w_hr = w_hr ? w_hr->data_ptr() : nullptr;
          f.y = output.data_ptr();
          f.h_n = rows_of(h_n, index, P);
          if (lstm) {
            f.c0 = rows_of(c_start, index, H);
            f.c_n = rows_of(c_n, index, H);
          }
          cpu_forward_raw(f);
        } else {
          OptionalTensor h, c;
          if (h0->defined()) h = h0->select(0, index);
          if (lstm && c0->defined()) c = c0->select(0, index);
          const LayerCall call = make_call(op, cell, layer_input, h, c, w[0], w[1], b_ih, b_hh,
                                           w_hr, std::nullopt, direction == 1);
          ForwardOutputs out;
          out.output = output;
          out.hy = h_n.select(0, index);
          if (lstm) out.cy = c_n.select(0, index);
          if (workspace_blocks(cell) > 0) {
            out.workspace = at::empty({0}, options.dtype(at::toOpMathType(dtype)));
          }
          cpu_forward(cell, call, out);
        }
        outputs.push_back(output);
      }
      if (directions == 1) {
        layer_input = outputs[0];
      } else {  // the directions side by side, in a block-cache buffer like the outputs
        layer_input = allocate({T, B, directions * P}, options);
        at::cat_out(layer_input, outputs, 2);
      }
    }
  }
  at::Tensor output = layer_input;
  at::Tensor h_final = h_n, c_final = c_n;
  if (!batched) {
    output = output.squeeze(1);
    if (state_views) {
      h_final = h_final.squeeze(1);
      if (lstm) c_final = c_final.squeeze(1);
    }
  } else if (batch_first) {
    output = output.transpose(0, 1);
  }
  auto wrap = [](const at::Tensor& t) {
    return py::reinterpret_steal<py::object>(THPVariable_Wrap(t));
  };
  if (lstm) return py::make_tuple(wrap(output), py::make_tuple(wrap(h_final), wrap(c_final)));
  return py::make_tuple(wrap(output), wrap(h_final));
}

}  // namespace

py::object forward_fast(int64_t cell_code, py::handle input, py::handle hx, py::handle parameters,
                        py::handle names, int64_t num_layers, bool bidirectional,
                        bool batch_first) {
  const py::object none = py::none();
  if (cell_code < 0 || cell_code >= static_cast<int64_t>(kCellCount) || !plain_context()) {
    return none;
  }
  const CellKind cell = static_cast<CellKind>(cell_code);
  const bool grad_mode = at::GradMode::is_enabled();
  const at::Tensor* x = plain_tensor(input.ptr(), grad_mode);
  if (x == nullptr) return none;
  const at::Tensor *h = nullptr, *c = nullptr;
  if (!hx.is_none()) {
    if (cell_info(cell).cell_state) {
      if (!PyTuple_CheckExact(hx.ptr()) || PyTuple_GET_SIZE(hx.ptr()) != 2) return none;
      h = plain_tensor(PyTuple_GET_ITEM(hx.ptr(), 0), grad_mode);
      c = plain_tensor(PyTuple_GET_ITEM(hx.ptr(), 1), grad_mode);
      if (h == nullptr || c == nullptr) return none;
    } else {
      h = plain_tensor(hx.ptr(), grad_mode);
      if (h == nullptr) return none;
    }
  }
  if (!PyDict_Check(parameters.ptr()) || !PyList_CheckExact(names.ptr())) return none;
  std::vector<at::Tensor> weights;
  weights.reserve(PyList_GET_SIZE(names.ptr()));
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(names.ptr()); ++i) {
    PyObject* parameter = PyDict_GetItem(parameters.ptr(), PyList_GET_ITEM(names.ptr(), i));
    const at::Tensor* w = parameter != nullptr ? plain_tensor(parameter, grad_mode) : nullptr;
    if (w == nullptr) return none;  // e.g. a parametrized or replaced weight
    weights.push_back(*w);
  }
  try {
    return run_stack(cell, *x, h, c, weights, num_layers, bidirectional, batch_first);
  } catch (const c10::Error&) {
    return none;  // the regular path raises the error, with torch.nn's checks first
  }
}

}  // namespace fastrnn::ops
