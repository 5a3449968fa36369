// A layer's forward in differentiable ATen ops, for backward with create_graph=True (a double
// backward: gradient penalties, Hessian-vector products, meta-learning). The fused backward ops
// compute first-order gradients only; where autograd asks for gradients that are themselves
// differentiable, the autograd kernels (autograd.cpp) recompute the layer with these ops and
// let autograd differentiate them. The first-order path keeps its fused kernels.
#pragma once

#include <ATen/ATen.h>

#include "fastrnn/cells.h"

namespace fastrnn::ops {

// The layer and direction a forward op computes, in torch.nn's formulas (fastrnn/_reference.py
// is the same in Python): returns {output, hy, cy} (cy undefined but for the LSTM).
// input [T, B, I], or [N, I] with batch_sizes [T] (a packed sequence, int64 on the CPU); hx
// [B, P] and cx [B, H], undefined for zeros; w_ih [G, I], w_hh [G, P], b_ih and b_hh [G] or
// undefined, w_hr [P, H] or undefined. output [T, B, P] or [N, P].
std::vector<at::Tensor> differentiable_layer(CellKind cell, const at::Tensor& input,
                                             const at::Tensor& hx, const at::Tensor& cx,
                                             const at::Tensor& w_ih, const at::Tensor& w_hh,
                                             const at::Tensor& b_ih, const at::Tensor& b_hh,
                                             const at::Tensor& w_hr,
                                             const at::Tensor& batch_sizes, bool reverse);

}  // namespace fastrnn::ops
