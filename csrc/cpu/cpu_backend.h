// The CPU backend of the recurrence driver (fastrnn/recurrence.h): BLAS GEMMs called directly
// (no dispatcher inside the step loop), the step kernels of the instruction set chosen at run
// time, split across torch's intra-op threads when a step is big enough, and torch's CPU
// allocator for scratch. One type throughout: float or double (A = T).
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
#include "cpu/isa.h"
#include "cpu/stage_team.h"
#include "fastrnn/cells.h"
#include "fastrnn/debug.h"
#include "cpu/block_cache.h"
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

  CpuBackend() = default;
  // `bf16_call`: the call's tensors are bfloat16 (computed here in float32): the fused forward
  // steps may run their recurrent products in bfloat16 (Panels::bf16) where the CPU can.
  explicit CpuBackend(bool bf16_call) : bf16_products_(bf16_call && kernels_.bf16_products) {
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

  void add(T* out, const T* a, const A* b, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
  }

  // Column sums of a [rows, cols] matrix into (or added to) out, with torch's reduction.
  void sum_rows(const T* matrix, int64_t rows, int64_t cols, T* out, bool accumulate) const {
    backend::torch_sum_rows(at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value),
                            matrix, rows, cols, out, accumulate);
  }

  void step(const LstmBackwardStep<T>& s) const { run(kernels_.lstm_backward, s); }
  void step(const GruBackwardStep<T>& s) const { run(kernels_.gru_backward, s); }

  // ---- forward steps: the recurrent GEMM fused with the gate math (fused_kernels_impl.h) ----

  struct FusedWeights {
    Buffer<T> holder;  // owns the panels
    Panels<T> panels;
    int64_t rows = 0;   // the most rows a step has (the state's)
    bool input_in_steps = false;  // the steps compute x W_ih^T too (StepInput)
    Buffer<T> input_holder;       // owns W_ih's panels, when packed
    const T* w_ih = nullptr;      // W_ih as stored, or its panels
    int64_t input_size = 0;
    int64_t input_stride = 0;     // W_ih packed: elements per panel
    const uint16_t* w_ih_bf16 = nullptr;  // W_ih as stored in bfloat16 (StepInput)

    StepInput<T> input(Rows<const T> x) const {
      return input_in_steps ? StepInput<T>{x, w_ih, input_size, input_stride, w_ih_bf16}
                            : StepInput<T>{};
    }
  };

  // Steps of at most kNativeRows rows read W_hh as stored (see Panels), as do short calls of
  // a few rows (at most kNativeShortRows rows a step and kNativeCallRows in all, rows x steps;
  // kNativeCallRowsBf16 where the products are bfloat16): more rows or steps amortise a
  // packing pass per call over the reuse of each panel load by a tile of rows, while a short
  // call pays the pass (a read and a write of W_hh) for a few steps. Measured on 2 threads, us
  // per step packed vs as stored (row_dots with four rows of h per weight load), float32:
  //  - LSTM H = 256: B=8 T=8 59.8 vs 54.8, B=8 T=12 54.7 vs 53.4, B=4 T=24 27.8 vs 26.5, but
  //    B=4 T=32 (128 rows) about even and B=8 T=32 44.5 vs 49.2; LSTM H = 512: B=8 T=8 241 vs
  //    206, B=4 T=16 124 vs 107; GRU H = 256: B=8 T=12 41.3 vs 38.9, B=2 T=32 16.9 vs 11.9;
  //    RNN H = 256: B=8 T=12 15.9 vs 13.7, B=4 T=16 9.7 vs 7.3.
  //  - bfloat16 products (AVX512_BF16 panels against widening reads of the stored weights):
  //    GRU H = 256 B=8 T=8 37.2 vs 40.8, B=4 T=24 15.6 vs 18.0, while the LSTM and the RNN
  //    went either way; so bfloat16 keeps the bar of 32 rows.
  static constexpr int64_t kNativeRows = 1;
  static constexpr int64_t kNativeShortRows = 8;
  static constexpr int64_t kNativeCallRows = 96;
  static constexpr int64_t kNativeCallRowsBf16 = 32;
  static bool reads_weights_as_stored(int64_t rows, int64_t steps, bool bf16_products) {
    const int64_t bar = bf16_products ? kNativeCallRowsBf16 : kNativeCallRows;
    return rows <= kNativeRows || (rows <= kNativeShortRows && rows * steps <= bar);
  }

  // Packed steps of at least this many rows also compute x W_ih^T, from W_ih packed like W_hh
  // (StepInput), instead of one CPU BLAS GEMM per chunk of steps: the micro-kernel runs at
  // about 90% of the FMA peak where MKL's sgemm takes its AVX2 code on AMD cores, and the
  // pre-activations no longer make a trip through memory. Measured on 2 cores, I = H = 512,
  // T = 100, inference: LSTM B=64 130-132 ms vs 144-145 ms, GRU B=64 106 vs 118 ms, LSTM
  // B=8 19.2 vs 20.8 ms. At 2 rows the GEMM's many rows still win (LSTM H=256: 2.1 vs 1.8 ms).
  static constexpr int64_t kFusedInputRows = 4;
  // ... and calls of at least this many rows in all (rows x steps): packing W_ih (a read and
  // a write of it) costs more than a short call wins back. Measured, LSTM I=H=512, B=64,
  // inference: T=1 2.6-2.8 ms fused vs 2.5-2.9 unfused on 2 threads and 5.3-5.5 vs 4.6-4.9 ms
  // on one; T=4 13.2-13.3 vs 12.8-12.9 ms on one; fused ahead from T=8 (512 rows) on one thread
  // and from about 256 rows on two. With the tiled packing (pack_panels), a bar of 64 rows
  // still lost: one thread, B=64 T=1 5.4-5.5 ms vs 4.1-4.2, T=2 7.6-7.8 vs 6.9; two about even.
  static constexpr int64_t kFusedInputCallRows = 256;

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
    if (reads_weights_as_stored(rows, steps, bf16_products_)) {
      p.packed = false;
      p.data = w.w_hh;
      p.stored_bf16 = w.w_hh_bf16;
      // bfloat16 products take x W_ih^T from their GEMM (ForwardIO::x_proj) unless W_ih comes
      // as stored in bfloat16 (the raw calls of cpu_ops.cpp).
      // (Not for input_size 0, a cell of torch.nn's: the step kernels take an empty StepInput
      // for none, and the GEMM's empty product gives the biases.)
      fused.input_in_steps = steps == 1 && w.input_size > 0 &&
                             (!bf16_products_ || w.w_ih_bf16 != nullptr);
      fused.w_ih = w.w_ih;
      fused.w_ih_bf16 = w.w_ih_bf16;
      fused.input_size = w.input_size;
      return fused;
    }
    TORCH_CHECK(w.w_hh_bf16 == nullptr && w.w_ih_bf16 == nullptr,
                "fastrnn: bfloat16 weights as stored are for calls that read W_hh as stored");
    if (bf16_products_) {
      pack_bf16_panels<kCell>(w, p, fused.holder);
      return fused;
    }
    p.stride = P * p.units * gates;
    p.data = pack_panels<kCell>(w.w_hh, P, p, fused.holder);
    if (rows >= kFusedInputRows && rows * steps >= kFusedInputCallRows && w.input_size > 0) {
      fused.input_in_steps = true;
      fused.input_size = w.input_size;
      fused.input_stride = w.input_size * p.units * gates;
      fused.w_ih = pack_panels<kCell>(w.w_ih, w.input_size, p, fused.input_holder);
    }
    return fused;
  }

  // A [gates * H, inner] weight (W_hh or W_ih, as stored) packed into the layout of the panels
  // p describes (Panels: `inner` rows of `units * gates` values per panel), in a buffer `holder`
  // takes ownership of.
  template <CellKind kCell>
  const T* pack_panels(const T* weight, int64_t inner, const Panels<T>& p,
                       Buffer<T>& holder) const {
    const int64_t width = kernels_.vector_width, columns = p.units * gate_count(kCell);
    const int64_t stride = inner * columns;
    holder = scratch<T>(p.count * stride);
    T* out = holder.data();
    for_each_weight_tile<kCell>(weight, inner, p, [&](int64_t panel, int64_t column, int64_t k0,
                                                      int64_t depth, const Tile& tile) {
      T* dest = out + panel * stride + k0 * columns + column;
      for (int64_t k = 0; k < depth; ++k) {
        std::copy_n(tile[k], width, dest + k * columns);
      }
    });
    return out;
  }

  // The panels' columns come in blocks of one vector width, each `width` consecutive rows of
  // the weight (one gate, consecutive units), so packing is a transpose of width x kPackDepth
  // tiles through a buffer that stays in L1, every read and every write a whole row of a tile.
  // Writing a column at a time instead (a write per cache line of the panel, which outgrows
  // L1) cost about 1 ns an element: 0.5 ms a call for an LSTM's H = 512 W_hh on 2 threads,
  // against about 0.2 ms now, more than a whole step of a short batch.
  static constexpr int64_t kPackDepth = 16;
  using Tile = T[kPackDepth][kMaxVectorWidth];

  // put(panel, column, k0, depth, tile) for every block of `width` columns of every panel
  // (`column` its first, in the Panels order [sub-block][gate][lane]) and every kPackDepth
  // values of k from k0: tile[k][lane] = weight[row of column + lane][k0 + k] for k < depth
  // (zero for units past H), in parallel over the blocks.
  template <CellKind kCell, class Put>
  void for_each_weight_tile(const T* weight, int64_t inner, const Panels<T>& p,
                            const Put& put) const {
    const int64_t gates = gate_count(kCell), H = p.hidden;
    const int64_t width = kernels_.vector_width, blocks = p.units * gates / width;
    TORCH_CHECK(width <= kMaxVectorWidth && p.units % width == 0, "fastrnn: bad panel layout");
    const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, inner * width));
    parallel_items(p.count * blocks, grain, [&](int64_t begin, int64_t end) {
      Tile tile;
      for (int64_t index = begin; index < end; ++index) {
        const int64_t panel = index / blocks, block = index % blocks;
        const int64_t sub = block / gates, gate = block % gates;
        const int64_t unit = panel * p.units + sub * width;
        const int64_t lanes = std::clamp<int64_t>(H - unit, 0, width);
        const T* source = weight + (gate * H + unit) * inner;
        for (int64_t k0 = 0; k0 < inner; k0 += kPackDepth) {
          const int64_t depth = std::min(kPackDepth, inner - k0);
          for (int64_t lane = 0; lane < width; ++lane) {
            const T* row = source + lane * inner + k0;
            for (int64_t k = 0; k < depth; ++k) tile[k][lane] = lane < lanes ? row[k] : T(0);
          }
          put(panel, block * width, k0, depth, tile);
        }
      }
    });
  }

  // W_hh into Panels::bf16 (step_kernels.h), rounded to bfloat16 (exact for bfloat16 calls).
  template <CellKind kCell, class Weights>
  void pack_bf16_panels(const Weights& w, Panels<T>& p, Buffer<T>& holder) const {
    const int64_t P = w.output_size(), pairs = (P + 1) / 2;
    const int64_t width = kernels_.vector_width, columns = p.units * gate_count(kCell);
    p.bf16_stride = pairs * columns * 2;
    Buffer<uint16_t> bf16 = scratch<uint16_t>(p.count * p.bf16_stride);
    holder.tensor = bf16.tensor;  // the panels' owner, whatever their type
    uint16_t* out = bf16.data();
    p.bf16 = out;
    for_each_weight_tile<kCell>(w.w_hh, P, p, [&](int64_t panel, int64_t column, int64_t k0,
                                                  int64_t depth, const Tile& tile) {
      // k0 is even: the tile's values make whole pairs, a last odd k paired with a zero.
      uint16_t* dest = out + panel * p.bf16_stride + (k0 / 2) * columns * 2 + column * 2;
      for (int64_t k = 0; k < depth + depth % 2; ++k) {
        for (int64_t lane = 0; lane < width; ++lane) {
          const float value = k < depth ? static_cast<float>(tile[k][lane]) : 0.0f;
          dest[(k / 2) * columns * 2 + lane * 2 + k % 2] =
              c10::detail::round_to_nearest_even(value);
        }
      }
    });
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
    if (w.panels.bf16 != nullptr) {
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
    const int threads = threads_for(w.panels.count, flops_per_panel,
                                    steps > 1 ? kMinFlopsPerThreadInSequence : kMinFlopsPerThread);
    if (threads <= 1) {
      for (int64_t s = 0; s < steps; ++s) run_share(s, 0, w.panels.count);
      return;
    }
    const int64_t count = w.panels.count;
    const int64_t chunks = chunks_for(threads, count, flops_per_panel);
    run_stages(threads, steps, chunks, [&](int64_t s, int64_t chunk) {
      run_share(s, count * chunk / chunks, count * (chunk + 1) / chunks);
    });
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
        std::call_once(backward_bf16_->once, [&] { pack_bf16_rows(w_hh, G, P); });
        if (backward_bf16_->source == w_hh) {
          const int64_t ld = G + G % 2;
          thread_local std::vector<uint16_t> rounded;
          if (static_cast<int64_t>(rounded.size()) < rows * ld) rounded.resize(rows * ld);
          for (int64_t r = 0; r < rows; ++r) {
            kernels_.to_bf16(dgates.row(r), rounded.data() + r * ld, G);
            if (G % 2 != 0) rounded[r * ld + G] = 0;
          }
          g.dgates_bf16 = {rounded.data(), ld};
          g.w_bf16 = backward_bf16_->packed.data();
        }
      }
    }
    kernels_.hidden_grad(g);
  }

  // W_hh [G, P] into bfloat16 pairs of rows, [ceil(G / 2)][P][2] (HiddenGradStep::w_bf16).
  void pack_bf16_rows(const T* w_hh, int64_t G, int64_t P) const {
    const int64_t pairs = (G + 1) / 2;
    Buffer<uint16_t> packed = scratch<uint16_t>(pairs * P * 2);
    uint16_t* out = packed.data();
    for (int64_t q = 0; q < pairs; ++q) {
      for (int64_t c = 0; c < P; ++c) {
        for (int64_t j = 0; j < 2; ++j) {
          const int64_t k = 2 * q + j;
          out[(q * P + c) * 2 + j] =
              k < G ? c10::detail::round_to_nearest_even(static_cast<float>(w_hh[k * P + c])) : 0;
        }
      }
    }
    backward_bf16_->packed = packed;
    backward_bf16_->source = w_hh;
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
    const int threads = splittable ? threads_for(blocks, flops_per_step / std::max<int64_t>(1, blocks)) : 1;
    if (threads <= 1) {
      for (int64_t k = k0; k < k1; ++k) {
        pointwise(k, 0, units);
        recurrent(k, 0, columns);
      }
      return;
    }
    // Two stages an iteration: the pointwise half, then the recurrent half, over the same
    // chunks of units (whole vectors each).
    const int64_t chunks = chunks_for(threads, blocks, flops_per_step / blocks);
    run_stages(threads, 2 * (k1 - k0), chunks, [&](int64_t stage, int64_t chunk) {
      const int64_t u0 = std::min(units, blocks * chunk / chunks * width);
      const int64_t u1 = std::min(units, blocks * (chunk + 1) / chunks * width);
      if (u1 <= u0) return;
      if (stage % 2 == 0) {
        pointwise(k0 + stage / 2, u0, u1);
      } else {
        recurrent(k0 + stage / 2, u0, u1);
      }
    });
  }

  template <CellKind kCell>
  void rnn_step(const RnnBackwardStep<T>& s) const {
    run(kCell == CellKind::kRnnTanh ? kernels_.rnn_tanh_backward : kernels_.rnn_relu_backward, s);
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
    if constexpr (kCell == CellKind::kLstm) {
      return kernels_.lstm_fused_forward;
    } else if constexpr (kCell == CellKind::kGru) {
      return kernels_.gru_fused_forward;
    } else {
      return kCell == CellKind::kRnnTanh ? kernels_.rnn_tanh_fused_forward
                                         : kernels_.rnn_relu_fused_forward;
    }
  }

  // Threads for `panels` panels of `flops_per_panel` each per step: at most torch's intra-op
  // count (and one inside another parallel region), and few enough that each thread's share is
  // worth what splitting costs, `min_flops` a thread.
  //  - kMinFlopsPerThread (50 kFLOP, half a microsecond or more): a single-step call (a fork
  //    and a join per call) and backward (two barriers per step). Measured on 2 cores at B=1,
  //    T=100: LSTM H=128 0.32 ms on two threads vs 0.48-0.53 ms on one at the earlier 100 kFLOP.
  //  - kMinFlopsPerThreadInSequence (25 kFLOP): the forward steps of a sequence (one barrier a
  //    step, the threads already forked). GRU H=128, B=1, T=100: 0.28 ms vs 0.38 ms at 50 kFLOP
  //    (98 kFLOP a step kept it on one thread); no measured shape got slower. Single-step calls
  //    showed no gain from it, and occasional spikes.
  static constexpr int64_t kMinFlopsPerThread = 50000;
  static constexpr int64_t kMinFlopsPerThreadInSequence = 25000;
  static int threads_for(int64_t panels, int64_t flops_per_panel,
                         int64_t min_flops = kMinFlopsPerThread) {
    if (at::in_parallel_region()) return 1;
    const int64_t by_work = std::max<int64_t>(1, panels * flops_per_panel / min_flops);
    return static_cast<int>(std::min<int64_t>({at::get_num_threads(), panels, by_work}));
  }

  // Chunks a stage of `items` items (panels, or blocks of units) of `flops_per_item` each is
  // cut into for `threads` threads (StageTeam): up to kChunksPerThread a thread, so that the
  // work of a thread that is descheduled can be taken over in pieces, each at least
  // kMinFlopsPerThreadInSequence (a claim costs tens of nanoseconds), and never fewer than one
  // a thread (threads_for gives each thread an item or more).
  static constexpr int64_t kChunksPerThread = 4;
  static int64_t chunks_for(int threads, int64_t items, int64_t flops_per_item) {
    return clamp_chunks(threads, items, items * flops_per_item / kMinFlopsPerThreadInSequence);
  }
  // `wanted` chunks of `items`, within [threads, min(items, threads * kChunksPerThread)].
  static int64_t clamp_chunks(int threads, int64_t items, int64_t wanted) {
    const int64_t most = std::min<int64_t>(items, threads * kChunksPerThread);
    return std::max<int64_t>(threads, std::min(wanted, most));
  }

  // body(begin, end) over [0, items) in chunks of `grain` items or more, on the step loops'
  // threads (run_stages: a descheduled thread's chunks are taken over).
  template <class Body>
  static void parallel_items(int64_t items, int64_t grain, const Body& body) {
    const int64_t most = (items + grain - 1) / grain;
    if (most <= 0) return;
    const int threads = at::in_parallel_region()
                            ? 1
                            : static_cast<int>(std::min<int64_t>(at::get_num_threads(), most));
    const int64_t chunks = clamp_chunks(threads, most, most);
    run_stages(threads, 1, chunks, [&](int64_t, int64_t chunk) {
      body(items * chunk / chunks, items * (chunk + 1) / chunks);
    });
  }

  const StepKernels<T>& kernels_ = step_kernels<T>();
  bool bf16_products_ = false;
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
