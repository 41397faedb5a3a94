#pragma once
// Packed ternary weights in row tiles, for the int8 family's one-token matvec (generation).
//
// Why another layout: the row-major planes (ternary_pack.hpp) give each row its own int32 accumulator,
// which needs a horizontal reduction per row. Bolt's rows are short (192 of its 5 matrices' inputs
// are 192 wide: 3 blocks of 64, i.e. 3 vpdpbusd per row), so that reduction cost as much as the dot
// products. Here one 512-bit accumulator holds 16 rows, one row per int32 lane, as the int8 head does
// (dense.hpp): no reduction at all, and the epilogue runs 16 rows per instruction.
//
// Format. Rows in tiles of 16, columns in groups of 4 (zero-padded to whole tiles and groups). Per tile
// and group, 64 weights = two 64-bit planes (nonzero, negative, as in ternary_pack.hpp), bit 4i + c for
// row 16t + i, column 4g + c: the VNNI byte order, so the two mask moves that turn planes into {-1, 0, 1}
// bytes give vpdpbusd's operand directly.
//   planes[((t · groups + g) · 2 + 0]  nonzero,  planes[(t · groups + g) · 2 + 1]  negative
// The numbers are those of ternary_matvec_int8 on the same weights, bit for bit (the int32 dot product
// is exact; the epilogue is float(dot) · scale / x_scale in that order).
#include <cstdint>
#include <vector>

#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/ternary_abi.hpp"
#include "flashlm/kernels/ternary_matmul.hpp"
#include "flashlm/kernels/ternary_pack.hpp"

namespace flashlm::kernels {

struct PackedTernaryTiles {
    int64_t rows = 0, cols = 0, groups = 0, tiles = 0;
    float scale = 0;
    std::vector<uint64_t> planes;   // tiles × groups × {nonzero, negative}
    std::vector<int32_t> row_sums;  // Σ_k q[r, k], padded to whole tiles with 0
};

inline PackedTernaryTiles pack_ternary_tiles(const PackedTernary& p) {
    PackedTernaryTiles t;
    t.rows = p.rows;
    t.cols = p.cols;
    t.groups = (p.cols + 3) / 4;
    t.tiles = (p.rows + 15) / 16;
    t.scale = p.scale;
    t.planes.assign(size_t(t.tiles * t.groups * 2), 0);
    t.row_sums.assign(size_t(t.tiles * 16), 0);
    for (int64_t r = 0; r < p.rows; ++r) {
        const uint64_t* w = p.row(r);
        for (int64_t k = 0; k < p.cols; ++k) {
            const uint64_t bit = uint64_t(1) << (4 * (r % 16) + k % 4);
            uint64_t* dst = t.planes.data() + ((r / 16) * t.groups + k / 4) * 2;
            if (w[k / k_block * 2] >> (k % k_block) & 1) dst[0] |= bit;
            if (w[k / k_block * 2 + 1] >> (k % k_block) & 1) dst[1] |= bit;
        }
        t.row_sums[size_t(r)] = p.row_sums[size_t(r)];
    }
    return t;
}

namespace detail {

inline void scalar_tiles(const TernTilesI8Job& j) {
    for (int64_t t = j.t0; t < j.t1; ++t)
        for (int64_t i = 0; i < 16 && t * 16 + i < j.rows; ++i) {
            int32_t dot = 0;
            for (int64_t g = 0; g < j.groups; ++g) {
                const uint64_t nz = j.planes[(t * j.groups + g) * 2], neg = j.planes[(t * j.groups + g) * 2 + 1];
                for (int c = 0; c < 4; ++c) {
                    const int bit = int(4 * i + c);
                    if (nz >> bit & 1) dot += (neg >> bit & 1) ? -int32_t(j.x[4 * g + c]) : int32_t(j.x[4 * g + c]);
                }
            }
            j.y[t * 16 + i] = float(dot) * j.wscale / j.xscale;
        }
}

}  // namespace detail

// True when the active ISA has a tile kernel (AVX-512 VNNI); elsewhere the row-major kernels are the
// faster choice and callers should use them.
inline bool ternary_tiles_native() {
#if defined(__x86_64__) || defined(__i386__)
    return detail::isa_slot().load(std::memory_order_relaxed) == Isa::avx512;
#else
    return false;
#endif
}

// y[rows] = float(q · xq) · scale / x_scale. xq: groups · 4 readable int8 values. Tiles are split over
// threads above the same size as the row-major kernels (detail::run); a Bolt-sized matvec stays on the
// calling thread.
inline void ternary_tiles_matvec_int8(const PackedTernaryTiles& W, const int8_t* xq, float x_scale, float* y) {
    const detail::TernTilesI8Job job{W.planes.data(), W.groups, 0, W.tiles, W.rows, xq, x_scale, W.scale, W.row_sums.data(), y};
    const int64_t work = W.rows * W.cols >= detail::k_parallel_min_work ? flashlm::k_parallel_min_work : 0;
    parallel_for(W.tiles, work, [&](int64_t t0, int64_t t1) {
        detail::TernTilesI8Job j = job;
        j.t0 = t0;
        j.t1 = t1;
#if defined(__x86_64__) || defined(__i386__)
        if (ternary_tiles_native()) {
            detail::TernaryRows{}(xsimd::avx512bw{}, j);
            return;
        }
#endif
        detail::scalar_tiles(j);
    });
}

}  // namespace flashlm::kernels
