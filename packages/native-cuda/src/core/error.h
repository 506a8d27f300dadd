// Kernel-side errors. Kernels throw fovea::Error with a message that names the op and what
// was expected; the Node-API layer turns it into a JavaScript Error (never a crash).
#pragma once
#include <stdexcept>
#include <string>
#include <sstream>

namespace fovea {

struct Error : std::runtime_error {
  explicit Error(const std::string& m) : std::runtime_error(m) {}
};

template <class... A> [[noreturn]] inline void fail(const A&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw Error(os.str());
}

#define FOVEA_CHECK(cond, ...) \
  do { if (!(cond)) ::fovea::fail(__VA_ARGS__); } while (0)

}  // namespace fovea
