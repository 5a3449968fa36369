// The emulated launch, barriers and error state of cuda_emulation.h.
#include "cuda/emulation/cuda_emulation.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

namespace fastrnn::emulation {
namespace {

std::atomic<Mode> g_mode{Mode::kForward};
std::atomic<uint64_t> g_seed{0x5eed};
std::atomic<uint64_t> g_launches{0};
// The runtime keeps the last error per host thread.
thread_local cudaError_t t_last_error = cudaSuccess;

// The barriers of the CUDA thread running on this OS thread (null in the sequential modes).
thread_local std::barrier<>* t_block_barrier = nullptr;
thread_local std::barrier<>* t_grid_barrier = nullptr;

uint64_t volume(dim3 d) { return uint64_t(d.x) * d.y * d.z; }

uint3 index_of(uint64_t i, dim3 d) {
  return uint3{static_cast<unsigned>(i % d.x), static_cast<unsigned>(i / d.x % d.y),
               static_cast<unsigned>(i / (uint64_t(d.x) * d.y))};
}

void set_indices(uint64_t block, uint64_t thread, dim3 grid, dim3 blocks) {
  gridDim = grid;
  blockDim = blocks;
  blockIdx = index_of(block, grid);
  threadIdx = index_of(thread, blocks);
}

[[noreturn]] void fail(const char* message) {
  std::fprintf(stderr, "fastrnn CUDA emulation: %s\n", message);
  std::abort();
}

// Every (block, thread) pair one after another, in the order of `blocks` and `threads`.
void run_sequential(dim3 grid, dim3 block, const std::function<void()>& body, bool reverse,
                    bool shuffled) {
  const uint64_t n_blocks = volume(grid), n_threads = volume(block);
  std::vector<uint64_t> threads(n_threads);
  std::iota(threads.begin(), threads.end(), uint64_t(0));
  if (reverse) std::reverse(threads.begin(), threads.end());
  std::mt19937_64 random(g_seed.load());
  std::vector<uint64_t> blocks;
  if (shuffled) {  // blocks and the threads of each block in random orders
    blocks.resize(n_blocks);
    std::iota(blocks.begin(), blocks.end(), uint64_t(0));
    std::shuffle(blocks.begin(), blocks.end(), random);
  }
  for (uint64_t b = 0; b < n_blocks; ++b) {
    const uint64_t block_index = shuffled ? blocks[b] : reverse ? n_blocks - 1 - b : b;
    if (shuffled) std::shuffle(threads.begin(), threads.end(), random);
    for (const uint64_t thread : threads) {
      set_indices(block_index, thread, grid, block);
      body();
    }
  }
}

// The threads of blocks [first, first + count) as OS threads, each block with its barrier.
void run_threads(dim3 grid, dim3 block, const std::function<void()>& body, uint64_t first,
                 uint64_t count, std::barrier<>* grid_barrier) {
  const uint64_t n_threads = volume(block);
  std::vector<std::unique_ptr<std::barrier<>>> barriers;
  std::vector<std::thread> threads;
  for (uint64_t b = first; b < first + count; ++b) {
    barriers.push_back(std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(n_threads)));
    std::barrier<>* block_barrier = barriers.back().get();
    for (uint64_t t = 0; t < n_threads; ++t) {
      threads.emplace_back([=, &body] {
        set_indices(b, t, grid, block);
        t_block_barrier = block_barrier;
        t_grid_barrier = grid_barrier;
        body();
        t_block_barrier = t_grid_barrier = nullptr;
      });
    }
  }
  for (std::thread& thread : threads) thread.join();
}

}  // namespace

void set_mode(Mode mode) { g_mode = mode; }
Mode mode() { return g_mode; }
void set_shuffle_seed(uint64_t seed) { g_seed = seed; }
void set_last_error(cudaError_t error) { t_last_error = error; }
uint64_t launches() { return g_launches; }

