// The CPU backend of the recurrence driver (fastrnn/recurrence.h): BLAS GEMMs called directly
// (no dispatcher inside the step loop), the step kernels of the instruction set chosen at run
// time, split across torch's intra-op threads when a step is big enough, and the block cache
// for scratch. One type throughout: float or double (A = T); bfloat16 calls are float backends
// with their precision policy and bfloat16 operands (Bf16Operands). (About 430 lines in one
// file: every member of the driver's Backend contract, GEMMs, scratch, the forward steps'
// weight preparation and schedule and the backward steps, on one kernel table and one
// bfloat16 policy.)
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#include "backend/torch_buffers.h"
#include "cpu/blas.h"
#include "cpu/block_cache.h"
#include "cpu/isa.h"
#include "cpu/stage_team.h"
#include "cpu/tuning.h"
#include "cpu/weight_packing.h"
#include "fastrnn/cells.h"
#include "fastrnn/debug.h"
#include "fastrnn/recurrence.h"

namespace fastrnn::cpu {

template <class Scalar>
class CpuBackend {
 public:
  using T = Scalar;
  using A = Scalar;
  // Whole-sequence GEMMs (the input projection; the input, weight and bias gradients) run ~1024
  // rows at a time: GEMMs still large enough to run near the machine's rate, on chunks of
  // pre-activations or gate gradients (a few MB) that stay in cache between the steps that write
  // or read them, instead of whole-sequence buffers faulted in page by page on every call.
  static constexpr int64_t kChunkRows = 1024;

  // What a bfloat16 call (computed here in float32) holds in bfloat16 for the kernels to read as
  // it is: each null where the call has none (cpu_ops.cpp fills them).
  struct Bf16Operands {
    // W_hh, and for a call of one step W_ih, as the caller holds them: read by steps that read
    // the weights as stored (tuning::reads_weights_as_stored; Panels, StepInput),
    // whose float pointers in LayerWeights are then null.
    const uint16_t* w_ih = nullptr;
    const uint16_t* w_hh = nullptr;
    // x W_ih^T of every row [N, G], from one bfloat16 GEMM before the call (as torch.nn's
    // bfloat16 layers compute it): the driver's input projection (input_projection).
    const uint16_t* x_proj = nullptr;
  };

  CpuBackend() = default;
  // `bf16_call`: the call's tensors are bfloat16 (computed here in float32): the fused forward
  // steps may run their recurrent products in bfloat16 (Panels::bf16) where the CPU can, on
  // `operands` as the call holds them.
  explicit CpuBackend(bool bf16_call, const Bf16Operands& operands = {})
      : bf16_products_(bf16_call && kernels_.bf16_products), operands_(operands) {
    if (bf16_products_) backward_bf16_ = std::make_shared<BackwardBf16>();
  }

  // bfloat16 calls (bf16_products_) run GEMMs of at least this many multiply-adds in bfloat16.
  static constexpr int64_t kBf16GemmMinMacs = int64_t(1) << 20;

  template <class Out>
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
            const T* b, int64_t ldb, bool accumulate, Out* c, int64_t ldc) const {
    static_assert(std::is_same_v<Out, T>, "the CPU backend computes in one type");
    if constexpr (std::is_same_v<T, float>) {
      if (bf16_products_ && m * n * k >= kBf16GemmMinMacs) {
        bf16_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
        return;
      }
      if (!trans_b && cpu::tiled_gemm_enabled(kernels_)) {
        cpu::tiled_gemm(kernels_, trans_a, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
        return;
      }
    }
    cpu::gemm<T>(trans_a, trans_b, m, n, k, T(1), a, lda, b, ldb, accumulate ? T(1) : T(0), c,
                 ldc);
  }

  template <class U>
  using Buffer = backend::TensorBuffer<U>;

  // Scratch from the block cache (NaN-filled under FASTRNN_DEBUG_POISON=1; the uint16_t
  // buffers hold bfloat16, where all ones is a NaN).
  template <class U>
  Buffer<U> scratch(int64_t elements) const {
    at::Tensor buffer = empty_cached({elements}, c10::CppTypeToScalarType<U>::value);
    if (debug_poison()) {
      if constexpr (std::is_floating_point_v<U>) {
        buffer.fill_(NAN);
      } else {
        buffer.fill_(std::numeric_limits<U>::max());
      }
    }
    return {buffer};
  }

  template <class Dst, class Src>
  void copy(Dst* dst, const Src* src, int64_t n) const {
    static_assert(std::is_same_v<Dst, Src>, "the CPU backend computes in one type");
    if (n > 0) std::memcpy(dst, src, sizeof(T) * n);
  }

  void copy_rows(const T* src, int64_t src_ld, T* dst, int64_t dst_ld, int64_t rows,
                 int64_t cols) const {
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(dst + r * dst_ld, src + r * src_ld, sizeof(T) * cols);
    }
  }

