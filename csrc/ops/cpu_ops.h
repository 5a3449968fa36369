// The CPU layer forward as a plain C++ call (cpu_ops.cpp), for the inference fast path
// (fast_path.cpp), which runs a module's whole stack without going through the dispatcher.
#pragma once

#include "fastrnn/cells.h"
#include "ops/layer_ops.h"

namespace fastrnn::ops {

// What the CPU kernel of the forward op runs after its checks and allocations: `call` from
// make_call, `out` from allocate_forward or views with the same shapes (any of float32, float64,
// float16, bfloat16).
void cpu_forward(CellKind cell, const LayerCall& call, const ForwardOutputs& out);

}  // namespace fastrnn::ops