bool check_launch(dim3 grid, dim3 block, size_t shared_bytes) {
  const unsigned block_dims[3] = {block.x, block.y, block.z};
  const unsigned grid_dims[3] = {grid.x, grid.y, grid.z};
  bool valid = volume(block) >= 1 && volume(block) <= kMaxThreadsPerBlock && volume(grid) >= 1;
  for (int i = 0; i < 3; ++i) {
    valid = valid && block_dims[i] <= kMaxBlockDim[i] && grid_dims[i] <= kMaxGridDim[i];
  }
  if (!valid) {
    set_last_error(cudaErrorInvalidConfiguration);
    return false;
  }
  if (shared_bytes > kMaxSharedBytes) {
    set_last_error(cudaErrorInvalidValue);
    return false;
  }
  return true;
}

void run_grid(dim3 grid, dim3 block, const std::function<void()>& body) {
  switch (g_mode.load()) {
    case Mode::kForward: run_sequential(grid, block, body, false, false); break;
    case Mode::kReverse: run_sequential(grid, block, body, true, false); break;
    case Mode::kShuffled: run_sequential(grid, block, body, false, true); break;
    case Mode::kThreaded:
      for (uint64_t b = 0; b < volume(grid); ++b) run_threads(grid, block, body, b, 1, nullptr);
      break;
    case Mode::kCooperative: {
      if (volume(grid) > kCoResidentBlocks) {
        set_last_error(cudaErrorCooperativeLaunchTooLarge);
        return;
      }
      std::barrier<> grid_barrier(static_cast<std::ptrdiff_t>(volume(grid) * volume(block)));
      run_threads(grid, block, body, 0, volume(grid), &grid_barrier);
      break;
    }
  }
  ++g_launches;
}

void sync_block() {
  if (t_block_barrier == nullptr) {
    fail("__syncthreads in a sequential launch: run this kernel in Mode::kThreaded");
  }
  t_block_barrier->arrive_and_wait();
}

void sync_grid() {
  if (t_grid_barrier == nullptr) fail("a grid-wide sync outside a Mode::kCooperative launch");
  t_grid_barrier->arrive_and_wait();
}

}  // namespace fastrnn::emulation

// The runtime's error functions, as the launches above set them (no libcudart is linked).
extern "C" cudaError_t cudaGetLastError(void) {
  const cudaError_t error = fastrnn::emulation::t_last_error;
  fastrnn::emulation::t_last_error = cudaSuccess;
  return error;
}

extern "C" cudaError_t cudaPeekAtLastError(void) { return fastrnn::emulation::t_last_error; }

extern "C" const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidPitchValue: return "invalid pitch argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorCooperativeLaunchTooLarge:
      return "too many blocks in cooperative launch";
    default: return "unknown error (in the CUDA emulation)";
  }
}

// Copies on the one emulated device's memory (the host's), checked as the runtime checks them.
extern "C" cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count,
                                       cudaMemcpyKind kind, cudaStream_t /*stream*/) {
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) {
    return cudaErrorInvalidMemcpyDirection;
  }
  if (count > 0 && (dst == nullptr || src == nullptr)) return cudaErrorInvalidValue;
  if (count > 0) std::memmove(dst, src, count);
  return cudaSuccess;
}

extern "C" cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                                         size_t width, size_t height, cudaMemcpyKind kind,
                                         cudaStream_t /*stream*/) {
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) {
    return cudaErrorInvalidMemcpyDirection;
  }
  if (height == 0 || width == 0) return cudaSuccess;
  if (dpitch < width || spitch < width) return cudaErrorInvalidPitchValue;
  if (dst == nullptr || src == nullptr) return cudaErrorInvalidValue;
  for (size_t row = 0; row < height; ++row) {
    std::memmove(static_cast<char*>(dst) + row * dpitch,
                 static_cast<const char*>(src) + row * spitch, width);
  }
  return cudaSuccess;
}
