// AVX-512 kernels (F, BW, DQ, VL, VNNI). Compiled with those flags by flashlm_add_kernels(); the
// dispatcher only calls them on CPUs that report all five.
#include "flashlm/core/x86_intrinsics.hpp"

#include <algorithm>
#include <cstring>

#include "flashlm/kernels/ternary_abi.hpp"

namespace flashlm::kernels::detail {
namespace {

// 16 plane bits for lanes [16g, 16g + 16) of a block.
__mmask16 lanes(uint64_t plane, int g) { return __mmask16(plane >> (16 * g)); }

// NR rows (a multiple of 4) against one input row: weight bytes w in {-1, 0, +1} from two mask moves;
// vpdpbusd multiplies unsigned by signed bytes, so x is biased to x + 128 (an xor of the sign bit, once
// per block for all NR rows) and 128 · Σ_k w is taken off at the end. The per-row int32 sums are
// reduced four rows at a time by an unpack/add tree (exact: integers).
// While it runs, the next NR rows of the job are prefetched one cache line (4 blocks) per row at a time:
// with weights streaming from DRAM this measured +25-40 % G weights/s on 2048² and 4096² (bench_kernels,
// dram case: ~20 -> ~27 G weights/s on one core, 37 -> 50 % of the read bandwidth), no change when hot.
template <int NR>
void i8_rows(const I8Job& j, int64_t r, const int8_t* x, float xscale, float* y) {
    const __m512i bias = _mm512_set1_epi8(char(0x80)), one = _mm512_set1_epi8(1), minus_one = _mm512_set1_epi8(-1);
    const uint64_t* w = j.planes + r * j.blocks * 2;
    const int64_t ahead = std::min<int64_t>(NR, j.r1 - r - NR);  // rows of the next group that exist
    __m512i acc[NR];
    for (int i = 0; i < NR; ++i) acc[i] = _mm512_setzero_si512();
    for (int64_t b = 0; b < j.blocks; ++b) {
        const __m512i xb = _mm512_xor_si512(_mm512_loadu_si512(x + 64 * b), bias);
        if ((b & 3) == 0)
            for (int64_t i = 0; i < ahead; ++i)
                _mm_prefetch(reinterpret_cast<const char*>(w + ((NR + i) * j.blocks + b) * 2), _MM_HINT_T0);
        for (int i = 0; i < NR; ++i) {
            const uint64_t* wb = w + (i * j.blocks + b) * 2;
            __mmask64 nz, neg;
            std::memcpy(&nz, wb, 8);
            std::memcpy(&neg, wb + 1, 8);
            const __m512i q = _mm512_mask_mov_epi8(_mm512_maskz_mov_epi8(nz, one), neg, minus_one);
            acc[i] = _mm512_dpbusd_epi32(acc[i], xb, q);
        }
    }
    for (int i = 0; i < NR; i += 4) {
        // [a0 a1 a2 a3] -> per 128-bit chunk [Σa0, Σa1, Σa2, Σa3] -> the four chunks added.
        const __m512i b01 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[i], acc[i + 1]), _mm512_unpackhi_epi32(acc[i], acc[i + 1]));
        const __m512i b23 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[i + 2], acc[i + 3]),
                                             _mm512_unpackhi_epi32(acc[i + 2], acc[i + 3]));
        const __m512i c = _mm512_add_epi32(_mm512_unpacklo_epi64(b01, b23), _mm512_unpackhi_epi64(b01, b23));
        const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(c), _mm512_extracti64x4_epi64(c, 1));
        __m128i dot = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        dot = _mm_sub_epi32(dot, _mm_slli_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(j.row_sums + r + i)), 7));
        const __m128 v = _mm_div_ps(_mm_mul_ps(_mm_cvtepi32_ps(dot), _mm_set1_ps(j.wscale)), _mm_set1_ps(xscale));
        _mm_storeu_ps(y + i, v);
    }
}

