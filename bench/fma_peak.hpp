#pragma once
// The FP32 FMA peak of this machine, measured (bench_train_step, bench_train_step_cli): the vendor's
// number is not what a shared VM delivers, and "% of peak" must use what this run could get.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace flashlm::bench {

#if defined(__AVX512F__)
using Vec = __m512;
constexpr int k_lanes = 16, k_acc = 12;  // 2 FMA ports x 4-cycle latency needs >= 8 chains in flight
inline Vec vset(float v) { return _mm512_set1_ps(v); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
#elif defined(__AVX2__) && defined(__FMA__)
using Vec = __m256;
constexpr int k_lanes = 8, k_acc = 10;
inline Vec vset(float v) { return _mm256_set1_ps(v); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
#else
#error "this benchmark needs AVX2+FMA or AVX-512 (build with -march=native)"
#endif

inline float vsum(Vec v) {
    float t[k_lanes];
    std::memcpy(t, &v, sizeof v);
    float s = 0;
    for (float e : t) s += e;
    return s;
}

// k_acc independent dependency chains that never leave registers. a < 1 and b small keep the values
// bounded and normal (no overflow, no denormal slow path); volatile hides them from constant folding.
float fma_chains(int64_t iters) {
    volatile float va = 0.999999f, vb = 1e-7f;
    const Vec a = vset(va), b = vset(vb);
    Vec acc[k_acc];
    for (int j = 0; j < k_acc; ++j) acc[j] = vset(float(j));
    for (int64_t i = 0; i < iters; ++i)
        for (int j = 0; j < k_acc; ++j) acc[j] = vfma(acc[j], a, b);
    float s = 0;
    for (int j = 0; j < k_acc; ++j) s += vsum(acc[j]);
    return s;
}

}  // namespace flashlm::bench
