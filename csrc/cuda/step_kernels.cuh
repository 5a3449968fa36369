// Definitions of the launchers in step_kernels.h, instantiated once per storage type by
// step_kernels_<dtype>.cu. One thread per (row, unit) of a step, grid-stride: each thread reads
// its unit's gates from their H-strided blocks (consecutive threads, consecutive units: the
// accesses coalesce), computes in acc_t<T> with the shared cell math and writes once.
#pragma once

#include <algorithm>

#include "cuda/step_kernels.h"
#include "fastrnn/cell_math.h"

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

template <class T>
__global__ void lstm_forward_kernel(LstmForwardStep<T, acc_t<T>> s) {
  using A = acc_t<T>;
  const int64_t H = s.hidden;
  FASTRNN_FOR_EACH_UNIT(s) {
    const int64_t r = idx / H, j = idx - r * H;
    A* g = s.gates.row(r);
    A i = g[j] + biases(s.b_ih, s.b_hh, j);
    A f = g[H + j] + biases(s.b_ih, s.b_hh, H + j);
    A gg = g[2 * H + j] + biases(s.b_ih, s.b_hh, 2 * H + j);
    A o = g[3 * H + j] + biases(s.b_ih, s.b_hh, 3 * H + j);
    A c, h;
    cell::lstm_forward(i, f, gg, o, s.c.row(r)[j], c, h);
    g[j] = i;
    g[H + j] = f;
    g[2 * H + j] = gg;
    g[3 * H + j] = o;
    s.c.row(r)[j] = c;
    if (s.c_saved) s.c_saved.row(r)[j] = c;
    s.h.row(r)[j] = from_acc<T>(h);
    if (s.y) s.y.row(r)[j] = from_acc<T>(h);
  }
}

template <class T>
__global__ void lstm_backward_kernel(LstmBackwardStep<T, acc_t<T>> s) {
  using A = acc_t<T>;
  const int64_t H = s.hidden;
  FASTRNN_FOR_EACH_UNIT(s) {
    const int64_t r = idx / H, j = idx - r * H;
    const A* g = s.gates.row(r);
    const A dh = s.dh.row(r)[j] + (s.dy ? to_acc(s.dy.row(r)[j]) : A(0));
    A di, df, dg, do_, dc_prev, proj_in;
    cell::lstm_backward(g[j], g[H + j], g[2 * H + j], g[3 * H + j], s.c_prev.row(r)[j],
                        s.c.row(r)[j], dh, s.dc.row(r)[j], di, df, dg, do_, dc_prev, proj_in);
    T* d = s.dgates.row(r);
    d[j] = from_acc<T>(di);
    d[H + j] = from_acc<T>(df);
    d[2 * H + j] = from_acc<T>(dg);
    d[3 * H + j] = from_acc<T>(do_);
    s.dc.row(r)[j] = dc_prev;
    if (s.r) s.r.row(r)[j] = from_acc<T>(proj_in);
  }
}

template <class T>
__global__ void gru_forward_kernel(GruForwardStep<T, acc_t<T>> s) {
  using A = acc_t<T>;
  const int64_t H = s.hidden;
  FASTRNN_FOR_EACH_UNIT(s) {
    const int64_t r = idx / H, j = idx - r * H;
    A* g = s.gates.row(r);
    const A* hh = s.hh.row(r);
    const A h_n = hh[2 * H + j] + load(s.b_hh, 2 * H + j);
    A rg, z, n, h;
    cell::gru_forward(g[j] + load(s.b_ih, j), g[H + j] + load(s.b_ih, H + j),
                      g[2 * H + j] + load(s.b_ih, 2 * H + j), hh[j] + load(s.b_hh, j),
                      hh[H + j] + load(s.b_hh, H + j), h_n, to_acc(s.h_prev.row(r)[j]), rg, z, n, h);
    g[j] = rg;
    g[H + j] = z;
    g[2 * H + j] = n;
    g[3 * H + j] = h_n;
    s.h.row(r)[j] = from_acc<T>(h);
    if (s.y) s.y.row(r)[j] = from_acc<T>(h);
  }
}

template <class T>
__global__ void gru_backward_kernel(GruBackwardStep<T, acc_t<T>> s) {
  using A = acc_t<T>;
  const int64_t H = s.hidden;
  FASTRNN_FOR_EACH_UNIT(s) {
    const int64_t r = idx / H, j = idx - r * H;
    const A* g = s.gates.row(r);
    const A dh = s.dh.row(r)[j] + (s.dy ? to_acc(s.dy.row(r)[j]) : A(0));
    A dr, dz, dn, dh_n, dh_prev;
    cell::gru_backward(g[j], g[H + j], g[2 * H + j], g[3 * H + j], to_acc(s.h_prev.row(r)[j]),
                       dh, dr, dz, dn, dh_n, dh_prev);
    T* d_ih = s.dgates_ih.row(r);
    T* d_hh = s.dgates_hh.row(r);
    d_ih[j] = from_acc<T>(dr);
    d_ih[H + j] = from_acc<T>(dz);
    d_ih[2 * H + j] = from_acc<T>(dn);
    d_hh[j] = from_acc<T>(dr);
    d_hh[H + j] = from_acc<T>(dz);
    d_hh[2 * H + j] = from_acc<T>(dh_n);
    s.dh.row(r)[j] = dh_prev;
  }
}

