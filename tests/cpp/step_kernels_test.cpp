// Torch-free checks of the CPU step kernels (built by CMakeLists.txt, run by ctest and by
// tests/test_cpp.py):
// 1. every instruction set's float kernels agree with the double-precision baseline kernels:
//    the fused forward steps production runs, with W_hh as stored and packed into panels;
// 2. the double forward steps agree with the LSTM's and GRU's formulas written here;
// 3. the double backward kernels (the pointwise steps and the recurrent hidden_grad) agree with
//    central finite differences of the forward steps.
// Exits non-zero on the first failure, printing what differed.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "cpu/isa.h"
#include "cpu/step_kernels.h"

using namespace fastrnn::cpu;
using fastrnn::CellKind;
using fastrnn::gate_count;

namespace {

std::vector<double> random_vector(std::mt19937& rng, size_t n, double scale = 1.0) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<double> v(n);
  for (double& x : v) x = normal(rng);
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

template <class T>
Rows<T> rows_of(std::vector<T>& v, int64_t ld) { return {v.data(), ld}; }
template <class T>
Rows<const T> const_rows_of(const std::vector<T>& v, int64_t ld) { return {v.data(), ld}; }

// ---- forward steps in any precision, on copies of the inputs ----
//
// The fused forward kernels production runs: h_prev [rows, P] times W_hh [gates * H, P] (as
// stored, or packed into panels here by the layout step_kernels.h documents) plus the step's
// x W_ih^T rows and biases, then the gate math. `save` is on: the LSTM and GRU write the
// activated gates backward reads.

enum class Layout { kStored, kPacked };

// W_hh in panels of `units` units: panel p, row k: [sub-block][gate][lane] (units past H zero).
template <class T>
std::vector<T> pack(const std::vector<double>& w, int64_t gates, int64_t H, int64_t P,
                    int64_t units, int64_t width) {
  const int64_t count = (H + units - 1) / units, stride = P * units * gates;
  std::vector<T> packed(count * stride, T(0));
  for (int64_t p = 0; p < count; ++p) {
    for (int64_t k = 0; k < P; ++k) {
      T* row = packed.data() + p * stride + k * units * gates;
      for (int64_t sub = 0; sub < units / width; ++sub) {
        for (int64_t g = 0; g < gates; ++g) {
          for (int64_t lane = 0; lane < width; ++lane) {
            const int64_t unit = p * units + sub * width + lane;
            if (unit < H) row[(sub * gates + g) * width + lane] = T(w[(g * H + unit) * P + k]);
          }
        }
      }
    }
  }
  return packed;
}

// The weights, h_prev and panels of one fused forward step; what the step struct points to.
template <class T>
struct Fused {
  std::vector<T> w_stored, w_packed, h_prev;
  Panels<T> panels;

  Fused(const StepKernels<T>& k, CellKind cell, Layout layout, int64_t H, int64_t P,
        const std::vector<double>& w, const std::vector<double>& h)
      : w_stored(w.begin(), w.end()), h_prev(h.begin(), h.end()) {
    const int64_t gates = gate_count(cell), width = k.vector_width;
    panels.inner = P;
    panels.hidden = H;
    panels.units = panel_vectors(cell) * width;
    panels.count = (H + panels.units - 1) / panels.units;
    panels.packed = layout == Layout::kPacked;
    if (panels.packed) {
      w_packed = pack<T>(w, gates, H, P, panels.units, width);
      panels.weights = WeightOperand<T>::of(w_packed.data());
      panels.stride = P * panels.units * gates;
    } else {
      panels.weights = WeightOperand<T>::of(w_stored.data());
    }
  }

