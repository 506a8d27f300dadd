// Binding for the counter-based random fill (ops/random/random.h), CPU only for now:
//   randomFill(out, kind, seed, offset, a, b)
// out contiguous float; kind 0 = uniform [a, b), 1 = normal(mean a, std b); seed and offset are
// integers in [0, 2^53] (JS numbers). Element i uses Philox counter offset + i.
#include <cmath>
#include "core/error.h"
#include "napi/binding.h"
#include "ops/random/random.h"

namespace fovea::napi {
namespace {

constexpr int64_t kMaxSafe = int64_t(1) << 53;

Napi::Value random_fill_js(const Napi::CallbackInfo& info) {
  const char* op = "randomFill";
  TensorView out = get_view(info, 0, op, "out");
  const int64_t kind = get_int(info, 1, op, "kind");
  const int64_t seed = get_int(info, 2, op, "seed");
  const int64_t offset = get_int(info, 3, op, "offset");
  const double a = get_double(info, 4, op, "a");
  const double b = get_double(info, 5, op, "b");
  if (kind < 0 || kind >= int64_t(RandomKind::Count))
    fail(op, ": kind must be 0 (uniform) or 1 (normal), got ", kind);
  if (seed < 0 || seed > kMaxSafe) fail(op, ": seed must be an integer in [0, 2^53], got ", seed);
  if (offset < 0 || offset > kMaxSafe)
    fail(op, ": offset must be an integer in [0, 2^53], got ", offset);
  if (!std::isfinite(a) || !std::isfinite(b)) fail(op, ": a and b must be finite, got ", a, ", ", b);
  if (kind == 0 && !(a <= b)) fail(op, ": uniform needs a <= b, got [", a, ", ", b, ")");
  if (kind == 1 && !(b >= 0)) fail(op, ": normal needs std b >= 0, got ", b);
  check_float(op, "out", out);
  check_contiguous(op, "out", out);
  if (out.device >= 0) fail(op, ": cuda is not supported for this op yet");
  random_fill_cpu(out, RandomKind(kind), uint64_t(seed), uint64_t(offset), a, b);
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("randomFill", random_fill_js);

}  // namespace fovea::napi
