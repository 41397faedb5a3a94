#pragma once
// The v6.1 C engine's packed ternary format (VARIANTS.md §14.1) and its two quantizers (§2 Q4).
//
// A row of K ternary values is two bit-planes of KB = ceil(K/8) bytes: val (1 = non-zero) and sign
// (1 = negative). Element k lives in byte k/8 at bit 7 − k%8 (MSB first, numpy packbits order); bits
// past K are zero in both planes, which the popcount GEMM relies on. Weights are stored as output rows
// (N × K, PyTorch linear layout), activations as their M rows: both operands of the GEMM share the layout.
//
// This is a different layout from ternary_pack.hpp's PackedTernary (64-element blocks, LSB first,
// interleaved planes), which serves the float × ternary kernels; this one exists so that ternary ×
// ternary products are a pair of ANDs and popcounts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "flashlm/core/parallel.hpp"

namespace flashlm::kernels {

inline constexpr int64_t bitplane_bytes(int64_t K) { return (K + 7) / 8; }

// q[rows, K] in {−1, 0, 1} → planes val/sign [rows, KB].
inline void pack_bitplanes(const int8_t* q, int64_t rows, int64_t K, uint8_t* val, uint8_t* sign) {
    const int64_t KB = bitplane_bytes(K);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t b = 0; b < KB; ++b) {
            uint8_t v = 0, s = 0;
            for (int64_t t = 0; t < 8 && b * 8 + t < K; ++t) {
                const int8_t x = q[r * K + b * 8 + t];
                if (x != 0) v |= uint8_t(0x80u >> t);
                if (x < 0) s |= uint8_t(0x80u >> t);
            }
            val[r * KB + b] = v;
            sign[r * KB + b] = s;
        }
}

// Planes → out[rows, K] in {−1, 0, 1} (upstream's unpack_ternary_f32), times row_scale[r] if given.
// Branch-free (integer −1/0/1, then one conversion): about half the entries are zero at random, so a
// branch per element mispredicted often enough to make this the largest part of Q4's backward. The
// values are the same bits as the branchy form: ±1 and +0 exactly, then ±s and +0 (s > 0).
template <class T>
void unpack_bitplanes(const uint8_t* val, const uint8_t* sign, int64_t rows, int64_t K, T* out,
                      const T* row_scale = nullptr) {
    const int64_t KB = bitplane_bytes(K), full = K / 8;
    for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* v = val + r * KB;
        const uint8_t* s = sign + r * KB;
        T* o = out + r * K;
        for (int64_t b = 0; b < full; ++b) {
            const unsigned vb = v[b], sb = s[b];
            for (int t = 0; t < 8; ++t) {
                const int nz = int((vb >> (7 - t)) & 1u), neg = int((sb >> (7 - t)) & 1u);
                o[b * 8 + t] = T(nz * (1 - 2 * neg));
            }
        }
        for (int64_t k = full * 8; k < K; ++k) {
            const uint8_t bit = uint8_t(0x80u >> (k & 7));
            o[k] = (v[k / 8] & bit) ? ((s[k / 8] & bit) ? T(-1) : T(1)) : T(0);
        }
        if (row_scale)
            for (int64_t k = 0; k < K; ++k) o[k] *= row_scale[r];
    }
}

// Activation requantize (upstream requantize_f32): per row, τ = 0.6745 · mean_k |x| (0.6745·E|x| ≈ the
// median |x| of a Gaussian row, so about half the entries survive), ternary = sign(x)·[|x| > τ]. Writes
// mean_k |x| per row to row_mean_abs (if not null): the per-row dequantisation scale's base.
template <class T>
void requantize_rows(const T* x, int64_t M, int64_t K, uint8_t* val, uint8_t* sign, T* row_mean_abs) {
    const int64_t KB = bitplane_bytes(K);
    parallel_for(M, M * K, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const T* xi = x + i * K;
            // double (4 partial sums for speed): the threshold should not depend on the summation order
            double part[4] = {0, 0, 0, 0};
            int64_t k = 0;
            for (; k + 4 <= K; k += 4)
                for (int j = 0; j < 4; ++j) part[j] += std::abs(double(xi[k + j]));
            for (; k < K; ++k) part[0] += std::abs(double(xi[k]));
            const T mean = T((part[0] + part[1] + part[2] + part[3]) / double(K));
            const T tau = T(0.6745) * mean;
            if (row_mean_abs) row_mean_abs[i] = mean;
            for (int64_t b = 0; b < KB; ++b) {
                unsigned v = 0, s = 0;
                const int64_t n = std::min<int64_t>(8, K - b * 8);
                for (int64_t t = 0; t < n; ++t) {  // branch-free: about half the entries pass
                    const T e = xi[b * 8 + t];
                    const unsigned nz = std::abs(e) > tau, neg = e < 0;
                    v |= nz << (7 - t);
                    s |= (nz & neg) << (7 - t);
                }
                val[i * KB + b] = uint8_t(v);
                sign[i * KB + b] = uint8_t(s);
            }
        }
    });
}

// Weight quantize (upstream quantize_weights): s = mean|W| + 1e-8 over the whole tensor; ternary = +1
// where W/s > 0.5, −1 where W/s < −0.5. Returns s (the dequantisation scale: W̃ = s · ternary).
template <class T>
T quantize_weight_planes(const T* W, int64_t rows, int64_t K, uint8_t* val, uint8_t* sign) {
    const int64_t n = rows * K, KB = bitplane_bytes(K);
    double part[4] = {0, 0, 0, 0};  // double, 4 partial sums: as requantize_rows
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; ++j) part[j] += std::abs(double(W[i + j]));
    for (; i < n; ++i) part[0] += std::abs(double(W[i]));
    const T s = T((part[0] + part[1] + part[2] + part[3]) / double(n)) + T(1e-8);
    parallel_for(rows, n, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            for (int64_t b = 0; b < KB; ++b) {
                unsigned v = 0, sg = 0;
                const int64_t m = std::min<int64_t>(8, K - b * 8);
                for (int64_t t = 0; t < m; ++t) {  // branch-free
                    const T q = W[r * K + b * 8 + t] / s;
                    const unsigned pos = q > T(0.5), neg = q < T(-0.5);
                    v |= (pos | neg) << (7 - t);
                    sg |= neg << (7 - t);
                }
                val[r * KB + b] = uint8_t(v);
                sign[r * KB + b] = uint8_t(sg);
            }
    });
    return s;
}

}  // namespace flashlm::kernels
