#pragma once
// GEMM with bf16 operands and f32 accumulation, for `flashlm train --matmul bf16`: AMX-BF16 tiles
// (tdpbf16ps) where the CPU and OS allow them, else AVX512_BF16 (vdpbf16ps).
//
//   C[M,N] = alpha · A·B (+ C)
//
// Operands are rounded to bf16 (round to nearest even, as vcvtneps2bf16) while being packed, once per
// call; the products of two bf16 values are exact in f32 and are summed in f32, so the only error against
// the f32 GEMM is the operand rounding (relative 2^-9 per operand). Ternary weights {-1, 0, 1} are exact
// in bf16; a caller that keeps the scale out of the operand and passes it as alpha loses nothing on them.
//
// Packing (K is consumed in pairs: both instructions multiply pairs of bf16 and add both into one f32):
//  - A becomes uint32 "pairs" (low half: bf16 of element 2p, high half: 2p+1) addressed as
//    a[m·rs + p·ps]: a K-contiguous source (row-major [M,K]) is converted row by row (rs = pairs, ps = 1),
//    a K-strided source ([K,M], the dW = dyᵀ x case) is interleaved lane-wise (rs = 1, ps = M), so
//    neither needs a transpose. The micro-kernel broadcasts one pair per row.
//  - B becomes panels of NR columns, [panel][pair][NR] pairs, loaded as whole zmm registers.
// Rows of A and columns of B are zero-padded to whole tiles, K to an even count.
// The micro-kernel keeps an MR × NR tile of C in registers over the whole K (its data rate, (MR + NR) · 4
// bytes per MR · NR/16 instructions, is far below what L2 delivers); only where a thread's B is too big
// for the cache (v3's 50,257-deep dh) does avx512 run depth blocks, storing the f32 partial sums and
// resuming from them. Every C element is one ordered f32 sum either way, independent of blocking and
// thread count: results are deterministic.
// Threads take disjoint row ranges of C (or column panel ranges when B is the larger operand) in one
// parallel region without barriers; each packs its part of one operand and the whole other one.
//
// amx: A is always rows of pairs (a K-strided A is transposed in 16 × 16 register blocks), K padded to
// 32; a 32 × 32 block of C is 2 × 2 tiles, fed per 32 k by two A tiles and two B tiles (a B panel is
// stored as two 16-column halves so that a tile is 1 KiB in a row).
// Dispatch: the kernels are target-attribute functions (avx512f/bw/dq/bf16, + amx-tile/amx-bf16) that
// run only after a run-time check (bf16_kernel(): CPUID, and for AMX the Linux arch_prctl permission for
// the tile state); FLASHLM_ISA set to anything but avx512 hides both, like the ternary kernels.
// gemm_bf16_reference emulates the same arithmetic in scalar code (tests, and the definition).
// This header is the kernels: include it only where they are compiled (kernels/arch/gemm_bf16.cpp, one per
// program, and the tests/benchmarks that call bf16_detail directly); everything else includes
// gemm_bf16_api.hpp, whose gemm_bf16 / gemm_bf16_packed / pack_bf16_b call register_bf16_kernels()'s pointers.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "flashlm/core/x86_intrinsics.hpp"
#if defined(__x86_64__) || defined(__i386__)
#define FLASHLM_BF16_X86 1
#define FLASHLM_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512bf16")))
#define FLASHLM_AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512bf16,amx-tile,amx-bf16")))
#else
#define FLASHLM_BF16_X86 0
#endif

#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/avx512_transpose.hpp"
#include "flashlm/kernels/gemm_bf16_api.hpp"

