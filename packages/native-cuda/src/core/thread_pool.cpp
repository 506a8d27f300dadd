// Thread pool: a fixed set of workers that sleep on a condition variable between jobs.
// One job runs at a time (kernels are synchronous calls from the single JS thread).
// Chunks are claimed with an atomic counter so uneven chunks balance themselves.
#include "core/thread_pool.h"
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace fovea {
namespace {

thread_local bool tl_in_worker = false;

// Each job is its own object, shared with the workers that wake for it. A worker that wakes
// late, or is still leaving the previous job's loop when the next job starts, only ever
// touches the counters of the job it took, which are exhausted by then: it can neither claim a
// task of the new job twice nor push the new job's done count past its total (the old shared
// counters allowed both, and the caller then waited forever for an exact count).
struct Job {
  const std::function<void(int64_t)>* task = nullptr;
  int64_t ntasks = 0;
  std::atomic<int64_t> next{0}, done{0};
  std::mutex err_m;
  std::exception_ptr error;
};

class Pool {
 public:
  explicit Pool(int n) : n_(n) {
    for (int i = 1; i < n_; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    { std::lock_guard<std::mutex> g(m_); stop_ = true; ++gen_; }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return n_; }

  // Runs task(i) for i in [0, ntasks) on the pool; the caller participates.
  void run(int64_t ntasks, const std::function<void(int64_t)>& task) {
    std::lock_guard<std::mutex> job_lock(job_m_);
    auto job = std::make_shared<Job>();
    job->task = &task;
    job->ntasks = ntasks;
    { std::lock_guard<std::mutex> g(m_); job_ = job; ++gen_; }
    cv_.notify_all();
    work(*job);
    // Wait until every claimed task finished.
    {
      std::unique_lock<std::mutex> g(m_);
      done_cv_.wait(g, [&] { return job->done.load() >= job->ntasks; });
      job_.reset();
    }
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void work(Job& job) {
    bool prev = tl_in_worker;
    tl_in_worker = true;
    for (;;) {
      int64_t i = job.next.fetch_add(1);
      if (i >= job.ntasks) break;
      try { (*job.task)(i); } catch (...) {
        std::lock_guard<std::mutex> g(job.err_m);
        if (!job.error) job.error = std::current_exception();
      }
      if (job.done.fetch_add(1) + 1 == job.ntasks) {
        std::lock_guard<std::mutex> g(m_);
        done_cv_.notify_all();
      }
    }
    tl_in_worker = prev;
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> g(m_);
        cv_.wait(g, [&] { return gen_ != seen; });
        seen = gen_;
        if (stop_) return;
        job = job_;
      }
      if (job) work(*job);
    }
  }

  int n_;
  std::vector<std::thread> workers_;
  std::mutex m_, job_m_;
  std::condition_variable cv_, done_cv_;
  uint64_t gen_ = 0;
  bool stop_ = false;
  std::shared_ptr<Job> job_;  // the running job, guarded by m_
};

int default_threads() {
  if (const char* e = std::getenv("FOVEA_NUM_THREADS")) {
    int n = std::atoi(e);
    if (n >= 1) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? int(hc) : 1;
}

std::unique_ptr<Pool>& pool() {
  static std::unique_ptr<Pool> p(new Pool(default_threads()));
  return p;
}

}  // namespace

int num_threads() { return pool()->size(); }
void set_num_threads(int n) { pool().reset(new Pool(n < 1 ? 1 : n)); }

void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn) {
  int64_t n = end - begin;
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int nt = num_threads();
  if (nt == 1 || tl_in_worker || n <= grain) { fn(begin, end); return; }
  // About 4 chunks per thread for balance, each at least `grain` items.
  int64_t chunks = std::min<int64_t>(int64_t(nt) * 4, (n + grain - 1) / grain);
  int64_t step = (n + chunks - 1) / chunks;
  chunks = (n + step - 1) / step;
  pool()->run(chunks, [&](int64_t c) {
    int64_t b = begin + c * step, e = std::min(end, b + step);
    fn(b, e);
  });
}

void parallel_tasks(int num_tasks, const std::function<void(int, int)>& fn) {
  if (num_tasks <= 1 || tl_in_worker) {
    for (int i = 0; i < num_tasks; ++i) fn(i, num_tasks);
    return;
  }
  pool()->run(num_tasks, [&](int64_t i) { fn(int(i), num_tasks); });
}

}  // namespace fovea
