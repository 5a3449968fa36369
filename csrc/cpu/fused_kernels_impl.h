// The fused forward step kernels (step_kernels.h: Panels, FusedForwardStep), backward's
// hidden_grad and the tiled GEMM, as templates over a vector type V; included by
// step_kernels_impl.h inside each instruction set's target region. (About 600 lines in one file:
// every kernel here is built on the same micro-kernel, tile and column-group templates.)
//
// For each panel (a block of hidden units, every gate) and each block of MR rows of h, the
// micro-kernel accumulates an MR x NV tile of vectors, acc[r][v] = sum_k h[r, k] * panel[k][v],
// in registers (NV = the panel's vectors of columns: gates x sub-blocks), then the cell's
// epilogue adds x W_ih^T and the biases, applies the gate math and writes the new state and
// outputs. MR is as large as the vector registers allow next to the NV panel vectors (with
// AVX2, next to the 2 vectors of one pass over a 4-vector panel: pass_vectors).
//
// A single row (batch 1) gains nothing from packing: each W_hh element is used once per step, so
// such steps read W_hh as stored (Panels::packed false) and form each gate row's dot product
// with h directly (row_dots: the rows one after another, up to four rows of h per weight load,
// 16 dot products reduced with one transpose_sum), as do short calls of a few rows. A call of one
// such step (streaming) also computes x W_ih^T here, in the same pass (StepInput), instead of a
// separate GEMM call. Steps of many rows compute x W_ih^T here too, with the same micro-kernel
// on W_ih packed like W_hh (input_product), tile by tile into the pre-activation rows just
// before the recurrent product's epilogue reads them.

namespace fastrnn::cpu::FASTRNN_ISA {

// Vector registers of the instruction set (AVX-512: 32, AVX2: 16; the scalar build: the
// compiler's choice, 16 is a fair budget).
template <class V>
constexpr int vector_registers() {
  return V::kWidth == 16 ? 32 : 16;
}

// Rows per micro-kernel tile for NV vectors of columns: the accumulators, the NV panel vectors
// and one broadcast must fit the registers.
template <class V, int NV>
constexpr int tile_rows() {
  return (vector_registers<V>() - NV - 2) / NV > 0 ? (vector_registers<V>() - NV - 2) / NV : 1;
}

// Vectors of columns the micro-kernel takes in one pass over a panel of NV vectors. With AVX2's 16
// registers a tile of all 4 vectors of an LSTM or RNN panel has room for 2 rows only: 4 panel
// loads per 8 FMAs, which is L2's whole bandwidth once the panel (32 KB at inner 256) no longer
// stays in L1 beside the rows of h; two passes of 2 vectors over tiles of 6 rows load a third as
// much per FMA. A GRU panel's 3 vectors stay one pass of 3 rows: passes of 2 and 1 over 6 rows
// measured no faster (the 1-vector pass has too few independent FMA chains). With AVX-512's 32
// registers, one pass (tiles of 6 rows of 4 vectors). Measured on Zen 4, AVX2: docs/benchmarks.md,
// "Decisions and where they were measured"; full tables: git show 74b4e99:docs/benchmarks.md,
// "AVX2 micro-kernel".
template <class V, int NV>
constexpr int pass_vectors() {
  return vector_registers<V>() == 16 && NV >= 4 ? 2 : NV;
}

// acc[r][v] = sum over k < inner of A(r, k) * b[k * ldb + v * W .. + W), the last of the
// NV vectors holding only `last` lanes (the rest zero; b is not read past them). A(r, k) is
// a[r * lda + k], or a[k * lda + r] when kTransA (A stored [inner, rows]: a weight gradient's
// dgates^T, whose MR values of one k lie side by side).
template <class V, int MR, int NV, class T, bool kTransA = false>
inline void accumulate_tile(const T* a, int64_t lda, const T* b, int64_t ldb, int64_t inner,
                            int last, V (&acc)[MR][NV]) {
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[r][v] = V(T(0));
  }
  for (int64_t k = 0; k < inner; ++k) {
    const T* row = b + k * ldb;
    V bv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV - 1; ++v) bv[v] = V::load(row + v * V::kWidth);
    bv[NV - 1] = V::load(row + (NV - 1) * V::kWidth, last);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const V broadcast(kTransA ? a[k * lda + r] : a[r * lda + k]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] = fma(broadcast, bv[v], acc[r][v]);
    }
  }
}