namespace flashlm::kernels {

// ---- bf16 numbers ----------------------------------------------------------------------------------

// f32 -> bf16 as vcvtne2ps2bf16 converts: round to nearest even, NaN stays NaN (quiet), subnormals
// become zero of the same sign (vdpbf16ps reads a subnormal bf16 as zero anyway).
inline uint16_t to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
    if ((u & 0x7f800000u) == 0) return uint16_t((u >> 16) & 0x8000u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}
inline float from_bf16(uint16_t h) {
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline float round_bf16(float f) { return from_bf16(to_bf16(f)); }

// ---- scalar reference -------------------------------------------------------------------------------

// Element (i, k) of an operand: K-contiguous: src[i·ld + k]; K-strided: src[k·ld + i].
inline float operand_at(const float* src, int64_t ld, KLayout lay, int64_t i, int64_t k) {
    return lay == KLayout::k_inner ? src[i * ld + k] : src[k * ld + i];
}

// The definition of the kernel's arithmetic: per C element an f32 sum over k pairs in order, each pair
// adding the odd product then the even one (vdpbf16ps's order), then C = alpha · sum (+ C).
// A is [M,K] (layout la, leading dim lda), B is [K,N] given as b_layout k_inner ([N,K]) or k_outer ([K,N]).
inline void gemm_bf16_reference(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, KLayout la,
                                const float* B, int64_t ldb, KLayout lb, float* C, int64_t ldc, bool accumulate,
                                float alpha = 1.0f) {
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            float acc = 0;
            for (int64_t k = 0; k < K; k += 2) {
                if (k + 1 < K)
                    acc += round_bf16(operand_at(A, lda, la, m, k + 1)) * round_bf16(operand_at(B, ldb, lb, n, k + 1));
                acc += round_bf16(operand_at(A, lda, la, m, k)) * round_bf16(operand_at(B, ldb, lb, n, k));
            }
            float& c = C[m * ldc + n];
            c = accumulate ? c + alpha * acc : alpha * acc;
        }
}

#if FLASHLM_BF16_X86
namespace bf16_detail {

inline constexpr int k_mr = 8;          // avx512: rows of the C tile
inline constexpr int k_nv = 2;          // avx512: zmm registers across the C tile
inline constexpr int k_nr = 16 * k_nv;  // columns of a B panel (both kernels)
inline constexpr int k_amx_mr = 32;     // amx: rows of the C block (2 × 2 tiles of 16 × 16)
inline constexpr int k_amx_kp = 16;     // amx: pairs per tile step (32 bf16, 64 bytes per tile row)

// Lane-wise pair: low half bf16(even), high half bf16(odd). vcvtne2ps2bf16 rounds 32 floats as to_bf16
// does (words 0-15 from even, 16-31 from odd); one vpermw interleaves them.
FLASHLM_BF16_TARGET inline __m512i bf16_pair(__m512 even, __m512 odd) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21,
                                         5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(odd, even));
}

// Row-major source row (K floats, contiguous) -> kp pairs (zero past K) at dst[p·stride].
FLASHLM_BF16_TARGET inline void pack_row_pairs(const float* src, int64_t K, uint32_t* dst, int64_t kp,
                                               int64_t stride = 1) {
    const __m512i vindex = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                              _mm512_set1_epi32(int(stride)));
    int64_t p = 0;
    for (; 2 * p + 32 <= K; p += 16) {
        const __m512 lo = _mm512_loadu_ps(src + 2 * p), hi = _mm512_loadu_ps(src + 2 * p + 16);
        const __m512i v = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);  // 32 bf16 in element order
        if (stride == 1)
            _mm512_storeu_si512(dst + p, v);
        else
            _mm512_i32scatter_epi32(dst + p * stride, vindex, v, 4);
    }
    for (; p < kp; ++p) {
        const uint32_t e = 2 * p < K ? to_bf16(src[2 * p]) : 0, o = 2 * p + 1 < K ? to_bf16(src[2 * p + 1]) : 0;
        dst[p * stride] = e | (o << 16);
    }
}

// Pair p of a K-strided source (rows k = 2p, 2p+1 at src + k·ld), columns [0, n) -> dst[i·stride].
FLASHLM_BF16_TARGET inline void pack_interleave(const float* src, int64_t ld, int64_t K, int64_t p, int64_t n,
                                                uint32_t* dst, int64_t stride) {
    const float* even = 2 * p < K ? src + 2 * p * ld : nullptr;
    const float* odd = 2 * p + 1 < K ? src + (2 * p + 1) * ld : nullptr;
    const __m512i vindex = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                              _mm512_set1_epi32(int(stride)));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 mk = i + 16 <= n ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
        const __m512 e = even ? _mm512_maskz_loadu_ps(mk, even + i) : _mm512_setzero_ps();
        const __m512 o = odd ? _mm512_maskz_loadu_ps(mk, odd + i) : _mm512_setzero_ps();
        if (stride == 1)
            _mm512_mask_storeu_epi32(dst + i, mk, bf16_pair(e, o));
        else
            _mm512_mask_i32scatter_epi32(dst + i * stride, mk, vindex, bf16_pair(e, o), 4);
    }
}

using avx512::transpose16;  // kernels/avx512_transpose.hpp, shared with the f32 kernel

