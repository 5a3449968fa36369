// The table of the CPU's fused per-step pointwise kernels (arguments: fastrnn/steps.h). The
// kernels are compiled once per instruction set (step_kernels_<isa>.cpp); step_kernels<T>() in
// isa.h returns the table for the instruction set chosen at run time.
#pragma once

#include <cstdint>

#include "fastrnn/steps.h"

namespace fastrnn::cpu {

// The CPU kernels keep everything in one type (float or double): A = T.
using fastrnn::GruBackwardStep;
using fastrnn::GruForwardStep;
using fastrnn::LstmBackwardStep;
using fastrnn::LstmForwardStep;
using fastrnn::RnnBackwardStep;
using fastrnn::RnnForwardStep;
using fastrnn::Rows;

// Elementwise activations of the vector math, exposed so tests can check every instruction
// set's exp/sigmoid/tanh against libm.
enum class Activation { kSigmoid, kTanh, kRelu };

template <class T>
struct StepKernels {
  void (*lstm_forward)(const LstmForwardStep<T>&);
  void (*lstm_backward)(const LstmBackwardStep<T>&);
  void (*gru_forward)(const GruForwardStep<T>&);
  void (*gru_backward)(const GruBackwardStep<T>&);
  void (*rnn_tanh_forward)(const RnnForwardStep<T>&);
  void (*rnn_tanh_backward)(const RnnBackwardStep<T>&);
  void (*rnn_relu_forward)(const RnnForwardStep<T>&);
  void (*rnn_relu_backward)(const RnnBackwardStep<T>&);
  void (*activation)(Activation kind, const T* in, T* out, int64_t n);
};

// One table per instruction set, defined in step_kernels_<isa>.cpp. Double precision runs the
// baseline (scalar, libm) kernels on every machine: it exists for accuracy, not speed.
namespace avx512 { StepKernels<float> step_kernels_f32(); }
namespace avx2 { StepKernels<float> step_kernels_f32(); }
namespace baseline {
StepKernels<float> step_kernels_f32();
StepKernels<double> step_kernels_f64();
}  // namespace baseline

}  // namespace fastrnn::cpu