// Runs body.template operator()<mr>(r0) over the rows [0, rows) in as few tiles as MR rows
// allow, of heights that differ by at most one (32 rows: 6, 6, 5, 5, 5, 5 rather than five of 6
// and one of 2, whose loads per FMA would be 2.5 times a full tile's). Each height is its own
// instantiation.
template <int MR, class Body>
inline void for_each_tile(int64_t rows, Body&& body) {
  if constexpr (MR == 1) {
    for (int64_t r0 = 0; r0 < rows; ++r0) body.template operator()<1>(r0);
  } else {
    const int64_t tiles = (rows + MR - 1) / MR;
    if (tiles == 0) return;
    const int64_t base = rows / tiles, taller = rows % tiles;  // `taller` tiles of base + 1
    auto run = [&](int64_t height, int64_t r0) {
      if (height == MR) {
        body.template operator()<MR>(r0);
        return;
      }
      [&]<int... R>(std::integer_sequence<int, R...>) {
        ((height == R + 1 ? (body.template operator()<R + 1>(r0), 0) : 0), ...);
      }(std::make_integer_sequence<int, MR - 1>{});
    };
    int64_t r0 = 0;
    for (int64_t i = 0; i < tiles; ++i) {
      const int64_t height = base + (i < taller ? 1 : 0);
      run(height, r0);
      r0 += height;
    }
  }
}

// acc = a [TR, inner] times the NV vectors of columns of b (ldb apart), in passes of P vectors
// (the last vector holding `last` lanes), each pass's sums moved to acc (kept in memory by the
// compiler when they outnumber the registers). kTransA: as for accumulate_tile.
template <class V, int TR, int NV, int P, class T, bool kTransA = false>
inline void accumulate_in_passes(const T* a, int64_t lda, const T* b, int64_t ldb, int64_t inner,
                                 int last, V (&acc)[TR][NV]) {
  if constexpr (P >= NV) {
    accumulate_tile<V, TR, NV, T, kTransA>(a, lda, b, ldb, inner, last, acc);
  } else {
    [&]<int... Pass>(std::integer_sequence<int, Pass...>) {
      (
          [&] {
            constexpr int first = Pass * P, width = std::min(P, NV - first);
            V part[TR][width];
            accumulate_tile<V, TR, width, T, kTransA>(a, lda, b + first * V::kWidth, ldb, inner,
                                                      first + width == NV ? last : V::kWidth,
                                                      part);
#pragma GCC unroll 16
            for (int r = 0; r < TR; ++r) {
#pragma GCC unroll 4
              for (int v = 0; v < width; ++v) acc[r][first + v] = part[r][v];
            }
          }(),
          ...);
    }(std::make_integer_sequence<int, (NV + P - 1) / P>{});
  }
}

// h_prev [rows, inner] times one packed panel, tile by tile of rows, handing each tile's
// finished sums to epilogue.template operator()<mr>(r0, acc).
template <class V, int NV, class T, class Epilogue>
inline void panel_product(Rows<const T> h_prev, int64_t rows, const T* panel, int64_t inner,
                          Epilogue&& epilogue) {
  for_each_tile<tile_rows<V, pass_vectors<V, NV>()>()>(rows, [&]<int TR>(int64_t r0) {
    V acc[TR][NV];
    accumulate_in_passes<V, TR, NV, pass_vectors<V, NV>()>(h_prev.row(r0), h_prev.ld, panel,
                                                           NV * V::kWidth, inner, V::kWidth, acc);
    epilogue.template operator()<TR>(r0, acc);
  });
}