// K-strided source (element (m, k) at src[k·ld + m]) -> rows of pairs d[m·rs + p] for m in [m0, m1)
// (at most 16) and p in [0, kp), kp a multiple of 16: 16 pairs of 16 rows at a time, transposed in
// registers, so that every store is a whole cache line.
FLASHLM_BF16_TARGET inline void pack_transpose_rows(const float* src, int64_t ld, int64_t K, int64_t m0, int64_t m1,
                                                    int64_t kp, uint32_t* d, int64_t rs) {
    const int64_t mn = m1 - m0;
    const __mmask16 mk = mn >= 16 ? __mmask16(0xffff) : __mmask16((1u << mn) - 1);
    __m512i v[16];
    for (int64_t p0 = 0; p0 < kp; p0 += 16) {
        for (int i = 0; i < 16; ++i) {
            const int64_t k = 2 * (p0 + i);
            const __m512 e = k < K ? _mm512_maskz_loadu_ps(mk, src + k * ld + m0) : _mm512_setzero_ps();
            const __m512 o = k + 1 < K ? _mm512_maskz_loadu_ps(mk, src + (k + 1) * ld + m0) : _mm512_setzero_ps();
            v[i] = bf16_pair(e, o);
        }
        transpose16(v);
        for (int64_t l = 0; l < mn; ++l) _mm512_storeu_si512(d + (m0 + l) * rs + p0, v[l]);
    }
}

// avx512: C tile (rows < mrem, columns < nrem) from one depth block of kc pairs. a: pairs at a[m·rs + p·ps]
// for m < k_mr (rows past mrem are zero padding); b: kc × k_nr pairs. The sums start from init (the stored
// partial sums of the earlier depth blocks, leading dim ild; null: zero) and go to out: scaled by alpha
// and added to out (add_out) after the last block, stored as they are before it. An f32 sum stored and
// loaded again is the same number, so every C element is one ordered sum over all pairs, whatever the
// depth blocks.
FLASHLM_BF16_TARGET inline void micro(int64_t kc, const uint32_t* a, int64_t rs, int64_t ps, const uint32_t* b,
                                      const float* init, int64_t ild, float* out, int64_t ldo, int64_t mrem,
                                      int64_t nrem, bool last, bool add_out, float alpha) {
    __mmask16 mk[k_nv];
    for (int v = 0; v < k_nv; ++v) {
        const int64_t n0 = 16 * v;
        mk[v] = n0 + 16 <= nrem ? __mmask16(0xffff) : n0 < nrem ? __mmask16((1u << (nrem - n0)) - 1) : __mmask16(0);
    }
    // Start and end unrolled, without early exits: as plain loops (the end's stopped at mrem) GCC kept the
    // accumulators in a stack array around the K loop, 16 stores and loads per call (~5 % of the kernel's
    // samples on the tied head's products, whose K is 96-128 pairs).
    __m512 acc[k_mr][k_nv];
#pragma GCC unroll 8
    for (int m = 0; m < k_mr; ++m)
#pragma GCC unroll 2
        for (int v = 0; v < k_nv; ++v)
            acc[m][v] = init && m < mrem ? _mm512_maskz_loadu_ps(mk[v], init + m * ild + 16 * v) : _mm512_setzero_ps();
    for (int64_t p = 0; p < kc; ++p) {
        __m512bh bv[k_nv];
        for (int v = 0; v < k_nv; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(b + p * k_nr + 16 * v);
        for (int m = 0; m < k_mr; ++m) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32(int(a[m * rs + p * ps]));
            for (int v = 0; v < k_nv; ++v) acc[m][v] = _mm512_dpbf16_ps(acc[m][v], av, bv[v]);
        }
    }
    const __m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
    for (int m = 0; m < k_mr; ++m)
#pragma GCC unroll 2
        for (int v = 0; v < k_nv; ++v) {
            if (m >= mrem || 16 * v >= nrem) continue;
            float* dst = out + m * ldo + 16 * v;
            __m512 r = acc[m][v];
            if (last) r = _mm512_mul_ps(r, al);
            if (add_out) r = _mm512_add_ps(_mm512_maskz_loadu_ps(mk[v], dst), r);
            _mm512_mask_storeu_ps(dst, mk[v], r);
        }
}

struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

