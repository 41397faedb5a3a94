// AVX2 kernels. Compiled with -mavx2 -mfma (and AVX-512 switched off, in case the target builds with
// -march=native) by flashlm_add_kernels(); the dispatcher only calls them on CPUs with AVX2 and FMA.
#include <immintrin.h>

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
