// AVX2 kernels. Compiled with -mavx2 -mfma (and AVX-512 switched off, in case the target builds with
// -march=native) by flashlm_add_kernels(); the dispatcher only calls them on CPUs with AVX2 and FMA.
#include "flashlm/core/x86_intrinsics.hpp"

#include <algorithm>
#include <cstring>

#include "flashlm/kernels/ternary_abi.hpp"

namespace flashlm::kernels::detail {
namespace {

float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

int32_t hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)));
}

// 32 plane bits -> 32 bytes, 0xff where the bit is set: copy byte i/8 to byte i, test bit i%8.
__m256i bytes_of(uint32_t bits) {
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i select = _mm256_set1_epi64x(0x8040201008040201);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(int(bits)), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, select), select);
}

}  // namespace

// Per 8 weights: vpsllvd moves plane bit 8g + j to the sign bit of lane j, and blendv selects on the
// sign bit: -x where q = -1, then 0 where q = 0.
void TernaryRows::operator()(xsimd::avx2, const F32Job& j) const noexcept {
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    const __m256i shift[4] = {_mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24),
                              _mm256_setr_epi32(23, 22, 21, 20, 19, 18, 17, 16),
                              _mm256_setr_epi32(15, 14, 13, 12, 11, 10, 9, 8),
                              _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0)};
    for (int64_t r = j.r0; r < j.r1; ++r) {
        const uint64_t* w = j.planes + r * j.blocks * 2;
        for (int64_t m = 0; m < j.M; ++m) {
            const float* x = j.x + m * j.ldx;
            __m256 acc[4] = {zero, zero, zero, zero};
            for (int64_t b = 0; b < j.blocks; ++b)
                for (int h = 0; h < 2; ++h, x += 32) {
                    const __m256i nz = _mm256_set1_epi32(int(uint32_t(w[2 * b] >> 32 * h)));
                    const __m256i neg = _mm256_set1_epi32(int(uint32_t(w[2 * b + 1] >> 32 * h)));
                    for (int g = 0; g < 4; ++g) {
                        const __m256 v = _mm256_loadu_ps(x + 8 * g);
                        const __m256 s = _mm256_blendv_ps(v, _mm256_xor_ps(v, sign),
                                                          _mm256_castsi256_ps(_mm256_sllv_epi32(neg, shift[g])));
                        acc[g] = _mm256_add_ps(
                            acc[g], _mm256_blendv_ps(zero, s, _mm256_castsi256_ps(_mm256_sllv_epi32(nz, shift[g]))));
                    }
                }
            const __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            j.y[m * j.ldy + r] = j.scale * hsum(sum);
        }
    }
}

// Per 32 weights: weight bytes from the planes, x biased to unsigned (x + 128), vpmaddubsw (pairs stay
// within ±510, no saturation) and vpmaddwd to int32; 128 · Σ_k w is taken off at the end.
void TernaryRows::operator()(xsimd::avx2, const I8Job& j) const noexcept {
    const __m256i bias = _mm256_set1_epi8(char(0x80)), one = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int64_t r = j.r0; r < j.r1; ++r) {
        const uint64_t* w = j.planes + r * j.blocks * 2;
        for (int64_t m = 0; m < j.M; ++m) {
            const int8_t* x = j.x + m * j.ldx;
            __m256i acc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            for (int64_t b = 0; b < j.blocks; ++b)
                for (int h = 0; h < 2; ++h, x += 32) {
                    const __m256i q = _mm256_or_si256(_mm256_and_si256(bytes_of(uint32_t(w[2 * b] >> 32 * h)), one),
                                                      bytes_of(uint32_t(w[2 * b + 1] >> 32 * h)));
                    const __m256i xb = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)), bias);
                    acc[h] = _mm256_add_epi32(acc[h], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, q), ones16));
                }
            const int32_t dot = hsum(_mm256_add_epi32(acc[0], acc[1])) - 128 * j.row_sums[r];
            j.y[m * j.ldy + r] = float(dot) * j.wscale / j.xscale[m];
        }
    }
}

}  // namespace flashlm::kernels::detail

namespace flashlm::kernels::detail {
namespace {

// One 16-row tile of a DenseI8Job, as two halves of 8 rows. x stays signed: vpmaddubsw(|x|, sign(q, x))
// = x · q per byte pair without saturation (|x|, |q| ≤ 127, pairs ≤ 32258), vpmaddwd widens to int32.
void dense_i8_tile(const DenseI8Job& j, int64_t t) {
    const __m256i ones16 = _mm256_set1_epi16(1);
    const int64_t G = j.groups;
    const int8_t* w = j.w + t * G * 64;
    __m256i acc[2][2] = {{_mm256_setzero_si256(), _mm256_setzero_si256()},
                         {_mm256_setzero_si256(), _mm256_setzero_si256()}};
    for (int64_t g = 0; g < G; ++g) {
        int32_t v;
        std::memcpy(&v, j.x + 4 * g, 4);
        const __m256i xb = _mm256_set1_epi32(v), ax = _mm256_abs_epi8(xb);
        for (int h = 0; h < 2; ++h) {
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + g * 64 + 32 * h));
            acc[h][g & 1] = _mm256_add_epi32(acc[h][g & 1],
                                             _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(q, xb)), ones16));
        }
    }
    const __m256 xs = _mm256_set1_ps(j.xscale);
    for (int h = 0; h < 2; ++h) {
        const int64_t r0 = t * 16 + 8 * h;
        if (r0 >= j.rows) break;
        const __m256i dot = _mm256_add_epi32(acc[h][0], acc[h][1]);
        alignas(32) float y[8];
        _mm256_store_ps(y, _mm256_div_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_loadu_ps(j.wscale + r0)), xs));
        for (int64_t i = 0; i < 8 && r0 + i < j.rows; ++i) j.y[r0 + i] = y[i];
    }
}

