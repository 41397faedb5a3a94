// SSE2 kernels: the x86-64 baseline, for CPUs without AVX2. Compiled with -msse2 and everything newer
// switched off by flashlm_add_kernels(), so -march=native on the target cannot leak AVX into them.
#include <emmintrin.h>

#include "flashlm/kernels/ternary_abi.hpp"

namespace flashlm::kernels::detail {
namespace {

// Lane masks for a 4-bit nibble of a plane; SSE2 has no variable shift or blend to build them cheaply.
struct NibbleMasks {
    alignas(16) uint32_t lanes[16][4];
    constexpr NibbleMasks() : lanes{} {
        for (int n = 0; n < 16; ++n)
            for (int l = 0; l < 4; ++l) lanes[n][l] = (n >> l & 1) ? 0xffffffffu : 0u;
    }
};
constexpr NibbleMasks k_masks;

__m128i nibble(uint64_t plane, int i) {
    return _mm_load_si128(reinterpret_cast<const __m128i*>(k_masks.lanes[plane >> 4 * i & 15]));
}

float hsum(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

int32_t hsum(__m128i s) {
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)));
}

// 8 plane bits -> 8 int16 lanes, 0xffff where the bit is set.
__m128i words_of(uint64_t plane, int i) {
    const __m128i select = _mm_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm_cmpeq_epi16(_mm_and_si128(_mm_set1_epi16(short(plane >> 8 * i & 0xff)), select), select);
}

}  // namespace

// Per 4 weights: x xor (sign where q = -1), and (all ones where q != 0).
void TernaryRows::operator()(xsimd::sse2, const F32Job& j) const noexcept {
    const __m128 sign = _mm_set1_ps(-0.0f);
    for (int64_t r = j.r0; r < j.r1; ++r) {
        const uint64_t* w = j.planes + r * j.blocks * 2;
        for (int64_t m = 0; m < j.M; ++m) {
            const float* x = j.x + m * j.ldx;
            __m128 acc[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
            for (int64_t b = 0; b < j.blocks; ++b)
                for (int i = 0; i < 16; ++i, x += 4) {
                    const __m128 s = _mm_xor_ps(_mm_loadu_ps(x), _mm_and_ps(sign, _mm_castsi128_ps(nibble(w[2 * b + 1], i))));
                    acc[i & 3] = _mm_add_ps(acc[i & 3], _mm_and_ps(s, _mm_castsi128_ps(nibble(w[2 * b], i))));
                }
            const __m128 sum = _mm_add_ps(_mm_add_ps(acc[0], acc[1]), _mm_add_ps(acc[2], acc[3]));
            j.y[m * j.ldy + r] = j.scale * hsum(sum);
        }
    }
}

// Per 8 weights: x sign-extended to int16, weights as int16 {-1, 0, +1}, pmaddwd to int32.
void TernaryRows::operator()(xsimd::sse2, const I8Job& j) const noexcept {
    const __m128i one = _mm_set1_epi16(1);
    for (int64_t r = j.r0; r < j.r1; ++r) {
        const uint64_t* w = j.planes + r * j.blocks * 2;
        for (int64_t m = 0; m < j.M; ++m) {
            const int8_t* x = j.x + m * j.ldx;
            __m128i acc[2] = {_mm_setzero_si128(), _mm_setzero_si128()};
            for (int64_t b = 0; b < j.blocks; ++b)
                for (int i = 0; i < 8; ++i, x += 8) {
                    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x));
                    const __m128i x16 = _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8);
                    const __m128i q = _mm_or_si128(_mm_and_si128(words_of(w[2 * b], i), one), words_of(w[2 * b + 1], i));
                    acc[i & 1] = _mm_add_epi32(acc[i & 1], _mm_madd_epi16(x16, q));
                }
            const int32_t dot = hsum(_mm_add_epi32(acc[0], acc[1]));
            j.y[m * j.ldy + r] = float(dot) * j.wscale / j.xscale[m];
        }
    }
}

}  // namespace flashlm::kernels::detail