// amx: rows [i0, i1) (multiples of 32) × panels [j0, j1). A is row-major pairs (stride kp, kp a
// multiple of 16, rows zero-padded to 32); tiles: C 0-3, A 4-5, B 6-7, all 16 rows × 64 bytes.
FLASHLM_AMX_TARGET inline void block_amx(int64_t i0, int64_t i1, int64_t j0, int64_t j1, int64_t M, int64_t N,
                                         int64_t kp, const uint32_t* a, int64_t lda_pairs, const uint32_t* b, float* C,
                                         int64_t ldc, bool accumulate, float alpha) {
    TileConfig cfg;
    for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
    alignas(64) float out[4][16 * 16];
    const __m512 al = _mm512_set1_ps(alpha);
    const int64_t sa = lda_pairs * 4;
    for (int64_t j = j0; j < j1; ++j) {
        const uint32_t* bj = b + j * kp * k_nr;
        const int64_t n0 = j * k_nr;
        for (int64_t i = i0; i < i1 && i < M; i += k_amx_mr) {
            const uint32_t* ai = a + i * lda_pairs;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int64_t p = 0; p < kp; p += k_amx_kp) {
                _tile_loadd(4, ai + p, sa);
                _tile_loadd(5, ai + 16 * lda_pairs + p, sa);
                _tile_loadd(6, bj + p * 16, 64);
                _tile_loadd(7, bj + (kp + p) * 16, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, out[0], 64);
            _tile_stored(1, out[1], 64);
            _tile_stored(2, out[2], 64);
            _tile_stored(3, out[3], 64);
            for (int t = 0; t < 4; ++t) {
                const int64_t r0 = i + 16 * (t / 2), c0 = n0 + 16 * (t % 2);
                if (c0 >= N) continue;
                const __mmask16 mk = c0 + 16 <= N ? __mmask16(0xffff) : __mmask16((1u << (N - c0)) - 1);
                for (int64_t r = 0; r < 16 && r0 + r < M; ++r) {
                    float* dst = C + (r0 + r) * ldc + c0;
                    __m512 v = _mm512_mul_ps(_mm512_load_ps(out[t] + 16 * r), al);
                    if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, dst), v);
                    _mm512_mask_storeu_ps(dst, mk, v);
                }
            }
        }
    }
    _tile_release();
}

struct Workspace {
    std::vector<uint32_t> a, b;
    std::vector<float> p;  // avx512: partial sums of an accumulating product between depth blocks
};
inline Workspace& workspace(int tid) {
    static std::vector<Workspace> ws(k_max_threads);
    return ws[size_t(tid)];
}

// amx: A -> rows of pairs a[m·rs + p], rows [M, mp) zero, with a row stride rs of an odd number of cache
// lines, so that the 16 rows of a tile load do not fight for a few L1 sets.
inline void pack_a_amx(const float* A, int64_t lda, KLayout la, int64_t M, int64_t K, int64_t mp, int64_t kp,
                       std::vector<uint32_t>& dst, int64_t& rs) {
    rs = (kp / 16) % 2 == 0 ? kp + 16 : kp;
    if (dst.size() < size_t(mp * rs)) dst.resize(size_t(mp * rs));
    uint32_t* d = dst.data();
    const int64_t r = rs;
    if (la == KLayout::k_inner) {
        parallel_for(M, M * K, [&](int64_t r0, int64_t r1) {
            for (int64_t m = r0; m < r1; ++m) pack_row_pairs(A + m * lda, K, d + m * r, kp);
        });
    } else {
        // K-strided source into rows (kp a multiple of 16 here); threads own row ranges.
        const int64_t groups = (M + 15) / 16;
        parallel_for(groups, M * K, [&](int64_t g0, int64_t g1) {
            for (int64_t g = g0; g < g1; ++g)
                pack_transpose_rows(A, lda, K, g * 16, std::min(M, g * 16 + 16), kp, d, r);
        });
    }
    std::fill(d + M * r, d + mp * r, 0u);
}

