// The CPU backend of the recurrence driver (csrc/ops/recurrence.h): BLAS GEMMs called directly
// (no dispatcher inside the step loop), the step kernels of the instruction set chosen at run
// time, split across torch's intra-op threads when a step is big enough, and torch's CPU
// allocator for scratch. One type throughout: float or double (A = T).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "cpu/blas.h"
#include "cpu/isa.h"
#include "fastrnn/cells.h"
#include "fastrnn/debug.h"

namespace fastrnn::cpu {

template <class Scalar>
class CpuBackend {
 public:
  using T = Scalar;
  using A = Scalar;

  template <class Out>
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
            const T* b, int64_t ldb, bool accumulate, Out* c, int64_t ldc) const {
    static_assert(std::is_same_v<Out, T>, "the CPU backend computes in one type");
    cpu::gemm<T>(trans_a, trans_b, m, n, k, T(1), a, lda, b, ldb, accumulate ? T(1) : T(0), c,
                 ldc);
  }

  // Scratch memory from torch's CPU allocator (NaN-filled under FASTRNN_DEBUG_POISON=1).
  template <class U>
  at::Tensor scratch(int64_t elements) const {
    at::Tensor buffer =
        at::empty({elements}, at::TensorOptions().dtype(c10::CppTypeToScalarType<U>::value));
    if (debug_poison()) buffer.fill_(NAN);
    return buffer;
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

  void add(T* out, const T* a, const A* b, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
  }

  // Column sums of a [rows, cols] matrix, with torch's reduction (for its accuracy).
  void sum_rows(const T* matrix, int64_t rows, int64_t cols, T* out) const {
    const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
    at::Tensor result = at::from_blob(out, {cols}, options);
    at::sum_out(result, at::from_blob(const_cast<T*>(matrix), {rows, cols}, options), {0});
  }

  void step(const LstmForwardStep<T>& s) const { run(kernels_.lstm_forward, s); }
  void step(const LstmBackwardStep<T>& s) const { run(kernels_.lstm_backward, s); }
  void step(const GruForwardStep<T>& s) const { run(kernels_.gru_forward, s); }
  void step(const GruBackwardStep<T>& s) const { run(kernels_.gru_backward, s); }

  template <CellKind kCell>
  void rnn_step(const RnnForwardStep<T>& s) const {
    run(kCell == CellKind::kRnnTanh ? kernels_.rnn_tanh_forward : kernels_.rnn_relu_forward, s);
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

  const StepKernels<T>& kernels_ = step_kernels<T>();
};

}  // namespace fastrnn::cpu
