// Runs every registered native test; prints one line per test and a closing summary.
#include <cstring>
#include <exception>
#include "harness.h"

namespace fovea_test {
std::vector<TestCase>& registry() { static std::vector<TestCase> r; return r; }
int g_failures = 0;
}  // namespace fovea_test

int main(int argc, char** argv) {
  int passed = 0, failed = 0, skipped = 0;
  const char* filter = argc > 1 ? argv[1] : nullptr;
  for (auto& t : fovea_test::registry()) {
    if (filter && !std::strstr(t.name, filter)) continue;
    fovea_test::g_failures = 0;
    try {
      t.fn();
    } catch (const fovea_test::Skip& s) {
      std::printf("SKIP %s (%s)\n", t.name, s.why.c_str());
      ++skipped;
      continue;
    } catch (const std::exception& e) {
      std::printf("    exception: %s\n", e.what());
      ++fovea_test::g_failures;
    }
    if (fovea_test::g_failures) { std::printf("FAIL %s\n", t.name); ++failed; }
    else { std::printf("ok   %s\n", t.name); ++passed; }
  }
  std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed ? 1 : 0;
}