#ifdef FASTRNN_BF16_PRODUCTS
// accumulate_tile_bf16 below, with the last vector's load masked or not.
template <int MR, int NV, bool kMaskLast>
inline void accumulate_tile_bf16_impl(const uint16_t* a, int64_t lda, const uint16_t* b,
                                      int64_t ldb, int64_t pairs, VecF (&acc)[MR][NV], int last) {
  const __mmask16 last_mask = VecF::first(last);  // the last vector's columns (b not read past)
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  for (int64_t q = 0; q < pairs; ++q) {
    const uint16_t* row = b + q * ldb;
    __m512bh bv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      bv[v] = kMaskLast && v == NV - 1
                  ? (__m512bh)_mm512_maskz_loadu_epi32(last_mask, row + v * 32)
                  : (__m512bh)_mm512_loadu_si512(row + v * 32);
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + r * lda + 2 * q, sizeof(pair));
      const __m512bh broadcast = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v].v, broadcast, bv[v]);
    }
  }
}

// acc[r][v] = sum over the pairs q < pairs of a's pair (a[r * lda + 2q], a[r * lda + 2q + 1])
// dotted with b's pairs at b[q * ldb + (v * 16 + lane) * 2 ..], in float32 (vdpbf16ps): the
// bfloat16 form of accumulate_tile (Panels::bf16 layout; lda even, so pairs are 32-bit aligned
// units). The last of the NV vectors holds `last` columns (b is not read past them).
template <int MR, int NV>
inline void accumulate_tile_bf16(const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                                 int64_t pairs, VecF (&acc)[MR][NV], int last = 16) {
  if (last == 16) {
    accumulate_tile_bf16_impl<MR, NV, false>(a, lda, b, ldb, pairs, acc, last);
  } else {
    accumulate_tile_bf16_impl<MR, NV, true>(a, lda, b, ldb, pairs, acc, last);
  }
}

// in[0, n) rounded to bfloat16 (nearest even; NaN stays NaN).
inline void round_to_bf16(const float* in, uint16_t* out, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(in + i)));
  }
  if (i < n) {
    const __mmask16 mask = VecF::first(static_cast<int>(n - i));
    _mm256_mask_storeu_epi16(out + i, mask,
                             (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, in + i)));
  }
}
#endif

// Lanes [0, n) of weights: float ones as they are, bfloat16 ones widened to float.
template <class V, class T>
inline V load_weights(const T* p, int n) {
  return V::load(p, n);
}
template <class V>
inline V load_weights(const uint16_t* p, int n) {
  return V::load_bf16(p, n);
}

// acc[r][j] (+= unless `first`) the dot products of w's rows j < n (ldw apart, float or
// bfloat16) with row r of h (h[r]) over NH vectors of columns, the last of them `last` lanes
// long (masked when kMasked): those vectors of the R rows of h stay in registers while the
// rows of w are read one after another, each weight vector loaded once for all R rows (one FMA
// chain per row of h; two for a single row).
template <int R, int NH, bool kMasked, class V, class T, class WT>
inline void row_dots_pass(const WT* w, int64_t ldw, int n, const T* const* h, int last,
                          bool first, V (&acc)[R][V::kWidth]) {
  constexpr int W = V::kWidth, kChains = R == 1 ? 2 : 1;
  auto lanes = [&](int v) { return kMasked && v == NH - 1 ? last : W; };
  V hv[R][NH];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int v = 0; v < NH; ++v) hv[r][v] = V::load(h[r] + v * W, lanes(v));
  }
  for (int j = 0; j < n; ++j, w += ldw) {
    V sums[R][kChains];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
      for (int c = 0; c < kChains; ++c) sums[r][c] = V(T(0));
    }
