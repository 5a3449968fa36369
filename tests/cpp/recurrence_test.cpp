// Torch-free checks of the recurrence driver (fastrnn/recurrence.h) on a double-precision test
// backend (built by CMakeLists.txt, run by ctest and by tests/test_cpp.py). The backend runs the
// production double kernels (the baseline ISA's fused forward steps with W_hh as stored, the
// pointwise backward steps and hidden_grad) with plain loops for the GEMMs, copies and sums,
// scratch filled with NaN (a read before a write shows), backward iterations split into two
// ranges of units and columns where the driver allows it, and chunks of a few rows, so a
// sequence spans several chunks. For every cell, padded and packed batches, both directions and
// the LSTM's projection:
// 1. training and inference forward give the same outputs and final states, bitwise;
// 2. every gradient of recurrence_backward (input, initial states, every weight and bias)
//    agrees with central finite differences of the inference forward, for the loss
//    sum(y * gy) + sum(h_n * gh) (+ sum(c_n * gc)).
// Exits non-zero on the first failure, printing what differed.
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "cpu/isa.h"
#include "cpu/step_kernels.h"
#include "fastrnn/recurrence.h"

using namespace fastrnn;
using cpu::StepKernels;

namespace {

template <int64_t kChunk>
class TestBackend {
 public:
  static constexpr int64_t kChunkRows = kChunk;
  using T = double;
  using A = double;

  template <class U>
  struct Buffer {
    std::shared_ptr<std::vector<U>> values;
    U* data() const { return values ? values->data() : nullptr; }
  };

  template <class U>
  Buffer<U> scratch(int64_t elements) const {
    return {std::make_shared<std::vector<U>>(elements, std::numeric_limits<U>::quiet_NaN())};
  }

  template <class Out>
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
            const T* b, int64_t ldb, bool accumulate, Out* c, int64_t ldc) const {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0;
        for (int64_t p = 0; p < k; ++p) {
          sum += (trans_a ? a[p * lda + i] : a[i * lda + p]) *
                 (trans_b ? b[j * ldb + p] : b[p * ldb + j]);
        }
        c[i * ldc + j] = accumulate ? c[i * ldc + j] + sum : sum;
      }
    }
  }

  template <class Dst, class Src>
  void copy(Dst* dst, const Src* src, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }
  void copy_rows(const T* src, int64_t src_ld, T* dst, int64_t dst_ld, int64_t rows,
                 int64_t cols) const {
    for (int64_t r = 0; r < rows; ++r) copy(dst + r * dst_ld, src + r * src_ld, cols);
  }
  void add(T* out, const T* a, const A* b, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
  }
  void sum_rows(const T* matrix, int64_t rows, int64_t cols, T* out, bool accumulate) const {
    for (int64_t c = 0; c < cols; ++c) {
      double sum = 0;
      for (int64_t r = 0; r < rows; ++r) sum += matrix[r * cols + c];
      out[c] = accumulate ? out[c] + sum : sum;
    }
  }

  template <CellKind kCell, class Step>
  void step(const Step& s) const {
    kernels_.template cell<kCell>().backward(s);
  }

  // Forward: the fused steps with W_hh as stored; the driver's GEMM computes x W_ih^T.
  struct Prepared {
    static constexpr bool input_in_steps = false;
    cpu::Panels<T> panels;
  };
  template <CellKind kCell>
  Prepared prepare_forward(const LayerWeights<T>& w, int64_t, int64_t) const {
    Prepared p;
    p.panels.weights = cpu::WeightOperand<T>::of(w.w_hh);
    p.panels.packed = false;
    p.panels.inner = w.output_size();
    p.panels.hidden = w.hidden_size;
    p.panels.units = cpu::panel_vectors(kCell) * kernels_.vector_width;
    p.panels.count = (w.hidden_size + p.panels.units - 1) / p.panels.units;
    return p;
  }
  template <CellKind kCell, class Step>
  void forward_step(const Step& step, Rows<const T> h_prev, Rows<const T>, const Prepared& p,
                    A*, bool training) const {
    cpu::FusedForwardStep<Step, T> f;
    f.step = step;
    f.h_prev = h_prev;
    f.w = p.panels;
    f.panel_end = p.panels.count;
    f.save = training;
    kernels_.template cell<kCell>().fused_forward(f);
  }
  template <CellKind kCell, class StepAt>
  void forward_steps(int64_t steps, const StepAt& step_at, const Prepared& p, A* hh,
                     bool training) const {
    run_steps_in_order<kCell>(*this, steps, step_at, p, hh, training);
  }

  void hidden_grad(int64_t rows, Rows<const T> dgates, const T* w_hh, int64_t G, int64_t P,
                   Rows<A> dh, int64_t c0, int64_t c1, bool accumulate) const {
    kernels_.hidden_grad(cpu::HiddenGradStep<T>::of(rows, dgates, w_hh, G, P, dh, c0, c1,
                                                    accumulate));
  }
  // Splits each iteration into two ranges of units and of columns where allowed, as a
  // threaded backend would (one after the other here).
  template <CellKind, class Pointwise, class Recurrent>
  void backward_steps(int64_t k0, int64_t k1, const Pointwise& pointwise,
                      const Recurrent& recurrent, int64_t units, int64_t columns,
                      bool splittable, int64_t) const {
    for (int64_t k = k0; k < k1; ++k) {
      if (splittable) {
        pointwise(k, 0, units / 2);
        pointwise(k, units / 2, units);
        recurrent(k, 0, columns / 2);
        recurrent(k, columns / 2, columns);
      } else {
        pointwise(k, 0, units);
        recurrent(k, 0, columns);
      }
    }
  }

 private:
  const StepKernels<double>& kernels_ = cpu::step_kernels<double>();
};

