// How the threads of one parallel region (CpuBackend::forward_steps and backward_steps) share
// the work of a sequence: stage after stage (a step, or half of a backward step), each stage a
// fixed set of chunks (blocks of hidden units) that may run in any order and on any thread, and
// a stage starts only once every chunk of the one before has finished.
//
// A static split (thread i always computes block i, then waits at a barrier) stalls the whole
// step whenever one thread is off its core: on a machine whose cores are shared (DataLoader
// workers, a neighbouring service, another library's pool still spinning), every step then
// waits for the scheduler to give the slow thread its turn. Here each thread owns a contiguous
// range of chunks and takes them from the front, so on a quiet machine every thread computes
// the same blocks at every step (its share of the weights stays in its own cache), as under a
// static split; a thread that has run out of its own takes other threads' chunks from the back
// of their ranges, so the work of a descheduled thread is done by the ones that are running,
// and only a chunk already started waits for its thread. A thread that finds nothing left to
// take waits for the stage to finish: it spins on one cache line for a few microseconds, then
// sleeps (a futex), so that a preempted peer gets the core back.
//
// A chunk already started cannot be taken over: when its thread loses its core (a busy process
// on the other core gets it for a scheduler slice, milliseconds), the others wait for it. A
// thread that waits for a stage much longer than its own chunks take (StageTeam::patience) has
// seen such a stall, and takes the rest of the call on itself: the other threads finish the
// chunk they hold and stop claiming. Measured with one of two cores busy: docs/benchmarks.md,
// "Decisions and where they were measured"; full tables: git show 74b4e99:docs/benchmarks.md,
// "Busy cores".
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include <c10/util/Exception.h>
#include <c10/util/FunctionRef.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <ctime>
#else
#include <thread>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fastrnn::cpu {

// Sleeps while `word` holds `seen`, for at most timeout_ns (0: no limit); may return early.
inline void futex_wait(std::atomic<uint32_t>& word, uint32_t seen, int64_t timeout_ns) {
#if defined(__linux__)
  timespec limit{static_cast<time_t>(timeout_ns / 1000000000),
                 static_cast<long>(timeout_ns % 1000000000)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, seen,
          timeout_ns > 0 ? &limit : nullptr, nullptr, 0);
#else
  (void)word;
  (void)seen;
  (void)timeout_ns;
  std::this_thread::yield();
#endif
}

// Wakes up to `count` threads sleeping in futex_wait on `word`.
inline void futex_wake(std::atomic<uint32_t>& word, int count) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, count, nullptr,
          nullptr, 0);
#else
  (void)word;
  (void)count;
#endif
}

// Sleeps while `word` holds `seen`, for at most timeout_ns (0: no limit), counted in `sleepers`
// for the waker, which calls futex_wake only when the count is above zero: the count goes up
// before `word` is read again, so a waker that stores to `word` after that read sees the count.
inline void sleep_while(std::atomic<uint32_t>& word, uint32_t seen, std::atomic<int>& sleepers,
                        int64_t timeout_ns) {
  sleepers.fetch_add(1, std::memory_order_seq_cst);
  if (word.load(std::memory_order_seq_cst) == seen) futex_wait(word, seen, timeout_ns);
  sleepers.fetch_sub(1, std::memory_order_relaxed);
}

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));

class StageTeam {
 public:
  // `team` threads sharing `chunks` chunks a stage; thread i owns chunks
  // [chunks * i / team, chunks * (i + 1) / team). A range holds at most 0xffff chunks (16 bits
  // of its claim word).
  StageTeam(int team, int64_t chunks)
      : team_(team), chunks_(chunks), ranges_(std::make_unique<Range[]>(team)) {
    TORCH_INTERNAL_ASSERT(team >= 1 && chunks <= team * int64_t{0xffff});
    for (int i = 0; i < team; ++i) {
      ranges_[i].begin = chunks * i / team;
      ranges_[i].size = chunks * (i + 1) / team - ranges_[i].begin;
    }
  }