#pragma GCC unroll 16
    for (int v = 0; v < NH; ++v) {
      const V wv = load_weights<V>(w + v * W, lanes(v));
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) sums[r][v % kChains] = fma(wv, hv[r][v], sums[r][v % kChains]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const V sum = kChains == 2 ? sums[r][0] + sums[r][kChains - 1] : sums[r][0];
      acc[r][j] = first ? sum : acc[r][j] + sum;
    }
  }
}

// Lane j of out[r]: the dot product of w's row j (rows ldw apart; float, or bfloat16 widened as
// read) with h[r], all `inner` long, for j < n (lanes from n on: zero), for R rows of h.
// Batch-1 steps are bound by how fast W_hh streams in from L2, so the rows of w are read one
// after another, in passes over stretches of columns with that stretch of the R rows of h in
// registers (a pass re-reads no weight), and each row of h's partial sums are added across
// lanes at the end. Reading the rows of w in step instead (one vector of each of the n rows per
// h vector, n streams of a row's length) ran at 69 GB/s from L2 for rows of 128 floats and 90
// GB/s for 256 on the development machine's Zen 4, one thread; one row after another, 101 and
// 105 GB/s. With a few rows of h (short calls of a few rows), each weight vector loaded once
// feeds R FMAs.
template <int R, class V, class T, class WT>
inline void row_dots(const WT* w, int64_t ldw, int n, const T* const* h, int64_t inner,
                     V (&out)[R]) {
  constexpr int W = V::kWidth, kBlock = std::max(1, vector_registers<V>() / 2 / R);
  V acc[R][W];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    for (int j = n; j < W; ++j) acc[r][j] = V(T(0));
  }
  bool first = true;
  int64_t k = 0;
  const T* at[R];
  // Passes of kBlock vectors, then of what is left in the powers of two below kBlock, then
  // the masked last vector.
  auto passes = [&]<int NH>() {
    if constexpr (NH <= kBlock) {
      for (; k + NH * W <= inner; k += NH * W, first = false) {
        for (int r = 0; r < R; ++r) at[r] = h[r] + k;
        row_dots_pass<R, NH, false>(w + k, ldw, n, at, W, first, acc);
      }
    }
  };
  passes.template operator()<kBlock>();
  passes.template operator()<8>();
  passes.template operator()<4>();
  passes.template operator()<2>();
  passes.template operator()<1>();
  if (k < inner) {
    for (int r = 0; r < R; ++r) at[r] = h[r] + k;
    row_dots_pass<R, 1, true>(w + k, ldw, n, at, static_cast<int>(inner - k), first, acc);
  } else if (first) {  // inner == 0
    for (int r = 0; r < R; ++r) {
      for (int j = 0; j < n; ++j) acc[r][j] = V(T(0));
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) out[r] = transpose_sum(acc[r]);
}

// put(r, row_dots of row_of(r)) for the rows r < rows of h, up to four of them a call.
template <class V, class T, class WT, class RowOf, class Put>
inline void rows_dots(const WT* w, int64_t ldw, int n, int64_t inner, int64_t rows,
                      RowOf&& row_of, Put&& put) {
  auto some = [&]<int R>(int64_t r0) {
    const T* h[R];
    for (int r = 0; r < R; ++r) h[r] = row_of(r0 + r);
    V dots[R];
    row_dots<R>(w, ldw, n, h, inner, dots);
    for (int r = 0; r < R; ++r) put(r0 + r, dots[r]);
  };
  int64_t r0 = 0;
  for (; r0 + 4 <= rows; r0 += 4) some.template operator()<4>(r0);
  switch (rows - r0) {
    case 3: some.template operator()<3>(r0); break;
    case 2: some.template operator()<2>(r0); break;
    case 1: some.template operator()<1>(r0); break;
    default: break;
  }
}