template <class Activation, class T>
__global__ void rnn_forward_kernel(RnnForwardStep<T, acc_t<T>> s) {
  const int64_t H = s.hidden;
  FASTRNN_FOR_EACH_UNIT(s) {
    const int64_t r = idx / H, j = idx - r * H;
    const acc_t<T> h = Activation::forward(s.pre.row(r)[j] + biases(s.b_ih, s.b_hh, j));
    s.h.row(r)[j] = from_acc<T>(h);
    if (s.y) s.y.row(r)[j] = from_acc<T>(h);
  }
}

template <class Activation, class T>
__global__ void rnn_backward_kernel(RnnBackwardStep<T, acc_t<T>> s) {
  using A = acc_t<T>;
  const int64_t H = s.hidden;
  FASTRNN_FOR_EACH_UNIT(s) {
    const int64_t r = idx / H, j = idx - r * H;
    const A dh = s.dh.row(r)[j] + (s.dy ? to_acc(s.dy.row(r)[j]) : A(0));
    s.dpre.row(r)[j] = from_acc<T>(Activation::backward(dh, to_acc(s.h.row(r)[j])));
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

template <class T>
cudaError_t step(const LstmForwardStep<T, acc_t<T>>& s, cudaStream_t stream) {
  return launch(lstm_forward_kernel<T>, s.rows * s.hidden, stream, s);
}
template <class T>
cudaError_t step(const LstmBackwardStep<T, acc_t<T>>& s, cudaStream_t stream) {
  return launch(lstm_backward_kernel<T>, s.rows * s.hidden, stream, s);
}
template <class T>
cudaError_t step(const GruForwardStep<T, acc_t<T>>& s, cudaStream_t stream) {
  return launch(gru_forward_kernel<T>, s.rows * s.hidden, stream, s);
}
template <class T>
cudaError_t step(const GruBackwardStep<T, acc_t<T>>& s, cudaStream_t stream) {
  return launch(gru_backward_kernel<T>, s.rows * s.hidden, stream, s);
}

template <class T, bool kRelu>
cudaError_t rnn_step(const RnnForwardStep<T, acc_t<T>>& s, cudaStream_t stream) {
  using Activation = std::conditional_t<kRelu, cell::ReluActivation, cell::TanhActivation>;
  return launch(rnn_forward_kernel<Activation, T>, s.rows * s.hidden, stream, s);
}
template <class T, bool kRelu>
cudaError_t rnn_step(const RnnBackwardStep<T, acc_t<T>>& s, cudaStream_t stream) {
  using Activation = std::conditional_t<kRelu, cell::ReluActivation, cell::TanhActivation>;
  return launch(rnn_backward_kernel<Activation, T>, s.rows * s.hidden, stream, s);
}

template <class Dst, class Src>
cudaError_t convert(Dst* dst, const Src* src, int64_t n, cudaStream_t stream) {
  return launch(convert_kernel<Dst, Src>, n, stream, dst, src, n);
}

template <class T>
cudaError_t add(T* out, const T* a, const acc_t<T>* b, int64_t n, cudaStream_t stream) {
  return launch(add_kernel<T>, n, stream, out, a, b, n);
}

// Explicit instantiations of everything for storage type T (one .cu file per type).
#define FASTRNN_INSTANTIATE_CUDA_STEPS(T)                                                      \
  template cudaError_t step<T>(const LstmForwardStep<T, acc_t<T>>&, cudaStream_t);            \
  template cudaError_t step<T>(const LstmBackwardStep<T, acc_t<T>>&, cudaStream_t);           \
  template cudaError_t step<T>(const GruForwardStep<T, acc_t<T>>&, cudaStream_t);             \
  template cudaError_t step<T>(const GruBackwardStep<T, acc_t<T>>&, cudaStream_t);            \
  template cudaError_t rnn_step<T, false>(const RnnForwardStep<T, acc_t<T>>&, cudaStream_t);  \
  template cudaError_t rnn_step<T, true>(const RnnForwardStep<T, acc_t<T>>&, cudaStream_t);   \
  template cudaError_t rnn_step<T, false>(const RnnBackwardStep<T, acc_t<T>>&, cudaStream_t); \
  template cudaError_t rnn_step<T, true>(const RnnBackwardStep<T, acc_t<T>>&, cudaStream_t);  \
  template cudaError_t add<T>(T*, const T*, const acc_t<T>*, int64_t, cudaStream_t);

// Conversions exist only where acc_t<T> differs from T (the half types).
#define FASTRNN_INSTANTIATE_CUDA_CONVERSIONS(T)                                           \
  template cudaError_t convert<T, acc_t<T>>(T*, const acc_t<T>*, int64_t, cudaStream_t); \
  template cudaError_t convert<acc_t<T>, T>(acc_t<T>*, const T*, int64_t, cudaStream_t);

}  // namespace fastrnn::cuda