// NR rows (a multiple of 4) against one input row, for the exact family. Per 16 weights and row: pick x
// or -x where q = -1 (a blend), then add it where q != 0 (a masked add). Each 16-lane slice of x and its
// negation are formed once for all NR rows; the 16-bit plane slices are read as 16-bit masks; two
// accumulators per row (even / odd slices); the NR row sums are reduced four at a time by an unpack/add
// tree instead of one horizontal reduction per row (which took ~40 % of the one-row kernel's time on
// 192-wide rows). The loops are written out so that no accumulator spills.
template <int NR>
void f32_rows(const F32Job& j, int64_t r, const float* x, float* y) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const uint16_t* w = reinterpret_cast<const uint16_t*>(j.planes + r * j.blocks * 2);
    const int64_t stride = j.blocks * 8;  // uint16 slices per row
    __m512 a[NR][2];
    for (int i = 0; i < NR; ++i) a[i][0] = a[i][1] = _mm512_setzero_ps();
    // Slice g of block b: nonzero bits at w[8b + g], negative bits at w[8b + 4 + g] (little-endian planes).
    const auto slice = [&](int64_t b, int g, __m512 (&acc)[NR][2], int h) {
        const __m512 v = _mm512_loadu_ps(x + 64 * b + 16 * g), nv = _mm512_xor_ps(v, sign);
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) {
            uint16_t nz, neg;
            std::memcpy(&nz, w + i * stride + 8 * b + g, 2);
            std::memcpy(&neg, w + i * stride + 8 * b + 4 + g, 2);
            acc[i][h] = _mm512_mask_add_ps(acc[i][h], __mmask16(nz), acc[i][h], _mm512_mask_blend_ps(__mmask16(neg), v, nv));
        }
    };
    for (int64_t b = 0; b < j.blocks; ++b) {
        slice(b, 0, a, 0);
        slice(b, 1, a, 1);
        slice(b, 2, a, 0);
        slice(b, 3, a, 1);
    }
    for (int i = 0; i < NR; i += 4) {
        const __m512 t0 = _mm512_add_ps(a[i][0], a[i][1]), t1 = _mm512_add_ps(a[i + 1][0], a[i + 1][1]);
        const __m512 t2 = _mm512_add_ps(a[i + 2][0], a[i + 2][1]), t3 = _mm512_add_ps(a[i + 3][0], a[i + 3][1]);
        // Per 128-bit chunk [t0 t1 t2 t3] -> [Σt0, Σt1, Σt2, Σt3], then the four chunks added.
        const __m512 t01 = _mm512_add_ps(_mm512_unpacklo_ps(t0, t1), _mm512_unpackhi_ps(t0, t1));
        const __m512 t23 = _mm512_add_ps(_mm512_unpacklo_ps(t2, t3), _mm512_unpackhi_ps(t2, t3));
        const __m512d u01 = _mm512_castps_pd(t01), u23 = _mm512_castps_pd(t23);
        const __m512 c = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(u01, u23)),
                                       _mm512_castpd_ps(_mm512_unpackhi_pd(u01, u23)));
        const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
        const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        _mm_storeu_ps(y + i, _mm_mul_ps(_mm_set1_ps(j.scale), q));
    }
}

}  // namespace

// Exact family: eight rows at a time (4 for the rest, f32_rows); the last r1 - r0 mod 4 rows one at a
// time, with one accumulator per 16-lane slice.
void TernaryRows::operator()(xsimd::avx512bw, const F32Job& j) const noexcept {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t m = 0; m < j.M; ++m) {
        const float* x = j.x + m * j.ldx;
        float* y = j.y + m * j.ldy;
        int64_t r = j.r0;
        for (; r + 8 <= j.r1; r += 8) f32_rows<8>(j, r, x, y + r);
        for (; r + 4 <= j.r1; r += 4) f32_rows<4>(j, r, x, y + r);
        for (; r < j.r1; ++r) {
            const uint64_t* w = j.planes + r * j.blocks * 2;
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int64_t b = 0; b < j.blocks; ++b) {
                const uint64_t nz = w[2 * b], neg = w[2 * b + 1];
                for (int g = 0; g < 4; ++g) {
                    const __m512 v = _mm512_loadu_ps(x + 64 * b + 16 * g);
                    const __m512 s = _mm512_mask_xor_ps(v, lanes(neg, g), v, sign);
                    acc[g] = _mm512_mask_add_ps(acc[g], lanes(nz, g), acc[g], s);
                }
            }
            const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            y[r] = j.scale * _mm512_reduce_add_ps(sum);
        }
    }
}

