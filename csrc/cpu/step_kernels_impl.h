// The step kernels of step_kernels.h as templates over a vector type V (see csrc/cpu/simd).
// Included by each step_kernels_<isa>.cpp inside that instruction set's target region, with
// FASTRNN_ISA naming the namespace to define them in; cell_units.h (with cell_math.h) is included
// here, in the region, so the cell math is compiled for that instruction set too (see
// cell_math.h).
//
// Here: the backward pointwise steps (the forward steps are fused with their recurrent product:
// fused_kernels_impl.h), the activations and the FMA peak loop. Loops: rows outer, units inner
// in blocks of V::kWidth (the last block masked). Each unit's gates are read from their
// H-strided blocks, combined in registers and written once.

#ifndef FASTRNN_ISA
#error "define FASTRNN_ISA (the instruction-set namespace) before including step_kernels_impl.h"
#endif

#include "fastrnn/cell_units.h"

namespace fastrnn::cpu::FASTRNN_ISA {

// Calls body(j, n) for the unit blocks [j, j + n) of a row of `hidden` units.
template <class V, class Body>
inline void for_each_block(int64_t hidden, Body&& body) {
  int64_t j = 0;
  for (; j + V::kWidth <= hidden; j += V::kWidth) body(j, V::kWidth);
  if (j < hidden) body(j, static_cast<int>(hidden - j));
}

template <class V, class T>
inline V load_or_zero(const T* p, int n) {
  return p ? V::load(p, n) : V(T(0));
}

// b_ih + b_hh at unit offset j (either may be absent).
template <class V, class T>
inline V biases(const T* b_ih, const T* b_hh, int64_t j, int n) {
  return load_or_zero<V>(b_ih ? b_ih + j : nullptr, n) + load_or_zero<V>(b_hh ? b_hh + j : nullptr, n);
}

// The hidden units a backward step covers (see LstmBackwardStep::units).
template <class Step>
inline int64_t units_of(const Step& s) {
  return s.units > 0 ? s.units : s.hidden;
}

// The CPU kernels' access to a block of `n` units (cell_units.h's Io): lanes [j, j + n).
template <class V>
struct Lanes {
  int n;
  template <class U>
  V load(const U* row, int64_t j) const { return V::load(row + j, n); }
  template <class U>
  V load_or_zero(const U* row, int64_t j) const {
    return FASTRNN_ISA::load_or_zero<V>(row ? row + j : nullptr, n);
  }
  template <class U>
  void store(U* row, int64_t j, const V& value) const { value.store(row + j, n); }
};

// A backward step: unit(Lanes, row, unit) for every block of units of every row.
template <class V, class Step, class Unit>
void backward_step(const Step& s, Unit unit) {
  for (int64_t r = 0; r < s.rows; ++r) {
    for_each_block<V>(units_of(s), [&](int64_t j, int n) { unit(Lanes<V>{n}, r, j); });
  }
}

// Cell kCell's backward step.
template <CellKind kCell, class V, class T>
void backward_kernel(const typename CellKernels<T, kCell>::Backward& s) {
  backward_step<V>(s, [&](const Lanes<V>& io, int64_t r, int64_t j) {
    cell::CellUnits<kCell>::template backward<V>(io, s, r, j);
  });
}

template <class V, class T>
void activation(Activation kind, const T* in, T* out, int64_t n) {
  for_each_block<V>(n, [&](int64_t j, int width) {
    const V x = V::load(in + j, width);
    const V result = kind == Activation::kSigmoid ? sigmoid(x)
                     : kind == Activation::kTanh  ? tanh(x)
                                                  : relu(x);
    result.store(out + j, width);
  });
}

// `iterations` rounds of FMAs on 12 independent accumulators that never leave the registers
// (more chains than the FMA latency times the FMA pipes of any x86-64 core in use: 4 x 2), so
// the loop runs at the core's FMA peak; returns the floating-point operations done.
template <class V, class T>
double fma_loop(int64_t iterations) {
  constexpr int kChains = 12;
  V acc[kChains];
#pragma GCC unroll 12
  for (int c = 0; c < kChains; ++c) acc[c] = V(T(c) * T(1e-3));
  const V scale(T(0.999)), shift(T(1e-4));  // acc -> 0.1: stays finite
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = fma(acc[c], scale, shift);
  }
  alignas(64) T lanes[V::kWidth];
  T sum = 0;
  for (int c = 0; c < kChains; ++c) {
    acc[c].store(lanes, V::kWidth);
    for (int j = 0; j < V::kWidth; ++j) sum += lanes[j];
  }
  volatile T sink = sum;  // the sums are used: the loop is not optimized away
  (void)sink;
  return 2.0 * kChains * V::kWidth * static_cast<double>(iterations);
}

}  // namespace fastrnn::cpu::FASTRNN_ISA

#include "cpu/fused_kernels_impl.h"

namespace fastrnn::cpu::FASTRNN_ISA {

template <class V, class T>
StepKernels<T> make_step_kernels() {
  StepKernels<T> k;
  for_each_cell([&](auto cell) {
    constexpr CellKind kCell = decltype(cell)::value;
    k.template cell<kCell>().fused_forward = &fused_forward<kCell, V, T>;
    k.template cell<kCell>().backward = &backward_kernel<kCell, V, T>;
  });
  k.activation = &activation<V, T>;
  k.fma_loop = &fma_loop<V, T>;
  static_assert(V::kWidth <= kMaxVectorWidth);
  k.vector_width = V::kWidth;
  k.hidden_grad = &hidden_grad<V, T>;
  k.gemm_block = &gemm_block<V, T>;
#ifdef FASTRNN_BF16_PRODUCTS
  if constexpr (std::is_same_v<T, float>) k.to_bf16 = &round_to_bf16;
#endif
  return k;
}

}  // namespace fastrnn::cpu::FASTRNN_ISA