// h_prev [rows, inner] times panel p of the weights in either layout (see Panels), tile by tile
// of rows, handing each tile to the epilogue as panel_product does. block(v) gives the first
// W_hh row and the number of units (at most a vector; 0 or less: none) of the panel's v-th
// vector of columns, for W_hh as stored.
template <class V, int NV, class T, class Block, class Epilogue>
inline void step_product(const Panels<T>& w, int64_t p, Rows<const T> h_prev,
                         Rows<const uint16_t> h_bf16, int64_t rows, Block&& block,
                         Epilogue&& epilogue) {
#ifdef FASTRNN_BF16_PRODUCTS
  if constexpr (std::is_same_v<V, VecF>) {
    if (w.packed && w.weights.bf16) {
      const uint16_t* panel = w.weights.bf16_values() + p * w.stride;
      for_each_tile<tile_rows<V, NV>()>(rows, [&]<int TR>(int64_t r0) {
        V acc[TR][NV];
        accumulate_tile_bf16<TR, NV>(h_bf16.row(r0), h_bf16.ld, panel, NV * 32,
                                     (w.inner + 1) / 2, acc);
        epilogue.template operator()<TR>(r0, acc);
      });
      return;
    }
  }
#else
  (void)h_bf16;
#endif
  if (w.packed) {
    panel_product<V, NV>(h_prev, rows, w.weights.values() + p * w.stride, w.inner,
                         std::forward<Epilogue>(epilogue));
    return;
  }
  for_each_tile<tile_rows<V, NV>()>(rows, [&]<int TR>(int64_t r0) {
    V acc[TR][NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {  // one block of W_hh rows at a time, reused by every row
      const auto [first, n] = block(v);
      auto row_of = [&](int64_t r) { return h_prev.row(r0 + r); };
      auto put = [&](int64_t r, V dots) { acc[r][v] = dots; };
      if (n <= 0) {
        for (int r = 0; r < TR; ++r) acc[r][v] = V(T(0));
      } else if (w.weights.bf16) {
        rows_dots<V, T>(w.weights.bf16_values() + first * w.inner, w.inner, n, w.inner, TR,
                        row_of, put);
      } else {
        rows_dots<V, T>(w.weights.values() + first * w.inner, w.inner, n, w.inner, TR, row_of,
                        put);
      }
    }
    epilogue.template operator()<TR>(r0, acc);
  });
}

// x W_ih^T for panel p's units, into the step's pre-activation rows `pre`, when the step
// computes its input projection (see StepInput); block(v) as for step_product.
template <class V, int NV, class T, class Block>
inline void input_product(const StepInput<T>& in, int64_t p, int64_t rows, Rows<T> pre,
                          Block&& block) {
  if (!in.w_ih) return;
  if (in.stride > 0) {  // packed: the tiles go to pre (still in cache when the epilogue reads them)
    panel_product<V, NV>(in.x, rows, in.w_ih.values() + p * in.stride, in.size,
                         [&]<int TR>(int64_t r0, V (&acc)[TR][NV]) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const auto [first, n] = block(v);
        if (n <= 0) continue;
#pragma GCC unroll 16
        for (int r = 0; r < TR; ++r) acc[r][v].store(pre.row(r0 + r) + first, n);
      }
    });
    return;
  }
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const auto [first, n] = block(v);
    if (n <= 0) continue;
    auto row_of = [&](int64_t r) { return in.x.row(r); };
    auto put = [&](int64_t r, V dots) { dots.store(pre.row(r) + first, n); };
    if (in.w_ih.bf16) {
      rows_dots<V, T>(in.w_ih.bf16_values() + first * in.size, in.size, n, in.size, rows,
                      row_of, put);
    } else {
      rows_dots<V, T>(in.w_ih.values() + first * in.size, in.size, n, in.size, rows, row_of,
                      put);
    }
  }
}

// block(v) of a panel of the LSTM and the GRU: gate v of the panel's units [u, u + n).
struct GateBlocks {
  int64_t hidden, u;
  int n;
  std::pair<int64_t, int> operator()(int v) const { return {v * hidden + u, n}; }
};

