// CPU implementations of the layer ops: the device half of layer_ops.h, calling the recurrence
// driver of csrc/cpu in float32 or float64 (float16 and bfloat16 through float32).
#include <torch/library.h>

#include "cpu/cpu_backend.h"
#include "ops/cpu_ops.h"
#include "ops/layer_ops.h"
#include "ops/run_layer.h"

namespace fastrnn::ops {
namespace {

// ---- float16 and bfloat16: the float32 kernels on float32 copies ----
// The state and every accumulation stay in float32 for the whole sequence (the workspace is
// float32 already); results are rounded to the input's dtype once, at the end.

bool is_half(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

// A float32 copy of a float16 or bfloat16 tensor (float32 ones as they are), its storage from
// the block cache (allocate): a fresh allocation of a few MB would fault in every page.
at::Tensor to_float(const at::Tensor& t) {
  if (!t.defined() || t.scalar_type() == at::kFloat) return t;
  at::Tensor f = allocate(t.sizes(), t.options().dtype(at::kFloat));
  f.copy_(t);
  return f;
}

OptionalTensor to_float(const OptionalTensor& t) {
  return t.has_value() ? OptionalTensor(to_float(*t)) : std::nullopt;
}

// The call on float32 copies; `with_input`: false leaves the input out (undefined), for a
// forward whose input projection comes from bf16_projection.
LayerCall float_call(const LayerCall& call, bool with_input = true) {
  LayerCall f = call;
  f.input = with_input ? to_float(call.input) : at::Tensor();
  f.hx = to_float(call.hx);
  f.cx = to_float(call.cx);
  f.w_ih = to_float(call.w_ih);
  f.w_hh = to_float(call.w_hh);
  f.b_ih = to_float(call.b_ih);
  f.b_hh = to_float(call.b_hh);
  f.w_hr = to_float(call.w_hr);
  return f;
}

at::Tensor empty_float_like(const at::Tensor& t) {
  return t.defined() ? allocate(t.sizes(), t.options().dtype(at::kFloat)) : t;
}

void copy_into(const at::Tensor& destination, const at::Tensor& source) {
  if (destination.defined() && destination.numel() > 0) destination.copy_(source);
}

// bfloat16 calls of more than one row on CPUs with AVX512_BF16: the input projection x W_ih^T
// of every row as one bfloat16 GEMM (oneDNN through at::mm, as torch.nn's bfloat16 layers do;
// about 2.5x the float32 GEMM rate), rounded to bfloat16 like theirs. Undefined otherwise.
at::Tensor bf16_projection(const LayerCall& call) {
  const bool wanted = call.input.scalar_type() == at::kBFloat16 && call.sizes.batch > 1 &&
                      cpu::step_kernels<float>().bf16_products;
  if (!wanted || call.input.numel() == 0) return at::Tensor();
  const at::Tensor x = call.input.reshape({-1, call.sizes.input});
  at::Tensor product = allocate({x.size(0), call.w_ih.size(0)}, x.options());
  return at::mm_out(product, x, call.w_ih.t());
}

template <class T>
void run_recurrence(CellKind cell, const cpu::CpuBackend<T>& backend, const SequenceShape& shape,
                    const LayerWeights<T>& w, const ForwardIO<T, T>& io, bool reverse) {
  visit_cell(cell, [&](auto kCell) {
    recurrence_forward<kCell()>(backend, shape, w, io, reverse);
  });
}

// Whether a bfloat16 call of these sizes runs on raw storage (cpu_bf16_raw; a packed sequence
// only with one row, which is the same as padded).
bool runs_raw_bf16(const LayerSizes& s) {
  return (s.batch == 1 || !s.packed) && cpu_bf16_raw(s.batch, s.steps);
}

// bfloat16 calls that read W_hh as stored (cpu_bf16_raw), for the op and the fast path alike:
// what the half path computes for other calls (float32 on the widened values, rounded to
// bfloat16 once at the end of the layer), with W_hh, and for a single step W_ih, read in
// bfloat16 as stored (such steps read W_hh as stored anyway, so float32 copies of the weights,
// 10x the step itself for an online H=256 LSTM, would buy nothing), and the rest widened into
// one float32 buffer. A packed batch of one is the same T steps of one row.
void forward_raw_bf16(const LayerForward& f) {
  const LayerSizes& s = f.sizes;
  TORCH_CHECK(runs_raw_bf16(s),
              "cpu_forward_raw: a bfloat16 call that reads W_hh as stored, got ", s.batch,
              " rows x ", s.steps, " steps");
  const bool lstm = cell_info(f.cell).cell_state, stored_w_ih = s.steps == 1;
  const int64_t T = s.steps, B = s.batch, I = s.input, H = s.hidden, P = s.output, G = s.gates;
  // The float32 buffer's parts, in order: inputs, then outputs.
  const int64_t n_x = T * B * I, n_h0 = B * P, n_c0 = lstm ? B * H : 0, n_bias = f.b_ih ? G : 0;
  const int64_t n_w_ih = stored_w_ih ? 0 : G * I, n_w_hr = f.w_hr ? P * H : 0;
  const int64_t n_y = T * B * P, n_h = B * P, n_c = lstm ? B * H : 0;
  const int64_t total = n_x + n_h0 + n_c0 + 2 * n_bias + n_w_ih + n_w_hr + n_y + n_h + n_c;
  const at::Tensor buffer = allocate({total}, at::TensorOptions().dtype(at::kFloat));
  float* next = buffer.data_ptr<float>();
  auto take = [&](int64_t n) {
    float* part = n > 0 ? next : nullptr;
    next += n;
    return part;
  };
  cpu::CpuBackend<float>::Bf16Operands stored;
  stored.w_ih = stored_w_ih ? static_cast<const uint16_t*>(f.w_ih) : nullptr;
  stored.w_hh = static_cast<const uint16_t*>(f.w_hh);
  const cpu::CpuBackend<float> backend(/*bf16_call=*/true, stored);
  auto widen = [&](const void* source, int64_t n) -> const float* {
    float* out = take(n);
    if (out != nullptr) {
      backend.widen_rows(static_cast<const uint16_t*>(source), n, out, n, 1, n);
    }
    return out;
  };
  ForwardIO<float, float> io;
  io.x = widen(f.x, n_x);
  io.h0 = widen(f.h0, n_h0);
  io.c0 = widen(f.c0, n_c0);
  io.workspace = static_cast<float*>(f.workspace);
  LayerWeights<float> w;
  w.input_size = I;
  w.hidden_size = H;
  w.proj_size = s.projected ? P : 0;
  w.b_ih = widen(f.b_ih, n_bias);
  w.b_hh = widen(f.b_hh, n_bias);
  w.w_ih = widen(f.w_ih, n_w_ih);
  w.w_hr = widen(f.w_hr, n_w_hr);
  io.y = take(n_y);
  io.h_n = take(n_h);
  io.c_n = take(n_c);
  run_recurrence<float>(f.cell, backend, SequenceShape(T, B), w, io, f.reverse);
  auto round = [](const float* in, int64_t n, void* destination) {
    auto* out = static_cast<c10::BFloat16*>(destination);
    for (int64_t i = 0; i < n; ++i) out[i] = c10::BFloat16(in[i]);
  };
  round(io.y, n_y, f.y);
  round(io.h_n, n_h, f.h_n);
  round(io.c_n, n_c, f.c_n);
}

struct CpuDevice {
  static void check_dtype(const char* op, const at::Tensor& input) {
    const auto dtype = input.scalar_type();
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                    dtype == at::kBFloat16,
                op, ": the CPU kernels support float32, float64, float16 and bfloat16, got ",
                dtype);
  }

  template <CellKind kCell>
  static void forward(const LayerCall& call, const ForwardOutputs& out) {
    if (call.input.scalar_type() == at::kBFloat16 && runs_raw_bf16(call.sizes)) {
      forward_raw_bf16(forward_of(kCell, call, out));
      return;
    }
    if (is_half(call.input)) {
      ForwardOutputs f;
      f.output = empty_float_like(out.output);
      f.hy = empty_float_like(out.hy);
      f.cy = empty_float_like(out.cy);
      f.workspace = out.workspace;  // float32 already
      const bool bf16 = call.input.scalar_type() == at::kBFloat16;
      const at::Tensor x_proj = bf16_projection(call);
      cpu::CpuBackend<float>::Bf16Operands projected;
      projected.x_proj = pointer<uint16_t>(x_proj);
      run_forward<kCell>(cpu::CpuBackend<float>(bf16, projected),
                         forward_of(kCell, float_call(call, !x_proj.defined()), f));
      copy_into(out.output, f.output);
      copy_into(out.hy, f.hy);
      copy_into(out.cy, f.cy);
      return;
    }
    cpu_forward_raw(forward_of(kCell, call, out));
  }

  template <CellKind kCell>
  static void backward(const LayerCall& call, const BackwardInputs& in,
                       const BackwardOutputs& out) {
    if (is_half(call.input)) {
      BackwardInputs f_in = in;
      f_in.grad_output = to_float(in.grad_output);
      f_in.grad_hy = to_float(in.grad_hy);
      f_in.grad_cy = to_float(in.grad_cy);
      f_in.output = to_float(in.output);
      BackwardOutputs f = out;
      for (at::Tensor* t : {&f.grad_input, &f.grad_hx, &f.grad_cx, &f.grad_w_ih, &f.grad_w_hh,
                            &f.grad_b_ih, &f.grad_b_hh, &f.grad_w_hr}) {
        *t = empty_float_like(*t);
      }
      const bool bf16 = call.input.scalar_type() == at::kBFloat16;
      run_backward<kCell>(cpu::CpuBackend<float>(bf16), float_call(call), f_in, f);
      copy_into(out.grad_input, f.grad_input);
      copy_into(out.grad_hx, f.grad_hx);
      copy_into(out.grad_cx, f.grad_cx);
      copy_into(out.grad_w_ih, f.grad_w_ih);
      copy_into(out.grad_w_hh, f.grad_w_hh);
      copy_into(out.grad_b_ih, f.grad_b_ih);
      copy_into(out.grad_b_hh, f.grad_b_hh);
      copy_into(out.grad_w_hr, f.grad_w_hr);
      return;
    }
    AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), backward_op_name(kCell),
                               [&] { run_backward<kCell>(cpu::CpuBackend<scalar_t>(), call, in, out); });
  }
};

}  // namespace

