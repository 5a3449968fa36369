// Emulation of the CUDA execution model on the host, so g++ compiles fastrnn's .cu files as
// they are and the test suite runs their kernels without a GPU (DESIGN.md, GPU work, tier 1).
// Force-included before anything else (-include) with FASTRNN_CUDA_EMULATION defined:
//
// - __global__, __device__, __host__ and __shared__ are defined before CUDA's headers, whose
//   crt/host_defines.h keeps macros already defined when __CUDACC__ is unset. NVIDIA's own
//   cuda_fp16.h / cuda_bf16.h then compile as host C++, so half-type rounding is CUDA's code.
// - threadIdx, blockIdx, blockDim and gridDim are thread-locals that the emulated launch sets
//   before running a CUDA thread's body.
// - launch() replaces <<<grid, block, shared, stream>>> (one #ifdef in cuda/step_kernels.cuh): it
//   checks the configuration as the runtime does (threads per block, block and grid limits,
//   shared memory) and, on a bad one, sets the last error (cudaGetLastError / cudaPeekAtLastError
//   are emulated too) and runs nothing; else it runs every CUDA thread in the current Mode.
// - Modes: every thread one after another in forward, reverse or shuffled order (a kernel whose
//   results differ between them depends on thread order: a race on a GPU); one OS thread per
//   CUDA thread of a block, blocks one after another, with a barrier for __syncthreads
//   (kThreaded, for kernels that share memory within a block); every thread of the grid at
//   once with a grid-wide barrier (kCooperative, as cudaLaunchCooperativeKernel: grids of more
//   than kCoResidentBlocks blocks are refused, as a real cooperative launch refuses grids that
//   cannot all be resident). __shared__ variables are per process, so a cooperative kernel
//   must not use them. In the sequential modes __syncthreads aborts with a message: such a
//   kernel needs kThreaded.
#pragma once

#ifndef FASTRNN_CUDA_EMULATION
#error "cuda_emulation.h is for host builds of the CUDA sources with FASTRNN_CUDA_EMULATION"
#endif

#define __global__
#define __device__
#define __host__
#define __shared__ static

#include <cuda_runtime_api.h>
#include <vector_types.h>

#include <cstddef>
#include <cstdint>
#include <functional>

inline thread_local uint3 threadIdx{};
inline thread_local uint3 blockIdx{};
inline thread_local dim3 blockDim{};
inline thread_local dim3 gridDim{};

namespace fastrnn::emulation {

enum class Mode { kForward, kReverse, kShuffled, kThreaded, kCooperative };

// What the emulated device allows: the limits of NVIDIA GPUs from sm_80 on.
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
constexpr unsigned kMaxGridDim[3] = {2147483647u, 65535, 65535};
constexpr size_t kMaxSharedBytes = 48 * 1024;  // without opting in to more
constexpr unsigned kCoResidentBlocks = 8;      // of a cooperative launch, in this emulation

void set_mode(Mode mode);
Mode mode();
void set_shuffle_seed(uint64_t seed);
void set_last_error(cudaError_t error);
// Launches so far that ran (a kernel ran at least one of its threads), for tests.
uint64_t launches();

// Whether <<<grid, block, shared>>> is a valid launch; sets the last error if not.
bool check_launch(dim3 grid, dim3 block, size_t shared_bytes);
// Runs body once per CUDA thread of the grid, with the indices set, in the current mode.
void run_grid(dim3 grid, dim3 block, const std::function<void()>& body);

template <class Kernel, class... Args>
void launch(Kernel kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t /*stream*/,
            const Args&... args) {
  if (!check_launch(grid, block, shared_bytes)) return;
  run_grid(grid, block, [&] { kernel(args...); });  // arguments copied per thread, by value
}

// The barrier of the CUDA thread's block (kThreaded, kCooperative), and of the whole grid
// (kCooperative: cooperative_groups' grid.sync()).
void sync_block();
void sync_grid();

}  // namespace fastrnn::emulation

inline void __syncthreads() { fastrnn::emulation::sync_block(); }
