// Torch-free checks of the CPU step kernels (built by CMakeLists.txt, run by ctest and by
// tests/test_cpp.py):
// 1. every instruction set's float kernels agree with the double-precision baseline kernels;
// 2. the double backward kernels agree with central finite differences of the forward kernels.
// Exits non-zero on the first failure, printing what differed.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "cpu/step_kernels.h"

using namespace fastrnn::cpu;

namespace {

int checks = 0;
int failures = 0;

void expect_close(const std::string& what, double actual, double expected, double tol) {
  ++checks;
  if (!(std::fabs(actual - expected) <= tol * (1.0 + std::fabs(expected)))) {
    if (failures < 20) {
      std::printf("FAIL %s: got %.10g, expected %.10g\n", what.c_str(), actual, expected);
    }
    ++failures;
  }
}

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

struct LstmOut { std::vector<double> gates, c, h; };

template <class T>
LstmOut lstm_forward(const StepKernels<T>& k, int64_t rows, int64_t H, const std::vector<double>& pre,
                     const std::vector<double>& bias, const std::vector<double>& c_prev) {
  std::vector<T> gates(pre.begin(), pre.end()), c(c_prev.begin(), c_prev.end()), h(rows * H);
  std::vector<T> b(bias.begin(), bias.end());
  LstmForwardStep<T> s;
  s.rows = rows;
  s.hidden = H;
  s.gates = rows_of(gates, 4 * H);
  s.b_ih = b.data();
  s.c = rows_of(c, H);
  s.h = rows_of(h, H);
  k.lstm_forward(s);
  return {{gates.begin(), gates.end()}, {c.begin(), c.end()}, {h.begin(), h.end()}};
}

struct GruOut { std::vector<double> gates, h; };

template <class T>
GruOut gru_forward(const StepKernels<T>& k, int64_t rows, int64_t H, const std::vector<double>& x_pre,
                   const std::vector<double>& hh, const std::vector<double>& b_ih,
                   const std::vector<double>& b_hh, const std::vector<double>& h_prev) {
  std::vector<T> gates(rows * 4 * H), hh_t(hh.begin(), hh.end()), h(h_prev.begin(), h_prev.end());
  std::vector<T> bi(b_ih.begin(), b_ih.end()), bh(b_hh.begin(), b_hh.end());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < 3 * H; ++j) gates[r * 4 * H + j] = T(x_pre[r * 3 * H + j]);
  }
  GruForwardStep<T> s;
  s.rows = rows;
  s.hidden = H;
  s.gates = rows_of(gates, 4 * H);
  s.hh = const_rows_of(hh_t, 3 * H);
  s.b_ih = bi.data();
  s.b_hh = bh.data();
  std::vector<T> h_prev_t(h_prev.begin(), h_prev.end());
  s.h_prev = const_rows_of(h_prev_t, H);
  s.h = rows_of(h, H);
  k.gru_forward(s);
  return {{gates.begin(), gates.end()}, {h.begin(), h.end()}};
}

