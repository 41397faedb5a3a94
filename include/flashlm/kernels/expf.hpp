#pragma once
// expf over an array, vectorisable, with the same bits as glibc's expf (2.28+, the FMA variant that
// x86-64 CPUs with AVX2/FMA run; ARM's optimized-routines algorithm): exp(x) = 2^(k/32) · p(r) in double,
// k = round(x·32/ln2), table 2^(i/32), a cubic in r, one rounding to float at the end. The operations
// and their fused multiply-adds are the ones libm's __expf_fma executes, so a loop of these gives what a
// loop of std::exp gave, but the compiler vectorises it (gathers from the 32-entry table) where a libm
// call per element stays scalar. |x| ≥ ~88, infinities and NaN give libm's results without its errno.
// tests/variants/pointwise_speed.cpp checks the bits against std::exp where libm is this algorithm.
// Without hardware FMA (a build without -march=native on x86) it is a plain std::exp loop.
#include <bit>
#include <cmath>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <cstdint>
#include <limits>

namespace flashlm::kernels {

namespace detail {
// 2^(i/32) as double bits, minus i << 47 (libm's __exp2f_data.tab; adding k << 47 puts k/32 into the
// exponent).
inline constexpr uint64_t k_exp2f_tab[32] = {
    0x3ff0000000000000ull, 0x3fefd9b0d3158574ull, 0x3fefb5586cf9890full, 0x3fef9301d0125b51ull,
    0x3fef72b83c7d517bull, 0x3fef54873168b9aaull, 0x3fef387a6e756238ull, 0x3fef1e9df51fdee1ull,
    0x3fef06fe0a31b715ull, 0x3feef1a7373aa9cbull, 0x3feedea64c123422ull, 0x3feece086061892dull,
    0x3feebfdad5362a27ull, 0x3feeb42b569d4f82ull, 0x3feeab07dd485429ull, 0x3feea47eb03a5585ull,
    0x3feea09e667f3bcdull, 0x3fee9f75e8ec5f74ull, 0x3feea11473eb0187ull, 0x3feea589994cce13ull,
    0x3feeace5422aa0dbull, 0x3feeb737b0cdc5e5ull, 0x3feec49182a3f090ull, 0x3feed503b23e255dull,
    0x3feee89f995ad3adull, 0x3feeff76f2fb5e47ull, 0x3fef199bdd85529cull, 0x3fef3720dcef9069ull,
    0x3fef5818dcfba487ull, 0x3fef7c97337b9b5full, 0x3fefa4afa2a490daull, 0x3fefd0765b6e4540ull,
};
inline constexpr double k_expf_invln2n = 0x1.71547652b82fep+5;  // 32/ln 2
inline constexpr double k_expf_shift = 0x1.8p+52;                // round-to-int by addition
inline constexpr double k_expf_c0 = 0x1.c6af84b912394p-20, k_expf_c1 = 0x1.ebfce50fac4f3p-13,
                        k_expf_c2 = 0x1.62e42ff0c52d6p-6;

inline float expf_core(float x) {
    const double xd = double(x);
    double kd = std::fma(k_expf_invln2n, xd, k_expf_shift);
    const uint64_t ki = std::bit_cast<uint64_t>(kd);
    kd -= k_expf_shift;
    const double r = std::fma(k_expf_invln2n, xd, -kd);
    const double s = std::bit_cast<double>(k_exp2f_tab[ki & 31] + (ki << 47));
    const double z = std::fma(r, k_expf_c0, k_expf_c1);
    const double r2 = r * r;
    double y = std::fma(r, k_expf_c2, 1.0);
    y = std::fma(z, r2, y);
    return float(y * s);
}
#if defined(__AVX512F__) && defined(__AVX512VL__)
// expf_core on 8 lanes, the same operations in the same order (vector FMAs round once, like std::fma), with
// the 32-entry table looked up by two two-register permutes instead of a gather. GCC tuned for Zen does not
// vectorise the scalar loop at all (it will not emit gathers there): sigmoid_array ran scalar, 8.6 % of a
// nova-diff step.
// The conversions and the shift are the all-lanes zero-masked forms: the plain intrinsics pass an
// _mm512_undefined_* operand that g++ 12 reports as maybe-uninitialized once inlined (fixed in g++ 13).
inline __m256 expf_core8(__m256 x) {
    constexpr __mmask8 all = 0xff;
    const __m512d xd = _mm512_maskz_cvtps_pd(all, x);
    const __m512d invln2n = _mm512_set1_pd(k_expf_invln2n), shift = _mm512_set1_pd(k_expf_shift);
    __m512d kd = _mm512_fmadd_pd(invln2n, xd, shift);
    const __m512i ki = _mm512_castpd_si512(kd);
    kd = _mm512_sub_pd(kd, shift);
    const __m512d r = _mm512_fmsub_pd(invln2n, xd, kd);
    const __m512i idx = _mm512_and_si512(ki, _mm512_set1_epi64(31));
    const __m512i lo = _mm512_permutex2var_epi64(_mm512_loadu_si512(k_exp2f_tab), idx, _mm512_loadu_si512(k_exp2f_tab + 8));
    const __m512i hi =
        _mm512_permutex2var_epi64(_mm512_loadu_si512(k_exp2f_tab + 16), idx, _mm512_loadu_si512(k_exp2f_tab + 24));
    const __m512i tab = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(idx, _mm512_set1_epi64(16)), lo, hi);
    const __m512d sc = _mm512_castsi512_pd(_mm512_add_epi64(tab, _mm512_maskz_slli_epi64(all, ki, 47)));
    const __m512d z = _mm512_fmadd_pd(r, _mm512_set1_pd(k_expf_c0), _mm512_set1_pd(k_expf_c1));
    const __m512d r2 = _mm512_mul_pd(r, r);
    __m512d y = _mm512_fmadd_pd(r, _mm512_set1_pd(k_expf_c2), _mm512_set1_pd(1.0));
    y = _mm512_fmadd_pd(z, r2, y);
    return _mm512_maskz_cvtpd_ps(all, _mm512_mul_pd(y, sc));
}
#endif
}  // namespace detail


