#pragma once
// Packed ternary weights for inference: the Q1 absmean quantizer (VARIANTS.md §2) applied once at load,
// 2 bits per weight, laid out so the SIMD kernels turn bits into lane masks with one or two instructions.
//
// Format. Each row is cut into blocks of 64 weights (the row is zero-padded to cols_padded, a multiple
// of 64). A block is two 64-bit planes, stored one after the other:
//   planes[(r * blocks + b) * 2 + 0]  bit j set <=> q[r, 64b + j] != 0     ("nonzero")
//   planes[(r * blocks + b) * 2 + 1]  bit j set <=> q[r, 64b + j] == -1    ("negative", a subset)
// Read per weight as a 2-bit code (nonzero | negative << 1): 0 -> 0, 1 -> +1, 3 -> -1 (2 never occurs).
// Why planes rather than interleaved codes: AVX-512 uses 16 bits of a plane directly as a __mmask16
// (masked add of x, sign flip of x), AVX2 moves 8 bits to lane sign bits with one vpsllvd, and the int8
// kernels build {-1, 0, +1} bytes with two mask moves. Padding weights are 0, so kernels may run whole
// blocks over any zero-padded input row.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace flashlm::kernels {

inline constexpr int64_t k_block = 64;  // weights per block: one uint64_t per plane

struct PackedTernary {
    int64_t rows = 0, cols = 0, cols_padded = 0;
    float scale = 0;                  // α: every weight is q · scale with q in {-1, 0, +1}
    std::vector<uint64_t> planes;     // rows × blocks × {nonzero, negative}
    std::vector<int32_t> row_sums;    // Σ_k q[r, k]: the correction for kernels that bias x to unsigned

    int64_t blocks() const { return cols_padded / k_block; }
    const uint64_t* row(int64_t r) const { return planes.data() + r * blocks() * 2; }
};

// Packs ternary codes q (row-major rows × cols, values in {-1, 0, +1}) that share one scale.
inline PackedTernary pack_ternary_codes(const int8_t* q, int64_t rows, int64_t cols, float scale) {
    PackedTernary p;
    p.rows = rows;
    p.cols = cols;
    p.cols_padded = (cols + k_block - 1) / k_block * k_block;
    p.scale = scale;
    p.planes.assign(size_t(rows * p.blocks() * 2), 0);
    p.row_sums.assign(size_t(rows), 0);
    for (int64_t r = 0; r < rows; ++r) {
        uint64_t* planes = p.planes.data() + r * p.blocks() * 2;
        for (int64_t k = 0; k < cols; ++k) {
            const int8_t v = q[r * cols + k];
            if (v < -1 || v > 1) throw std::invalid_argument("pack_ternary_codes: code outside {-1, 0, 1}");
            const uint64_t bit = uint64_t(1) << (k % k_block);
            if (v != 0) planes[k / k_block * 2] |= bit;
            if (v < 0) planes[k / k_block * 2 + 1] |= bit;
            p.row_sums[size_t(r)] += v;
        }
    }
    return p;
}

// Q1: α = mean|W| over the whole tensor, q = clamp(round(W / (α + 1e-8)), -1, 1), round half-to-even.
// The arithmetic (double sum, float divide) mirrors ops::quantize_absmean so that unpacking gives
// exactly the values training saw.
inline PackedTernary pack_ternary(const float* w, int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += std::abs(double(w[i]));
    const float alpha = n > 0 ? float(s / double(n)) : 0.0f;
    const float denom = alpha + 1e-8f;
    std::vector<int8_t> q(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        const float v = std::nearbyint(w[i] / denom);
        q[size_t(i)] = int8_t(v > 1.0f ? 1 : (v < -1.0f ? -1 : int(v)));
    }
    return pack_ternary_codes(q.data(), rows, cols, alpha);
}

// Dequantised weights q · scale into out (rows × cols, unpadded). Equal to the Q1 fake-quantised
// tensor; the only bit-level difference is that a weight rounded to zero comes back as +0, never -0.
inline void unpack_ternary(const PackedTernary& p, float* out) {
    for (int64_t r = 0; r < p.rows; ++r) {
        const uint64_t* planes = p.row(r);
        for (int64_t k = 0; k < p.cols; ++k) {
            const uint64_t nz = planes[k / k_block * 2] >> (k % k_block) & 1;
            const uint64_t neg = planes[k / k_block * 2 + 1] >> (k % k_block) & 1;
            out[r * p.cols + k] = nz ? (neg ? -p.scale : p.scale) : 0.0f;
        }
    }
}

}  // namespace flashlm::kernels