// Rows [r, r + NR): one pair of accumulators per row, the ragged end of K under a mask.
template <int NR>
void dense_f32_rows(const DenseF32Job& j, int64_t r) {
    const int64_t K = j.cols, kv = K / 8 * 8;
    const float* w = j.w + r * j.ld;
    __m256 a[NR];
    for (int i = 0; i < NR; ++i) a[i] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k < kv; k += 8) {
        const __m256 x = _mm256_loadu_ps(j.x + k);
        for (int i = 0; i < NR; ++i) a[i] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i * j.ld + k), x, a[i]);
    }
    if (k < K) {
        alignas(32) static constexpr int32_t lane[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
        const __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lane + 8 - (K - k)));
        const __m256 x = _mm256_maskload_ps(j.x + k, m);
        for (int i = 0; i < NR; ++i) a[i] = _mm256_fmadd_ps(_mm256_maskload_ps(w + i * j.ld + k, m), x, a[i]);
    }
    for (int i = 0; i < NR; ++i) j.y[r + i] = hsum(a[i]);
}

}  // namespace

void TernaryRows::operator()(xsimd::avx2, const DenseI8Job& j) const noexcept {
    for (int64_t t = j.t0; t < j.t1; ++t) dense_i8_tile(j, t);
}

void TernaryRows::operator()(xsimd::avx2, const DenseF32Job& j) const noexcept {
    int64_t r = j.r0;
    for (; r + 4 <= j.r1; r += 4) dense_f32_rows<4>(j, r);
    for (; r < j.r1; ++r) dense_f32_rows<1>(j, r);
}

}  // namespace flashlm::kernels::detail

namespace flashlm::kernels::detail {
namespace {

// MR tokens × one 16-row tile of a TernaryGemmI8Job, as two halves of 8 rows. vpmaddubsw multiplies the
// unsigned x + 128 by the signed codes; with codes in {-1, 0, +1} a pair sums to at most 510, so the
// int16 stage never saturates. vpmaddwd widens to int32.
template <int MR>
void gemm_i8_tile(const TernaryGemmI8Job& j, int64_t m, int64_t t) {
    const __m256i ones16 = _mm256_set1_epi16(1);
    const int64_t G = j.groups;
    const int8_t* w = j.w + t * G * 64;
    const uint8_t* x = j.x + m * j.ldx;
    // Every loop over acc is unrolled: one left rolled (the epilogue's, with its early exit) made GCC
    // keep acc on the stack, a load and a store around each update.
    __m256i acc[MR][2];
#pragma GCC unroll 4
    for (int a = 0; a < MR; ++a) acc[a][0] = acc[a][1] = _mm256_setzero_si256();
    for (int64_t g = 0; g < G; ++g) {
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + g * 64));
        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + g * 64 + 32));
#pragma GCC unroll 4
        for (int a = 0; a < MR; ++a) {
            int32_t v;
            std::memcpy(&v, x + a * j.ldx + 4 * g, 4);
            const __m256i xb = _mm256_set1_epi32(v);
            acc[a][0] = _mm256_add_epi32(acc[a][0], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w0), ones16));
            acc[a][1] = _mm256_add_epi32(acc[a][1], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w1), ones16));
        }
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
        const int64_t r0 = t * 16 + 8 * h;
        if (r0 >= j.rows) continue;  // a continue, not a break: the loop keeps its two trips and unrolls
        const __m256i corr = _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(j.row_sums + r0)), 7);
        const __m256 ws = _mm256_loadu_ps(j.wscale + r0);
#pragma GCC unroll 4
        for (int a = 0; a < MR; ++a) {
            const __m256 d = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[a][h], corr));
            const __m256 y = _mm256_mul_ps(_mm256_mul_ps(d, ws), _mm256_set1_ps(j.xinv[m + a]));
            float* dst = j.y + (m + a) * j.ldy + r0;
            if (r0 + 8 <= j.rows) {
                _mm256_storeu_ps(dst, y);
            } else {
                alignas(32) float tmp[8];
                _mm256_store_ps(tmp, y);
                for (int64_t i = 0; r0 + i < j.rows; ++i) dst[i] = tmp[i];
            }
        }
    }
}

}  // namespace

void TernaryRows::operator()(xsimd::avx2, const TernaryGemmI8Job& j) const noexcept {
    for (int64_t c0 = j.m0; c0 < j.m1; c0 += 96) {
        const int64_t c1 = std::min(j.m1, c0 + 96);
        for (int64_t t = 0; t < j.tiles; ++t) {
            int64_t m = c0;
            for (; m + 4 <= c1; m += 4) gemm_i8_tile<4>(j, m, t);
            for (; m < c1; ++m) gemm_i8_tile<1>(j, m, t);
        }
    }
}

}  // namespace flashlm::kernels::detail
