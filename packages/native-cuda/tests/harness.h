// A minimal C++ test harness (no dependencies) so the native tests run anywhere, including
// a GPU machine without Node. FOVEA_TEST(name) { ... } registers a test; EXPECT_* record
// failures; FOVEA_SKIP("why") skips (e.g. no GPU). main() is in test_main.cpp and prints
// "N passed, N failed, N skipped".
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace fovea_test {
struct TestCase { const char* name; std::function<void()> fn; };
std::vector<TestCase>& registry();
struct Registrar { Registrar(const char* n, std::function<void()> f) { registry().push_back({n, std::move(f)}); } };
struct Skip { std::string why; };
extern int g_failures;  // failures in the running test
inline void report(const char* file, int line, const std::string& msg) {
  std::printf("    %s:%d: %s\n", file, line, msg.c_str());
  ++g_failures;
}
}  // namespace fovea_test

#define FOVEA_CAT2(a, b) a##b
#define FOVEA_CAT(a, b) FOVEA_CAT2(a, b)
#define FOVEA_TEST(name)                                                               \
  static void name();                                                                  \
  static fovea_test::Registrar FOVEA_CAT(reg_, name)(#name, name);                      \
  static void name()
#define FOVEA_SKIP(why) throw fovea_test::Skip{why}
#define EXPECT_TRUE(c) \
  do { if (!(c)) fovea_test::report(__FILE__, __LINE__, "expected " #c); } while (0)
#define EXPECT_NEAR(a, b, tol)                                                          \
  do {                                                                                  \
    double _a = (a), _b = (b);                                                          \
    if (!(std::fabs(_a - _b) <= (tol)))                                                 \
      fovea_test::report(__FILE__, __LINE__, std::string(#a " = ") + std::to_string(_a) + \
                         ", " #b " = " + std::to_string(_b));                           \
  } while (0)
#define EXPECT_THROWS(stmt)                                                             \
  do {                                                                                  \
    bool _threw = false;                                                                \
    try { stmt; } catch (const std::exception&) { _threw = true; }                     \
    if (!_threw) fovea_test::report(__FILE__, __LINE__, "expected to throw: " #stmt);   \
  } while (0)
