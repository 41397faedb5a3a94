#pragma once
// Packed ternary weights with one scale per 256-element block (the Q5 quantizer, VARIANTS.md §2), run on
// the one-scale-per-tensor 2-bit kernels of ternary_matmul.hpp without touching them.
//
// Q5 blocks are runs of the row-major flattened weight, so within one row the scale changes only at the
// columns k where (r·cols + k) is a multiple of 256. Cutting the matrix at every such column (the union
// over rows) gives column slices in which each row has a single scale. Each slice is packed as its own
// PackedTernary with scale 1; a matvec runs the kernel per slice on the matching part of x and adds the
// slice's per-row scales times its output: y_r = Σ_p α[p, r] · Σ_{k ∈ p} q[r, k] x[k].
// When cols is a multiple of 64 every cut is too (256 ≡ 0 mod 64), so slices are whole kernel blocks and
// no input is copied or padded: no extra work beyond one scale-multiply-add per slice and row. D=192
// gives 3 slices of 64 columns, 512 gives 2 of 256, 384 gives 3 of 128; widths dividing 256 give one.
#include <cmath>
#include <cstdint>
#include <vector>

#include "flashlm/kernels/ternary_matmul.hpp"
#include "flashlm/kernels/ternary_pack.hpp"

namespace flashlm::kernels {

struct PackedTernaryBlockwise {
    int64_t rows = 0, cols = 0;
    std::vector<int64_t> col0;          // slice p covers columns [col0[p], col0[p+1]); col0.back() == cols
    std::vector<PackedTernary> slices;  // codes of each slice, scale 1
    std::vector<float> scales;          // [slices, rows]: α of the Q5 block holding row r's part of slice p

    int64_t n_slices() const { return int64_t(slices.size()); }
};

// Q5 of a rows × cols float matrix, arithmetic as ops::quantize_blockwise (double block sums, α rounded
// to float once, float divide, half-to-even), so dequantising gives exactly the training-time W̃.
inline PackedTernaryBlockwise pack_ternary_blockwise(const float* w, int64_t rows, int64_t cols, int64_t block = 256) {
    const int64_t n = rows * cols;
    const bool single = n <= block;  // ≤ one block: Q1 fallback, one α for the tensor
    const int64_t nb = single ? 1 : (n + block - 1) / block;
    std::vector<float> alpha(size_t(nb), 0.0f);
    for (int64_t b = 0; b < nb; ++b) {
        const int64_t i0 = single ? 0 : b * block, i1 = single ? n : std::min(n, i0 + block);
        double s = 0;
        for (int64_t i = i0; i < i1; ++i) s += std::abs(double(w[i]));
        alpha[size_t(b)] = float(s / double(single ? std::max<int64_t>(n, 1) : block));
    }
    auto block_of = [&](int64_t flat) { return single ? 0 : flat / block; };

    std::vector<char> cut(size_t(cols + 1), 0);
    cut[0] = cut[size_t(cols)] = 1;
    if (!single)
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t k = (block - (r * cols) % block) % block; k < cols; k += block) cut[size_t(k)] = 1;

    PackedTernaryBlockwise p;
    p.rows = rows, p.cols = cols;
    for (int64_t k = 0; k <= cols; ++k)
        if (cut[size_t(k)]) p.col0.push_back(k);
    std::vector<int8_t> q;
    for (size_t s = 0; s + 1 < p.col0.size(); ++s) {
        const int64_t c0 = p.col0[s], w_s = p.col0[s + 1] - c0;
        q.assign(size_t(rows * w_s), 0);
        for (int64_t r = 0; r < rows; ++r) {
            const float a = alpha[size_t(block_of(r * cols + c0))];
            const float denom = a + 1e-8f;
            for (int64_t k = 0; k < w_s; ++k) {
                const float v = std::nearbyint(w[r * cols + c0 + k] / denom);
                q[size_t(r * w_s + k)] = int8_t(v > 1.0f ? 1 : (v < -1.0f ? -1 : int(v)));
            }
            p.scales.push_back(a);
        }
        p.slices.push_back(pack_ternary_codes(q.data(), rows, w_s, 1.0f));
    }
    return p;
}

// Dequantised W̃ (rows × cols) into out.
inline void unpack_ternary_blockwise(const PackedTernaryBlockwise& p, float* out) {
    std::vector<float> part;
    for (int64_t s = 0; s < p.n_slices(); ++s) {
        const PackedTernary& sl = p.slices[size_t(s)];
        part.resize(size_t(sl.rows * sl.cols));
        unpack_ternary(sl, part.data());
        for (int64_t r = 0; r < p.rows; ++r)
            for (int64_t k = 0; k < sl.cols; ++k)
                out[r * p.cols + p.col0[size_t(s)] + k] = part[size_t(r * sl.cols + k)] * p.scales[size_t(s * p.rows + r)];
    }
}

// y[rows] = W̃ x (exact family). tmp: rows floats of caller scratch.
inline void ternary_blockwise_matvec(const PackedTernaryBlockwise& W, const float* x, float* y, float* tmp) {
    for (int64_t s = 0; s < W.n_slices(); ++s) {
        ternary_matvec(W.slices[size_t(s)], x + W.col0[size_t(s)], tmp);
        const float* a = W.scales.data() + s * W.rows;
        if (s == 0)
            for (int64_t r = 0; r < W.rows; ++r) y[r] = a[r] * tmp[r];
        else
            for (int64_t r = 0; r < W.rows; ++r) y[r] += a[r] * tmp[r];
    }
}

// int8 family: xq/xs = x quantised once over all cols (quantize_activations_int8); tmp: rows floats.
inline void ternary_blockwise_matvec_int8(const PackedTernaryBlockwise& W, const int8_t* xq, float xs, float* y, float* tmp) {
    for (int64_t s = 0; s < W.n_slices(); ++s) {
        ternary_matvec_int8(W.slices[size_t(s)], xq + W.col0[size_t(s)], xs, tmp);
        const float* a = W.scales.data() + s * W.rows;
        if (s == 0)
            for (int64_t r = 0; r < W.rows; ++r) y[r] = a[r] * tmp[r];
        else
            for (int64_t r = 0; r < W.rows; ++r) y[r] += a[r] * tmp[r];
    }
}

}  // namespace flashlm::kernels
