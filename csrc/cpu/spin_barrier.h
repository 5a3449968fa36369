// The barrier between the steps of one parallel region (CpuBackend::forward_steps and
// backward_steps). The threads of a step finish within a few hundred nanoseconds of each other,
// so a waiting thread first spins on one cache line, and only then sleeps (a futex through
// std::atomic::wait), as OpenMP's barrier does, so that more threads than cores still share them.
// Measured on the 2-core development machine (2 threads, 200k barriers in a loop): 34 ns a
// barrier spinning against 240-330 ns for `#pragma omp barrier`.
#pragma once

#include <atomic>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fastrnn::cpu {

class SpinBarrier {
 public:
  // Pause instructions a waiting thread spins before it sleeps: 512 x 25 ns (one pause on the
  // development machine's Zen 4) = 13 us, far more than a step's imbalance at small sizes,
  // little next to a step at large ones. Spinning for 400 us instead (and then yielding) made a
  // 2-thread LSTM call 3x slower when two other busy processes shared the 2 cores.
  static constexpr int64_t kSpins = 1 << 9;

  // Returns once all `team` threads (every thread of the calling OpenMP team, each passing the
  // same `team`) have called wait() for the generation-th time. Writes made before the call by
  // any of them are visible after it to all. `generation` is the calling thread's own count of
  // barriers passed (start at 0).
  void wait(uint32_t& generation, int team) {
    const uint32_t next = ++generation;
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == team - 1) {
      // Last to arrive: reset the count for the next generation before releasing the others
      // (they can only arrive again after they see the release, which orders the reset first).
      arrived_.store(0, std::memory_order_relaxed);
      released_.store(next, std::memory_order_release);
      released_.notify_all();  // no system call unless a thread sleeps
      return;
    }
    for (int64_t spins = 0; spins < kSpins; ++spins) {
      if (released_.load(std::memory_order_acquire) == next) return;
      pause();
    }
    for (uint32_t seen; (seen = released_.load(std::memory_order_acquire)) != next;) {
      released_.wait(seen, std::memory_order_acquire);
    }
  }

 private:
  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
  }

  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<uint32_t> released_{0};
};

}  // namespace fastrnn::cpu
