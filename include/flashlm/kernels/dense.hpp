#pragma once
// Dense matvecs for the tied output head of the cached generators (10000 × 192 floats, the largest
// per-token cost), dispatched like the ternary kernels (ternary_matmul.hpp: same ISA slot, same
// FLASHLM_ISA / set_isa switch, kernels in kernels/arch/*.cpp).
//
//  - dense_f32_matvec(W, N, K, x, y): y = W x for a row-major float [N, K] matrix, used in place (the
//    embedding itself). Same numbers as any float GEMV up to summation order.
//  - PackedInt8Rows / int8_rows_matvec: the matrix quantised once per row (absmax, int8 in ±127, one
//    float scale per row) and stored in the VNNI layout: tiles of 16 rows, and per tile, groups of 4
//    columns as 64 bytes (row i of the tile at bytes 4i..4i+3). The activation is quantised per call
//    (absmax, as the ternary int8 family), the dot product is exact in int32, so every path agrees
//    bit for bit: y[r] = float(Σ_k q[r,k] · xq[k]) * scale[r] / x_scale.
// The SSE2 path runs the scalar code for these two (the SSE2 slot exists for the ternary kernels).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/ternary_abi.hpp"
#include "flashlm/kernels/ternary_matmul.hpp"

namespace flashlm::kernels {

inline constexpr int64_t k_tile_rows = 16;  // rows per VNNI tile (one zmm of int32 sums)
inline constexpr int64_t k_group = 4;       // columns per VNNI group (4 bytes per row)

struct PackedInt8Rows {
    int64_t rows = 0, cols = 0, cols_padded = 0;  // cols_padded: a multiple of 4
    std::vector<int8_t> w;                        // tiles × groups × 64 bytes
    std::vector<float> scale;                     // per row (padded to whole tiles, padding 0): w ≈ q · scale
    std::vector<int32_t> row_sums;                // Σ_k q[r, k]

