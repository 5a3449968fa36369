// Definitions of the launchers in step_kernels.h, instantiated once per storage type by
// step_kernels_<dtype>.cu. One thread per (row, unit) of a step, grid-stride: each thread reads
// its unit's gates from their H-strided blocks (consecutive threads, consecutive units: the
// accesses coalesce), computes in acc_t<T> with the shared cell math and writes once; the
// body of each is cell_units.h's, as the CPU kernels'.
#pragma once

#include <algorithm>

#include "cuda/step_kernels.h"
#include "fastrnn/cell_units.h"

namespace fastrnn::cuda {
namespace {

// Conversions spelled out: torch builds its CUDA code with the implicit __half/__nv_bfloat16
// conversions disabled (__CUDA_NO_HALF_CONVERSIONS__ and friends).
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }

template <class T> __device__ __forceinline__ T from_acc(acc_t<T> x) { return x; }
template <> __device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

template <class T>
__device__ __forceinline__ acc_t<T> load(const T* p, int64_t j) {
  return p ? to_acc(p[j]) : acc_t<T>(0);
}

// b_ih + b_hh at unit j (either may be absent).
template <class T>
__device__ __forceinline__ acc_t<T> biases(const T* b_ih, const T* b_hh, int64_t j) {
  return load(b_ih, j) + load(b_hh, j);
}

constexpr int kThreads = 256;

// Grid for `total` elements, capped (the kernels stride over the rest).
inline unsigned blocks_for(int64_t total) {
  return static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 16));
}

#define FASTRNN_FOR_EACH_UNIT(s)                                                          \
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x,                      \
               total = (s).rows * (s).hidden;                                             \
       idx < total; idx += int64_t(gridDim.x) * blockDim.x)

// The CUDA kernels' access to one unit (cell_units.h's Io): element j, computed in A.
template <class A>
struct Element {
  template <class U>
  __device__ __forceinline__ A load(const U* row, int64_t j) const { return to_acc(row[j]); }
  template <class U>
  __device__ __forceinline__ A load_or_zero(const U* row, int64_t j) const {
    return row ? to_acc(row[j]) : A(0);
  }
  template <class U>
  __device__ __forceinline__ void store(U* row, int64_t j, A value) const {
    row[j] = from_acc<U>(value);
  }
};

// The forward step of cell kCell: forms each unit's pre-activations (the step's rows hold
// x W_ih^T + h W_hh^T; the GRU's h W_hh^T is apart, in hh) and runs the cell's forward unit.
template <CellKind kCell, class T>
__global__ void forward_kernel(CellForwardStep<kCell, T> s) {
  using A = acc_t<T>;
  const int64_t H = s.hidden;
  const Element<A> io{};
  FASTRNN_FOR_EACH_UNIT(s) {
    const int64_t r = idx / H, j = idx - r * H;
    if constexpr (kCell == CellKind::kLstm) {
      const A* g = s.gates.row(r);
      cell::lstm_forward_unit(io, s, r, j, g[j] + biases(s.b_ih, s.b_hh, j),
                              g[H + j] + biases(s.b_ih, s.b_hh, H + j),
                              g[2 * H + j] + biases(s.b_ih, s.b_hh, 2 * H + j),
                              g[3 * H + j] + biases(s.b_ih, s.b_hh, 3 * H + j), /*save=*/true);
    } else if constexpr (kCell == CellKind::kGru) {
      const A* g = s.gates.row(r);
      const A* hh = s.hh.row(r);
      cell::gru_forward_unit(io, s, r, j, g[j] + load(s.b_ih, j), g[H + j] + load(s.b_ih, H + j),
                             g[2 * H + j] + load(s.b_ih, 2 * H + j), hh[j] + load(s.b_hh, j),
                             hh[H + j] + load(s.b_hh, H + j),
                             hh[2 * H + j] + load(s.b_hh, 2 * H + j), /*save=*/true);
    } else {
      cell::rnn_forward_unit<typename cell::CellUnits<kCell>::Activation>(
          io, s, r, j, s.pre.row(r)[j] + biases(s.b_ih, s.b_hh, j));
    }
  }
}