// Eight rows at a time (4 for the rest); the last r1 - r0 mod 4 rows go through a row-at-a-time loop.
void TernaryRows::operator()(xsimd::avx512bw, const I8Job& j) const noexcept {
    const __m512i bias = _mm512_set1_epi8(char(0x80)), one = _mm512_set1_epi8(1), minus_one = _mm512_set1_epi8(-1);
    for (int64_t m = 0; m < j.M; ++m) {
        const int8_t* x = j.x + m * j.ldx;
        float* y = j.y + m * j.ldy;
        int64_t r = j.r0;
        for (; r + 8 <= j.r1; r += 8) i8_rows<8>(j, r, x, j.xscale[m], y + r);
        for (; r + 4 <= j.r1; r += 4) i8_rows<4>(j, r, x, j.xscale[m], y + r);
        for (; r < j.r1; ++r) {
            const uint64_t* w = j.planes + r * j.blocks * 2;
            __m512i acc = _mm512_setzero_si512();
            for (int64_t b = 0; b < j.blocks; ++b) {
                const __m512i q = _mm512_mask_mov_epi8(_mm512_maskz_mov_epi8(w[2 * b], one), w[2 * b + 1], minus_one);
                acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(_mm512_loadu_si512(x + 64 * b), bias), q);
            }
            const int32_t dot = _mm512_reduce_add_epi32(acc) - 128 * j.row_sums[r];
            y[r] = float(dot) * j.wscale / j.xscale[m];
        }
    }
}

}  // namespace flashlm::kernels::detail

namespace flashlm::kernels::detail {
namespace {

// The loop both int8 tile kernels share. Per group of 4 columns: x[4g..4g+3] broadcast to every lane and
// biased to unsigned (xor 0x80, unless Biased: x already holds x + 128 as bytes), one vpdpbusd per tile
// against the 16 rows × 4 weight bytes that w(i, g) returns; two accumulators per tile (even / odd
// groups) hide the latency. Then Σ (x + 128) · q − 128 · Σ q = Σ x · q per lane (lane l = row 16t + l),
// times the weight scale ws(i) over the activation scale, stored under a mask at the ragged end.
template <int NT, bool Biased, class Weights, class WScale>
inline void i8_tiles(const int8_t* x, int64_t G, const int32_t* row_sums, float xscale, int64_t rows, float* y,
                     int64_t t, Weights w, WScale ws) {
    const __m512i bias = _mm512_set1_epi8(char(0x80));
    const auto xg = [&](int64_t g) {
        int32_t v;
        std::memcpy(&v, x + 4 * g, 4);
        return Biased ? _mm512_set1_epi32(v) : _mm512_xor_si512(_mm512_set1_epi32(v), bias);
    };
    __m512i a[NT][2];
    for (int i = 0; i < NT; ++i) a[i][0] = a[i][1] = _mm512_setzero_si512();
    int64_t g = 0;
    for (; g + 2 <= G; g += 2) {
        const __m512i x0 = xg(g), x1 = xg(g + 1);
        for (int i = 0; i < NT; ++i) {
            a[i][0] = _mm512_dpbusd_epi32(a[i][0], x0, w(i, g));
            a[i][1] = _mm512_dpbusd_epi32(a[i][1], x1, w(i, g + 1));
        }
    }
    if (g < G) {
        const __m512i x0 = xg(g);
        for (int i = 0; i < NT; ++i) a[i][0] = _mm512_dpbusd_epi32(a[i][0], x0, w(i, g));
    }
    const __m512 xs = _mm512_set1_ps(xscale);
    for (int i = 0; i < NT; ++i) {
        const int64_t r0 = (t + i) * 16;
        const __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(row_sums + r0), 7);
        const __m512i dot = _mm512_sub_epi32(_mm512_add_epi32(a[i][0], a[i][1]), corr);
        const __m512 yv = _mm512_div_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), ws(r0)), xs);
        const int64_t n = rows - r0;
        _mm512_mask_storeu_ps(y + r0, n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1), yv);
    }
}

// Tiles [t, t + NT) of a DenseI8Job: 64 weight bytes (16 rows × 4) per tile and group, a scale per row.
template <int NT>
void dense_i8_tiles(const DenseI8Job& j, int64_t t) {
    const int64_t tile = j.groups * 64;
    const int8_t* w = j.w + t * tile;
    i8_tiles<NT, false>(
        j.x, j.groups, j.row_sums, j.xscale, j.rows, j.y, t,
        [&](int i, int64_t g) { return _mm512_loadu_si512(w + i * tile + g * 64); },
        [&](int64_t r0) { return _mm512_loadu_ps(j.wscale + r0); });
}

