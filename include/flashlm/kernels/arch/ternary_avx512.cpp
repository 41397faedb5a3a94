// AVX-512 kernels (F, BW, DQ, VL, VNNI). Compiled with those flags by flashlm_add_kernels(); the
// dispatcher only calls them on CPUs that report all five.
// g++ 12 reports a false -Wmaybe-uninitialized from _mm256_undefined_* inside its own
// _mm512_reduce_add_*; the diagnostic is located in the intrinsics header, so silence it there.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

#include "flashlm/kernels/ternary_abi.hpp"

namespace flashlm::kernels::detail {
namespace {

// 16 plane bits for lanes [16g, 16g + 16) of a block.
__mmask16 lanes(uint64_t plane, int g) { return __mmask16(plane >> (16 * g)); }

}  // namespace

// Per 16 weights: flip the sign of x where q = -1 (a masked xor), then add it where q != 0 (a masked
// add). Four accumulators, one per 16-lane group, keep the adds independent.
void TernaryRows::operator()(xsimd::avx512bw, const F32Job& j) const noexcept {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t r = j.r0; r < j.r1; ++r) {
        const uint64_t* w = j.planes + r * j.blocks * 2;
        for (int64_t m = 0; m < j.M; ++m) {
            const float* x = j.x + m * j.ldx;
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int64_t b = 0; b < j.blocks; ++b, x += 64) {
                const uint64_t nz = w[2 * b], neg = w[2 * b + 1];
                for (int g = 0; g < 4; ++g) {
                    const __m512 v = _mm512_loadu_ps(x + 16 * g);
                    const __m512 s = _mm512_mask_xor_ps(v, lanes(neg, g), v, sign);
                    acc[g] = _mm512_mask_add_ps(acc[g], lanes(nz, g), acc[g], s);
                }
            }
            const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            j.y[m * j.ldy + r] = j.scale * _mm512_reduce_add_ps(sum);
        }
    }
}

// Per 64 weights: weight bytes w in {-1, 0, +1} from two mask moves; vpdpbusd multiplies unsigned by
// signed bytes, so x is biased to x + 128 (an xor of the sign bit) and 128 · Σ_k w is taken off at the end.
void TernaryRows::operator()(xsimd::avx512bw, const I8Job& j) const noexcept {
    const __m512i bias = _mm512_set1_epi8(char(0x80)), one = _mm512_set1_epi8(1), minus_one = _mm512_set1_epi8(-1);
    for (int64_t r = j.r0; r < j.r1; ++r) {
        const uint64_t* w = j.planes + r * j.blocks * 2;
        for (int64_t m = 0; m < j.M; ++m) {
            const int8_t* x = j.x + m * j.ldx;
            // Two accumulators hide vpdpbusd's latency.
            const auto step = [&](__m512i acc, int64_t b) {
                const __m512i q = _mm512_mask_mov_epi8(_mm512_maskz_mov_epi8(w[2 * b], one), w[2 * b + 1], minus_one);
                const __m512i xb = _mm512_xor_si512(_mm512_loadu_si512(x + 64 * b), bias);
                return _mm512_dpbusd_epi32(acc, xb, q);
            };
            __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
            int64_t b = 0;
            for (; b + 1 < j.blocks; b += 2) acc0 = step(acc0, b), acc1 = step(acc1, b + 1);
            if (b < j.blocks) acc0 = step(acc0, b);
            const int32_t dot = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1)) - 128 * j.row_sums[r];
            j.y[m * j.ldy + r] = float(dot) * j.wscale / j.xscale[m];
        }
    }
}

}  // namespace flashlm::kernels::detail
