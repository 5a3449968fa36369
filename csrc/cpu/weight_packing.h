// Packing the weights into the layouts the CPU step kernels read (step_kernels.h: Panels,
// HiddenGradStep::w), once per call, in parallel for big weights.
#pragma once

#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cstdint>

#include "cpu/step_kernels.h"
#include "cpu/tuning.h"
#include "fastrnn/cells.h"

namespace fastrnn::cpu {

// The panels' columns come in blocks of one vector width, each `width` consecutive rows of the
// weight (one gate, consecutive units), so packing is a transpose of width x kPackDepth tiles
// through a buffer that stays in L1, every read and every write a whole row of a tile. Writing
// a column at a time instead (a write per cache line of the panel, which outgrows L1) cost
// about 1 ns an element: 0.5 ms a call for an LSTM's H = 512 W_hh on 2 threads, against about
// 0.2 ms now, more than a whole step of a short batch.
constexpr int64_t kPackDepth = 16;
template <class T>
using PackTile = T[kPackDepth][kMaxVectorWidth];

// put(panel, column, k0, depth, tile) for every block of `width` columns of every panel
// (`column` its first, in the Panels order [sub-block][gate][lane]) and every kPackDepth values
// of k from k0: tile[k][lane] = weight[row of column + lane][k0 + k] for k < depth (zero for
// units past H), in parallel over the blocks. `weight` is [gates * H, inner], as stored.
template <CellKind kCell, class T, class Put>
void for_each_weight_tile(const T* weight, int64_t inner, const Panels<T>& p, int64_t width,
                          const Put& put) {
  const int64_t gates = gate_count(kCell), H = p.hidden;
  const int64_t blocks = p.units * gates / width;
  TORCH_CHECK(width <= kMaxVectorWidth && p.units % width == 0, "fastrnn: bad panel layout");
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, inner * width));
  tuning::parallel_items(p.count * blocks, grain, [&](int64_t begin, int64_t end) {
    PackTile<T> tile;
    for (int64_t index = begin; index < end; ++index) {
      const int64_t panel = index / blocks, block = index % blocks;
      const int64_t sub = block / gates, gate = block % gates;
      const int64_t unit = panel * p.units + sub * width;
      const int64_t lanes = std::clamp<int64_t>(H - unit, 0, width);
      const T* source = weight + (gate * H + unit) * inner;
      for (int64_t k0 = 0; k0 < inner; k0 += kPackDepth) {
        const int64_t depth = std::min(kPackDepth, inner - k0);
        for (int64_t lane = 0; lane < width; ++lane) {
          const T* row = source + lane * inner + k0;
          for (int64_t k = 0; k < depth; ++k) tile[k][lane] = lane < lanes ? row[k] : T(0);
        }
        put(panel, block * width, k0, depth, tile);
      }
    }
  });
}

// A [gates * H, inner] weight (W_hh or W_ih, as stored) into `out`, in the layout of the panels
// p describes (Panels: `inner` rows of `units * gates` values per panel, p.count panels).
template <CellKind kCell, class T>
void pack_panels(const T* weight, int64_t inner, const Panels<T>& p, int64_t width, T* out) {
  const int64_t columns = p.units * gate_count(kCell), stride = inner * columns;
  for_each_weight_tile<kCell>(weight, inner, p, width, [&](int64_t panel, int64_t column,
                                                           int64_t k0, int64_t depth,
                                                           const PackTile<T>& tile) {
    T* dest = out + panel * stride + k0 * columns + column;
    for (int64_t k = 0; k < depth; ++k) std::copy_n(tile[k], width, dest + k * columns);
  });
}

// W_hh [gates * H, P] into the bfloat16 pairs' layout of Panels (step_kernels.h) in `out`
// (p.count * p.stride values), rounded to bfloat16 (exact for bfloat16 calls).
template <CellKind kCell, class T>
void pack_bf16_panels(const T* w_hh, int64_t P, const Panels<T>& p, int64_t width,
                      uint16_t* out) {
  const int64_t columns = p.units * gate_count(kCell);
  for_each_weight_tile<kCell>(w_hh, P, p, width, [&](int64_t panel, int64_t column, int64_t k0,
                                                     int64_t depth, const PackTile<T>& tile) {
    // k0 is even: the tile's values make whole pairs, a last odd k paired with a zero.
    uint16_t* dest = out + panel * p.stride + (k0 / 2) * columns * 2 + column * 2;
    for (int64_t k = 0; k < depth + depth % 2; ++k) {
      for (int64_t lane = 0; lane < width; ++lane) {
        const float value = k < depth ? static_cast<float>(tile[k][lane]) : 0.0f;
        dest[(k / 2) * columns * 2 + lane * 2 + k % 2] = c10::detail::round_to_nearest_even(value);
      }
    }
  });
}

// W_hh [G, P] into bfloat16 pairs of rows, [ceil(G / 2)][P][2] (HiddenGradStep::w), in
// `out`.
template <class T>
void pack_bf16_rows(const T* w_hh, int64_t G, int64_t P, uint16_t* out) {
  const int64_t pairs = (G + 1) / 2;
  for (int64_t q = 0; q < pairs; ++q) {
    for (int64_t c = 0; c < P; ++c) {
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t k = 2 * q + j;
        out[(q * P + c) * 2 + j] =
            k < G ? c10::detail::round_to_nearest_even(static_cast<float>(w_hh[k * P + c])) : 0;
      }
    }
  }
}

}  // namespace fastrnn::cpu