  template <class Step>
  FusedForwardStep<Step, T> step(const Step& s, int64_t P) const {
    FusedForwardStep<Step, T> f;
    f.step = s;
    f.h_prev = {h_prev.data(), P};
    f.w = panels;
    f.panel_begin = 0;
    f.panel_end = panels.count;
    f.save = true;
    return f;
  }
};

struct Inputs {  // of one step of a cell: H units, h_prev of P values
  int64_t rows, H, P;
  std::vector<double> pre;     // [rows, gates * H]: x W_ih^T
  std::vector<double> w_hh;    // [gates * H, P]
  std::vector<double> h_prev;  // [rows, P]
  std::vector<double> b_ih, b_hh;
  std::vector<double> c_prev;  // [rows, H], the LSTM's
};

Inputs random_inputs(std::mt19937& rng, CellKind cell, int64_t rows, int64_t H, int64_t P) {
  const int64_t G = gate_count(cell) * H;
  return {rows, H, P, random_vector(rng, rows * G, 2.0), random_vector(rng, G * P, 0.5),
          random_vector(rng, rows * P), random_vector(rng, G), random_vector(rng, G),
          random_vector(rng, rows * H)};
}

struct LstmOut { std::vector<double> gates, c, h; };

template <class T>
LstmOut lstm_forward(const StepKernels<T>& k, Layout layout, const Inputs& in) {
  const int64_t rows = in.rows, H = in.H;
  const Fused<T> fused(k, CellKind::kLstm, layout, H, in.P, in.w_hh, in.h_prev);
  std::vector<T> gates(in.pre.begin(), in.pre.end()), c(in.c_prev.begin(), in.c_prev.end());
  std::vector<T> c_saved(rows * H), h(rows * H);
  std::vector<T> b_ih(in.b_ih.begin(), in.b_ih.end()), b_hh(in.b_hh.begin(), in.b_hh.end());
  LstmForwardStep<T> s;
  s.rows = rows;
  s.hidden = H;
  s.gates = rows_of(gates, 4 * H);
  s.b_ih = b_ih.data();
  s.b_hh = b_hh.data();
  s.c = rows_of(c, H);
  s.c_saved = rows_of(c_saved, H);
  s.h = rows_of(h, H);
  k.template cell<CellKind::kLstm>().fused_forward(fused.step(s, in.P));
  for (int64_t i = 0; i < rows * H; ++i) expect_close("lstm c_saved = c", c_saved[i], c[i], 0);
  return {{gates.begin(), gates.end()}, {c.begin(), c.end()}, {h.begin(), h.end()}};
}

struct GruOut { std::vector<double> gates, h; };

template <class T>
GruOut gru_forward(const StepKernels<T>& k, Layout layout, const Inputs& in) {
  const int64_t rows = in.rows, H = in.H;
  const Fused<T> fused(k, CellKind::kGru, layout, H, H, in.w_hh, in.h_prev);
  std::vector<T> gates(rows * 4 * H), h(rows * H);
  std::vector<T> b_ih(in.b_ih.begin(), in.b_ih.end()), b_hh(in.b_hh.begin(), in.b_hh.end());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < 3 * H; ++j) gates[r * 4 * H + j] = T(in.pre[r * 3 * H + j]);
  }
  GruForwardStep<T> s;
  s.rows = rows;
  s.hidden = H;
  s.gates = rows_of(gates, 4 * H);
  s.b_ih = b_ih.data();
  s.b_hh = b_hh.data();
  s.h_prev = const_rows_of(fused.h_prev, H);
  s.h = rows_of(h, H);
  k.template cell<CellKind::kGru>().fused_forward(fused.step(s, H));
  return {{gates.begin(), gates.end()}, {h.begin(), h.end()}};
}

template <class T>
std::vector<double> rnn_forward(const StepKernels<T>& k, bool relu, Layout layout,
                                const Inputs& in) {
  const int64_t rows = in.rows, H = in.H;
  const CellKind cell = relu ? CellKind::kRnnRelu : CellKind::kRnnTanh;
  const Fused<T> fused(k, cell, layout, H, in.P, in.w_hh, in.h_prev);
  std::vector<T> pre(in.pre.begin(), in.pre.end()), h(rows * H);
  std::vector<T> b_ih(in.b_ih.begin(), in.b_ih.end()), b_hh(in.b_hh.begin(), in.b_hh.end());
  RnnForwardStep<T> s;
  s.rows = rows;
  s.hidden = H;
  s.pre = rows_of(pre, H);
  s.b_ih = b_ih.data();
  s.b_hh = b_hh.data();
  s.h = rows_of(h, H);
  (relu ? k.template cell<CellKind::kRnnRelu>().fused_forward
        : k.template cell<CellKind::kRnnTanh>().fused_forward)(fused.step(s, in.P));
  return {h.begin(), h.end()};
}