  // dst (+)= src, bfloat16 rows into A rows.
  void widen_rows(const uint16_t* src, int64_t src_ld, A* dst, int64_t dst_ld, int64_t rows,
                  int64_t cols, bool accumulate = false) const {
    const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, cols));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const uint16_t* in = src + r * src_ld;
        A* out = dst + r * dst_ld;
        for (int64_t c = 0; c < cols; ++c) {  // bfloat16 is float32's upper half
          const uint32_t bits = static_cast<uint32_t>(in[c]) << 16;
          float value;
          std::memcpy(&value, &bits, sizeof(value));
          out[c] = accumulate ? out[c] + static_cast<A>(value) : static_cast<A>(value);
        }
      }
    });
  }

  // The driver's input projection of rows [row0, row0 + rows), when the call holds it
  // (Bf16Operands::x_proj).
  bool input_projection(int64_t row0, int64_t rows, int64_t G, A* pre, int64_t ld) const {
    if (operands_.x_proj == nullptr) return false;
    widen_rows(operands_.x_proj + row0 * G, G, pre, ld, rows, G);
    return true;
  }

  void add(T* out, const T* a, const A* b, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
  }

  // Column sums of a [rows, cols] matrix into (or added to) out, with torch's reduction.
  void sum_rows(const T* matrix, int64_t rows, int64_t cols, T* out, bool accumulate) const {
    backend::torch_sum_rows(at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value),
                            matrix, rows, cols, out, accumulate);
  }

  template <CellKind kCell, class Step>
  void step(const Step& s) const {
    run(kernels_.template cell<kCell>().backward, s);
  }

  // ---- forward steps: the recurrent GEMM fused with the gate math (fused_kernels_impl.h) ----

  struct FusedWeights {
    Buffer<T> holder;  // owns the panels
    Panels<T> panels;
    int64_t rows = 0;   // the most rows a step has (the state's)
    bool input_in_steps = false;  // the steps compute x W_ih^T too (StepInput)
    Buffer<T> input_holder;       // owns W_ih's panels, when packed
    WeightOperand<T> w_ih;        // W_ih as stored (T, or a bfloat16 call's), or its panels
    int64_t input_size = 0;
    int64_t input_stride = 0;     // W_ih packed: elements per panel

    StepInput<T> input(Rows<const T> x) const {
      return input_in_steps ? StepInput<T>{x, w_ih, input_size, input_stride} : StepInput<T>{};
    }
  };

  // The fused steps' view of W_hh [gates * H, P]: as stored for steps of at most kNativeRows
  // rows and short calls of a few rows (reads_weights_as_stored), else packed into panels once
  // per call (in parallel for big weights). A call of one such step also computes its input
  // projection in the step kernel (StepInput), as do steps of kFusedInputRows or more, from
  // W_ih packed the same way (float32 and float64; bfloat16 products take their input
  // projection from one bfloat16 GEMM). `w` is the driver's LayerWeights<T> (fastrnn/recurrence.h).
  template <CellKind kCell, class Weights>
  FusedWeights prepare_forward(const Weights& w, int64_t rows, int64_t steps) const {
    const int64_t gates = gate_count(kCell), H = w.hidden_size, P = w.output_size();
    const int64_t width = kernels_.vector_width;
    FusedWeights fused;
    Panels<T>& p = fused.panels;
    p.inner = P;
    p.hidden = H;
    p.units = panel_vectors(kCell) * width;
    p.count = (H + p.units - 1) / p.units;
    fused.rows = rows;
    if (tuning::reads_weights_as_stored(rows, steps, bf16_products_)) {
      p.packed = false;
      p.weights = operands_.w_hh != nullptr ? WeightOperand<T>::of(operands_.w_hh)
                                            : WeightOperand<T>::of(w.w_hh);
      // bfloat16 products take x W_ih^T from their GEMM (Bf16Operands::x_proj) unless W_ih
      // comes as stored in bfloat16 (the raw calls of cpu_ops.cpp).
      // (Not for input_size 0, a cell of torch.nn's: the step kernels take an empty StepInput
      // for none, and the GEMM's empty product gives the biases.)
      fused.input_in_steps = steps == 1 && w.input_size > 0 &&
                             operands_.x_proj == nullptr &&
                             (!bf16_products_ || operands_.w_ih != nullptr);
      fused.w_ih = operands_.w_ih != nullptr ? WeightOperand<T>::of(operands_.w_ih)
                                             : WeightOperand<T>::of(w.w_ih);
      fused.input_size = w.input_size;
      return fused;
    }
    TORCH_CHECK(operands_.w_hh == nullptr && operands_.w_ih == nullptr,
                "fastrnn: bfloat16 weights as stored are for calls that read W_hh as stored");
    if (bf16_products_) {
      p.stride = (P + 1) / 2 * p.units * gates * 2;
      Buffer<uint16_t> bf16 = scratch<uint16_t>(p.count * p.stride);
      fused.holder.tensor = bf16.tensor;  // the panels' owner, whatever their type
      p.weights = WeightOperand<T>::of(static_cast<const uint16_t*>(bf16.data()));
      pack_bf16_panels<kCell>(w.w_hh, P, p, width, bf16.data());
      return fused;
    }
    p.stride = P * p.units * gates;
    p.weights = WeightOperand<T>::of(packed<kCell>(w.w_hh, P, p, fused.holder));
    if (rows >= tuning::kFusedInputRows && rows * steps >= tuning::kFusedInputCallRows &&
        w.input_size > 0) {
      fused.input_in_steps = true;
      fused.input_size = w.input_size;
      fused.input_stride = w.input_size * p.units * gates;
      fused.w_ih =
          WeightOperand<T>::of(packed<kCell>(w.w_ih, w.input_size, p, fused.input_holder));
    }
    return fused;
  }

  // A [gates * H, inner] weight packed into the panels p describes, in a buffer `holder` takes
  // ownership of.
  template <CellKind kCell>
  const T* packed(const T* weight, int64_t inner, const Panels<T>& p, Buffer<T>& holder) const {
    holder = scratch<T>(p.count * inner * p.units * gate_count(kCell));
    pack_panels<kCell>(weight, inner, p, kernels_.vector_width, holder.data());
    return holder.data();
  }

  // C (+)= op(A) op(B) (gemm's arguments) as a bfloat16 GEMM: the operands rounded to bfloat16
  // (exact for what bfloat16 calls hold: inputs, weights, outputs; gate gradients round, as
  // they are bfloat16 in torch.nn's bfloat16 layers), multiplied by oneDNN through at::mm (about
  // 2.5x the float32 rate), the bfloat16 product added to C in float32. Outside the step loop
  // only: whole-sequence GEMMs, once per chunk of steps.
  void bf16_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
                 int64_t lda, const float* b, int64_t ldb, bool accumulate, float* c,
                 int64_t ldc) const {
    auto rounded = [&](const float* source, int64_t rows, int64_t cols, int64_t ld) {
      at::Tensor matrix = empty_cached({rows, cols}, at::kBFloat16);
      uint16_t* out = static_cast<uint16_t*>(matrix.data_ptr());
      const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, cols));
      at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) kernels_.to_bf16(source + r * ld, out + r * cols, cols);
      });
      return matrix;
    };
    const at::Tensor a16 = trans_a ? rounded(a, k, m, lda).t() : rounded(a, m, k, lda);
    const at::Tensor b16 = trans_b ? rounded(b, n, k, ldb).t() : rounded(b, k, n, ldb);
    at::Tensor product = empty_cached({m, n}, at::kBFloat16);
    at::mm_out(product, a16, b16);
    widen_rows(static_cast<const uint16_t*>(product.const_data_ptr()), n, c, ldc, m, n,
               accumulate);
  }

  // Rows [0, rows) x columns [c0, c1) of h (float32) into hb (bfloat16), for the bf16 products.
  void round_state(Rows<const T> h, Rows<uint16_t> hb, int64_t rows, int64_t c0,
                   int64_t c1) const {
    if constexpr (std::is_same_v<T, float>) {
      if (c1 <= c0) return;
      for (int64_t r = 0; r < rows; ++r) kernels_.to_bf16(h.row(r) + c0, hb.row(r) + c0, c1 - c0);
    }
  }

  // One step (the LSTM with projection runs its steps one by one), split over the panels.
  template <CellKind kCell, class Step>
  void forward_step(const Step& step, Rows<const T> h_prev, Rows<const T> x,
                    const FusedWeights& w, A* /*hh*/, bool training) const {
    forward_steps<kCell>(
        1, [&](int64_t) { return std::tuple{step, h_prev, x}; }, w, nullptr, training);
  }

  // All steps in one parallel region: each thread owns a contiguous share of the panels (all
  // gates of its hidden units) for the whole sequence and runs its part of every step, with one
  // barrier per step (step s + 1 reads the h that every thread wrote at step s). Threads: as
  // many as torch's intra-op setting allows while each share of a step is worth a barrier.
  template <CellKind kCell, class StepAt>
  void forward_steps(int64_t steps, const StepAt& step_at, const FusedWeights& w, A* /*hh*/,
                     bool training) const {
    if (steps == 0 || w.panels.count == 0) return;
    const auto kernel = fused_kernel<kCell>();
    using Step = std::remove_cv_t<std::tuple_element_t<0, decltype(step_at(0))>>;
    // bf16 products: h rounded to bfloat16 alternates between two buffers as h does (step s
    // reads hb[s % 2]); each thread rounds the units it computed, for the next step. Rows that
    // no step writes keep the initial state's, as in h's buffers (recurrence.h).
    const int64_t P = w.panels.inner, hb_ld = P + P % 2;
    Buffer<uint16_t> hb_holder;
    uint16_t* hb[2] = {nullptr, nullptr};
    if (w.panels.packed && w.panels.weights.bf16) {
      hb_holder = scratch<uint16_t>(2 * w.rows * hb_ld);
      hb[0] = hb_holder.data();
      hb[1] = hb[0] + w.rows * hb_ld;
      const Rows<const T> h0 = std::get<1>(step_at(0));
      for (uint16_t* buffer : hb) {
        if (P % 2 != 0) std::memset(buffer, 0, sizeof(uint16_t) * w.rows * hb_ld);
        round_state(h0, {buffer, hb_ld}, w.rows, 0, P);
      }
    }
    auto share_of = [&](int64_t s, int64_t begin, int64_t end) {
      const auto [step, h_prev, x] = step_at(s);
      FusedForwardStep<Step, T> share{step, h_prev, w.panels, begin, end, training, w.input(x)};
      share.h_bf16 = {hb[s % 2], hb_ld};
      return share;
    };
    auto run_share = [&](int64_t s, int64_t begin, int64_t end) {
      const FusedForwardStep<Step, T> share = share_of(s, begin, end);
      kernel(share);
      if (hb[0] != nullptr && s + 1 < steps) {
        const int64_t H = w.panels.hidden;
        round_state(Rows<const T>{share.step.h.data, share.step.h.ld}, {hb[(s + 1) % 2], hb_ld},
                    share.step.rows, std::min(H, begin * w.panels.units),
                    std::min(H, end * w.panels.units));
      }
    };
    const int64_t inner = P + (w.input_in_steps ? w.input_size : 0);
    const int64_t flops_per_panel =
        2 * std::max<int64_t>(1, w.rows) * inner * w.panels.units * gate_count(kCell);
    const int threads = tuning::threads_for(w.panels.count, flops_per_panel,
                                            steps > 1 ? tuning::kMinFlopsPerThreadInSequence
                                                      : tuning::kMinFlopsPerThread);
    tuning::split_stages(threads, steps, w.panels.count, flops_per_panel, run_share);
  }

  // ---- backward: the recurrent product with fastrnn's micro-kernel, steps split by units ----

  void hidden_grad(int64_t rows, Rows<const T> dgates, const T* w_hh, int64_t G, int64_t P,
                   Rows<A> dh, int64_t c0, int64_t c1, bool accumulate) const {
    HiddenGradStep<T> g = HiddenGradStep<T>::of(rows, dgates, w_hh, G, P, dh, c0, c1, accumulate);
    if (rows <= 0 || c1 <= c0) return;
    if constexpr (std::is_same_v<T, float>) {
      if (bf16_products_) {
        // W_hh in bfloat16 pairs of rows, packed once per call by whichever thread gets here
        // first (the others wait); dgates rounded by each thread into its own buffer (a few
        // microseconds a step, no barrier).
        std::call_once(backward_bf16_->once, [&] {
          backward_bf16_->packed = scratch<uint16_t>((G + 1) / 2 * P * 2);
          pack_bf16_rows(w_hh, G, P, backward_bf16_->packed.data());
          backward_bf16_->source = w_hh;
        });
        if (backward_bf16_->source == w_hh) {
          const int64_t ld = G + G % 2;
          thread_local std::vector<uint16_t> rounded;
          if (static_cast<int64_t>(rounded.size()) < rows * ld) rounded.resize(rows * ld);
          for (int64_t r = 0; r < rows; ++r) {
            kernels_.to_bf16(dgates.row(r), rounded.data() + r * ld, G);
            if (G % 2 != 0) rounded[r * ld + G] = 0;
          }
          g.dgates_bf16 = {rounded.data(), ld};
          const uint16_t* pairs = backward_bf16_->packed.data();
          g.w = WeightOperand<T>::of(pairs);
        }
      }
    }
    kernels_.hidden_grad(g);
  }

  // The backward iterations [k0, k1) in one parallel region: each thread owns a range of hidden
  // units, runs the pointwise half of every iteration for them, waits at the one barrier (the
  // recurrent half needs every unit's gate gradients), then computes the same range of dh
  // columns, which is exactly what its pointwise half of the next iteration reads.
  template <CellKind kCell, class Pointwise, class Recurrent>
  void backward_steps(int64_t k0, int64_t k1, const Pointwise& pointwise,
                      const Recurrent& recurrent, int64_t units, int64_t columns, bool splittable,
                      int64_t flops_per_step) const {
    const int64_t width = kernels_.vector_width;
    const int64_t blocks = (units + width - 1) / width;  // units in whole vectors per thread
    const int64_t flops_per_block = flops_per_step / std::max<int64_t>(1, blocks);
    const int threads = splittable ? tuning::threads_for(blocks, flops_per_block) : 1;
    // Two stages an iteration: the pointwise half, then the recurrent half, over the same
    // chunks of units (whole vectors each). The caller alone (one thread, or not splittable:
    // P != H) takes every unit, then every column.
    tuning::split_stages(threads, 2 * (k1 - k0), blocks, flops_per_block,
                         [&](int64_t stage, int64_t b0, int64_t b1) {
      const bool pointwise_half = stage % 2 == 0, whole = b0 == 0 && b1 == blocks;
      const int64_t u0 = whole ? 0 : std::min(units, b0 * width);
      const int64_t u1 = whole ? (pointwise_half ? units : columns) : std::min(units, b1 * width);
      if (u1 <= u0 && !whole) return;
      if (pointwise_half) {
        pointwise(k0 + stage / 2, u0, u1);
      } else {
        recurrent(k0 + stage / 2, u0, u1);
      }
    });
  }

 private:
  // Runs a step kernel over a step's rows, split across torch's intra-op threads when the step
  // is big enough to pay for the fork.
  template <class Step>
  static void run(void (*kernel)(const Step&), const Step& step) {
    constexpr int64_t kUnitsPerTask = 16384;
    if (step.rows <= 0) return;
    if (step.rows < 2 || step.rows * step.hidden < 2 * kUnitsPerTask || at::get_num_threads() < 2) {
      kernel(step);
      return;
    }
    const int64_t grain = std::max<int64_t>(1, kUnitsPerTask / std::max<int64_t>(1, step.hidden));
    at::parallel_for(0, step.rows, grain,
                     [&](int64_t begin, int64_t end) { kernel(step.slice(begin, end)); });
  }

  template <CellKind kCell>
  auto fused_kernel() const {
    return kernels_.template cell<kCell>().fused_forward;
  }

  const StepKernels<T>& kernels_ = step_kernels<T>();
  bool bf16_products_ = false;
  Bf16Operands operands_;
  // The bfloat16 W_hh of a backward call (hidden_grad): one backend serves one layer call.
  // Only bf16_products_ backends have one.
  struct BackwardBf16 {
    std::once_flag once;
    Buffer<uint16_t> packed;
    const T* source = nullptr;
  };
  std::shared_ptr<BackwardBf16> backward_bf16_;
};

}  // namespace fastrnn::cpu