// ---- avx512: depth blocks --------------------------------------------------------------------------
// A tile keeps its C sums in registers over the whole depth, and the B panels stream past it from the
// cache. Where a thread's packed B is too big for that (more than deep_b_bytes(): v3's dh = dz · E,
// 50,257 deep, 8 panels of 3.2 MB = 26 MB per row block, which came from memory once per 8-row tile),
// the product runs in even depth blocks of at most kc_pairs_max() pairs: a panel slice of 256 pairs is
// 32 KiB, read from L1 or L2 by every tile of the thread, and the partial sums wait in C (or ws.p).
// Measured, bench_train_step_cli --matmul bf16, b16×256, 2 threads, alternated: v3 +9-11 %. Bolt's
// products (B at most 3.8 MB) gained nothing in whole steps from blocks (its dh, 10,000 deep, lost
// 8 %), so they stay one block, except the weight gradients dW = dyᵀ x (session 22): there each thread
// packs its own B (1.5-4.2 MB: x, 2,048 pairs deep), and with so deep a product an A chunk (about
// a_chunk_pairs() pairs) is a single tile, so every tile streamed the whole B from L3. Blocks keep a
// 256-pair slice of it in L2 (probe, best of 4 alternated: Bolt's dW products +6-24 %, the mixer-out
// one -2 %; the K = 1,024 nt, whose chunks are two tiles, lost 8 % in blocks and stays whole). Within
// a depth block A is computed in chunks of about a_chunk_pairs() pairs, which stay in L1 while the
// thread's B panels pass. Results do not depend on these sizes (micro), so the tests shrink them.
inline int64_t& kc_pairs_max() {
    static int64_t v = 256;
    return v;
}
inline int64_t& a_chunk_pairs() {
    static int64_t v = 8192;
    return v;
}
inline int64_t& deep_b_bytes() {
    static int64_t v = int64_t(8) << 20;
    return v;
}
inline int64_t& own_b_bytes() {
    static int64_t v = int64_t(1) << 20;
    return v;
}
// Rows of an A chunk kc pairs deep: about a_chunk_pairs() pairs, in whole tiles, at least one.
inline int64_t chunk_rows(int64_t kc) { return std::max<int64_t>(k_mr, a_chunk_pairs() / kc / k_mr * k_mr); }
// own_b: the thread packs B itself (not packed once by the caller).
inline int64_t depth_pairs(int64_t kp, int64_t b_bytes, bool own_b) {
    const bool one_tile_chunks = chunk_rows(kp) == k_mr;
    const bool deep = b_bytes > deep_b_bytes() || (own_b && one_tile_chunks && b_bytes > own_b_bytes());
    if (!deep || kp <= kc_pairs_max()) return kp;
    const int64_t blocks = (kp + kc_pairs_max() - 1) / kc_pairs_max();
    return (kp + blocks - 1) / blocks;
}

// Rows [i0, i1) of A, pairs [p0, p0 + pc) -> d, zero past K and in the rows up to a whole tile:
// K-contiguous rows become rows of pairs (rs = pc, ps = 1), a K-strided A is interleaved lane-wise
// (rs = 1, ps = rows), so neither needs a transpose.
FLASHLM_BF16_TARGET inline void pack_a_slice(const float* A, int64_t lda, KLayout la, int64_t K, int64_t i0, int64_t i1,
                                             int64_t p0, int64_t pc, uint32_t* d, int64_t& rs, int64_t& ps) {
    const int64_t mn = i1 - i0, mp = (mn + k_mr - 1) / k_mr * k_mr, kn = std::min(2 * pc, K - 2 * p0);
    if (la == KLayout::k_inner) {
        rs = pc, ps = 1;
        for (int64_t m = 0; m < mn; ++m) pack_row_pairs(A + (i0 + m) * lda + 2 * p0, kn, d + m * pc, pc);
        std::fill(d + mn * pc, d + mp * pc, 0u);
    } else {
        rs = 1, ps = mp;
        for (int64_t p = 0; p < pc; ++p) {
            pack_interleave(A + 2 * p0 * lda + i0, lda, kn, p, mn, d + p * mp, 1);
            std::fill(d + p * mp + mn, d + (p + 1) * mp, 0u);
        }
    }
}

// Panels [j0, j1) of B, pairs [p0, p0 + pc) -> [panel][pc][k_nr], zero past N and K.
FLASHLM_BF16_TARGET inline void pack_b_slice(const float* B, int64_t ldb, KLayout lb, int64_t N, int64_t K, int64_t j0,
                                             int64_t j1, int64_t p0, int64_t pc, uint32_t* d) {
    const int64_t kn = std::min(2 * pc, K - 2 * p0);
    for (int64_t j = j0; j < j1; ++j) {
        uint32_t* panel = d + (j - j0) * pc * k_nr;
        const int64_t n0 = j * k_nr, nn = std::min<int64_t>(k_nr, N - n0);
        if (nn < k_nr) std::fill(panel, panel + pc * k_nr, 0u);
        if (lb == KLayout::k_outer)
            for (int64_t p = 0; p < pc; ++p) pack_interleave(B + 2 * p0 * ldb + n0, ldb, kn, p, nn, panel + p * k_nr, 1);
        else
            for (int64_t n = 0; n < nn; ++n) pack_row_pairs(B + (n0 + n) * ldb + 2 * p0, kn, panel + n, pc, k_nr);
    }
}

