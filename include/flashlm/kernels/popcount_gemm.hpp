#pragma once
// Ternary × ternary GEMM on the bit-plane format of ternary_bitplane.hpp (VARIANTS.md §14.2), and the
// ternary-activation × float transpose product of the v6.1 C engine's backward.
//
//   C[i,j] = Σ_k x_ik w_jk = popcnt(Xv & Wv) − 2 · popcnt(Xv & Wv & (Xs ^ Ws))     (int32, exact)
//
// Every path computes the same integers, so they agree bit for bit. Upstream vectorises along K (one
// row pair per 16/32-byte chunk), which leaves most of a vector idle at the model's K = 192/384
// (KB = 24/48 bytes). Here the weights are first laid out word-major (a "panel": word b of columns
// j..j+7 side by side), so one vector holds the same 64 bits of K for 2 (NEON), 4 (AVX2) or 8
// (AVX-512) output columns and the per-lane popcount is already the per-column count:
//   - AVX-512: vpopcntq (VPOPCNTDQ) per 64-bit lane;
//   - AVX2:    nibble-LUT vpshufb byte counts summed over up to 31 words in bytes, then vpsadbw;
//   - NEON:    vcntq_u8 byte counts, then vpaddl u8→u16→u32→u64;
//   - scalar:  std::popcount per column.
// The word grouping of bytes is arbitrary (a popcount does not care about bit order) as long as both
// operands use the same one: both are read as little-endian uint64 of 8 consecutive bytes.
//
// Dispatch follows the float kernels' ISA choice (ternary_matmul.hpp: FLASHLM_ISA, set_isa): avx512
// runs the VPOPCNTDQ path where the CPU has it (else AVX2), avx2 the AVX2 path, sse2/scalar the scalar
// one. On ARM the NEON path runs unless FLASHLM_ISA=scalar. The SIMD bodies carry function-level target
// attributes instead of per-file flags, so this header needs no build support; they are only called
// after the CPU check.
#include "flashlm/core/x86_intrinsics.hpp"
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/ternary_bitplane.hpp"
#include "flashlm/kernels/ternary_matmul.hpp"

#if defined(__x86_64__) || defined(__i386__)
#define FLASHLM_POPCNT_X86 1
#endif
#if defined(__aarch64__) || defined(__ARM_NEON)
#include <arm_neon.h>
#define FLASHLM_POPCNT_NEON 1
#endif