std::vector<double> random_vector(std::mt19937& rng, int64_t n) {
  std::normal_distribution<double> normal(0.0, 0.5);
  std::vector<double> v(n);
  for (double& x : v) x = normal(rng);
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

struct Case {
  CellKind cell;
  std::vector<int64_t> batch_sizes;  // one per step; all equal: padded
  int64_t input, hidden, proj;
  bool reverse;
};

template <CellKind kCell, int64_t kChunk>
void check_case(const Case& c, std::mt19937& rng) {
  const TestBackend<kChunk> backend;
  const int64_t steps = static_cast<int64_t>(c.batch_sizes.size());
  bool uniform = true;
  for (int64_t b : c.batch_sizes) uniform = uniform && b == c.batch_sizes[0];
  const SequenceShape shape = uniform ? SequenceShape(steps, c.batch_sizes[0])
                                      : SequenceShape(c.batch_sizes.data(), steps);
  const int64_t N = shape.total_rows(), B = shape.batch(), I = c.input, H = c.hidden;
  const int64_t P = c.proj > 0 ? c.proj : H, G = gate_count(kCell) * H;
  constexpr bool kLstm = kCell == CellKind::kLstm;

  // Parameters and inputs, every one a vector the finite differences can nudge.
  std::vector<double> x = random_vector(rng, N * I), h0 = random_vector(rng, B * P),
                      c0 = random_vector(rng, kLstm ? B * H : 0),
                      w_ih = random_vector(rng, G * I), w_hh = random_vector(rng, G * P),
                      b_ih = random_vector(rng, G), b_hh = random_vector(rng, G),
                      w_hr = random_vector(rng, c.proj * H);
  const std::vector<double> gy = random_vector(rng, N * P), gh = random_vector(rng, B * P),
                            gc = random_vector(rng, kLstm ? B * H : 0);

  auto weights = [&] {
    LayerWeights<double> w;
    w.input_size = I;
    w.hidden_size = H;
    w.proj_size = c.proj;
    w.w_ih = w_ih.data();
    w.w_hh = w_hh.data();
    w.b_ih = b_ih.data();
    w.b_hh = b_hh.data();
    w.w_hr = c.proj > 0 ? w_hr.data() : nullptr;
    return w;
  };
  struct Outputs {
    std::vector<double> y, h_n, c_n, workspace;
  };
  auto forward = [&](bool training) {
    Outputs out{std::vector<double>(N * P), std::vector<double>(B * P),
                std::vector<double>(kLstm ? B * H : 0),
                std::vector<double>(training ? N * workspace_blocks(kCell) * H : 0)};
    ForwardIO<double, double> io;
    io.x = x.data();
    io.h0 = h0.data();
    io.c0 = kLstm ? c0.data() : nullptr;
    io.y = out.y.data();
    io.h_n = out.h_n.data();
    io.c_n = kLstm ? out.c_n.data() : nullptr;
    io.workspace = out.workspace.empty() ? nullptr : out.workspace.data();
    recurrence_forward<kCell>(backend, shape, weights(), io, c.reverse);
    return out;
  };
  auto loss = [&] {
    const Outputs out = forward(false);
    return dot(out.y, gy) + dot(out.h_n, gh) + dot(out.c_n, gc);
  };

  std::string tag = std::string(kLstm ? "LSTM" : kCell == CellKind::kGru ? "GRU" : "RNN") +
                    (uniform ? " padded" : " packed") + (c.reverse ? " reverse" : "") +
                    (c.proj > 0 ? " proj" : "") + " chunk " + std::to_string(kChunk);

  // 1. Training and inference forward agree bitwise.
  const Outputs trained = forward(true), inferred = forward(false);
  ++checks;
  if (trained.y != inferred.y || trained.h_n != inferred.h_n || trained.c_n != inferred.c_n) {
    std::printf("FAIL %s: training and inference forward differ\n", tag.c_str());
    ++failures;
  }

  // 2. Backward against central differences of the loss.
  std::vector<double> dx(N * I), dh0(B * P), dc0(kLstm ? B * H : 0), dw_ih(G * I), dw_hh(G * P),
      db_ih(G), db_hh(G), dw_hr(c.proj * H);
  BackwardIO<double, double> io;
  io.dy = gy.data();
  io.dh_n = gh.data();
  io.dc_n = kLstm ? gc.data() : nullptr;
  io.x = x.data();
  io.h0 = h0.data();
  io.c0 = kLstm ? c0.data() : nullptr;
  io.y = trained.y.data();
  io.workspace = trained.workspace.empty() ? nullptr : trained.workspace.data();
  io.dx = dx.data();
  io.dh0 = dh0.data();
  io.dc0 = kLstm ? dc0.data() : nullptr;
  io.dw_ih = dw_ih.data();
  io.dw_hh = dw_hh.data();
  io.db_ih = db_ih.data();
  io.db_hh = db_hh.data();
  io.dw_hr = c.proj > 0 ? dw_hr.data() : nullptr;
  recurrence_backward<kCell>(backend, shape, weights(), io, c.reverse);

  auto check = [&](const char* name, std::vector<double>& value, const std::vector<double>& grad) {
    finite_difference(tag + " " + name, value, loss, grad);
  };
  check("x", x, dx);
  check("h0", h0, dh0);
  check("c0", c0, dc0);
  check("w_ih", w_ih, dw_ih);
  check("w_hh", w_hh, dw_hh);
  check("b_ih", b_ih, db_ih);
  check("b_hh", b_hh, db_hh);
  check("w_hr", w_hr, dw_hr);
}

template <CellKind kCell>
void check_cell(std::mt19937& rng) {
  const std::vector<std::vector<int64_t>> batches = {{3, 3, 3, 3, 3}, {4, 4, 2, 1, 1, 1}};
  for (const auto& batch_sizes : batches) {
    for (bool reverse : {false, true}) {
      for (int64_t proj : kCell == CellKind::kLstm ? std::vector<int64_t>{0, 3}
                                                   : std::vector<int64_t>{0}) {
        const Case c{kCell, batch_sizes, 4, 5, proj, reverse};
        check_case<kCell, 4>(c, rng);     // chunks of one or two steps
        check_case<kCell, 1024>(c, rng);  // one chunk
      }
    }
  }
}

}  // namespace

int main() {
  std::mt19937 rng(2026);
  check_cell<CellKind::kLstm>(rng);
  check_cell<CellKind::kGru>(rng);
  check_cell<CellKind::kRnnTanh>(rng);
  check_cell<CellKind::kRnnRelu>(rng);
  std::printf("%d comparisons, %d out of tolerance\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
