// The CPU thread pool every kernel shares. Sized to the machine's cores
// (FOVEA_NUM_THREADS overrides). parallel_for splits [begin, end) into chunks of at least
// `grain` items; the calling thread works too. A call made from inside a worker runs
// serially, so kernels may nest parallel_for without deadlock.
#pragma once
#include <cstdint>
#include <functional>

namespace fovea {

int num_threads();
void set_num_threads(int n);  // n >= 1; rebuilds the pool

// fn(chunk_begin, chunk_end) is called for disjoint chunks covering [begin, end).
void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn);

// Calls fn(thread_index, num_tasks) once for each of num_tasks tasks (num_tasks <= num_threads()).
void parallel_tasks(int num_tasks, const std::function<void(int, int)>& fn);

}  // namespace fovea