template <class V, class T>
void lstm_fused_forward(const FusedForwardStep<LstmForwardStep<T>, T>& f) {
  constexpr int NV = 4;
  const LstmForwardStep<T>& s = f.step;
  const int64_t H = s.hidden;
  for (int64_t p = f.panel_begin; p < f.panel_end; ++p) {
    const int64_t u = p * f.w.units;
    const int n = static_cast<int>(std::min<int64_t>(V::kWidth, H - u));
    const V bias_i = biases<V>(s.b_ih, s.b_hh, u, n), bias_f = biases<V>(s.b_ih, s.b_hh, H + u, n);
    const V bias_g = biases<V>(s.b_ih, s.b_hh, 2 * H + u, n);
    const V bias_o = biases<V>(s.b_ih, s.b_hh, 3 * H + u, n);
    input_product<V, NV>(f.input, p, s.rows, s.gates, GateBlocks{H, u, n});
    step_product<V, NV>(f.w, p, f.h_prev, f.h_bf16, s.rows, GateBlocks{H, u, n}, [&]<int TR>(int64_t r0, V (&acc)[TR][NV]) {
#pragma GCC unroll 16
      for (int r = 0; r < TR; ++r) {
        const int64_t row = r0 + r;
        const T* x = s.gates.row(row);
        cell::lstm_forward_unit(Lanes<V>{n}, s, row, u, acc[r][0] + V::load(x + u, n) + bias_i,
                                acc[r][1] + V::load(x + H + u, n) + bias_f,
                                acc[r][2] + V::load(x + 2 * H + u, n) + bias_g,
                                acc[r][3] + V::load(x + 3 * H + u, n) + bias_o, f.save);
      }
    });
  }
}

template <class V, class T>
void gru_fused_forward(const FusedForwardStep<GruForwardStep<T>, T>& f) {
  constexpr int NV = 3;
  const GruForwardStep<T>& s = f.step;
  const int64_t H = s.hidden;
  for (int64_t p = f.panel_begin; p < f.panel_end; ++p) {
    const int64_t u = p * f.w.units;
    const int n = static_cast<int>(std::min<int64_t>(V::kWidth, H - u));
    auto bias = [&](const T* b, int64_t offset) { return load_or_zero<V>(b ? b + offset : nullptr, n); };
    const V bx_r = bias(s.b_ih, u), bx_z = bias(s.b_ih, H + u), bx_n = bias(s.b_ih, 2 * H + u);
    const V bh_r = bias(s.b_hh, u), bh_z = bias(s.b_hh, H + u), bh_n = bias(s.b_hh, 2 * H + u);
    input_product<V, NV>(f.input, p, s.rows, s.gates, GateBlocks{H, u, n});
    step_product<V, NV>(f.w, p, f.h_prev, f.h_bf16, s.rows, GateBlocks{H, u, n}, [&]<int TR>(int64_t r0, V (&acc)[TR][NV]) {
#pragma GCC unroll 16
      for (int r = 0; r < TR; ++r) {
        const int64_t row = r0 + r;
        const T* x = s.gates.row(row);
        cell::gru_forward_unit(Lanes<V>{n}, s, row, u, V::load(x + u, n) + bx_r,
                               V::load(x + H + u, n) + bx_z, V::load(x + 2 * H + u, n) + bx_n,
                               acc[r][0] + bh_r, acc[r][1] + bh_z, acc[r][2] + bh_n, f.save);
      }
    });
  }
}