namespace flashlm::kernels {

enum class PopcountPath : int { scalar, avx2, avx512, neon };
inline constexpr std::string_view k_popcount_path_names[] = {"scalar", "avx2", "avx512", "neon"};

// Output columns are padded to a multiple of this in a panel (the widest path's step).
inline constexpr int64_t k_panel_cols = 32;
// Longest K a row may have: the x words of one row live on the stack (2 planes × 128 words = 2 KiB).
inline constexpr int64_t k_popcount_max_words = 128;

// Weights in word-major order: val[b · np + j] is bytes 8b..8b+7 of row j's val plane (zero past KB and
// for j ≥ n). Views memory owned by the caller (popcount_panel_words() words per plane).
struct PopcountPanel {
    int64_t n = 0, kb = 0, kw = 0, np = 0;
    const uint64_t* val = nullptr;
    const uint64_t* sign = nullptr;
};

inline int64_t popcount_words(int64_t KB) { return (KB + 7) / 8; }
inline int64_t popcount_panel_words(int64_t N, int64_t KB) {
    return popcount_words(KB) * ((N + k_panel_cols - 1) / k_panel_cols * k_panel_cols);
}

namespace detail {

// Word b of a KB-byte row, zero-filled past the row's end.
inline uint64_t plane_word(const uint8_t* row, int64_t KB, int64_t b) {
    uint64_t w = 0;
    std::memcpy(&w, row + 8 * b, size_t(std::min<int64_t>(8, KB - 8 * b)));
    return w;
}

inline void popcount_rows_scalar(const uint64_t* xw, const PopcountPanel& W, int32_t* c) {
    const int64_t kw = W.kw;
    for (int64_t j = 0; j < W.n; ++j) {
        int64_t acc = 0;
        for (int64_t b = 0; b < kw; ++b) {
            const uint64_t both = xw[b] & W.val[b * W.np + j];
            const uint64_t neg = both & (xw[kw + b] ^ W.sign[b * W.np + j]);
            acc += std::popcount(both) - 2 * std::popcount(neg);
        }
        c[j] = int32_t(acc);
    }
}

#ifdef FLASHLM_POPCNT_X86
__attribute__((target("avx2"))) inline __m256i popcnt_bytes_avx2(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

// 16 columns per pass as 4 vectors of 4. Byte counts grow by at most 8 per word, so up to 31 words are
// summed in bytes before vpsadbw folds them into the 64-bit lane of their column.
__attribute__((target("avx2"))) inline void popcount_rows_avx2(const uint64_t* xw, const PopcountPanel& W, int32_t* c) {
    const int64_t kw = W.kw, np = W.np;
    const __m256i zero = _mm256_setzero_si256();
    for (int64_t j0 = 0; j0 < W.n; j0 += 16) {
        __m256i pos[4] = {zero, zero, zero, zero}, neg[4] = {zero, zero, zero, zero};
        for (int64_t b0 = 0; b0 < kw; b0 += 31) {
            __m256i cb[4] = {zero, zero, zero, zero}, cn[4] = {zero, zero, zero, zero};
            for (int64_t b = b0; b < std::min(kw, b0 + 31); ++b) {
                const __m256i xv = _mm256_set1_epi64x(int64_t(xw[b])), xs = _mm256_set1_epi64x(int64_t(xw[kw + b]));
                const uint64_t* wv = W.val + b * np + j0;
                const uint64_t* ws = W.sign + b * np + j0;
                for (int q = 0; q < 4; ++q) {
                    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wv + 4 * q));
                    const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ws + 4 * q));
                    const __m256i both = _mm256_and_si256(xv, v);
                    const __m256i ng = _mm256_and_si256(both, _mm256_xor_si256(xs, s));
                    cb[q] = _mm256_add_epi8(cb[q], popcnt_bytes_avx2(both));
                    cn[q] = _mm256_add_epi8(cn[q], popcnt_bytes_avx2(ng));
                }
            }
            for (int q = 0; q < 4; ++q) {
                pos[q] = _mm256_add_epi64(pos[q], _mm256_sad_epu8(cb[q], zero));
                neg[q] = _mm256_add_epi64(neg[q], _mm256_sad_epu8(cn[q], zero));
            }
        }
        alignas(32) int64_t r[16];
        for (int q = 0; q < 4; ++q)
            _mm256_store_si256(reinterpret_cast<__m256i*>(r + 4 * q), _mm256_sub_epi64(pos[q], _mm256_slli_epi64(neg[q], 1)));
        for (int64_t t = 0; t < std::min<int64_t>(16, W.n - j0); ++t) c[j0 + t] = int32_t(r[t]);
    }
}

// 32 columns per pass as 4 vectors of 8; vpopcntq counts each column's word directly.
__attribute__((target("avx512f,avx512vpopcntdq"))) inline void popcount_rows_avx512(const uint64_t* xw, const PopcountPanel& W,
                                                                                     int32_t* c) {
    const int64_t kw = W.kw, np = W.np;
    for (int64_t j0 = 0; j0 < W.n; j0 += 32) {
        __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
        for (int64_t b = 0; b < kw; ++b) {
            const __m512i xv = _mm512_set1_epi64(int64_t(xw[b])), xs = _mm512_set1_epi64(int64_t(xw[kw + b]));
            const uint64_t* wv = W.val + b * np + j0;
            const uint64_t* ws = W.sign + b * np + j0;
            for (int q = 0; q < 4; ++q) {
                const __m512i both = _mm512_and_si512(xv, _mm512_loadu_si512(wv + 8 * q));
                const __m512i ng = _mm512_and_si512(both, _mm512_xor_si512(xs, _mm512_loadu_si512(ws + 8 * q)));
                // 2·popcnt(ng) as an add: gcc 12's _mm512_slli_epi64 trips -Wmaybe-uninitialized in its header
                const __m512i n1 = _mm512_popcnt_epi64(ng);
                acc[q] = _mm512_add_epi64(acc[q], _mm512_sub_epi64(_mm512_popcnt_epi64(both), _mm512_add_epi64(n1, n1)));
            }
        }
        if (j0 + 32 <= W.n) {
            for (int q = 0; q < 4; ++q)
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + j0 + 8 * q), _mm512_maskz_cvtepi64_epi32(0xFF, acc[q]));
        } else {
            alignas(64) int32_t r[32];
            for (int q = 0; q < 4; ++q)
                _mm256_store_si256(reinterpret_cast<__m256i*>(r + 8 * q), _mm512_maskz_cvtepi64_epi32(0xFF, acc[q]));
            for (int64_t t = 0; t < W.n - j0; ++t) c[j0 + t] = r[t];
        }
    }
}
#endif

