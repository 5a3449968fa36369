// The C++ tests' comparisons: counts every check and prints the first 20 failures.
#pragma once

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

inline int checks = 0;
inline int failures = 0;

// |actual - expected| <= tol * (1 + |expected|); NaN fails.
inline void expect_close(const std::string& what, double actual, double expected, double tol) {
  ++checks;
  if (!(std::fabs(actual - expected) <= tol * (1.0 + std::fabs(expected)))) {
    if (failures < 20) {
      std::printf("FAIL %s: got %.10g, expected %.10g\n", what.c_str(), actual, expected);
    }
    ++failures;
  }
}

// d loss / d v[i] by central differences.
inline void finite_difference(const std::string& name, std::vector<double>& v,
                              const std::function<double()>& loss,
                              const std::vector<double>& analytic) {
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