// Rows [r, r + NR) of a DenseF32Job: one accumulator per row (NR independent FMA chains), x from L1,
// the ragged end of K under a mask. A 10000 × 192 head streams from L3 at the core's bandwidth
// (~29 GB/s here) either way; software prefetching (T0/T1, 8-128 rows ahead) measured no gain.
template <int NR>
void dense_f32_rows(const DenseF32Job& j, int64_t r) {
    const int64_t K = j.cols, kv = K / 16 * 16;
    const float* w = j.w + r * j.ld;
    __m512 a[NR];
    for (int i = 0; i < NR; ++i) a[i] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k < kv; k += 16) {
        const __m512 x = _mm512_loadu_ps(j.x + k);
        for (int i = 0; i < NR; ++i) a[i] = _mm512_fmadd_ps(_mm512_loadu_ps(w + i * j.ld + k), x, a[i]);
    }
    if (k < K) {
        const __mmask16 m = __mmask16((1u << (K - k)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(m, j.x + k);
        for (int i = 0; i < NR; ++i) a[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i * j.ld + k), x, a[i]);
    }
    for (int i = 0; i < NR; ++i) j.y[r + i] = _mm512_reduce_add_ps(a[i]);
}

// Tiles [t, t + NT) of a TernTilesI8Job (ternary_tiles.hpp): per tile and group the two bit planes become
// {-1, 0, 1} bytes with two mask moves; one scale for the whole tensor. Lane i is row 16t + i: no
// horizontal sums. Biased: x already holds x + 128, so a group is one broadcast load.
template <int NT, bool Biased>
void tern_i8_tiles(const TernTilesI8Job& j, int64_t t) {
    const __m512i one = _mm512_set1_epi8(1), minus_one = _mm512_set1_epi8(-1);
    const int64_t G = j.groups;
    const uint64_t* w = j.planes + t * G * 2;
    const __m512 ws = _mm512_set1_ps(j.wscale);
    i8_tiles<NT, Biased>(
        j.x, G, j.row_sums, j.xscale, j.rows, j.y, t,
        [&](int i, int64_t g) {
            const uint64_t* p = w + (i * G + g) * 2;
            __mmask64 nz, neg;
            std::memcpy(&nz, p, 8);
            std::memcpy(&neg, p + 1, 8);
            return _mm512_mask_mov_epi8(_mm512_maskz_mov_epi8(nz, one), neg, minus_one);
        },
        [&](int64_t) { return ws; });
}

}  // namespace

void TernaryRows::operator()(xsimd::avx512bw, const DenseI8Job& j) const noexcept {
    int64_t t = j.t0;
    for (; t + 4 <= j.t1; t += 4) dense_i8_tiles<4>(j, t);
    for (; t < j.t1; ++t) dense_i8_tiles<1>(j, t);
}

void TernaryRows::operator()(xsimd::avx512bw, const DenseF32Job& j) const noexcept {
    int64_t r = j.r0;
    for (; r + 8 <= j.r1; r += 8) dense_f32_rows<8>(j, r);
    for (; r < j.r1; ++r) dense_f32_rows<1>(j, r);
}

// x is biased once per call into a stack buffer (inputs up to 4096 wide) instead of once per group of
// every four tiles.
void TernaryRows::operator()(xsimd::avx512bw, const TernTilesI8Job& j) const noexcept {
    constexpr int64_t k_max = 4096;
    alignas(64) int8_t xb[k_max];
    const int64_t n = 4 * j.groups;
    int64_t t = j.t0;
    if (n <= k_max) {
        const __m512i bias = _mm512_set1_epi8(char(0x80));
        for (int64_t k = 0; k < n; k += 64) {
            const __mmask64 m = n - k >= 64 ? ~__mmask64(0) : (__mmask64(1) << (n - k)) - 1;
            _mm512_mask_storeu_epi8(xb + k, m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, j.x + k), bias));
        }
        TernTilesI8Job jb = j;
        jb.x = xb;
        for (; t + 4 <= j.t1; t += 4) tern_i8_tiles<4, true>(jb, t);
        for (; t < j.t1; ++t) tern_i8_tiles<1, true>(jb, t);
        return;
    }
    for (; t + 4 <= j.t1; t += 4) tern_i8_tiles<4, false>(j, t);
    for (; t < j.t1; ++t) tern_i8_tiles<1, false>(j, t);
}

}  // namespace flashlm::kernels::detail