#ifdef FLASHLM_POPCNT_NEON
// 8 columns per pass as 4 vectors of 2; byte counts summed over up to 31 words, then widened pairwise.
inline void popcount_rows_neon(const uint64_t* xw, const PopcountPanel& W, int32_t* c) {
    const int64_t kw = W.kw, np = W.np;
    for (int64_t j0 = 0; j0 < W.n; j0 += 8) {
        uint64x2_t pos[4], neg[4];
        for (int q = 0; q < 4; ++q) pos[q] = vdupq_n_u64(0), neg[q] = vdupq_n_u64(0);
        for (int64_t b0 = 0; b0 < kw; b0 += 31) {
            uint8x16_t cb[4], cn[4];
            for (int q = 0; q < 4; ++q) cb[q] = vdupq_n_u8(0), cn[q] = vdupq_n_u8(0);
            for (int64_t b = b0; b < std::min(kw, b0 + 31); ++b) {
                const uint64x2_t xv = vdupq_n_u64(xw[b]), xs = vdupq_n_u64(xw[kw + b]);
                const uint64_t* wv = W.val + b * np + j0;
                const uint64_t* ws = W.sign + b * np + j0;
                for (int q = 0; q < 4; ++q) {
                    const uint64x2_t both = vandq_u64(xv, vld1q_u64(wv + 2 * q));
                    const uint64x2_t ng = vandq_u64(both, veorq_u64(xs, vld1q_u64(ws + 2 * q)));
                    cb[q] = vaddq_u8(cb[q], vcntq_u8(vreinterpretq_u8_u64(both)));
                    cn[q] = vaddq_u8(cn[q], vcntq_u8(vreinterpretq_u8_u64(ng)));
                }
            }
            for (int q = 0; q < 4; ++q) {
                pos[q] = vaddq_u64(pos[q], vpaddlq_u32(vpaddlq_u16(vpaddlq_u8(cb[q]))));
                neg[q] = vaddq_u64(neg[q], vpaddlq_u32(vpaddlq_u16(vpaddlq_u8(cn[q]))));
            }
        }
        int64_t r[8];
        for (int q = 0; q < 4; ++q)
            vst1q_s64(r + 2 * q, vsubq_s64(vreinterpretq_s64_u64(pos[q]), vshlq_n_s64(vreinterpretq_s64_u64(neg[q]), 1)));
        for (int64_t t = 0; t < std::min<int64_t>(8, W.n - j0); ++t) c[j0 + t] = int32_t(r[t]);
    }
}
#endif

inline void popcount_row(PopcountPath path, const uint64_t* xw, const PopcountPanel& W, int32_t* c) {
    switch (path) {
#ifdef FLASHLM_POPCNT_X86
        case PopcountPath::avx2: popcount_rows_avx2(xw, W, c); return;
        case PopcountPath::avx512: popcount_rows_avx512(xw, W, c); return;
#endif
#ifdef FLASHLM_POPCNT_NEON
        case PopcountPath::neon: popcount_rows_neon(xw, W, c); return;
#endif
        default: popcount_rows_scalar(xw, W, c); return;
    }
}

}  // namespace detail

// ---- path choice ------------------------------------------------------------------------------------

