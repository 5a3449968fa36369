// Test-only extension: fastrnn's CUDA step kernels (csrc/cuda, compiled as host C++ under
// csrc/cuda/emulation/cuda_emulation.h) run on CPU tensors, for tests/test_cuda_emulation.py.
// Each runner takes the step's matrices as 2-D tensors (row r at data + r * stride(0), as
// fastrnn::Rows), None for the optional ones, in the storage dtype T of the layer or its
// accumulation type A (float for float16 / bfloat16), and calls the launcher; it returns the
// launcher's cudaError_t. Also: the emulation's controls, and two kernels of its own that
// exercise what the step kernels do not use yet (__syncthreads with __shared__ memory, a
// cooperative grid-wide barrier).
#include <torch/extension.h>

#include <optional>
#include <string>

#include "cuda/step_kernels.h"

namespace emulation = fastrnn::emulation;
namespace cuda = fastrnn::cuda;
using OptionalTensor = std::optional<at::Tensor>;

namespace {

template <class T>
at::ScalarType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return at::kFloat;
  if constexpr (std::is_same_v<T, double>) return at::kDouble;
  if constexpr (std::is_same_v<T, __half>) return at::kHalf;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return at::kBFloat16;
}

template <class T>
T* pointer(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == dtype_of<T>(), name, ": expected ", dtype_of<T>(), ", got ",
              t.scalar_type());
  TORCH_CHECK(t.dim() <= 1 || t.stride(1) == 1, name, ": rows must be contiguous");
  return reinterpret_cast<T*>(t.data_ptr());
}

template <class T>
T* pointer(const OptionalTensor& t, const char* name) {
  return t.has_value() ? pointer<T>(*t, name) : nullptr;
}

template <class T>
fastrnn::Rows<T> rows(const at::Tensor& t, const char* name) {
  return {pointer<std::remove_const_t<T>>(t, name), t.stride(0)};
}

template <class T>
fastrnn::Rows<T> rows(const OptionalTensor& t, const char* name) {
  return t.has_value() ? rows<T>(*t, name) : fastrnn::Rows<T>{};
}

// Calls f(T{}) for the storage dtype of `t`.
template <class F>
int dispatch(const at::Tensor& t, F&& f) {
  switch (t.scalar_type()) {
    case at::kFloat: return f(float{});
    case at::kDouble: return f(double{});
    case at::kHalf: return f(__half{});
    case at::kBFloat16: return f(__nv_bfloat16{});
    default: TORCH_CHECK(false, "unsupported dtype ", t.scalar_type());
  }
}

int lstm_forward(const at::Tensor& gates, const OptionalTensor& b_ih, const OptionalTensor& b_hh,
                 const at::Tensor& c, const OptionalTensor& c_saved, const at::Tensor& h,
                 const OptionalTensor& y) {
  return dispatch(h, [&](auto t) {
    using T = decltype(t);
    using A = cuda::acc_t<T>;
    fastrnn::LstmForwardStep<T, A> s;
    s.rows = h.size(0);
    s.hidden = h.size(1);
    s.gates = rows<A>(gates, "gates");
    s.b_ih = pointer<T>(b_ih, "b_ih");
    s.b_hh = pointer<T>(b_hh, "b_hh");
    s.c = rows<A>(c, "c");
    s.c_saved = rows<A>(c_saved, "c_saved");
    s.h = rows<T>(h, "h");
    s.y = rows<T>(y, "y");
    return static_cast<int>(cuda::step<fastrnn::CellKind::kLstm, T>(s, nullptr));
  });
}

int lstm_backward(const at::Tensor& gates, const at::Tensor& c, const at::Tensor& c_prev,
                  const at::Tensor& dh, const OptionalTensor& dy, const at::Tensor& dc,
                  const at::Tensor& dgates, const OptionalTensor& r) {
  return dispatch(dgates, [&](auto t) {
    using T = decltype(t);
    using A = cuda::acc_t<T>;
    fastrnn::LstmBackwardStep<T, A> s;
    s.rows = c.size(0);
    s.hidden = c.size(1);
    s.gates = rows<const A>(gates, "gates");
    s.c = rows<const A>(c, "c");
    s.c_prev = rows<const A>(c_prev, "c_prev");
    s.dh = rows<const A>(dh, "dh");
    s.dy = rows<const T>(dy, "dy");
    s.dc = rows<A>(dc, "dc");
    s.dgates = rows<T>(dgates, "dgates");
    s.r = rows<T>(r, "r");
    return static_cast<int>(cuda::step<fastrnn::CellKind::kLstm, T>(s, nullptr));
  });
}