// One thread's part of C: rows [r0, r1) × panels [j0, j1), depth block by depth block. B comes packed
// (bp: [panel][kp][k_nr]) or the thread packs its panels' slice of each depth block just before use: with
// rows split every thread packs all of B, so the threads never wait for each other. Between depth
// blocks the partial sums wait in C, or in ws.p when the product adds to C (C + alpha · Σ).
inline void part_avx512(int64_t N, int64_t K, int64_t kp, const float* A, int64_t lda, KLayout la, const uint32_t* bp,
                        const float* B, int64_t ldb, KLayout lb, float* C, int64_t ldc, bool accumulate, float alpha,
                        int64_t r0, int64_t r1, int64_t j0, int64_t j1, Workspace& ws) {
    const int64_t kc = depth_pairs(kp, (j1 - j0) * kp * k_nr * int64_t(sizeof(uint32_t)), bp == nullptr);
    const int64_t mc = chunk_rows(kc);
    const bool partial = accumulate && kp > kc;
    const int64_t pld = (j1 - j0) * k_nr;
    const int64_t mp = (r1 - r0 + k_mr - 1) / k_mr * k_mr;  // rows of a packed A (at most)
    if (ws.a.size() < size_t(mp * kc)) ws.a.resize(size_t(mp * kc));
    if (!bp && ws.b.size() < size_t(pld * kc)) ws.b.resize(size_t(pld * kc));
    if (partial && ws.p.size() < size_t((r1 - r0) * pld)) ws.p.resize(size_t((r1 - r0) * pld));
    for (int64_t p0 = 0; p0 < kp; p0 += kc) {
        const int64_t pc = std::min(kc, kp - p0);
        const bool first = p0 == 0, last = p0 + pc == kp;
        const uint32_t* bs = bp ? bp + p0 * k_nr : ws.b.data();
        const int64_t bstride = bp ? kp * k_nr : pc * k_nr;
        if (!bp) pack_b_slice(B, ldb, lb, N, K, j0, j1, p0, pc, ws.b.data());
        // A chunk by chunk, each packed just before its tiles run, so that they read it from L1/L2: packed
        // for the thread's whole row range at once, a head product's A (2.5 MB a thread) had left L2
        // before it was used. Not a K-strided A in narrow chunks (a dW = dyᵀ x, 2,048 pairs deep: 8
        // rows), which would read 32 of each 64-byte line per pass: that one is packed whole, as before.
        const bool by_chunk = la == KLayout::k_inner || mc >= 64;
        int64_t rs = 0, ps = 0;
        if (!by_chunk) pack_a_slice(A, lda, la, K, r0, r1, p0, pc, ws.a.data(), rs, ps);
        for (int64_t i0 = r0; i0 < r1; i0 += mc) {
            const int64_t i1 = std::min(r1, i0 + mc);
            const int64_t a0 = by_chunk ? i0 : r0;  // the first row of the packed A
            if (by_chunk) pack_a_slice(A, lda, la, K, i0, i1, p0, pc, ws.a.data(), rs, ps);
            for (int64_t j = j0; j < j1; ++j) {
                const uint32_t* b = bs + (bp ? j : j - j0) * bstride;
                const int64_t n0 = j * k_nr, nrem = std::min<int64_t>(k_nr, N - n0);
                for (int64_t i = i0; i < i1; i += k_mr) {
                    float* c = C + i * ldc + n0;
                    float* p = partial ? ws.p.data() + (i - r0) * pld + (n0 - j0 * k_nr) : c;
                    const int64_t ld_p = partial ? pld : ldc;
                    // The next tile's rows of C (or of the partial sums), asked for now: a tile reads and
                    // writes them only at its start and end, too far apart for the out-of-order window to
                    // overlap them with this tile's work (the head's C: 10 MB of logits, 7.7 MB of dE).
                    if (i + k_mr < i1) {
                        const int64_t ld_n = first ? ldc : ld_p;
                        const float* next = (first ? c : p) + k_mr * ld_n;
                        for (int64_t m = 0; m < k_mr && i + k_mr + m < i1; ++m) {
                            __builtin_prefetch(next + m * ld_n, 1, 3);
                            __builtin_prefetch(next + m * ld_n + 16, 1, 3);
                        }
                    }
                    micro(pc, ws.a.data() + (i - a0) * rs, rs, ps, b, first ? nullptr : p, ld_p, last ? c : p,
                          last ? ldc : ld_p, std::min<int64_t>(k_mr, i1 - i), nrem, last, last && accumulate, alpha);
                }
            }
        }
    }
}