    int64_t tiles() const { return (rows + k_tile_rows - 1) / k_tile_rows; }
    int64_t groups() const { return cols_padded / k_group; }
    int8_t q(int64_t r, int64_t k) const {
        return w[size_t(((r / k_tile_rows * groups() + k / k_group) * k_tile_rows + r % k_tile_rows) * k_group +
                        k % k_group)];
    }
};

// Per-row absmax: scale = max|w_r| / 127, q = clamp(round(w · (127 / max|w_r|)), ±127), half to even;
// an all-zero row gets scale 0 and zero codes.
inline PackedInt8Rows pack_int8_rows(const float* w, int64_t rows, int64_t cols) {
    PackedInt8Rows p;
    p.rows = rows;
    p.cols = cols;
    p.cols_padded = (cols + k_group - 1) / k_group * k_group;
    const int64_t G = p.groups(), T = p.tiles();
    p.w.assign(size_t(T * G * k_tile_rows * k_group), 0);
    p.scale.assign(size_t(T * k_tile_rows), 0.0f);
    p.row_sums.assign(size_t(T * k_tile_rows), 0);
    for (int64_t r = 0; r < rows; ++r) {
        const float* wr = w + r * cols;
        float amax = 0;
        for (int64_t k = 0; k < cols; ++k) amax = std::max(amax, std::abs(wr[k]));
        if (!(amax > 0)) continue;
        const float inv = 127.0f / amax;
        p.scale[size_t(r)] = amax / 127.0f;
        const int64_t t = r / k_tile_rows, i = r % k_tile_rows;
        for (int64_t k = 0; k < cols; ++k) {
            const int8_t q = int8_t(std::clamp(std::nearbyint(wr[k] * inv), -127.0f, 127.0f));
            p.w[size_t(((t * G + k / k_group) * k_tile_rows + i) * k_group + k % k_group)] = q;
            p.row_sums[size_t(r)] += q;
        }
    }
    return p;
}

namespace detail {

inline void scalar_dense(const DenseI8Job& j) {
    for (int64_t t = j.t0; t < j.t1; ++t)
        for (int64_t i = 0; i < k_tile_rows && t * k_tile_rows + i < j.rows; ++i) {
            const int64_t r = t * k_tile_rows + i;
            const int8_t* w = j.w + (t * j.groups * k_tile_rows + i) * k_group;
            int32_t dot = 0;
            for (int64_t g = 0; g < j.groups; ++g)
                for (int64_t c = 0; c < k_group; ++c)
                    dot += int32_t(w[g * k_tile_rows * k_group + c]) * j.x[g * k_group + c];
            j.y[r] = float(dot) * j.wscale[r] / j.xscale;
        }
}

inline void scalar_dense(const DenseF32Job& j) {
    for (int64_t r = j.r0; r < j.r1; ++r) {
        const float* w = j.w + r * j.ld;
        float acc = 0;
        for (int64_t k = 0; k < j.cols; ++k) acc += w[k] * j.x[k];
        j.y[r] = acc;
    }
}

template <class Job>
void dispatch_dense(const Job& j) {
    switch (isa_slot().load(std::memory_order_relaxed)) {
#if defined(__x86_64__) || defined(__i386__)
        case Isa::avx2: TernaryRows{}(xsimd::avx2{}, j); break;
        case Isa::avx512: TernaryRows{}(xsimd::avx512bw{}, j); break;
#elif defined(__aarch64__)
        case Isa::neon: TernaryRows{}(xsimd::neon64{}, j); break;
        case Isa::neon_dotprod: TernaryRows{}(neon64_dotprod{}, j); break;
#endif
        default: scalar_dense(j); break;
    }
}

}  // namespace detail

namespace detail {
// f(c0, c1) over [b, e) in chunks of `chunk`, the last chunk first when `reverse`.
//
// Why reverse: a generator reads the same head every token, right after the block weights. When head +
// blocks exceed L2 (Bolt: 1.9 MB int8 head + 0.6 MB packed blocks against 2 MiB; the 7.7 MB float head
// always), a pass in the same direction every token misses on every line (a cyclic sweep larger than
// an LRU-like cache keeps nothing it will reuse in time). Sweeping the other way on alternate tokens
// starts where the previous pass ended, on lines still in L2. Each row is computed the same way in
// either order, so the numbers are identical.
template <class F>
void for_chunks(int64_t b, int64_t e, int64_t chunk, bool reverse, F&& f) {
    if (!reverse) {
        for (int64_t c = b; c < e; c += chunk) f(c, std::min(e, c + chunk));
        return;
    }
    for (int64_t c = b + (e - b - 1) / chunk * chunk; c >= b; c -= chunk) f(c, std::min(e, c + chunk));
}
}  // namespace detail

// y[N] = W x, W row-major [N, K] at row stride K. Rows are split over threads when it pays. `reverse`
// sweeps the rows last chunk first (same numbers; see detail::for_chunks for when that pays).
inline void dense_f32_matvec(const float* W, int64_t N, int64_t K, const float* x, float* y, bool reverse = false) {
    detail::DenseF32Job job{W, K, K, 0, 0, x, y};
    parallel_for(N, N * K, [&](int64_t r0, int64_t r1) {
        detail::for_chunks(r0, r1, 128, reverse, [&](int64_t c0, int64_t c1) {
            detail::DenseF32Job j = job;
            j.r0 = c0;
            j.r1 = c1;
            detail::dispatch_dense(j);
        });
    });
}

// y[rows] = float(q · xq) * scale[r] / x_scale; xq holds cols_padded values, zero past cols. `reverse`
// sweeps the tiles last chunk first (same numbers; see detail::for_chunks).
inline void int8_rows_matvec(const PackedInt8Rows& W, const int8_t* xq, float x_scale, float* y, bool reverse = false) {
    if (W.rows == 0) return;
    detail::DenseI8Job job{W.w.data(), W.groups(), 0, 0, W.rows, xq, x_scale, W.scale.data(), W.row_sums.data(), y};
    parallel_for(W.tiles(), W.rows * W.cols, [&](int64_t t0, int64_t t1) {
        detail::for_chunks(t0, t1, 16, reverse, [&](int64_t c0, int64_t c1) {
            detail::DenseI8Job j = job;
            j.t0 = c0;
            j.t1 = c1;
            detail::dispatch_dense(j);
        });
    });
}

// Float input: quantises x (absmax, as quantize_activations_int8) into xq_scratch (cols_padded values,
// caller-owned so that a per-token call allocates nothing), then runs the int8 kernel.
inline void int8_rows_matvec(const PackedInt8Rows& W, const float* x, float* y, int8_t* xq_scratch,
                             bool reverse = false) {
    float xs = 0;
    detail::quantize_rows_int8(x, 1, W.cols, xq_scratch, W.cols_padded, &xs);
    std::fill(xq_scratch + W.cols, xq_scratch + W.cols_padded, int8_t(0));
    int8_rows_matvec(W, xq_scratch, xs, y, reverse);
}

}  // namespace flashlm::kernels