int gru_forward(const at::Tensor& gates, const at::Tensor& hh, const OptionalTensor& b_ih,
                const OptionalTensor& b_hh, const at::Tensor& h_prev, const at::Tensor& h,
                const OptionalTensor& y) {
  return dispatch(h, [&](auto t) {
    using T = decltype(t);
    using A = cuda::acc_t<T>;
    fastrnn::GruForwardStep<T, A> s;
    s.rows = h.size(0);
    s.hidden = h.size(1);
    s.gates = rows<A>(gates, "gates");
    s.hh = rows<const A>(hh, "hh");
    s.b_ih = pointer<T>(b_ih, "b_ih");
    s.b_hh = pointer<T>(b_hh, "b_hh");
    s.h_prev = rows<const T>(h_prev, "h_prev");
    s.h = rows<T>(h, "h");
    s.y = rows<T>(y, "y");
    return static_cast<int>(cuda::step<fastrnn::CellKind::kGru, T>(s, nullptr));
  });
}

int gru_backward(const at::Tensor& gates, const at::Tensor& h_prev, const OptionalTensor& dy,
                 const at::Tensor& dh, const at::Tensor& dgates_ih, const at::Tensor& dgates_hh) {
  return dispatch(h_prev, [&](auto t) {
    using T = decltype(t);
    using A = cuda::acc_t<T>;
    fastrnn::GruBackwardStep<T, A> s;
    s.rows = h_prev.size(0);
    s.hidden = h_prev.size(1);
    s.gates = rows<const A>(gates, "gates");
    s.h_prev = rows<const T>(h_prev, "h_prev");
    s.dy = rows<const T>(dy, "dy");
    s.dh = rows<A>(dh, "dh");
    s.dgates_ih = rows<T>(dgates_ih, "dgates_ih");
    s.dgates_hh = rows<T>(dgates_hh, "dgates_hh");
    return static_cast<int>(cuda::step<fastrnn::CellKind::kGru, T>(s, nullptr));
  });
}

int rnn_forward(bool relu, const at::Tensor& pre, const OptionalTensor& b_ih,
                const OptionalTensor& b_hh, const at::Tensor& h, const OptionalTensor& y) {
  return dispatch(h, [&](auto t) {
    using T = decltype(t);
    using A = cuda::acc_t<T>;
    fastrnn::RnnForwardStep<T, A> s;
    s.rows = h.size(0);
    s.hidden = h.size(1);
    s.pre = rows<A>(pre, "pre");
    s.b_ih = pointer<T>(b_ih, "b_ih");
    s.b_hh = pointer<T>(b_hh, "b_hh");
    s.h = rows<T>(h, "h");
    s.y = rows<T>(y, "y");
    return static_cast<int>(relu ? cuda::step<fastrnn::CellKind::kRnnRelu, T>(s, nullptr)
                                 : cuda::step<fastrnn::CellKind::kRnnTanh, T>(s, nullptr));
  });
}

int rnn_backward(bool relu, const at::Tensor& h, const at::Tensor& dh, const OptionalTensor& dy,
                 const at::Tensor& dpre) {
  return dispatch(h, [&](auto t) {
    using T = decltype(t);
    using A = cuda::acc_t<T>;
    fastrnn::RnnBackwardStep<T, A> s;
    s.rows = h.size(0);
    s.hidden = h.size(1);
    s.h = rows<const T>(h, "h");
    s.dh = rows<const A>(dh, "dh");
    s.dy = rows<const T>(dy, "dy");
    s.dpre = rows<T>(dpre, "dpre");
    return static_cast<int>(relu ? cuda::step<fastrnn::CellKind::kRnnRelu, T>(s, nullptr)
                                 : cuda::step<fastrnn::CellKind::kRnnTanh, T>(s, nullptr));
  });
}

// dst = src between a half type and float, either way (dst, src 1-D).
int convert(const at::Tensor& dst, const at::Tensor& src) {
  const at::Tensor& half = dst.scalar_type() == at::kFloat ? src : dst;
  return dispatch(half, [&](auto t) -> int {
    using T = decltype(t);
    if constexpr (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>) {
      if (dst.scalar_type() == at::kFloat) {
        return cuda::convert<float, T>(pointer<float>(dst, "dst"), pointer<T>(src, "src"),
                                       src.numel(), nullptr);
      }
      return cuda::convert<T, float>(pointer<T>(dst, "dst"), pointer<float>(src, "src"),
                                     src.numel(), nullptr);
    } else {
      TORCH_CHECK(false, "convert is between a half type and float");
    }
  });
}

// out = a + b (b in the accumulation type), 1-D.
int add(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  return dispatch(out, [&](auto t) {
    using T = decltype(t);
    return static_cast<int>(cuda::add<T>(pointer<T>(out, "out"), pointer<T>(a, "a"),
                                          pointer<cuda::acc_t<T>>(b, "b"), out.numel(),
                                          nullptr));
  });
}

