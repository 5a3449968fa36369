// The CPU backend's tuning policy: which layout of W_hh a call's steps read, when a step
// computes its input projection too, and how many threads and chunks a step is split into.
// Each rule names what it was measured on (2-core Zen 4 VM, unless stated).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "cpu/stage_team.h"

namespace fastrnn::cpu::tuning {

// Steps of at most kNativeRows rows read W_hh as stored (see Panels), as do short calls of
// a few rows (at most kNativeShortRows rows a step and kNativeCallRows in all, rows x steps;
// kNativeCallRowsBf16 where the products are bfloat16): more rows or steps amortise a
// packing pass per call over the reuse of each panel load by a tile of rows, while a short
// call pays the pass (a read and a write of W_hh) for a few steps. Measured on 2 threads, us
// per step packed vs as stored (row_dots with four rows of h per weight load), float32:
//  - LSTM H = 256: B=8 T=8 59.8 vs 54.8, B=8 T=12 54.7 vs 53.4, B=4 T=24 27.8 vs 26.5, but
//    B=4 T=32 (128 rows) about even and B=8 T=32 44.5 vs 49.2; LSTM H = 512: B=8 T=8 241 vs
//    206, B=4 T=16 124 vs 107; GRU H = 256: B=8 T=12 41.3 vs 38.9, B=2 T=32 16.9 vs 11.9;
//    RNN H = 256: B=8 T=12 15.9 vs 13.7, B=4 T=16 9.7 vs 7.3.
//  - bfloat16 products (AVX512_BF16 panels against widening reads of the stored weights):
//    GRU H = 256 B=8 T=8 37.2 vs 40.8, B=4 T=24 15.6 vs 18.0, while the LSTM and the RNN
//    went either way; so bfloat16 keeps the bar of 32 rows.
constexpr int64_t kNativeRows = 1;
constexpr int64_t kNativeShortRows = 8;
constexpr int64_t kNativeCallRows = 96;
constexpr int64_t kNativeCallRowsBf16 = 32;
inline bool reads_weights_as_stored(int64_t rows, int64_t steps, bool bf16_products) {
  const int64_t bar = bf16_products ? kNativeCallRowsBf16 : kNativeCallRows;
  return rows <= kNativeRows || (rows <= kNativeShortRows && rows * steps <= bar);
}

// Packed steps of at least this many rows also compute x W_ih^T, from W_ih packed like W_hh
// (StepInput), instead of one CPU BLAS GEMM per chunk of steps: the micro-kernel runs at
// about 90% of the FMA peak where MKL's sgemm takes its AVX2 code on AMD cores, and the
// pre-activations no longer make a trip through memory. Measured on 2 cores, I = H = 512,
// T = 100, inference: LSTM B=64 130-132 ms vs 144-145 ms, GRU B=64 106 vs 118 ms, LSTM
// B=8 19.2 vs 20.8 ms. At 2 rows the GEMM's many rows still win (LSTM H=256: 2.1 vs 1.8 ms).
constexpr int64_t kFusedInputRows = 4;
// ... and calls of at least this many rows in all (rows x steps): packing W_ih (a read and
// a write of it) costs more than a short call wins back. Measured, LSTM I=H=512, B=64,
// inference: T=1 2.6-2.8 ms fused vs 2.5-2.9 unfused on 2 threads and 5.3-5.5 vs 4.6-4.9 ms
// on one; T=4 13.2-13.3 vs 12.8-12.9 ms on one; fused ahead from T=8 (512 rows) on one thread
// and from about 256 rows on two. With the tiled packing (pack_panels), a bar of 64 rows
// still lost: one thread, B=64 T=1 5.4-5.5 ms vs 4.1-4.2, T=2 7.6-7.8 vs 6.9; two about even.
constexpr int64_t kFusedInputCallRows = 256;

// Threads for `panels` panels of `flops_per_panel` each per step: at most torch's intra-op
// count (and one inside another parallel region), and few enough that each thread's share is
// worth what splitting costs, `min_flops` a thread.
//  - kMinFlopsPerThread (50 kFLOP, half a microsecond or more): a single-step call (a fork
//    and a join per call) and backward (two barriers per step). Measured on 2 cores at B=1,
//    T=100: LSTM H=128 0.32 ms on two threads vs 0.48-0.53 ms on one at the earlier 100 kFLOP.
//  - kMinFlopsPerThreadInSequence (25 kFLOP): the forward steps of a sequence (one barrier a
//    step, the threads already forked). GRU H=128, B=1, T=100: 0.28 ms vs 0.38 ms at 50 kFLOP
//    (98 kFLOP a step kept it on one thread); no measured shape got slower. Single-step calls
//    showed no gain from it, and occasional spikes.
constexpr int64_t kMinFlopsPerThread = 50000;
constexpr int64_t kMinFlopsPerThreadInSequence = 25000;
inline int threads_for(int64_t panels, int64_t flops_per_panel,
                       int64_t min_flops = kMinFlopsPerThread) {
  if (at::in_parallel_region()) return 1;
  const int64_t by_work = std::max<int64_t>(1, panels * flops_per_panel / min_flops);
  return static_cast<int>(std::min<int64_t>({at::get_num_threads(), panels, by_work}));
}

// Chunks a stage of `items` items (panels, or blocks of units) of `flops_per_item` each is
// cut into for `threads` threads (StageTeam): up to kChunksPerThread a thread, so that the
// work of a thread that is descheduled can be taken over in pieces, each at least
// kMinFlopsPerThreadInSequence (a claim costs tens of nanoseconds), and never fewer than one
// a thread (threads_for gives each thread an item or more).
constexpr int64_t kChunksPerThread = 4;
// `wanted` chunks of `items`, within [threads, min(items, threads * kChunksPerThread)].
inline int64_t clamp_chunks(int threads, int64_t items, int64_t wanted) {
  const int64_t most = std::min<int64_t>(items, threads * kChunksPerThread);
  return std::max<int64_t>(threads, std::min(wanted, most));
}
inline int64_t chunks_for(int threads, int64_t items, int64_t flops_per_item) {
  return clamp_chunks(threads, items, items * flops_per_item / kMinFlopsPerThreadInSequence);
}

// The step loops' one team loop: body(stage, begin, end) for every stage in order and a split
// of the items [0, items) of `flops_per_item` each, on `threads` threads (run_stages: a barrier
// between stages, chunks_for's chunks, a descheduled thread's chunks taken over), or on the
// caller alone, body(stage, 0, items), when `threads` is 1.
template <class Body>
void split_stages(int threads, int64_t stages, int64_t items, int64_t flops_per_item,
                  const Body& body) {
  if (threads <= 1) {
    for (int64_t stage = 0; stage < stages; ++stage) body(stage, 0, items);
    return;
  }
  const int64_t chunks = chunks_for(threads, items, flops_per_item);
  run_stages(threads, stages, chunks, [&](int64_t stage, int64_t chunk) {
    body(stage, items * chunk / chunks, items * (chunk + 1) / chunks);
  });
}

// body(begin, end) over [0, items) in chunks of `grain` items or more, on the step loops'
// threads (run_stages: a descheduled thread's chunks are taken over).
template <class Body>
void parallel_items(int64_t items, int64_t grain, const Body& body) {
  const int64_t most = (items + grain - 1) / grain;
  if (most <= 0) return;
  const int threads = at::in_parallel_region()
                          ? 1
                          : static_cast<int>(std::min<int64_t>(at::get_num_threads(), most));
  const int64_t chunks = clamp_chunks(threads, most, most);
  run_stages(threads, 1, chunks, [&](int64_t, int64_t chunk) {
    body(items * chunk / chunks, items * (chunk + 1) / chunks);
  });
}

}  // namespace fastrnn::cpu::tuning
