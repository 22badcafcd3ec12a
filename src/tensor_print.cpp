// Printing a tensor as PyTorch 1.13 does (torch/_tensor_str.py, default print options): nested rows of
// values of one width, 4 decimals (integral floats as "2.", scientific notation when the magnitudes span
// more than 1000x or leave [1e-4, 1e8]), rows wrapped at 80 columns, and beyond 1000 elements only the
// first and last 3 entries of each dim around "...". Suffixes: a dtype other than f32 / i64, a device other
// than the CPU, grad_fn=<op> or requires_grad=True.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>

#include "tapegrad/autograd.hpp"
#include "tapegrad/tensor.hpp"

namespace tapegrad {

namespace {

constexpr int64_t kThreshold = 1000, kEdgeItems = 3, kLineWidth = 80, kPrecision = 4;

std::string printf_str(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, kPrecision, v);
  return buf;
}

struct Printer {
  const Shape& shape;
  std::vector<int64_t> strides;
  bool summarize, floating;
  std::vector<double> fv;
  std::vector<int64_t> iv;
  bool int_mode = true, sci_mode = false;
  size_t width = 1;

  explicit Printer(const Tensor& t) : shape(t.shape()), strides(t.shape().size(), 1) {
    for (size_t d = strides.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
    summarize = t.numel() > kThreshold;
    floating = t.dtype() != DType::I64;
    if (floating) fv = t.to_vector<double>();
    else iv = t.to_vector<int64_t>();
    choose_format();
  }

  // The positions printed along a dim of size n: all, or the edges around the "..." (marked -1).
  std::vector<int64_t> positions(int64_t n) const {
    std::vector<int64_t> p;
    bool cut = summarize && n > 2 * kEdgeItems;
    for (int64_t i = 0; i < n; ++i) {
      if (cut && i == kEdgeItems) {
        p.push_back(-1);
        i = n - kEdgeItems - 1;
        continue;
      }
      p.push_back(i);
    }
    return p;
  }

  template <class F>
  void visit(size_t d, int64_t off, F&& f) const {
    if (d == shape.size()) return f(off);
    for (int64_t i : positions(shape[d]))
      if (i >= 0) visit(d + 1, off + i * strides[d], f);
  }

  // PyTorch's _Formatter over the printed values: one mode and one width for all of them.
  void choose_format() {
    if (!floating) {
      visit(0, 0, [&](int64_t k) { width = std::max(width, std::to_string(iv[k]).size()); });
      return;
    }
    std::vector<double> vals;
    visit(0, 0, [&](int64_t k) {
      if (std::isfinite(fv[k]) && fv[k] != 0) vals.push_back(fv[k]);
    });
    if (vals.empty()) return;
    double lo = INFINITY, hi = 0;
    for (double v : vals) {
      lo = std::min(lo, std::abs(v));
      hi = std::max(hi, std::abs(v));
      if (v != std::ceil(v)) int_mode = false;
    }
    sci_mode = hi / lo > 1000.0 || hi > 1e8 || (!int_mode && lo < 1e-4);
    for (double v : vals)
      width = std::max(width, sci_mode ? printf_str("%.*e", v).size() : int_mode ? printf_str("%.0f", v).size() + 1
                                                                                 : printf_str("%.*f", v).size());
  }

  std::string format(int64_t k) const {
    std::string s;
    if (!floating) {
      s = std::to_string(iv[k]);
    } else {
      double v = fv[k];
      if (std::isnan(v)) s = "nan";
      else if (std::isinf(v)) s = v > 0 ? "inf" : "-inf";
      else if (sci_mode) s = printf_str("%.*e", v);
      else if (int_mode) s = printf_str("%.0f", v) + ".";
      else s = printf_str("%.*f", v);
    }
    return std::string(width > s.size() ? width - s.size() : 0, ' ') + s;
  }

  std::string str(size_t d, int64_t off, int64_t indent) const {
    if (shape.empty()) return format(0);
    std::vector<std::string> parts;
    for (int64_t i : positions(shape[d])) {
      if (i < 0) parts.push_back(d + 1 == shape.size() ? " ..." : "...");
      else parts.push_back(d + 1 == shape.size() ? format(off + i) : str(d + 1, off + i * strides[d], indent + 1));
    }
    if (d + 1 == shape.size()) {  // a row: as many elements per line as fit
      int64_t per_line = std::max<int64_t>(1, (kLineWidth - indent) / static_cast<int64_t>(width + 2));
      std::string out = "[";
      for (size_t i = 0; i < parts.size(); ++i) {
        if (i > 0) out += i % per_line == 0 ? ",\n" + std::string(indent + 1, ' ') : ", ";
        out += parts[i];
      }
      return out + "]";
    }
    std::string sep = "," + std::string(shape.size() - d - 1, '\n') + std::string(indent + 1, ' ');
    std::string out = "[";
    for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
    return out + "]";
  }
};

}  // namespace

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "tensor(undefined)";
  const std::string prefix = "tensor(";
  const int64_t indent = static_cast<int64_t>(prefix.size());
  std::vector<std::string> suffixes;
  if (t.device() != Device::CPU) suffixes.push_back(std::string("device='") + name(t.device()) + "'");
  std::string body;
  if (t.numel() == 0) {
    if (t.dim() != 1) {
      std::string s = "size=(";
      for (int64_t k = 0; k < t.dim(); ++k) s += (k ? ", " : "") + std::to_string(t.shape()[k]);
      suffixes.push_back(s + ")");
    }
    body = "[]";
  } else {
    body = Printer(t).str(0, 0, indent);
  }
  if (t.dtype() == DType::F64) suffixes.push_back("dtype=f64");
  if (!t.is_leaf()) suffixes.push_back(std::string("grad_fn=<") + t.impl().grad_fn->name + ">");
  else if (t.requires_grad()) suffixes.push_back("requires_grad=True");
  // Suffixes follow on the last line while it stays within 80 columns (PyTorch's _add_suffixes).
  std::string out = prefix + body;
  size_t nl = out.rfind('\n');  // as Python's rfind: -1 when there is none
  int64_t last_line = static_cast<int64_t>(out.size()) - (nl == std::string::npos ? -1 : static_cast<int64_t>(nl)) + 1;
  for (const std::string& s : suffixes) {
    int64_t len = static_cast<int64_t>(s.size());
    if (last_line + len + 2 > kLineWidth) {
      out += ",\n" + std::string(indent, ' ') + s;
      last_line = indent + len;
    } else {
      out += ", " + s;
      last_line += len + 2;
    }
  }
  return os << out << ")";
}

}  // namespace tapegrad
