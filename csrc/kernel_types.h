// Plain data shared by the op implementations (mix_ops.cpp, which uses ATen)
// and the per-instruction-set loops (loops.h). Nothing here may
// generate code that differs by instruction set: only POD structs and
// internal-linkage helpers, so that no function compiled for AVX-512 can be
// picked by the linker for a machine without it.
#pragma once

#include <cstdint>

namespace mixup_fused {

enum DType : int { kF32 = 0, kF64 = 1, kF16 = 2, kBF16 = 3, kU8 = 4 };
constexpr int kNumIn = 5;   // every DType
constexpr int kNumOut = 4;  // floating DTypes only

// kNCHW: contiguous [B, C, *spatial]; kNHWC: channels last (the channel
// fastest, then the spatial dims in order), for 1, 2 or 3 spatial dims.
enum LayoutKind : int { kFlat = 0, kNCHW = 1, kNHWC = 2 };

constexpr int64_t kChunk = 32768;  // elements per parallel work unit

// A half-open box per spatial dim: depth [d0, d1), height [y0, y1), width
// [x0, x1). Fewer spatial dims pad the leading ones with (0, 1): the width is
// always the last dim (1-D: T). ``none``: the row was NO_BOX (all -1).
struct Box {
  int64_t d0, d1, y0, y1, x0, x1;
  bool none;
};

// What output row i is made of. ``mix`` rows use the weights; other rows
// (CutMix) take the partner inside the box and themselves outside it.
struct RowPlan {
  int64_t src;      // partner row
  double ws, wp;    // weights of self and partner (mixup rows)
  Box self_box;     // box of this row (CutMix)
  Box part_box;     // box applied to the partner term (backward: the partner's own box)
  bool self_mix;    // this row is mixed with weights
  bool part_mix;    // the partner term is weighted (backward: the partner row was a mixup row)
};

// A sample of ``row`` elements; images are [C, D, H, W] (1-D: D = H = 1,
// 2-D: D = 1). Work runs over lines of W elements (kNCHW, indexed by
// (c, d, h)) or of W * C (kNHWC, indexed by (d, h)).
struct Geometry {
  int layout;
  int64_t B, row, C, D, H, W;
  int64_t x_stride, out_stride;
};

struct MixArgs {
  const void* x;
  void* out;
  Geometry g;
  const RowPlan* plan;
  bool cutmix;    // boxes or a cut mask were given
  bool backward;  // two-box sum form
  bool normalize;
  const double* mean;  // [C]
  const double* std;   // [C]
  // Non-null: forward without boxes on an involution; units run over these
  // rows i <= perm[i], each writing rows i and perm[i].
  const int64_t* firsts;
  // Non-null: the cut mask, uint8 [B, D * H * W] (nonzero: the partner's
  // pixel), instead of boxes; every row is cut.
  const uint8_t* cut_mask;
};

struct PairArgs {
  void* x;
  Geometry g;
  const int64_t* firsts;  // rows i with i <= perm[i]
  const int64_t* perm;
  const double* w_self;  // per row: the weights of the row itself and of its partner (blended rows)
  const double* w_part;
  const Box* boxes;
  const bool* mix_rows;  // per row: blended (not cut)
  bool cutmix;
  const uint8_t* cut_mask;  // as MixArgs::cut_mask, or null
};

// Label maps [B, D * H * W] (contiguous), moved with the pixels: inside row
// i's cut (box or cut mask) a label comes from row perm[i], elsewhere, and in
// every blended row, it is the row's own. Labels are moved, never blended.
struct MapArgs {
  const void* in;
  void* out;  // out of place; null: in place into ``in`` (perm an involution, by pairs)
  int64_t B, D, H, W;
  const int64_t* perm;
  const int64_t* firsts;    // in place: the rows i <= perm[i]
  const Box* boxes;         // per row, or null
  const bool* cut_rows;     // per row: cut (not blended); null: no row is cut
  const uint8_t* cut_mask;  // as MixArgs::cut_mask, or null
};

// Collate-time mixing of uint8 samples (FastCollateMixup): output row i from
// samples i and perm[i], rounded to uint8 as timm rounds (to nearest, ties to even).
struct CollateArgs {
  const uint8_t* const* samples;  // [B] pointers to dense samples: [C, H, W] or, interleaved, [H, W, C]
  uint8_t* out;                   // [rows, C, H, W]
  int64_t rows, C, H, W;
  const int64_t* perm;
  const float* w_self;  // per row: weight of the sample itself (blended rows)
  const float* w_part;  // and of its partner
  const Box* boxes;     // per row, or null: every row is blended
  const bool* blend;    // per row: blended with the weights (not cut)
  bool interleaved;     // samples are [H, W, C] buffers (units: rows, not (row, channel))
};

using MixRowsFn = void (*)(const MixArgs&, int64_t unit_begin, int64_t unit_end);
using PairsFn = void (*)(const PairArgs&, int64_t unit_begin, int64_t unit_end);
using CollateFn = void (*)(const CollateArgs&, int64_t unit_begin, int64_t unit_end);  // units: see CollateArgs
using MapsFn = void (*)(const MapArgs&, int64_t unit_begin, int64_t unit_end);  // units: (row or pair, lines)

enum LabelWidth : int { kL64 = 0, kL32 = 1, kL8 = 2 };
constexpr int kNumLabel = 3;

struct KernelTable {
  const char* name;
  MixRowsFn mix_rows[kNumIn][kNumOut];
  PairsFn pairs[kNumOut];
  CollateFn collate;
  MapsFn maps[kNumLabel];
};

// Work decomposition, shared by the host (unit counts) and the kernels.
static inline bool by_lines(const Geometry& g, bool cutmix, bool normalize) {
  return (cutmix || normalize) && g.layout != kFlat;
}
static inline int64_t line_len(const Geometry& g) { return g.layout == kNHWC ? g.W * g.C : g.W; }
static inline int64_t num_lines(const Geometry& g) { return g.layout == kNHWC ? g.D * g.H : g.C * g.D * g.H; }
static inline int64_t lines_per_unit(const Geometry& g) {
  const int64_t L = line_len(g) > 0 ? line_len(g) : 1;
  return kChunk / L > 0 ? kChunk / L : 1;
}
static inline int64_t units_per_row(const Geometry& g, bool lines) {
  if (lines) return (num_lines(g) + lines_per_unit(g) - 1) / lines_per_unit(g);
  return (g.row + kChunk - 1) / kChunk;
}
// The (d, h) index of line l (kNCHW: l runs over (c, d, h); kNHWC: over (d, h)).
static inline int64_t line_dh(const Geometry& g, int64_t l) { return g.layout == kNHWC ? l : l % (g.D * g.H); }
static inline int64_t line_channel(const Geometry& g, int64_t l) { return g.layout == kNHWC ? 0 : l / (g.D * g.H); }
// Label maps: lines of W labels, (d, h) per row.
static inline int64_t map_lines_per_unit(int64_t W) { return W > 0 && kChunk / W > 0 ? kChunk / W : 1; }
static inline int64_t map_units_per_row(int64_t D, int64_t H, int64_t W) {
  return (D * H + map_lines_per_unit(W) - 1) / map_lines_per_unit(W);
}

}  // namespace mixup_fused
