#pragma once
// Ternary × int8 GEMM for the training forward (`flashlm train --quant int8`, ops/bitlinear_int8.hpp):
// Y[M, N] = X[M, K] · W̃ᵀ with W̃ the fake-quantised weight of a BitLinear (every nonzero of row r is
// ±α_r: Q1, Q1', Q2, Q0, Q3) and X quantised per token like the inference int8 family (BitNet b1.58
// absmax: s = 127 / max(max|x|, 1e-5), xq = round(x · s) in ±127, half to even).
//
// Unlike PackedTernary (2-bit planes, one row against one token at a time), the weight here is stored
// as int8 codes in the VNNI tile layout of PackedInt8Rows (16 rows × 4 columns per 64 bytes), so that
// the AVX-512 kernel computes a register block of 4 tokens × 64 rows as an outer product: per group of
// 4 columns it loads 4 weight vectors once and reuses each for 4 tokens (16 vpdpbusd), with no
// horizontal sums. Training quantises W every step, so the packing runs once per forward call (O(NK),
// a 1/M share of the product's work); the buffers are kept and reused, so a step allocates nothing.
//
// Paths: avx512 (VNNI), avx2 (vpmaddubsw: the codes are ±1, so no int16 saturation); every other ISA
// runs the scalar code. The dot product is exact in int32 and the rescale is the same two float
// multiplies everywhere, so all paths agree bit for bit.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "flashlm/core/parallel.hpp"
#include "flashlm/core/tensor.hpp"  // <Eigen/Core>, with g++ 12's false intrinsics warnings silenced
#include "flashlm/kernels/ternary_abi.hpp"
#include "flashlm/kernels/ternary_matmul.hpp"

namespace flashlm::kernels {

// Codes of a per-row ternary matrix, VNNI tiles (see TernaryGemmI8Job in ternary_abi.hpp).
struct TernaryI8Weights {
    int64_t rows = 0, cols = 0, cols_padded = 0;  // cols_padded: a multiple of 4
    std::vector<int8_t> w;                        // tiles × groups × 64
    std::vector<float> scale;                     // α_r, padded to whole tiles with 0
    std::vector<int32_t> row_sums;                // Σ_k q[r, k], padded with 0

    int64_t tiles() const { return (rows + 15) / 16; }
    int64_t groups() const { return cols_padded / 4; }
};

// Activations quantised per row, as unsigned bytes xq + 128 (what vpdpbusd / vpmaddubsw multiply).
struct Int8Activations {
    int64_t rows = 0, cols = 0, ld = 0;  // ld: a multiple of 4, zero activations (128) past cols
    std::vector<uint8_t> q;
    std::vector<float> inv;  // 1 / s per row: x ≈ xq · inv
};

// Packs W̃ (row-major [rows, cols]) into p, reusing p's buffers. Throws std::invalid_argument if a row's
// nonzeros differ in magnitude (a blockwise-scaled W̃, which this format cannot hold).
inline void pack_ternary_i8(const float* wq, int64_t rows, int64_t cols, TernaryI8Weights& p) {
    using Row = Eigen::Map<const Eigen::ArrayXf, Eigen::Unaligned>;
    p.rows = rows;
    p.cols = cols;
    p.cols_padded = (cols + 3) / 4 * 4;
    const int64_t G = p.groups(), T = p.tiles();
    p.w.resize(size_t(T * G * 64));
    p.scale.assign(size_t(T * 16), 0.0f);
    p.row_sums.assign(size_t(T * 16), 0);
    std::atomic<bool> mixed{false};
    parallel_for(T, 4 * rows * cols, [&](int64_t t0, int64_t t1) {
        if (t1 * 16 > rows)  // padding rows of the last tile
            std::memset(p.w.data() + (T - 1) * G * 64, 0, size_t(G * 64));
        for (int64_t r = t0 * 16; r < std::min(rows, t1 * 16); ++r) {
            const float* wr = wq + r * cols;
            const Row row(wr, cols);
            const float a = cols > 0 ? row.abs().maxCoeff() : 0.0f;
            // |v| · (|v| − α) is 0 exactly for v = 0 and |v| = α (a vectorised max, unlike a boolean any()).
            if (cols > 0 && (row.abs() * (row.abs() - a)).abs().maxCoeff() > 0.0f) mixed.store(true, std::memory_order_relaxed);
            int8_t* dst = p.w.data() + (r / 16 * G * 16 + r % 16) * 4;
            int32_t sum = 0;
            for (int64_t g = 0; g < G; ++g) {
                int8_t c[4] = {0, 0, 0, 0};  // 4 codes, one 32-bit store into the tile
                for (int64_t i = 0; i < 4 && 4 * g + i < cols; ++i) {
                    const float v = wr[4 * g + i];
                    c[i] = int8_t((v > 0.0f) - (v < 0.0f));
                    sum += c[i];
                }
                std::memcpy(dst + g * 64, c, 4);
            }
            p.scale[size_t(r)] = a;
            p.row_sums[size_t(r)] = sum;
        }
    });
    if (mixed.load()) throw std::invalid_argument("pack_ternary_i8: a row of the quantised weight has two magnitudes");
}

// Per-row absmax quantisation of X[M, K] (the int8 family's rule, quantize_activations_int8) into a.
// Plain loops vectorised by `omp simd`, not Eigen expressions: Eigen's clamp and casts to uint8 went
// through mask juggling and its max reduction through a stack copy (1.9 % of an int8 + bf16 Bolt step).
inline void quantize_activations_u8(const float* x, int64_t M, int64_t K, Int8Activations& a) {
    a.rows = M;
    a.cols = K;
    a.ld = (K + 3) / 4 * 4;
    a.q.resize(size_t(M * a.ld));
    a.inv.resize(size_t(M));
    parallel_for(M, 4 * M * K, [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
            const float* xr = x + m * K;
            // Max is exact, so the order of the vectorised reduction changes nothing. The max may skip a
            // NaN, so `bad` (x − x: NaN for a NaN or an infinity) carries one to the row's scale and the
            // row's outputs come out NaN, as from the float GEMM, for the trainer's NaN check.
            float amax = 0.0f, bad = 0.0f;
#pragma omp simd reduction(max : amax) reduction(+ : bad)
            for (int64_t c = 0; c < K; ++c) {
                amax = std::max(amax, std::abs(xr[c]));
                bad += xr[c] - xr[c];
            }
            const float s = 127.0f / std::max(amax, 1e-5f);
            uint8_t* q = a.q.data() + m * a.ld;
            // simd: q (bytes) may alias x as far as the compiler knows, which kept this loop scalar.
#pragma omp simd
            for (int64_t c = 0; c < K; ++c) q[c] = uint8_t(detail::activation_code(xr[c] * s) + 128);  // 1..255
            for (int64_t c = K; c < a.ld; ++c) q[c] = 128;
            a.inv[size_t(m)] = 1.0f / s + bad;
        }
    });
}