// ---- the emulation's own checks ----

// out[block][t] = in[block][blockDim - 1 - t] through shared memory: right only if every
// thread's write lands before any thread's read (__syncthreads).
// With sync false, the __syncthreads is left out: a shared-memory race that ThreadSanitizer must
// report in the threaded mode (the racecheck analogue's own test).
void reverse_in_block_kernel(const float* in, float* out, bool sync) {
  __shared__ float tile[1024];
  const unsigned t = threadIdx.x, base = blockIdx.x * blockDim.x;
  tile[t] = in[base + t];
  if (sync) __syncthreads();
  out[base + t] = tile[blockDim.x - 1 - t];
}

// Each thread writes its value, the grid syncs, then reads the value of the thread one block
// over (wrapping): right only if the whole grid ran phase one first.
void rotate_blocks_kernel(float* buffer, float* out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  buffer[i] = static_cast<float>(i);
  emulation::sync_grid();
  out[i] = buffer[(i + blockDim.x) % (gridDim.x * blockDim.x)];
}

int run_reverse_in_block(const at::Tensor& in, const at::Tensor& out, int64_t block, bool sync) {
  emulation::launch(reverse_in_block_kernel, dim3(in.numel() / block), dim3(block), 0, nullptr,
                    in.data_ptr<float>(), out.data_ptr<float>(), sync);
  return static_cast<int>(cudaGetLastError());
}

int run_rotate_blocks(const at::Tensor& buffer, const at::Tensor& out, int64_t grid,
                      int64_t block) {
  emulation::launch(rotate_blocks_kernel, dim3(grid), dim3(block), 0, nullptr,
                    buffer.data_ptr<float>(), out.data_ptr<float>());
  return static_cast<int>(cudaGetLastError());
}

void set_mode(const std::string& name) {
  using emulation::Mode;
  const std::pair<const char*, Mode> modes[] = {
      {"forward", Mode::kForward}, {"reverse", Mode::kReverse}, {"shuffled", Mode::kShuffled},
      {"threaded", Mode::kThreaded}, {"cooperative", Mode::kCooperative}};
  for (const auto& [mode_name, mode] : modes) {
    if (name == mode_name) return emulation::set_mode(mode);
  }
  TORCH_CHECK(false, "unknown emulation mode ", name);
}

// A launch of an empty kernel with this configuration: (cudaPeekAtLastError, cudaGetLastError).
std::pair<int, int> check_launch(std::vector<int64_t> grid, std::vector<int64_t> block,
                                 int64_t shared) {
  auto dims = [](const std::vector<int64_t>& d) {
    return dim3(static_cast<unsigned>(d.at(0)), static_cast<unsigned>(d.at(1)),
                static_cast<unsigned>(d.at(2)));
  };
  emulation::launch([] {}, dims(grid), dims(block), static_cast<size_t>(shared), nullptr);
  const int peeked = static_cast<int>(cudaPeekAtLastError());
  return {peeked, static_cast<int>(cudaGetLastError())};
}

}  // namespace

void bind_cuda_ops(pybind11::module& m);  // ops.cpp

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  auto ops = m.def_submodule("ops", "csrc/ops/cuda/cuda_ops.cpp's op adapters (tier 2)");
  bind_cuda_ops(ops);
  m.def("lstm_forward", &lstm_forward);
  m.def("lstm_backward", &lstm_backward);
  m.def("gru_forward", &gru_forward);
  m.def("gru_backward", &gru_backward);
  m.def("rnn_forward", &rnn_forward);
  m.def("rnn_backward", &rnn_backward);
  m.def("convert", &convert);
  m.def("add", &add);
  m.def("set_mode", &set_mode);
  m.def("set_shuffle_seed", [](uint64_t seed) { emulation::set_shuffle_seed(seed); });
  m.def("launches", [] { return emulation::launches(); });
  m.def("check_launch", &check_launch);
  m.def("run_reverse_in_block", &run_reverse_in_block, pybind11::arg("in"),
        pybind11::arg("out"), pybind11::arg("block"), pybind11::arg("sync") = true);
  m.def("run_rotate_blocks", &run_rotate_blocks);
  m.def("error_name", [](int error) {
    switch (static_cast<cudaError_t>(error)) {
      case cudaSuccess: return std::string("cudaSuccess");
      case cudaErrorInvalidConfiguration: return std::string("cudaErrorInvalidConfiguration");
      case cudaErrorInvalidValue: return std::string("cudaErrorInvalidValue");
      case cudaErrorCooperativeLaunchTooLarge:
        return std::string("cudaErrorCooperativeLaunchTooLarge");
      default: return std::to_string(error);
    }
  });
}