// dh_prev (+)= dgates [rows, G] W_hh [G, P], by the backward's recurrent kernel.
std::vector<double> hidden_grad(const StepKernels<double>& k, const std::vector<double>& dgates,
                                const std::vector<double>& w_hh, int64_t rows, int64_t G,
                                int64_t P, std::vector<double> dh, bool accumulate) {
  HiddenGradStep<double> g;
  g.rows = rows;
  g.inner = G;
  g.dgates = const_rows_of(dgates, G);
  g.w = WeightOperand<double>::of(w_hh.data());
  g.ldw = P;
  g.dh = rows_of(dh, P);
  g.col_begin = 0;
  g.col_end = P;
  g.accumulate = accumulate;
  k.hidden_grad(g);
  return dh;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

void check_float_matches_double(const std::string& isa, const StepKernels<float>& f,
                                const StepKernels<double>& d, std::mt19937& rng) {
  for (Layout layout : {Layout::kStored, Layout::kPacked}) {
    for (int64_t rows : {3, 13}) {  // 13: tiles of several heights in the packed layout
      for (int64_t H : {1, 7, 16, 19, 40}) {
        const std::string tag = isa + (layout == Layout::kPacked ? " packed" : " stored") +
                                " rows=" + std::to_string(rows) + " H=" + std::to_string(H);
        const Inputs lstm = random_inputs(rng, CellKind::kLstm, rows, H, H == 19 ? 6 : H);
        LstmOut a = lstm_forward(f, layout, lstm), b = lstm_forward(d, layout, lstm);
        for (size_t i = 0; i < b.h.size(); ++i) expect_close(tag + " lstm h", a.h[i], b.h[i], 1e-5);
        for (size_t i = 0; i < b.c.size(); ++i) expect_close(tag + " lstm c", a.c[i], b.c[i], 1e-5);
        for (size_t i = 0; i < b.gates.size(); ++i) {
          expect_close(tag + " lstm gates", a.gates[i], b.gates[i], 1e-5);
        }
        const Inputs gru = random_inputs(rng, CellKind::kGru, rows, H, H);
        GruOut ga = gru_forward(f, layout, gru), gb = gru_forward(d, layout, gru);
        for (size_t i = 0; i < gb.h.size(); ++i) {
          expect_close(tag + " gru h", ga.h[i], gb.h[i], 1e-5);
        }
        for (size_t i = 0; i < gb.gates.size(); ++i) {
          expect_close(tag + " gru gates", ga.gates[i], gb.gates[i], 1e-5);
        }
        for (bool relu : {false, true}) {
          const Inputs rnn = random_inputs(rng, CellKind::kRnnTanh, rows, H, H);
          auto ra = rnn_forward(f, relu, layout, rnn), rb = rnn_forward(d, relu, layout, rnn);
          for (size_t i = 0; i < rb.size(); ++i) expect_close(tag + " rnn h", ra[i], rb[i], 1e-5);
        }
      }
    }
  }
}

// The double forward against a product and gate math written here, from torch.nn's formulas.
void check_double_against_formulas(const StepKernels<double>& k, std::mt19937& rng) {
  auto sigmoid = [](double x) { return 1 / (1 + std::exp(-x)); };
  for (Layout layout : {Layout::kStored, Layout::kPacked}) {
    const int64_t rows = 5, H = 9, P = 9;
    const Inputs in = random_inputs(rng, CellKind::kLstm, rows, H, P);
    const LstmOut o = lstm_forward(k, layout, in);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < H; ++j) {
        double g[4];
        for (int q = 0; q < 4; ++q) {
          const int64_t row = q * H + j;
          g[q] = in.pre[r * 4 * H + row] + in.b_ih[row] + in.b_hh[row];
          for (int64_t p = 0; p < P; ++p) g[q] += in.h_prev[r * P + p] * in.w_hh[row * P + p];
        }
        const double c = sigmoid(g[1]) * in.c_prev[r * H + j] + sigmoid(g[0]) * std::tanh(g[2]);
        expect_close("formula lstm c", o.c[r * H + j], c, 1e-12);
        expect_close("formula lstm h", o.h[r * H + j], sigmoid(g[3]) * std::tanh(c), 1e-12);
      }
    }
    const Inputs gru = random_inputs(rng, CellKind::kGru, rows, H, H);
    const GruOut go = gru_forward(k, layout, gru);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < H; ++j) {
        double x[3], h[3];
        for (int q = 0; q < 3; ++q) {
          const int64_t row = q * H + j;
          x[q] = gru.pre[r * 3 * H + row] + gru.b_ih[row];
          h[q] = gru.b_hh[row];
          for (int64_t p = 0; p < H; ++p) h[q] += gru.h_prev[r * H + p] * gru.w_hh[row * H + p];
        }
        const double rg = sigmoid(x[0] + h[0]), z = sigmoid(x[1] + h[1]);
        const double n = std::tanh(x[2] + rg * h[2]);
        expect_close("formula gru h", go.h[r * H + j], (1 - z) * n + z * gru.h_prev[r * H + j],
                     1e-12);
      }
    }
  }
}

