// AArch64 kernels for any Armv8.0 CPU (Advanced SIMD is mandatory there). Compiled with
// -march=armv8-a by flashlm_add_kernels(), so a target built with -march=native cannot leak newer
// instructions (sdot, SVE) into the path that must run on a Cortex-A53. Empty elsewhere.
#if defined(__aarch64__)
#include <xsimd/xsimd.hpp>

#include "flashlm/kernels/arch/ternary_neon_impl.hpp"

namespace flashlm::kernels::detail {
namespace {

// The exact family and the dense float head through xsimd's neon64 batches (4 floats).
using f32x4 = xsimd::batch<float, xsimd::neon64>;
using i32x4 = xsimd::batch<int32_t, xsimd::neon64>;

// Reinterpret through the register types: xsimd 8.1's bitwise_cast on NEON dispatches through a table
// of function pointers (one out-of-line call per cast, measured in the disassembly), these are free.
i32x4 as_int(f32x4 v) { return i32x4(vreinterpretq_s32_f32(v)); }
f32x4 as_float(i32x4 v) { return f32x4(vreinterpretq_f32_s32(v)); }

// Per 4 weights (plane bits 4g..4g+3 of a 32-bit half): a per-lane shift moves bit 4g + l to the sign
// bit of lane l; the negative plane's sign bit is xored into x (a sign flip), the nonzero plane's is
// smeared over the lane by an arithmetic shift and ands x away where q = 0. Four accumulators, as on
// x86, keep the adds independent.
void f32_rows(const F32Job& j) {
    const i32x4 sign(int32_t(0x80000000u));
    i32x4 shift[8];
    for (int g = 0; g < 8; ++g) shift[g] = i32x4{31 - 4 * g, 30 - 4 * g, 29 - 4 * g, 28 - 4 * g};
    for (int64_t r = j.r0; r < j.r1; ++r) {
        const uint64_t* w = j.planes + r * j.blocks * 2;
        for (int64_t m = 0; m < j.M; ++m) {
            const float* x = j.x + m * j.ldx;
            f32x4 acc[4] = {f32x4(0.0f), f32x4(0.0f), f32x4(0.0f), f32x4(0.0f)};
            for (int64_t b = 0; b < j.blocks; ++b)
                for (int h = 0; h < 2; ++h) {
                    const i32x4 nz(int32_t(uint32_t(w[2 * b] >> 32 * h)));
                    const i32x4 neg(int32_t(uint32_t(w[2 * b + 1] >> 32 * h)));
                    for (int g = 0; g < 8; ++g, x += 4) {
                        const i32x4 v = as_int(f32x4::load_unaligned(x));
                        const i32x4 keep = (nz << shift[g]) >> 31;
                        const i32x4 flip = (neg << shift[g]) & sign;
                        acc[g & 3] += as_float((v ^ flip) & keep);
                    }
                }
            j.y[m * j.ldy + r] = j.scale * xsimd::hadd((acc[0] + acc[1]) + (acc[2] + acc[3]));
        }
    }
}

// Rows [r, r + NR) of a DenseF32Job: one FMA chain per row, x shared, the ragged end of K in scalar.
template <int NR>
void dense_f32_rows(const DenseF32Job& j, int64_t r) {
    const int64_t K = j.cols, kv = K / 4 * 4;
    const float* w = j.w + r * j.ld;
    f32x4 a[NR];
    for (int i = 0; i < NR; ++i) a[i] = f32x4(0.0f);
    for (int64_t k = 0; k < kv; k += 4) {
        const f32x4 x = f32x4::load_unaligned(j.x + k);
        for (int i = 0; i < NR; ++i) a[i] = xsimd::fma(f32x4::load_unaligned(w + i * j.ld + k), x, a[i]);
    }
    for (int i = 0; i < NR; ++i) {
        float s = xsimd::hadd(a[i]);
        for (int64_t k = kv; k < K; ++k) s += w[i * j.ld + k] * j.x[k];
        j.y[r + i] = s;
    }
}

void dense_f32(const DenseF32Job& j) {
    int64_t r = j.r0;
    for (; r + 4 <= j.r1; r += 4) dense_f32_rows<4>(j, r);
    for (; r < j.r1; ++r) dense_f32_rows<1>(j, r);
}

}  // namespace

void TernaryRows::operator()(xsimd::neon64, const F32Job& j) const noexcept { f32_rows(j); }
void TernaryRows::operator()(xsimd::neon64, const I8Job& j) const noexcept { i8_job<false>(j); }
void TernaryRows::operator()(xsimd::neon64, const DenseI8Job& j) const noexcept { dense_i8<false>(j); }
void TernaryRows::operator()(xsimd::neon64, const DenseF32Job& j) const noexcept { dense_f32(j); }

}  // namespace flashlm::kernels::detail
#endif