namespace flashlm::kernels::detail {
namespace {

// MR tokens × NT tiles (16 rows each) of a TernaryGemmI8Job: MR · NT int32 accumulators. Per group of 4
// columns the NT weight vectors are loaded once and each token's 4 bytes are broadcast from memory, so
// one vpdpbusd needs 1/MR of a weight load and 1/NT of a broadcast.
template <int MR, int NT>
void gemm_i8_block(const TernaryGemmI8Job& j, int64_t m, int64_t t) {
    const int64_t G = j.groups, tile = G * 64;
    const int8_t* w = j.w + t * tile;
    const uint8_t* x = j.x + m * j.ldx;
    __m512i acc[MR][NT];
    for (int a = 0; a < MR; ++a)
        for (int i = 0; i < NT; ++i) acc[a][i] = _mm512_setzero_si512();
    for (int64_t g = 0; g < G; ++g) {
        __m512i wv[NT];
        for (int i = 0; i < NT; ++i) wv[i] = _mm512_loadu_si512(w + i * tile + g * 64);
        for (int a = 0; a < MR; ++a) {
            int32_t v;
            std::memcpy(&v, x + a * j.ldx + 4 * g, 4);
            const __m512i xb = _mm512_set1_epi32(v);
            for (int i = 0; i < NT; ++i) acc[a][i] = _mm512_dpbusd_epi32(acc[a][i], xb, wv[i]);
        }
    }
    // Unrolled, so that no loop indexes acc and it can live in registers throughout.
#pragma GCC unroll 4
    for (int i = 0; i < NT; ++i) {
        const int64_t r0 = (t + i) * 16;
        const __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(j.row_sums + r0), 7);
        const __m512 ws = _mm512_loadu_ps(j.wscale + r0);
        const int64_t n = j.rows - r0;
        const __mmask16 keep = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
#pragma GCC unroll 4
        for (int a = 0; a < MR; ++a) {
            const __m512 d = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[a][i], corr));
            const __m512 y = _mm512_mul_ps(_mm512_mul_ps(d, ws), _mm512_set1_ps(j.xinv[m + a]));
            _mm512_mask_storeu_ps(j.y + (m + a) * j.ldy + r0, keep, y);
        }
    }
}

template <int MR>
void gemm_i8_panel(const TernaryGemmI8Job& j, int64_t m, int64_t t, int64_t nt) {
    switch (nt) {
        case 4: gemm_i8_block<MR, 4>(j, m, t); break;
        case 3: gemm_i8_block<MR, 3>(j, m, t); break;
        case 2: gemm_i8_block<MR, 2>(j, m, t); break;
        default: gemm_i8_block<MR, 1>(j, m, t); break;
    }
}

}  // namespace

// Tokens in chunks of 96 (x stays in L2); per chunk, every 64-row panel of W passes over it in register
// blocks of 4 tokens (the panel, 64 · K bytes, stays in L1/L2 across the chunk). 4 × 4 tiles is 16
// accumulators; at 6 × 4 (24 of them, plus 4 weight vectors and a broadcast) GCC 12 kept accumulators
// on the stack, a load and a store around each vpdpbusd: 330-440 against 750-845 GOP/s on 2 threads
// for Bolt's shapes (M = 4096, K = 192 and 512).
void TernaryRows::operator()(xsimd::avx512bw, const TernaryGemmI8Job& j) const noexcept {
    for (int64_t c0 = j.m0; c0 < j.m1; c0 += 96) {
        const int64_t c1 = std::min(j.m1, c0 + 96);
        for (int64_t t = 0; t < j.tiles; t += 4) {
            const int64_t nt = std::min<int64_t>(4, j.tiles - t);
            int64_t m = c0;
            for (; m + 4 <= c1; m += 4) gemm_i8_panel<4>(j, m, t, nt);
            switch (c1 - m) {
                case 3: gemm_i8_panel<3>(j, m, t, nt); break;
                case 2: gemm_i8_panel<2>(j, m, t, nt); break;
                case 1: gemm_i8_panel<1>(j, m, t, nt); break;
                default: break;
            }
        }
    }
}

}  // namespace flashlm::kernels::detail