  // Run by each thread of the team with its own id (0 .. team - 1) and the same `stages`
  // (< 2^32 - 1): calls body(stage, chunk) for every chunk of every stage, each exactly once,
  // on whichever thread claims it, in stage order. What a stage's chunks wrote is visible to
  // every chunk of the next. Returns when the last stage has finished, or earlier on a thread
  // that is no longer needed (another one took the rest on itself).
  template <class Body>
  void run(int id, int64_t stages, Body&& body) {
    if (chunks_ == 0) return;
    int64_t longest = 0;  // the longest chunk this thread has run, in nanoseconds
    uint32_t stage = 0;
    while (stage < stages) {
      int64_t finished = 0;
      for (int k = 0; k < team_ && !stands_down(id); ++k) {  // its own range first
        const int r = (id + k) % team_;
        for (int64_t chunk; !stands_down(id) && (chunk = claim(ranges_[r], stage, k == 0)) >= 0;
             ++finished) {
          const int64_t start = now_ns();
          body(static_cast<int64_t>(stage), chunk);
          longest = std::max(longest, now_ns() - start);
        }
      }
      if (finished > 0 && done_.fetch_add(finished, std::memory_order_acq_rel) + finished == chunks_) {
        // The stage's last chunk: reset the count before releasing the next stage (nobody adds
        // to it until they see the release, which orders the reset first).
        done_.store(0, std::memory_order_relaxed);
        completed_.store(stage + 1, std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake(completed_, team_);
      }
      if (stands_down(id)) return;
      stage = wait_past(stage, id, patience(longest));
    }
  }

  int team() const { return team_; }

  // Returns once `stages` stages have finished (the caller of a team whose own run() returned
  // early, standing down).
  void wait_all(int64_t stages) {
    for (uint32_t seen; (seen = completed_.load(std::memory_order_acquire)) < stages;) {
      sleep_while(completed_, seen, sleepers_, 0);
    }
  }

 private:
  // A thread's chunks, and its claim word: (stage + 1) << 32 | front << 16 | back, the chunks
  // [front, back) of the range not yet taken in that stage. A word from an earlier stage (all
  // taken then: the stage has finished) means the whole range is free.
  struct alignas(64) Range {
    std::atomic<uint64_t> word{0};
    int64_t begin = 0, size = 0;
  };

  static constexpr int kNobody = -1;
  // Pause instructions a waiting thread spins before it sleeps: 512 x 25 ns (one pause on the
  // development machine's Zen 4) = 13 us, more than a step's imbalance at small sizes, little
  // next to a step at large ones.
  static constexpr int64_t kSpins = 1 << 9;

  // How long a thread waits for the others' chunks before it takes the rest of the call on
  // itself: four times its own longest chunk (on a quiet machine the wait is less than one
  // chunk), and at least 200 us (a wake-up after a sleep can take tens of microseconds).
  static int64_t patience(int64_t longest_chunk_ns) {
    return std::max<int64_t>(200000, 4 * longest_chunk_ns);
  }

  // Whether thread `id` stops taking chunks: another thread runs the rest alone.
  bool stands_down(int id) const {
    const int leader = leader_.load(std::memory_order_relaxed);
    return leader != kNobody && leader != id;
  }

  // The next chunk of `range` in `stage` (the owner takes from the front, others from the
  // back), or -1 when none is left (or the stage is over: this thread fell behind).
  static int64_t claim(Range& range, uint32_t stage, bool owner) {
    if (range.size == 0) return -1;
    const uint64_t tag = static_cast<uint64_t>(stage) + 1;
    uint64_t word = range.word.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t seen = word >> 32;
      if (seen > tag) return -1;
      uint64_t front = seen == tag ? (word >> 16) & 0xffff : 0;
      uint64_t back = seen == tag ? word & 0xffff : static_cast<uint64_t>(range.size);
      if (front >= back) return -1;
      const uint64_t chunk = owner ? front++ : --back;
      if (range.word.compare_exchange_weak(word, tag << 32 | front << 16 | back,
                                           std::memory_order_relaxed)) {
        return range.begin + static_cast<int64_t>(chunk);
      }
    }
  }

  // Waits until stage `stage` has finished; returns the stage to work on next (later than
  // stage + 1 when this thread was descheduled while the others finished stages without it).
  // A wait longer than `patience_ns` makes this thread the one that runs the rest.
  uint32_t wait_past(uint32_t stage, int id, int64_t patience_ns) {
    for (int64_t spins = 0; spins < kSpins; ++spins) {
      const uint32_t now = completed_.load(std::memory_order_acquire);
      if (now > stage) return now;
      pause();
    }
    const int64_t deadline = now_ns() + patience_ns;
    for (;;) {
      const uint32_t seen = completed_.load(std::memory_order_acquire);
      if (seen > stage) return seen;
      const int64_t left = deadline - now_ns();
      if (left <= 0 && leader_.load(std::memory_order_relaxed) == kNobody) {
        int nobody = kNobody;
        leader_.compare_exchange_strong(nobody, id, std::memory_order_relaxed);
      }
      sleep_while(completed_, seen, sleepers_, left > 0 ? left : 0);
    }
  }

  const int team_;
  const int64_t chunks_;
  std::unique_ptr<Range[]> ranges_;
  alignas(64) std::atomic<int64_t> done_{0};         // chunks finished in the current stage
  alignas(64) std::atomic<uint32_t> completed_{0};   // stages finished
  std::atomic<int> sleepers_{0};                     // threads sleeping in futex_wait
  std::atomic<int> leader_{kNobody};                 // the thread that runs the rest, if any
};

// Runs body(stage, chunk) for every chunk (0 .. chunks - 1) of every stage (0 .. stages - 1),
// as StageTeam describes, on `threads` threads (team_pool.cpp), or on the calling thread alone
// when threads <= 1. The first exception a chunk throws is rethrown here, after every stage
// has finished. The threads (FASTRNN_CPU_THREADS, team_backend()):
//  - "openmp" (the default): an OpenMP parallel region of torch's intra-op threads. Its end
//    waits for every thread of the team to arrive, a descheduled one too, so a busy core
//    still stalls every call.
//  - "pool": fastrnn's own helper threads; the call returns as soon as every chunk has run,
//    and a helper that wakes up later finds nothing left. On a quiet machine it is slower
//    when OpenMP regions (MKL's GEMMs in backward, torch's operators) run between the step
//    loops: torch's OpenMP threads then spin for milliseconds beside the helpers. One call at
//    a time uses the pool; another that arrives meanwhile runs on its own thread.
// Numbers: docs/benchmarks.md, "Decisions and where they were measured"; full tables:
// git show 74b4e99:docs/benchmarks.md, "Busy cores".
void run_stages(int threads, int64_t stages, int64_t chunks,
                c10::function_ref<void(int64_t, int64_t)> body);

// "openmp" or "pool": what run_stages runs on (read once from FASTRNN_CPU_THREADS).
const char* team_backend();

}  // namespace fastrnn::cpu