// The backward step of cell kCell: its backward unit for every (row, unit).
template <CellKind kCell, class T>
__global__ void backward_kernel(CellBackwardStep<kCell, T> s) {
  const int64_t H = s.hidden;
  FASTRNN_FOR_EACH_UNIT(s) {
    const int64_t r = idx / H, j = idx - r * H;
    cell::CellUnits<kCell>::template backward<acc_t<T>>(Element<acc_t<T>>{}, s, r, j);
  }
}

#undef FASTRNN_FOR_EACH_UNIT

template <class Dst, class Src>
__global__ void convert_kernel(Dst* dst, const Src* src, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    dst[i] = from_acc<Dst>(to_acc(src[i]));
  }
}

template <class T>
__global__ void add_kernel(T* out, const T* a, const acc_t<T>* b, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = from_acc<T>(to_acc(a[i]) + b[i]);
  }
}

// Launches `kernel` over `total` elements (nothing when there are none). Under the host
// emulation of the test suite (emulation/cuda_emulation.h), the emulated launch.
template <class Kernel, class... Args>
cudaError_t launch(Kernel kernel, int64_t total, cudaStream_t stream, const Args&... args) {
  if (total <= 0) return cudaSuccess;
#ifdef FASTRNN_CUDA_EMULATION
  emulation::launch(kernel, dim3(blocks_for(total)), dim3(kThreads), 0, stream, args...);
#else
  kernel<<<blocks_for(total), kThreads, 0, stream>>>(args...);
#endif
  return cudaGetLastError();
}

}  // namespace

template <CellKind kCell, class T>
cudaError_t step(const CellForwardStep<kCell, T>& s, cudaStream_t stream) {
  return launch(forward_kernel<kCell, T>, s.rows * s.hidden, stream, s);
}
template <CellKind kCell, class T>
cudaError_t step(const CellBackwardStep<kCell, T>& s, cudaStream_t stream) {
  return launch(backward_kernel<kCell, T>, s.rows * s.hidden, stream, s);
}

template <class Dst, class Src>
cudaError_t convert(Dst* dst, const Src* src, int64_t n, cudaStream_t stream) {
  return launch(convert_kernel<Dst, Src>, n, stream, dst, src, n);
}

template <class T>
cudaError_t add(T* out, const T* a, const acc_t<T>* b, int64_t n, cudaStream_t stream) {
  return launch(add_kernel<T>, n, stream, out, a, b, n);
}

// Explicit instantiations of everything for storage type T (one .cu file per type), every
// cell of cells.h's kCells.
#define FASTRNN_INSTANTIATE_CUDA_CELL(kCell, T)                                               \
  template cudaError_t step<kCell, T>(const CellForwardStep<kCell, T>&, cudaStream_t);        \
  template cudaError_t step<kCell, T>(const CellBackwardStep<kCell, T>&, cudaStream_t);
#define FASTRNN_INSTANTIATE_CUDA_STEPS(T)                                                     \
  FASTRNN_INSTANTIATE_CUDA_CELL(CellKind::kRnnTanh, T)                                        \
  FASTRNN_INSTANTIATE_CUDA_CELL(CellKind::kRnnRelu, T)                                        \
  FASTRNN_INSTANTIATE_CUDA_CELL(CellKind::kLstm, T)                                           \
  FASTRNN_INSTANTIATE_CUDA_CELL(CellKind::kGru, T)                                            \
  template cudaError_t add<T>(T*, const T*, const acc_t<T>*, int64_t, cudaStream_t);
static_assert(kCellCount == 4, "FASTRNN_INSTANTIATE_CUDA_STEPS lists every cell of kCells");

// Conversions exist only where acc_t<T> differs from T (the half types).
#define FASTRNN_INSTANTIATE_CUDA_CONVERSIONS(T)                                           \
  template cudaError_t convert<T, acc_t<T>>(T*, const acc_t<T>*, int64_t, cudaStream_t); \
  template cudaError_t convert<acc_t<T>, T>(acc_t<T>*, const T*, int64_t, cudaStream_t);

}  // namespace fastrnn::cuda