// y[i] = expf(x[i]) for i < n (x and y must not overlap).
// libm's special path (|x| ≥ 88, inf, NaN) is done per lane as selects: above log(2^128) it returns +inf,
// below log(2^-150) zero, for NaN x + x, and between those bounds it falls through to the same core
// (glibc builds without WANT_ERRNO_UFLOW). Only errno is not set. Calling libm for those lanes instead
// cost supernova2 ~1.5 % of its step: its gate pre-activations reach ±88 after a few steps.
inline void expf_array(const float* x, float* y, int64_t n) {
#if defined(__FMA__) || defined(__aarch64__)
    int64_t i = 0;
#if defined(__AVX512F__) && defined(__AVX512VL__)
    const __m256 hi = _mm256_set1_ps(0x1.62e42ep6f), lo = _mm256_set1_ps(-0x1.9fe368p6f);
    for (; i + 8 <= n; i += 8) {
        const __m256 xi = _mm256_loadu_ps(x + i);
        __m256 r = detail::expf_core8(xi);
        r = _mm256_mask_blend_ps(_mm256_cmp_ps_mask(xi, hi, _CMP_GT_OQ), r,
                                 _mm256_set1_ps(std::numeric_limits<float>::infinity()));
        r = _mm256_mask_blend_ps(_mm256_cmp_ps_mask(xi, lo, _CMP_LT_OQ), r, _mm256_setzero_ps());
        r = _mm256_mask_blend_ps(_mm256_cmp_ps_mask(xi, xi, _CMP_UNORD_Q), r, _mm256_add_ps(xi, xi));
        _mm256_storeu_ps(y + i, r);
    }
#endif
    for (; i < n; ++i) {
        const float xi = x[i];
        float r = detail::expf_core(xi);
        r = xi > 0x1.62e42ep6f ? std::numeric_limits<float>::infinity() : r;
        r = xi < -0x1.9fe368p6f ? 0.0f : r;
        r = xi != xi ? xi + xi : r;
        y[i] = r;
    }
#else
    // no hardware FMA in this build: std::fma would be a libm call per operation
    for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
#endif
}

}  // namespace flashlm::kernels