template <class Activation, class V, class T>
void rnn_fused_forward(const FusedForwardStep<RnnForwardStep<T>, T>& f) {
  constexpr int NV = 4;  // four sub-blocks of units, one gate
  const RnnForwardStep<T>& s = f.step;
  const int64_t H = s.hidden;
  for (int64_t p = f.panel_begin; p < f.panel_end; ++p) {
    // Sub-block v of the panel: units [u, u + n) of the one gate.
    auto block = [&](int v) {
      const int64_t u = p * f.w.units + v * V::kWidth;
      return std::pair<int64_t, int>{u, static_cast<int>(std::min<int64_t>(V::kWidth, H - u))};
    };
    input_product<V, NV>(f.input, p, s.rows, s.pre, block);
    step_product<V, NV>(f.w, p, f.h_prev, f.h_bf16, s.rows, block, [&]<int TR>(int64_t r0, V (&acc)[TR][NV]) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const int64_t u = p * f.w.units + v * V::kWidth;
        if (u >= H) break;
        const int n = static_cast<int>(std::min<int64_t>(V::kWidth, H - u));
        const V bias = biases<V>(s.b_ih, s.b_hh, u, n);
#pragma GCC unroll 16
        for (int r = 0; r < TR; ++r) {
          const int64_t row = r0 + r;
          cell::rnn_forward_unit<Activation>(Lanes<V>{n}, s, row, u,
                                             acc[r][v] + V::load(s.pre.row(row) + u, n) + bias);
        }
      }
    });
  }
}

// Cell kCell's fused forward step: the kernel above that forms its pre-activations.
template <CellKind kCell, class V, class T>
void fused_forward(const FusedForwardStep<typename CellKernels<T, kCell>::Forward, T>& f) {
  if constexpr (kCell == CellKind::kLstm) {
    lstm_fused_forward<V>(f);
  } else if constexpr (kCell == CellKind::kGru) {
    gru_fused_forward<V>(f);
  } else {
    rnn_fused_forward<typename cell::CellUnits<kCell>::Activation, V>(f);
  }
}

// out rows r < TR (ldo apart) (+)= acc[r], the last of the NVT vectors `last` lanes wide.
template <class V, int TR, int NVT, class T>
inline void store_tile(T* out, int64_t ldo, int last, bool accumulate, V (&acc)[TR][NVT]) {
#pragma GCC unroll 16
  for (int r = 0; r < TR; ++r) {
    T* row = out + r * ldo;
#pragma GCC unroll 4
    for (int v = 0; v < NVT; ++v) {
      const int n = v == NVT - 1 ? last : V::kWidth;
      const V sum = accumulate ? acc[r][v] + V::load(row + v * V::kWidth, n) : acc[r][v];
      sum.store(row + v * V::kWidth, n);
    }
  }
}

// The output columns [col_begin, col_end) in groups of kGemmVectors vectors (the last group
// narrower): group.template operator()<NVT>(col, last) for each, NVT its vectors and `last` the
// lanes of its last one (a narrower group reads no column past col_end).
constexpr int kGemmVectors = 4;
template <class V, class Group>
inline void for_each_column_group(int64_t col_begin, int64_t col_end, Group&& group) {
  constexpr int64_t kCols = kGemmVectors * V::kWidth;
  for (int64_t col = col_begin; col < col_end; col += kCols) {
    const int64_t width = std::min(kCols, col_end - col);
    const int64_t vectors = (width + V::kWidth - 1) / V::kWidth;
    const int last = static_cast<int>(width - (vectors - 1) * V::kWidth);
    if (vectors == 4) group.template operator()<4>(col, last);
    else if (vectors == 3) group.template operator()<3>(col, last);
    else if (vectors == 2) group.template operator()<2>(col, last);
    else group.template operator()<1>(col, last);
  }
}