inline bool popcount_path_available(PopcountPath p) {
    switch (p) {
        case PopcountPath::scalar: return true;
#ifdef FLASHLM_POPCNT_X86
        case PopcountPath::avx2: return detail::cpu_has(Isa::avx2);
        case PopcountPath::avx512: return cpu_features().avx512f && cpu_features().avx512vpopcntdq;
#endif
#ifdef FLASHLM_POPCNT_NEON
        case PopcountPath::neon: return true;
#endif
        default: return false;
    }
}

// The paths this CPU runs, scalar first.
inline std::vector<PopcountPath> available_popcount_paths() {
    std::vector<PopcountPath> out;
    for (int i = 0; i < 4; ++i)
        if (popcount_path_available(PopcountPath(i))) out.push_back(PopcountPath(i));
    return out;
}

inline std::string popcount_path_name(PopcountPath p) { return std::string(k_popcount_path_names[int(p)]); }

// The path the dispatched calls take now (derived from the float kernels' active ISA; see the top).
inline PopcountPath active_popcount_path() {
#ifdef FLASHLM_POPCNT_NEON
    const char* env = std::getenv("FLASHLM_ISA");
    return env && std::string_view(env) == "scalar" ? PopcountPath::scalar : PopcountPath::neon;
#else
    switch (detail::isa_slot().load(std::memory_order_relaxed)) {
        case Isa::avx512:
            return popcount_path_available(PopcountPath::avx512) ? PopcountPath::avx512 : PopcountPath::avx2;
        case Isa::avx2: return PopcountPath::avx2;
        default: return PopcountPath::scalar;
    }
#endif
}

// ---- panels -----------------------------------------------------------------------------------------

// Lays out packed weight planes Wv/Ws [N, KB] word-major into val/sign (popcount_panel_words(N, KB)
// words each).
inline PopcountPanel make_popcount_panel(const uint8_t* Wv, const uint8_t* Ws, int64_t N, int64_t KB, uint64_t* val,
                                         uint64_t* sign) {
    PopcountPanel p;
    p.n = N, p.kb = KB, p.kw = popcount_words(KB), p.np = (N + k_panel_cols - 1) / k_panel_cols * k_panel_cols;
    if (p.kw > k_popcount_max_words)
        throw std::invalid_argument("popcount GEMM: rows longer than " + std::to_string(64 * k_popcount_max_words) +
                                    " elements are not supported");
    for (int64_t b = 0; b < p.kw; ++b)
        for (int64_t j = 0; j < p.np; ++j) {
            val[b * p.np + j] = j < N ? detail::plane_word(Wv + j * KB, KB, b) : 0;
            sign[b * p.np + j] = j < N ? detail::plane_word(Ws + j * KB, KB, b) : 0;
        }
    p.val = val, p.sign = sign;
    return p;
}

// A panel with its own storage (tests, benchmarks, frozen weights for generation). Movable (a moved
// vector keeps its buffer, so the view stays valid), not copyable.
struct OwnedPopcountPanel {
    std::vector<uint64_t> val, sign;
    PopcountPanel view;
    OwnedPopcountPanel() = default;
    OwnedPopcountPanel(const uint8_t* Wv, const uint8_t* Ws, int64_t N, int64_t KB)
        : val(size_t(popcount_panel_words(N, KB))), sign(val.size()) {
        view = make_popcount_panel(Wv, Ws, N, KB, val.data(), sign.data());
    }
    OwnedPopcountPanel(const OwnedPopcountPanel&) = delete;
    OwnedPopcountPanel& operator=(const OwnedPopcountPanel&) = delete;
    OwnedPopcountPanel(OwnedPopcountPanel&&) = default;
    OwnedPopcountPanel& operator=(OwnedPopcountPanel&&) = default;
};

// ---- GEMM -------------------------------------------------------------------------------------------

