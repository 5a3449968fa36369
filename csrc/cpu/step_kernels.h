// The table of the CPU's fused per-step pointwise kernels (arguments: fastrnn/steps.h). The
// kernels are compiled once per instruction set (step_kernels_<isa>.cpp); step_kernels<T>() in
// isa.h returns the table for the instruction set chosen at run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <tuple>
#include <utility>

#include "fastrnn/cell_steps.h"
#include "fastrnn/cells.h"
#include "fastrnn/steps.h"

namespace fastrnn::cpu {

// The CPU kernels keep everything in one type (float or double): A = T.
using fastrnn::GruBackwardStep;
using fastrnn::GruForwardStep;
using fastrnn::LstmBackwardStep;
using fastrnn::LstmForwardStep;
using fastrnn::RnnBackwardStep;
using fastrnn::RnnForwardStep;
using fastrnn::Rows;

// ---- fused forward steps: the recurrent GEMM of a step and its gate math in one pass ----
//
// The hidden units are split into panels of `units` units (one vector width for the LSTM and
// the GRU, four for the vanilla RNN); a thread owns whole panels, with every gate of their units,
// so the micro-kernel's accumulator tile for a block of rows of h holds every gate of those units
// in registers and the cell's gate math runs on the tile without writing the product out.
//
// W_hh reaches the kernel in one of two layouts:
//  - packed (prepare_forward in cpu_backend.h, once per call): panel p holds the units
//    [p * units, (p + 1) * units) for every gate as `inner` rows (k = 0 .. P - 1) of
//    `units * gates` values, laid out [sub-block][gate][lane] (sub-blocks of one vector width;
//    units past H are zero), so the product broadcasts h and streams the panel;
//  - as stored ([gates * H, P], row gate * H + unit), for a few rows of h: the product is then
//    a dot product per unit, sixteen at a time, with no packing pass at all, which is what
//    batch-1 and single-step calls need (a packing pass costs about as much as a step there).
//
// bfloat16 calls on CPUs with AVX512_BF16 (StepKernels::bf16_products) may also pack W_hh in
// bfloat16, in pairs of k: panel p holds ceil(P / 2) rows of `units * gates` pairs
// (W[c, 2q], W[c, 2q + 1]), the columns c in the order of the float panels (a missing k = P
// is zero). The product then reads h rounded to bfloat16 (FusedForwardStep::h_bf16, as torch's
// bfloat16 RNNs round their state) and accumulates in float32 with one dot-product instruction
// per pair: twice the float32 rate. Everything after the product stays float32.
//
// A weight operand's values are T or bfloat16 (WeightOperand): one pointer and its format, not
// a pointer per format. bfloat16 weights are either a bfloat16 call's as the caller holds them
// (as stored: widened as they are read, exactly the float copy's values at half the bytes) or
// packed in the pairs above.
template <class T>
struct WeightOperand {
  const void* data = nullptr;  // null: no operand
  bool bf16 = false;           // values in bfloat16 (uint16_t bits), else in T

  static WeightOperand of(const T* values) { return {values, false}; }
  static WeightOperand of(const uint16_t* values) { return {values, true}; }
  explicit operator bool() const { return data != nullptr; }
  const T* values() const { return static_cast<const T*>(data); }  // when !bf16
  const uint16_t* bf16_values() const { return static_cast<const uint16_t*>(data); }  // when bf16
};

template <class T>
struct Panels {
  WeightOperand<T> weights;  // W_hh: packed (float, or bfloat16 pairs), or as stored
  bool packed = true;        // false: `weights` is W_hh as stored
  int64_t inner = 0;   // K: the size of h (P)
  int64_t hidden = 0;  // H
  int64_t units = 0;   // hidden units per panel
  int64_t count = 0;   // panels: ceil(H / units)
  int64_t stride = 0;  // packed: values per panel (float: inner * units * gates; bfloat16
                       // pairs: ceil(inner / 2) * units * gates * 2)
};

// The input projection of a step, when the fused step computes it too: x [rows, I] and W_ih
// [gates * H, I], in the layout of the step's W_hh (Panels::packed):
//  - as stored, for single-step calls of a few rows, where a separate GEMM would be one more
//    pass over W_ih and one more fork of the threads;
//  - packed into panels like W_hh's (`inner` = I, `stride` elements each), for steps of many
//    rows: the micro-kernel then runs x W_ih^T per panel at its full rate (a separate GEMM call
//    runs the CPU BLAS's, about 15% slower on AMD's AVX-512 cores, where MKL takes its AVX2
//    code) and the pre-activations never make a round trip through memory.
template <class T>
struct StepInput {
  Rows<const T> x;
  WeightOperand<T> w_ih;  // none: the pre rows already hold x W_ih^T; bfloat16 only as stored
  int64_t size = 0;       // I
  int64_t stride = 0;     // packed: elements per panel (I * units * gates); 0: as stored
};

// One forward step over the panels [panel_begin, panel_end) (a thread's share): `step` as
// fastrnn/steps.h describes it for the cell (the CUDA kernels' contract), except that its gates
// (pre) rows hold only x W_ih^T (or nothing yet, when `input` says the kernel computes it first),
// the kernel adding h_prev W_hh^T itself (the GRU's `hh` is not read); h_prev [rows, P]. `save`:
// also write what backward needs (LSTM and GRU: the workspace rows `step.gates` points to).
template <class Step, class T>
struct FusedForwardStep {
  Step step;
  Rows<const T> h_prev;
  Panels<T> w;
  int64_t panel_begin = 0, panel_end = 0;
  bool save = false;
  StepInput<T> input;
  Rows<const uint16_t> h_bf16;  // h_prev rounded to bfloat16 (row length even), for packed
                                // bfloat16 panels
};

// The recurrent half of a backward step for the output columns [col_begin, col_end) of dh:
// dh[r, c] (+)= sum over k of dgates[r, k] * w[k * ldw + c], with w = W_hh [G, P] as stored.
template <class T>
struct HiddenGradStep {
  int64_t rows = 0, inner = 0;  // inner: G
  Rows<const T> dgates;         // [rows, G]
  WeightOperand<T> w;           // W_hh as stored, or in bfloat16 pairs of rows (below)
  int64_t ldw = 0;              // P
  Rows<T> dh;                   // [rows, P]
  int64_t col_begin = 0, col_end = 0;
  bool accumulate = false;      // add to dh (the GRU's direct part) instead of overwriting it
  // bfloat16 products (the packed panels' conditions): w in pairs of rows, [ceil(G / 2)][P][2],
  // and dgates rounded to bfloat16 here (row length even, a missing k = G zero).
  Rows<const uint16_t> dgates_bf16;