void cpu_forward(CellKind cell, const LayerCall& call, const ForwardOutputs& out) {
  CpuDevice::check_dtype(call.op, call.input);
  visit_cell(cell, [&](auto kCell) { CpuDevice::forward<kCell()>(call, out); });
}

void cpu_forward_raw(const LayerForward& f) {
  if (f.dtype == at::kBFloat16) return forward_raw_bf16(f);
  TORCH_CHECK(f.dtype == at::kFloat || f.dtype == at::kDouble,
              "cpu_forward_raw: float32, float64 or bfloat16, got ", f.dtype);
  AT_DISPATCH_FLOATING_TYPES(f.dtype, "cpu_forward_raw", [&] {
    using T = scalar_t;
    run_recurrence<T>(f.cell, cpu::CpuBackend<T>(), sequence_of(f.sizes, f.batch_sizes),
                      weights_of<T>(f.sizes, f.w_ih, f.w_hh, f.b_ih, f.b_hh, f.w_hr),
                      forward_io<T, T>(f), f.reverse);
  });
}

bool cpu_bf16_raw(int64_t batch, int64_t steps) {
  return cpu::tuning::reads_weights_as_stored(batch, steps,
                                              cpu::step_kernels<float>().bf16_products);
}

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) { register_layer_ops<CpuDevice>(m); }

}  // namespace fastrnn::ops
