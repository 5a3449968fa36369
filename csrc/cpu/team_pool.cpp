// The threads that run a StageTeam (stage_team.h: run_stages): an OpenMP parallel region of
// torch's intra-op threads, or fastrnn's own pool: the calling thread and up to torch's
// intra-op count minus one helpers, started on first use. An idle helper spins
// for about 50 us (back-to-back calls find it awake), then sleeps on a futex until the next
// call. One call at a time uses the pool; another that arrives meanwhile (from another Python
// thread) runs on its own thread. After fork() the child starts a new pool (the parent's
// helpers do not exist there).
#include "cpu/stage_team.h"

#include <omp.h>
#include <pthread.h>

#include <cstdlib>
#include <cstring>

#include <exception>
#include <memory>
#include <mutex>
#include <thread>

namespace fastrnn::cpu {
namespace {

struct Job {
  Job(int threads, int64_t stages, int64_t chunks, c10::function_ref<void(int64_t, int64_t)> body)
      : schedule(threads, chunks), stages(stages), body(body) {}

  // What each thread of the team runs: body over the chunks it claims, its exceptions kept.
  void run(int id) {
    schedule.run(id, stages, [this](int64_t stage, int64_t chunk) {
      try {
        body(stage, chunk);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    });
  }

  StageTeam schedule;
  const int64_t stages;
  // The caller's; never called once every stage has finished (StageTeam claims nothing then),
  // which is before the caller returns, while a late helper may still hold the Job.
  const c10::function_ref<void(int64_t, int64_t)> body;
  std::atomic<int> next_id{1};  // the calling thread is 0
  std::mutex error_mutex;
  std::exception_ptr error;
};

class Pool {
 public:
  bool try_acquire() { return !busy_.exchange(true, std::memory_order_acquire); }
  void release() { busy_.store(false, std::memory_order_release); }

  // Starts helpers until there are `count`.
  void ensure_helpers(int count) {
    std::lock_guard<std::mutex> lock(mutex_);
    while (helpers_ < count) {
      std::thread([this] { helper_loop(); }).detach();
      ++helpers_;
    }
  }

  void post(std::shared_ptr<Job> job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = std::move(job);
    }
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake(epoch_, helpers_);
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    job_.reset();
  }

 private:
  // About 50 us of pause instructions (25 ns each on the development machine's Zen 4).
  static constexpr int64_t kIdleSpins = 1 << 11;

  void helper_loop() {
    pthread_setname_np(pthread_self(), "fastrnn-helper");
    uint32_t seen = epoch_.load(std::memory_order_acquire);
    for (;;) {
      uint32_t now = epoch_.load(std::memory_order_acquire);
      for (int64_t spins = 0; now == seen && spins < kIdleSpins; ++spins) {
        pause();
        now = epoch_.load(std::memory_order_acquire);
      }
      while (now == seen) {
        sleep_while(epoch_, seen, sleepers_, 0);
        now = epoch_.load(std::memory_order_acquire);
      }
      seen = now;
      std::shared_ptr<Job> job;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        job = job_;
      }
      if (job == nullptr) continue;
      const int id = job->next_id.fetch_add(1, std::memory_order_relaxed);
      if (id < job->schedule.team()) job->run(id);
    }
  }

  std::mutex mutex_;
  std::shared_ptr<Job> job_;
  int helpers_ = 0;
  std::atomic<bool> busy_{false};
  alignas(64) std::atomic<uint32_t> epoch_{0};  // bumped by every post()
  std::atomic<int> sleepers_{0};
};

// Never destroyed (helpers may still run at exit); replaced in a forked child.
Pool* the_pool = nullptr;
std::once_flag pool_once;

Pool& pool() {
  std::call_once(pool_once, [] {
    the_pool = new Pool;
    pthread_atfork(nullptr, nullptr, [] { the_pool = new Pool; });
  });
  return *the_pool;
}

bool use_pool() {
  static const bool pool = [] {
    const char* choice = std::getenv("FASTRNN_CPU_THREADS");
    return choice != nullptr && std::strcmp(choice, "pool") == 0;
  }();
  return pool;
}

void run_on_pool(Pool& helpers, std::shared_ptr<Job> job, int threads, int64_t stages) {
  struct Release {
    Pool& pool;
    ~Release() { pool.release(); }
  } release{helpers};
  helpers.ensure_helpers(threads - 1);
  helpers.post(job);
  job->run(0);
  job->schedule.wait_all(stages);
  helpers.clear();
}

}  // namespace

const char* team_backend() { return use_pool() ? "pool" : "openmp"; }

void run_stages(int threads, int64_t stages, int64_t chunks,
                c10::function_ref<void(int64_t, int64_t)> body) {
  // One thread, or the pool serving another call: this one runs alone, on the calling thread.
  if (threads <= 1 || stages == 0 || (use_pool() && !pool().try_acquire())) {
    for (int64_t stage = 0; stage < stages; ++stage) {
      for (int64_t chunk = 0; chunk < chunks; ++chunk) body(stage, chunk);
    }
    return;
  }
  if (use_pool()) {  // acquired above
    auto job = std::make_shared<Job>(threads, stages, chunks, body);
    run_on_pool(pool(), job, threads, stages);
    if (job->error) std::rethrow_exception(job->error);
    return;
  }
  Job job(threads, stages, chunks, body);
#pragma omp parallel num_threads(threads)
  job.run(omp_get_thread_num());
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace fastrnn::cpu