// C [rows, col_begin .. col_end) (+)= op(A) [rows, inner] times B [inner, ldb] (that range of
// its columns), row-major, in T: op(A) is a [rows, inner] (lda), or when kTransA the transpose
// of a [inner, rows]; b and c point at column 0. Each group of four vectors of columns is swept
// by tiles of rows, in the passes of pass_vectors (AVX-512: 6 rows x 4 vectors in registers, 24
// FMAs for 10 loads per k; AVX2: 6 rows x 2 vectors, twice); each element of C is one chain of
// FMAs over k in a register.
template <class V, bool kTransA, class T>
void gemm_tiles(const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc,
                int64_t rows, int64_t inner, int64_t col_begin, int64_t col_end,
                bool accumulate) {
  constexpr int P = pass_vectors<V, kGemmVectors>();
  for_each_column_group<V>(col_begin, col_end, [&]<int NVT>(int64_t col, int last) {
    for_each_tile<tile_rows<V, P>()>(rows, [&]<int TR>(int64_t r0) {
      V acc[TR][NVT];
      accumulate_in_passes<V, TR, NVT, P, T, kTransA>(kTransA ? a + r0 : a + r0 * lda, lda,
                                                      b + col, ldb, inner, last, acc);
      store_tile<V, TR, NVT>(c + r0 * ldc + col, ldc, last, accumulate, acc);
    });
  });
}

// The recurrent half of a backward step, for the output columns [col_begin, col_end):
// dh (+)= dgates [rows, inner] times W_hh [inner, ldw] (W_hh as stored: row k is gate row k),
// or with the bfloat16 operands when g.w is bfloat16.
template <class V, class T>
void hidden_grad(const HiddenGradStep<T>& g) {
#ifdef FASTRNN_BF16_PRODUCTS
  if constexpr (std::is_same_v<V, VecF>) {
    if (g.w.bf16) {
      for_each_column_group<V>(g.col_begin, g.col_end, [&]<int NVT>(int64_t col, int last) {
        for_each_tile<tile_rows<V, kGemmVectors>()>(g.rows, [&]<int TR>(int64_t r0) {
          V acc[TR][NVT];
          accumulate_tile_bf16<TR, NVT>(g.dgates_bf16.row(r0), g.dgates_bf16.ld,
                                        g.w.bf16_values() + 2 * col, 2 * g.ldw,
                                        (g.inner + 1) / 2, acc,
                                        last);
          store_tile<V, TR, NVT>(g.dh.row(r0) + col, g.dh.ld, last, g.accumulate, acc);
        });
      });
      return;
    }
  }
#endif
  gemm_tiles<V, false>(g.dgates.data, g.dgates.ld, g.w.values(), g.ldw, g.dh.data, g.dh.ld,
                       g.rows, g.inner, g.col_begin, g.col_end, g.accumulate);
}

// One block of a whole GEMM (GemmBlock): its rows and columns of C, over the inner dimension
// in stretches of kGemmInnerBlock (the first stretch writes C, the others add to it, so no
// chain of FMAs is longer than a stretch; a 6-row tile's stretch of B, 64 columns, stays in L2
// for every tile of the block's rows). An empty inner dimension writes zeros (or leaves C as it
// is when accumulating).
constexpr int64_t kGemmInnerBlock = 128;
template <class V, class T>
void gemm_block(const GemmBlock<T>& g) {
  const int64_t rows = g.row_end - g.row_begin;
  if (rows <= 0 || g.col_end <= g.col_begin) return;
  for (int64_t k0 = 0; k0 == 0 || k0 < g.inner; k0 += kGemmInnerBlock) {
    const int64_t inner = std::max<int64_t>(0, std::min(kGemmInnerBlock, g.inner - k0));
    const bool accumulate = g.accumulate || k0 > 0;
    const T* b = g.b + k0 * g.ldb;
    T* c = g.c + g.row_begin * g.ldc;
    if (g.trans_a) {
      gemm_tiles<V, true>(g.a + k0 * g.lda + g.row_begin, g.lda, b, g.ldb, c, g.ldc, rows, inner,
                          g.col_begin, g.col_end, accumulate);
    } else {
      gemm_tiles<V, false>(g.a + g.row_begin * g.lda + k0, g.lda, b, g.ldb, c, g.ldc, rows,
                           inner, g.col_begin, g.col_end, accumulate);
    }
  }
}

}  // namespace fastrnn::cpu::FASTRNN_ISA
