// A check shared by the initialisation tests of several suites.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

// Values drawn from U(-bound, bound): all inside; with 200 or more of them also both ends reached (within
// 10%: missed with probability 2 * 0.95^200 < 1e-4), mean about 0 (4 standard errors) and standard deviation
// about bound / sqrt(3) (within 10%).
inline void check_uniform(const std::vector<double>& v, double bound, const std::string& what) {
  CAPTURE(what);
  double lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
  CHECK(lo >= -bound);
  CHECK(hi <= bound);
  if (v.size() < 200) return;
  CHECK(lo < -0.9 * bound);
  CHECK(hi > 0.9 * bound);
  double n = static_cast<double>(v.size()), mean = 0, sq = 0;
  for (double x : v) mean += x / n;
  for (double x : v) sq += (x - mean) * (x - mean) / n;
  double sd = bound / std::sqrt(3.0);
  CHECK(std::abs(mean) < 4 * sd / std::sqrt(n));
  CHECK(std::sqrt(sq) == doctest::Approx(sd).epsilon(0.1));
}