// B ([K,N] as the product sees it) -> panels [N/NR][kp][NR], zero past N and K.
inline void pack_b(const float* B, int64_t ldb, KLayout lb, int64_t N, int64_t K, int64_t kp, bool halves,
                   std::vector<uint32_t>& dst) {
    const int64_t panels = (N + k_nr - 1) / k_nr;
    if (dst.size() < size_t(panels * kp * k_nr)) dst.resize(size_t(panels * kp * k_nr));
    uint32_t* d = dst.data();
    parallel_for(panels, N * K, [&](int64_t j0, int64_t j1) {
        if (!halves) return pack_b_slice(B, ldb, lb, N, K, j0, j1, 0, kp, d + j0 * kp * k_nr);  // avx512: the whole depth
        for (int64_t j = j0; j < j1; ++j) {  // amx: [16-column half][kp][16], so that a B tile is 1 KiB in a row
            uint32_t* panel = d + j * kp * k_nr;
            const int64_t n0 = j * k_nr, nn = std::min<int64_t>(k_nr, N - n0);
            if (nn < k_nr) std::fill(panel, panel + kp * k_nr, 0u);
            for (int64_t h = 0; h < 2 && 16 * h < nn; ++h) {
                uint32_t* ph = panel + h * kp * 16;
                const int64_t c0 = n0 + 16 * h, cn = std::min<int64_t>(16, nn - 16 * h);
                if (lb == KLayout::k_outer)
                    for (int64_t p = 0; p < kp; ++p) pack_interleave(B + c0, ldb, K, p, cn, ph + p * 16, 1);
                else
                    for (int64_t n = 0; n < cn; ++n) pack_row_pairs(B + (c0 + n) * ldb, K, ph + n, kp, 16);
            }
        }
    });
}

// Pairs of a K-deep operand as the kernel packs it (amx tiles take 16 pairs at a time).
inline int64_t pairs_for(Bf16Kernel kern, int64_t K) {
    return kern == Bf16Kernel::amx ? (K + 2 * k_amx_kp - 1) / (2 * k_amx_kp) * k_amx_kp : (K + 1) / 2;
}

// amx, one thread's part: packed A (rows of C) against packed B panels, A in row chunks of about 32 KiB
// that stay in L1 while the panels stream past from L2.
inline void compute_amx(int64_t M, int64_t N, int64_t kp, const uint32_t* a, int64_t rs, const uint32_t* b, float* C,
                        int64_t ldc, bool accumulate, float alpha) {
    const int64_t mp = (M + k_amx_mr - 1) / k_amx_mr * k_amx_mr, panels = (N + k_nr - 1) / k_nr;
    const int64_t chunk = std::max<int64_t>(k_amx_mr, ((int64_t(1) << 13) / kp) / k_amx_mr * k_amx_mr);
    for (int64_t i0 = 0; i0 < mp; i0 += chunk)
        block_amx(i0, std::min(mp, i0 + chunk), 0, panels, M, N, kp, a, rs, b, C, ldc, accumulate, alpha);
}

// C = alpha · A·B (+ C). One parallel region and no barrier: threads split the larger side of C (rows
// when B comes packed), each packs its own part of that operand and the whole of the other one.
// b_packed: B packed once by the caller (kp pairs), else B is packed here.
inline void run(int64_t M, int64_t N, int64_t K, int64_t kp, Bf16Kernel kern, const float* A, int64_t lda, KLayout la,
                const uint32_t* b_packed, const float* B, int64_t ldb, KLayout lb, float* C, int64_t ldc,
                bool accumulate, float alpha) {
    const bool amx = kern == Bf16Kernel::amx;
    const int64_t mr = amx ? k_amx_mr : k_mr;
    const int64_t tiles = (M + mr - 1) / mr, panels = (N + k_nr - 1) / k_nr;
    const bool by_rows = b_packed != nullptr || N <= M;
    parallel_for_tid(by_rows ? tiles : panels, 2 * M * N * K, [&](int64_t u0, int64_t u1, int tid) {
        Workspace& ws = workspace(tid);
        const int64_t r0 = by_rows ? u0 * mr : 0, r1 = by_rows ? std::min(M, u1 * mr) : M;
        const int64_t j0 = by_rows ? 0 : u0, j1 = by_rows ? panels : u1;
        if (!amx)
            return part_avx512(N, K, kp, A, lda, la, b_packed, B, ldb, lb, C, ldc, accumulate, alpha, r0, r1, j0, j1, ws);
        const int64_t m = r1 - r0, c0 = j0 * k_nr, n = std::min(N, j1 * k_nr) - c0;
        int64_t rs = 0;
        pack_a_amx(la == KLayout::k_inner ? A + r0 * lda : A + r0, lda, la, m, K, (m + mr - 1) / mr * mr, kp, ws.a, rs);
        const uint32_t* b = b_packed;
        if (!b) {
            pack_b(lb == KLayout::k_inner ? B + c0 * ldb : B + c0, ldb, lb, n, K, kp, true, ws.b);
            b = ws.b.data();
        }
        compute_amx(m, n, kp, ws.a.data(), rs, b, C + r0 * ldc + c0, ldc, accumulate, alpha);
    });
}