namespace detail {

inline void scalar_gemm_i8(const TernaryGemmI8Job& j) {
    for (int64_t m = j.m0; m < j.m1; ++m) {
        const uint8_t* x = j.x + m * j.ldx;
        for (int64_t r = 0; r < j.rows; ++r) {
            const int8_t* w = j.w + (r / 16 * j.groups * 16 + r % 16) * 4;
            int32_t dot = 0;
            for (int64_t g = 0; g < j.groups; ++g)
                for (int c = 0; c < 4; ++c) dot += (int32_t(x[4 * g + c]) - 128) * w[g * 64 + c];
            j.y[m * j.ldy + r] = float(dot) * j.wscale[r] * j.xinv[m];
        }
    }
}

inline void dispatch_gemm_i8(const TernaryGemmI8Job& j) {
    switch (isa_slot().load(std::memory_order_relaxed)) {
#if defined(__x86_64__) || defined(__i386__)
        case Isa::avx2: TernaryRows{}(xsimd::avx2{}, j); break;
        case Isa::avx512: TernaryRows{}(xsimd::avx512bw{}, j); break;
#endif
        default: scalar_gemm_i8(j); break;
    }
}

// Tokens per task: a multiple of the register block (4), so a task's x (≤ 96 KB at K = 1024) stays in L2
// while every weight panel passes over it.
inline constexpr int64_t k_gemm_i8_tokens = 96;

}  // namespace detail

// Y[M, N] (row stride N) = dequantised X · W̃ᵀ. Threads split the tokens.
inline void ternary_gemm_i8(const TernaryI8Weights& W, const Int8Activations& X, float* Y) {
    if (X.rows == 0 || W.rows == 0) return;
    if (X.cols != W.cols || X.ld < W.cols_padded)
        throw std::invalid_argument("ternary_gemm_i8: activations and weights differ in width");
    const detail::TernaryGemmI8Job job{W.w.data(), W.groups(), W.tiles(), W.rows, X.q.data(), 0, 0, X.ld,
                                       X.inv.data(), W.scale.data(), W.row_sums.data(), Y, W.rows};
    const int64_t chunks = (X.rows + detail::k_gemm_i8_tokens - 1) / detail::k_gemm_i8_tokens;
    parallel_for(chunks, X.rows * W.rows * W.cols, [&](int64_t c0, int64_t c1) {
        detail::TernaryGemmI8Job j = job;
        j.m0 = c0 * detail::k_gemm_i8_tokens;
        j.m1 = std::min(X.rows, c1 * detail::k_gemm_i8_tokens);
        detail::dispatch_gemm_i8(j);
    });
}

}  // namespace flashlm::kernels
