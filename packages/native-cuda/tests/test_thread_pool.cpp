// Thread pool: every task of every job runs exactly once, back-to-back jobs of different
// sizes included. Before jobs had their own counters, a worker leaving job k's loop late
// could claim an index of job k+1 that the caller also claimed, and push the done count past
// the total so that the caller waited forever (seen as a hang in the generation benchmark).
#include <atomic>
#include <stdexcept>
#include <vector>
#include "core/thread_pool.h"
#include "harness.h"

using namespace fovea;

FOVEA_TEST(thread_pool_runs_each_task_once_across_many_small_jobs) {
  const int saved = num_threads();
  for (int threads : {2, 3, 4}) {
    set_num_threads(threads);
    std::vector<std::atomic<int>> hits(64);
    long bad = 0;
    for (int job = 0; job < 20000; ++job) {
      // Alternate few and many tasks: the pattern that exposed the race.
      const int64_t n = job % 2 ? 1 + job % 5 : 8 + job % 24;
      for (int64_t i = 0; i < n; ++i) hits[i].store(0);
      parallel_tasks(int(n), [&](int i, int) { hits[i].fetch_add(1); });
      for (int64_t i = 0; i < n; ++i) bad += hits[i].load() != 1;
    }
    EXPECT_TRUE(bad == 0);
  }
  set_num_threads(saved);
}

FOVEA_TEST(thread_pool_rethrows_a_task_error_and_stays_usable) {
  const int saved = num_threads();
  set_num_threads(3);
  EXPECT_THROWS(parallel_tasks(16, [](int i, int) { if (i == 7) throw std::runtime_error("task 7"); }));
  std::atomic<int> sum{0};
  parallel_for(0, 1000, 1, [&](int64_t b, int64_t e) { for (int64_t i = b; i < e; ++i) sum += int(i); });
  EXPECT_TRUE(sum.load() == 999 * 1000 / 2);
  set_num_threads(saved);
}