inline void zero_k(int64_t M, int64_t N, float* C, int64_t ldc, bool accumulate) {
    if (!accumulate)
        for (int64_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + N, 0.0f);
}

}  // namespace bf16_detail
#endif

namespace bf16_detail {

// C[M,N] = alpha · A·B (+ C), bf16 operands, f32 sums. Needs bf16_available(); A, B as in the reference.
// Called from outside parallel regions (it forks its own threads). Allocates only when a call is bigger
// than any before it (the packing buffers are kept).
inline void gemm_bf16_impl(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, KLayout la, const float* B,
                           int64_t ldb, KLayout lb, float* C, int64_t ldc, bool accumulate, float alpha) {
    if (M <= 0 || N <= 0) return;
#if FLASHLM_BF16_X86
    const Bf16Kernel kern = bf16_kernel();
    if (kern == Bf16Kernel::none) throw std::runtime_error("gemm_bf16: this CPU has no AVX512_BF16");
    if (K <= 0) return zero_k(M, N, C, ldc, accumulate);
    run(M, N, K, pairs_for(kern, K), kern, A, lda, la, nullptr, B, ldb, lb, C, ldc, accumulate, alpha);
#else
    (void)A, (void)lda, (void)la, (void)B, (void)ldb, (void)lb, (void)C, (void)ldc, (void)accumulate, (void)alpha, (void)K;
    throw std::runtime_error("gemm_bf16: needs x86-64 with AVX512_BF16");
#endif
}

// Packs B ([K,N] as the product sees it, layout lb) for gemm_bf16_packed: once for several products that
// share it (the tied head's embedding, used by every row block of a step). Valid for the kernel that was
// active when it was packed.
inline void pack_bf16_b_impl(const float* B, int64_t ldb, KLayout lb, int64_t N, int64_t K, Bf16PackedB& out) {
#if FLASHLM_BF16_X86
    out.kernel = bf16_kernel();
    if (out.kernel == Bf16Kernel::none) throw std::runtime_error("pack_bf16_b: this CPU has no AVX512_BF16");
    out.N = N, out.K = K, out.kp = pairs_for(out.kernel, K);
    if (N > 0 && K > 0) pack_b(B, ldb, lb, N, K, out.kp, out.kernel == Bf16Kernel::amx, out.data);
#else
    (void)B, (void)ldb, (void)lb, (void)N, (void)K, (void)out;
    throw std::runtime_error("pack_bf16_b: needs x86-64 with AVX512_BF16");
#endif
}

// C[M, b.N] = alpha · A·B (+ C) with B from pack_bf16_b.
inline void gemm_bf16_packed_impl(int64_t M, const float* A, int64_t lda, KLayout la, const Bf16PackedB& b, float* C,
                                  int64_t ldc, bool accumulate, float alpha) {
    if (M <= 0 || b.N <= 0) return;
#if FLASHLM_BF16_X86
    if (b.kernel != bf16_kernel()) throw std::logic_error("gemm_bf16_packed: B was packed for another kernel");
    if (b.K <= 0) return zero_k(M, b.N, C, ldc, accumulate);
    run(M, b.N, b.K, b.kp, b.kernel, A, lda, la, b.data.data(), nullptr, 0, KLayout::k_inner, C, ldc, accumulate,
        alpha);
#else
    (void)A, (void)lda, (void)la, (void)C, (void)ldc, (void)accumulate, (void)alpha;
    throw std::runtime_error("gemm_bf16_packed: needs x86-64 with AVX512_BF16");
#endif
}

}  // namespace bf16_detail

// Points gemm_bf16_api.hpp's entry points at these kernels (kernels/arch/gemm_bf16.cpp calls it during
// static initialisation, before main).
inline bool register_bf16_kernels() {
    Bf16Hooks& h = bf16_hooks();
    h.gemm = &bf16_detail::gemm_bf16_impl;
    h.pack_b = &bf16_detail::pack_bf16_b_impl;
    h.gemm_packed = &bf16_detail::gemm_bf16_packed_impl;
    return true;
}

}  // namespace flashlm::kernels
