// Step kernels for any x86-64 (SSE2) and for double precision everywhere: one unit at a time
// with libm's activations.
#include <math.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "cpu/step_kernels.h"

#define FASTRNN_CELL_NAMESPACE baseline
#define FASTRNN_ISA baseline
#include "fastrnn/cell_math.h"
#include "cpu/simd/vec_scalar.h"
#include "cpu/step_kernels_impl.h"

namespace fastrnn::cpu::baseline {
StepKernels<float> step_kernels_f32() { return make_step_kernels<Vec1<float>, float>(); }
StepKernels<double> step_kernels_f64() { return make_step_kernels<Vec1<double>, double>(); }
}  // namespace fastrnn::cpu::baseline