// C[M, N] (leading dim ldc) = X · Wᵀ over ternary rows: X planes [M, KB], W as a panel, on `path`.
inline void popcount_gemm(PopcountPath path, const uint8_t* Xv, const uint8_t* Xs, int64_t M, const PopcountPanel& W,
                          int32_t* C, int64_t ldc) {
    const int64_t KB = W.kb, kw = W.kw;
    parallel_for(M, M * W.n * kw * 4, [&](int64_t i0, int64_t i1) {
        uint64_t xw[2 * k_popcount_max_words];
        for (int64_t i = i0; i < i1; ++i) {
            for (int64_t b = 0; b < kw; ++b) {
                xw[b] = detail::plane_word(Xv + i * KB, KB, b);
                xw[kw + b] = detail::plane_word(Xs + i * KB, KB, b);
            }
            detail::popcount_row(path, xw, W, C + i * ldc);
        }
    });
}

inline void popcount_gemm(const uint8_t* Xv, const uint8_t* Xs, int64_t M, const PopcountPanel& W, int32_t* C, int64_t ldc) {
    popcount_gemm(active_popcount_path(), Xv, Xs, M, W, C, ldc);
}

// Upstream's signature (ternary_matmul in ternary_engine.c): C[M, N] from planes X [M, KB], W [N, KB].
inline void ternary_matmul_popcount(const uint8_t* Xv, const uint8_t* Xs, const uint8_t* Wv, const uint8_t* Ws, int32_t* C,
                                    int64_t M, int64_t N, int64_t KB) {
    const OwnedPopcountPanel p(Wv, Ws, N, KB);
    popcount_gemm(Xv, Xs, M, p.view, C, N);
}

// The definition, byte by byte on the row-major planes: what every path must reproduce.
inline void ternary_matmul_popcount_reference(const uint8_t* Xv, const uint8_t* Xs, const uint8_t* Wv, const uint8_t* Ws,
                                              int32_t* C, int64_t M, int64_t N, int64_t KB) {
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            int32_t acc = 0;
            for (int64_t b = 0; b < KB; ++b) {
                const uint8_t both = Xv[i * KB + b] & Wv[j * KB + b];
                acc += std::popcount(both) - 2 * std::popcount(uint8_t(both & (Xs[i * KB + b] ^ Ws[j * KB + b])));
            }
            C[i * N + j] = acc;
        }
}

// ---- transpose product --------------------------------------------------------------------------------

// dW[K, N] += Σ_i x_iᵀ G_i for ternary rows x_i (planes [M, KB]) and float G [M, N]: for every set bit k
// of row i, row G_i is added to (or, where the sign bit is set, subtracted from) row k of dW. Threads
// take contiguous ranges of i into private K × N buffers, summed in thread order afterwards, so the
// result is deterministic for a given thread count.
template <class T>
void ternary_transpose_matmul(const uint8_t* Xv, const uint8_t* Xs, const T* G, int64_t M, int64_t K, int64_t N, T* dW) {
    const int64_t KB = bitplane_bytes(K);
    auto scatter = [&](int64_t i0, int64_t i1, T* out) {
        for (int64_t i = i0; i < i1; ++i) {
            const T* g = G + i * N;
            for (int64_t b = 0; b < KB; ++b)
                for (uint8_t v = Xv[i * KB + b]; v;) {
                    const int t = std::countl_zero(v);
                    const uint8_t bit = uint8_t(0x80u >> t);
                    v = uint8_t(v & ~bit);
                    T* d = out + (b * 8 + t) * N;
                    if (Xs[i * KB + b] & bit)
                        for (int64_t n = 0; n < N; ++n) d[n] -= g[n];
                    else
                        for (int64_t n = 0; n < N; ++n) d[n] += g[n];
                }
        }
    };
    const int64_t work = M * K * N / 2;
    if (!go_parallel(M, work)) {
        scatter(0, M, dW);
        return;
    }
    const int64_t KN = K * N;
    std::vector<T> buf(size_t(std::min(max_threads(), k_max_threads)) * size_t(KN), T(0));
    const int used = parallel_for_tid(M, work, [&](int64_t i0, int64_t i1, int tid) { scatter(i0, i1, buf.data() + tid * KN); });
    parallel_for(KN, KN * used, [&](int64_t e0, int64_t e1) {
        for (int t = 0; t < used; ++t) {
            const T* p = buf.data() + t * KN;
            for (int64_t e = e0; e < e1; ++e) dW[e] += p[e];
        }
    });
}

}  // namespace flashlm::kernels