void check_lstm_backward(const StepKernels<double>& k, std::mt19937& rng) {
  const int64_t rows = 2, H = 5, P = 3;
  Inputs in = random_inputs(rng, CellKind::kLstm, rows, H, P);
  auto wh = random_vector(rng, rows * H), wc = random_vector(rng, rows * H);  // loss weights
  auto loss = [&] {
    LstmOut o = lstm_forward(k, Layout::kPacked, in);
    return dot(wh, o.h) + dot(wc, o.c);
  };
  LstmOut o = lstm_forward(k, Layout::kPacked, in);
  std::vector<double> dc = wc, dgates(rows * 4 * H), r(rows * H);
  LstmBackwardStep<double> s;
  s.rows = rows;
  s.hidden = H;
  s.gates = const_rows_of(o.gates, 4 * H);
  s.c = const_rows_of(o.c, H);
  s.c_prev = const_rows_of(in.c_prev, H);
  s.dh = const_rows_of(wh, H);
  s.dc = rows_of(dc, H);
  s.dgates = rows_of(dgates, 4 * H);
  s.r = rows_of(r, H);
  k.cell<CellKind::kLstm>().backward(s);
  finite_difference("lstm d(pre)", in.pre, loss, dgates);
  finite_difference("lstm d(c_prev)", in.c_prev, loss, dc);
  finite_difference("lstm d(h_prev)", in.h_prev, loss,
                    hidden_grad(k, dgates, in.w_hh, rows, 4 * H, P,
                                std::vector<double>(rows * P), false));
  for (size_t i = 0; i < r.size(); ++i) expect_close("lstm r = h", r[i], o.h[i], 1e-12);
}

void check_gru_backward(const StepKernels<double>& k, std::mt19937& rng) {
  const int64_t rows = 2, H = 5;
  Inputs in = random_inputs(rng, CellKind::kGru, rows, H, H);
  auto w = random_vector(rng, rows * H);
  auto loss = [&] { return dot(w, gru_forward(k, Layout::kStored, in).h); };
  GruOut o = gru_forward(k, Layout::kStored, in);
  std::vector<double> dh = w, d_ih(rows * 3 * H), d_hh(rows * 3 * H);
  GruBackwardStep<double> s;
  s.rows = rows;
  s.hidden = H;
  s.gates = const_rows_of(o.gates, 4 * H);
  s.h_prev = const_rows_of(in.h_prev, H);
  s.dh = rows_of(dh, H);
  s.dgates_ih = rows_of(d_ih, 3 * H);
  s.dgates_hh = rows_of(d_hh, 3 * H);
  k.cell<CellKind::kGru>().backward(s);
  finite_difference("gru d(x W_ih)", in.pre, loss, d_ih);
  finite_difference("gru d(b_hh)", in.b_hh, loss, [&] {
    std::vector<double> sum(3 * H);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < 3 * H; ++j) sum[j] += d_hh[r * 3 * H + j];
    }
    return sum;
  }());
  // the direct part (dh) plus the part through the product
  finite_difference("gru d(h_prev)", in.h_prev, loss,
                    hidden_grad(k, d_hh, in.w_hh, rows, 3 * H, H, dh, true));
}

void check_rnn_backward(const StepKernels<double>& k, std::mt19937& rng) {
  const int64_t rows = 2, H = 5;
  for (bool relu : {false, true}) {
    Inputs in = random_inputs(rng, CellKind::kRnnTanh, rows, H, H);
    auto w = random_vector(rng, rows * H);
    auto loss = [&] { return dot(w, rnn_forward(k, relu, Layout::kPacked, in)); };
    std::vector<double> h = rnn_forward(k, relu, Layout::kPacked, in), dpre(rows * H);
    RnnBackwardStep<double> s;
    s.rows = rows;
    s.hidden = H;
    s.h = const_rows_of(h, H);
    s.dh = const_rows_of(w, H);
    s.dpre = rows_of(dpre, H);
    (relu ? k.cell<CellKind::kRnnRelu>().backward : k.cell<CellKind::kRnnTanh>().backward)(s);
    const std::string name = relu ? "rnn relu" : "rnn tanh";
    finite_difference(name + " d(pre)", in.pre, loss, dpre);
    finite_difference(name + " d(h_prev)", in.h_prev, loss,
                      hidden_grad(k, dpre, in.w_hh, rows, H, H, std::vector<double>(rows * H),
                                  false));
  }
}

}  // namespace

int main() {
  std::mt19937 rng(12345);
  const StepKernels<double>& reference = step_kernels<double>();
  for (Isa isa : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512}) {
    const StepKernels<float>* kernels = step_kernels_f32_for(isa);
    if (kernels == nullptr) {
      std::printf("skip %s: not supported by this CPU\n", isa_name(isa));
      continue;
    }
    check_float_matches_double(isa_name(isa), *kernels, reference, rng);
  }
  check_double_against_formulas(reference, rng);
  check_lstm_backward(reference, rng);
  check_gru_backward(reference, rng);
  check_rnn_backward(reference, rng);
  std::printf("%d comparisons, %d out of tolerance\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