template <class T>
std::vector<double> rnn_forward(const StepKernels<T>& k, bool relu, int64_t rows, int64_t H,
                                const std::vector<double>& pre) {
  std::vector<T> p(pre.begin(), pre.end()), h(rows * H);
  RnnForwardStep<T> s;
  s.rows = rows;
  s.hidden = H;
  s.pre = rows_of(p, H);
  s.h = rows_of(h, H);
  (relu ? k.rnn_relu_forward : k.rnn_tanh_forward)(s);
  return {h.begin(), h.end()};
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// d loss / d v[i] by central differences.
void finite_difference(const std::string& name, std::vector<double>& v,
                       const std::function<double()>& loss, const std::vector<double>& analytic) {
  const double eps = 1e-6;
  for (size_t i = 0; i < v.size(); ++i) {
    const double saved = v[i];
    v[i] = saved + eps;
    const double up = loss();
    v[i] = saved - eps;
    const double down = loss();
    v[i] = saved;
    expect_close(name + "[" + std::to_string(i) + "]", analytic[i], (up - down) / (2 * eps), 1e-6);
  }
}

void check_float_matches_double(const std::string& isa, const StepKernels<float>& f,
                                const StepKernels<double>& d, std::mt19937& rng) {
  for (int64_t H : {1, 7, 16, 19, 40}) {
    const int64_t rows = 3;
    const std::string tag = isa + " H=" + std::to_string(H);
    auto pre = random_vector(rng, rows * 4 * H, 2.0), bias = random_vector(rng, 4 * H);
    auto c_prev = random_vector(rng, rows * H);
    LstmOut a = lstm_forward(f, rows, H, pre, bias, c_prev), b = lstm_forward(d, rows, H, pre, bias, c_prev);
    for (size_t i = 0; i < b.h.size(); ++i) expect_close(tag + " lstm h", a.h[i], b.h[i], 1e-6);
    for (size_t i = 0; i < b.c.size(); ++i) expect_close(tag + " lstm c", a.c[i], b.c[i], 1e-6);
    for (size_t i = 0; i < b.gates.size(); ++i) expect_close(tag + " lstm gates", a.gates[i], b.gates[i], 1e-6);

    auto x_pre = random_vector(rng, rows * 3 * H, 2.0), hh = random_vector(rng, rows * 3 * H, 2.0);
    auto b_ih = random_vector(rng, 3 * H), b_hh = random_vector(rng, 3 * H), h_prev = random_vector(rng, rows * H);
    GruOut ga = gru_forward(f, rows, H, x_pre, hh, b_ih, b_hh, h_prev);
    GruOut gb = gru_forward(d, rows, H, x_pre, hh, b_ih, b_hh, h_prev);
    for (size_t i = 0; i < gb.h.size(); ++i) expect_close(tag + " gru h", ga.h[i], gb.h[i], 1e-6);
    for (size_t i = 0; i < gb.gates.size(); ++i) expect_close(tag + " gru gates", ga.gates[i], gb.gates[i], 1e-6);

    auto rnn_pre = random_vector(rng, rows * H, 2.0);
    for (bool relu : {false, true}) {
      auto ra = rnn_forward(f, relu, rows, H, rnn_pre), rb = rnn_forward(d, relu, rows, H, rnn_pre);
      for (size_t i = 0; i < rb.size(); ++i) expect_close(tag + " rnn h", ra[i], rb[i], 1e-6);
    }
  }
}

void check_lstm_backward(const StepKernels<double>& k, std::mt19937& rng) {
  const int64_t rows = 2, H = 5;
  auto pre = random_vector(rng, rows * 4 * H), bias = random_vector(rng, 4 * H);
  auto c_prev = random_vector(rng, rows * H);
  auto wh = random_vector(rng, rows * H), wc = random_vector(rng, rows * H);  // loss weights
  auto loss = [&] {
    LstmOut o = lstm_forward(k, rows, H, pre, bias, c_prev);
    return dot(wh, o.h) + dot(wc, o.c);
  };
  LstmOut o = lstm_forward(k, rows, H, pre, bias, c_prev);
  std::vector<double> dc = wc, dgates(rows * 4 * H), r(rows * H);
  LstmBackwardStep<double> s;
  s.rows = rows;
  s.hidden = H;
  s.gates = const_rows_of(o.gates, 4 * H);
  s.c = const_rows_of(o.c, H);
  s.c_prev = const_rows_of(c_prev, H);
  s.dh = const_rows_of(wh, H);
  s.dc = rows_of(dc, H);
  s.dgates = rows_of(dgates, 4 * H);
  s.r = rows_of(r, H);
  k.lstm_backward(s);
  finite_difference("lstm d(pre)", pre, loss, dgates);
  finite_difference("lstm d(c_prev)", c_prev, loss, dc);
  for (size_t i = 0; i < r.size(); ++i) expect_close("lstm r = h", r[i], o.h[i], 1e-12);
}

void check_gru_backward(const StepKernels<double>& k, std::mt19937& rng) {
  const int64_t rows = 2, H = 5;
  auto x_pre = random_vector(rng, rows * 3 * H), hh = random_vector(rng, rows * 3 * H);
  auto b_ih = random_vector(rng, 3 * H), b_hh = random_vector(rng, 3 * H);
  auto h_prev = random_vector(rng, rows * H), w = random_vector(rng, rows * H);
  auto loss = [&] { return dot(w, gru_forward(k, rows, H, x_pre, hh, b_ih, b_hh, h_prev).h); };
  GruOut o = gru_forward(k, rows, H, x_pre, hh, b_ih, b_hh, h_prev);
  std::vector<double> dh = w, d_ih(rows * 3 * H), d_hh(rows * 3 * H);
  GruBackwardStep<double> s;
  s.rows = rows;
  s.hidden = H;
  s.gates = const_rows_of(o.gates, 4 * H);
  s.h_prev = const_rows_of(h_prev, H);
  s.dh = rows_of(dh, H);
  s.dgates_ih = rows_of(d_ih, 3 * H);
  s.dgates_hh = rows_of(d_hh, 3 * H);
  k.gru_backward(s);
  finite_difference("gru d(x W_ih)", x_pre, loss, d_ih);
  finite_difference("gru d(h W_hh)", hh, loss, d_hh);
  finite_difference("gru d(h_prev) direct", h_prev, loss, dh);
}

void check_rnn_backward(const StepKernels<double>& k, std::mt19937& rng) {
  const int64_t rows = 2, H = 5;
  for (bool relu : {false, true}) {
    auto pre = random_vector(rng, rows * H), w = random_vector(rng, rows * H);
    auto loss = [&] { return dot(w, rnn_forward(k, relu, rows, H, pre)); };
    std::vector<double> h = rnn_forward(k, relu, rows, H, pre), dpre(rows * H);
    RnnBackwardStep<double> s;
    s.rows = rows;
    s.hidden = H;
    s.h = const_rows_of(h, H);
    s.dh = const_rows_of(w, H);
    s.dpre = rows_of(dpre, H);
    (relu ? k.rnn_relu_backward : k.rnn_tanh_backward)(s);
    finite_difference(relu ? "rnn relu d(pre)" : "rnn tanh d(pre)", pre, loss, dpre);
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
  check_lstm_backward(reference, rng);
  check_gru_backward(reference, rng);
  check_rnn_backward(reference, rng);
  std::printf("%d comparisons, %d out of tolerance\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
