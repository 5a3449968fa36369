// The CPU layer forward as a plain C++ call (cpu_ops.cpp), for the inference fast path
// (fast_path.cpp), which runs a module's whole stack without going through the dispatcher.
#pragma once

#include "fastrnn/cells.h"
#include "ops/layer_ops.h"
#include "ops/run_layer.h"

namespace fastrnn::ops {

// What the CPU kernel of the forward op runs after its checks and allocations: `call` from
// make_call, `out` from allocate_forward or views with the same shapes (any of float32, float64,
// float16, bfloat16).
void cpu_forward(CellKind cell, const LayerCall& call, const ForwardOutputs& out);

// One layer and direction of a float32 or float64 call, or of a bfloat16 call that reads its
// weights as stored (cpu_bf16_raw), on storage: the CPU forward entry of the op's float32 and
// float64 calls (after make_call and allocate_forward) and of the fast path (whose calls have
// no LayerCall, no views and no workspace tensor: each of those is a dispatcher call or an
// allocation, a few hundred ns apiece, on a call whose whole step can take 5 us).
void cpu_forward_raw(const LayerForward& f);

// Whether a bfloat16 call of `batch` rows a step and `steps` steps (padded, or packed of batch
// 1) runs on raw storage: the calls whose steps read W_hh as stored (batch 1, and short calls of
// a few rows: cpu::tuning::reads_weights_as_stored), which need no float32 copy of it.
bool cpu_bf16_raw(int64_t batch, int64_t steps);

}  // namespace fastrnn::ops
