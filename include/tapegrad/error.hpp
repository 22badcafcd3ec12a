// tapegrad::Error and TG_CHECK: every misuse throws an Error whose message names the op, the shapes,
// the file or the flag and what was expected. The library never aborts or exits.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <cstdint>
#include <iosfwd>
#include <utility>
#include <vector>

namespace tapegrad {

// Shapes print as "[3, 4]" in messages (declared here so that TG_CHECK finds it; defined in tensor.cpp).
std::ostream& operator<<(std::ostream& os, const std::vector<int64_t>& shape);

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}
}  // namespace detail

// Throws tapegrad::Error with the message built from `parts` (streamed), e.g.
//   TG_CHECK(a.size(1) == b.size(0), "matmul: ", a.shape(), " x ", b.shape(), ": inner dims differ");
#define TG_CHECK(cond, ...)                                                  \
  do {                                                                       \
    if (!(cond)) throw ::tapegrad::Error(::tapegrad::detail::concat(__VA_ARGS__)); \
  } while (0)

#define TG_FAIL(...) throw ::tapegrad::Error(::tapegrad::detail::concat(__VA_ARGS__))

}  // namespace tapegrad