  // The float product of the driver's Backend::hidden_grad (fastrnn/recurrence.h).
  static HiddenGradStep of(int64_t rows, Rows<const T> dgates, const T* w_hh, int64_t G,
                           int64_t P, Rows<T> dh, int64_t c0, int64_t c1, bool accumulate) {
    HiddenGradStep g;
    g.rows = rows;
    g.inner = G;
    g.dgates = dgates;
    g.w = WeightOperand<T>::of(w_hh);
    g.ldw = P;
    g.dh = dh;
    g.col_begin = c0;
    g.col_end = c1;
    g.accumulate = accumulate;
    return g;
  }
};

// A block of a whole-sequence GEMM (the input and weight gradients of backward): the rows
// [row_begin, row_end) and columns [col_begin, col_end) of C [m, n] (+)= op(A) B, row-major;
// op(A) is A [m, inner] (lda), or A^T of A stored [inner, m] when trans_a; B is [inner, n]
// (ldb). accumulate: add to C; else C is written without being read.
template <class T>
struct GemmBlock {
  const T* a = nullptr;
  int64_t lda = 0;
  bool trans_a = false;
  const T* b = nullptr;
  int64_t ldb = 0;
  T* c = nullptr;
  int64_t ldc = 0;
  int64_t inner = 0;
  int64_t row_begin = 0, row_end = 0, col_begin = 0, col_end = 0;
  bool accumulate = false;
};

// The widest vector of any instruction set's kernels, in elements (AVX-512, float32).
constexpr int64_t kMaxVectorWidth = 16;

// Elementwise activations of the vector math, exposed so tests can check every instruction
// set's exp/sigmoid/tanh against libm.
enum class Activation { kSigmoid, kTanh, kRelu };

// The step kernels of cell kCell: its fused forward step and its backward pointwise step.
template <class T, CellKind kCell>
struct CellKernels {
  using Forward = typename CellSteps<kCell>::template ForwardStep<T, T>;
  using Backward = typename CellSteps<kCell>::template BackwardStep<T, T>;
  void (*fused_forward)(const FusedForwardStep<Forward, T>&) = nullptr;
  void (*backward)(const Backward&) = nullptr;
};

namespace detail {
template <class T, std::size_t... kIndex>
std::tuple<CellKernels<T, kCells[kIndex].kind>...> cell_kernels(std::index_sequence<kIndex...>);
}  // namespace detail

// One CellKernels per cell of kCells, in its order.
template <class T>
using EveryCellKernels =
    decltype(detail::cell_kernels<T>(std::make_index_sequence<kCellCount>{}));

template <class T>
struct StepKernels {
  EveryCellKernels<T> cells;
  template <CellKind kCell>
  const CellKernels<T, kCell>& cell() const {
    return std::get<static_cast<std::size_t>(kCell)>(cells);
  }
  template <CellKind kCell>
  CellKernels<T, kCell>& cell() {
    return std::get<static_cast<std::size_t>(kCell)>(cells);
  }

  void (*activation)(Activation kind, const T* in, T* out, int64_t n);
  // The core's FMA peak: a register-only loop of FMAs in this instruction set; returns the
  // floating-point operations it did.
  double (*fma_loop)(int64_t iterations);

  // The vector width the fused forward steps' panels are built for (see Panels; at most
  // kMaxVectorWidth).
  int64_t vector_width;
  void (*hidden_grad)(const HiddenGradStep<T>&);
  void (*gemm_block)(const GemmBlock<T>&);
  // The fused steps can run Panels::bf16 (set by isa.cpp: compiled for it and the CPU has it),
  // and to_bf16 rounds float32 to bfloat16 (nearest even) for them.
  bool bf16_products = false;
  void (*to_bf16)(const float* in, uint16_t* out, int64_t n) = nullptr;
};

// Hidden units per panel, in vectors: one for cells of several gates (the LSTM's 4 and the GRU's
// 3 give the micro-kernel 4 and 3 vectors of columns), four for one gate (the vanilla RNN).
constexpr int64_t panel_vectors(CellKind cell) { return gate_count(cell) == 1 ? 4 : 1; }

// One table per instruction set, defined in step_kernels_<isa>.cpp. Double precision runs the
// baseline (scalar, libm) kernels on every machine: it exists for accuracy, not speed.
namespace avx512 { StepKernels<float> step_kernels_f32(); }
namespace avx2 { StepKernels<float> step_kernels_f32(); }
namespace baseline {
StepKernels<float> step_kernels_f32();
StepKernels<double> step_kernels_f64();
}  // namespace baseline

}  // namespace fastrnn::cpu
