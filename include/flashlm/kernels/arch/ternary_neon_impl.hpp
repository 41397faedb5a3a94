#pragma once
// The AArch64 int8 kernels, shared by arch/ternary_neon.cpp (Armv8.0) and arch/ternary_neon_dotprod.cpp
// (Armv8.2 + dotprod), in raw intrinsics: xsimd 8.1 has no widening or dot-product int8 operations.
// Only those two files include this; everything here has internal linkage (an anonymous namespace), so
// each file keeps its own copy compiled with its own flags and the linker can never pick the dotprod
// build of a helper for the Armv8.0 path.
//
// Dot selects the int8 inner product: vdotq_s32 (sdot: 16 int8 products summed into 4 int32 lanes per
// instruction) when true, else vmull_s8 / vmlal_high_s8 into int16 and vpadalq_s16 into int32. Both are
// exact integer sums, so every path gives the same int32 dot product, and the float epilogue
// float(dot) * wscale / xscale is the same IEEE multiply and divide as the scalar path's.
#include <arm_neon.h>

#include <cstring>

#include "flashlm/kernels/ternary_abi.hpp"

namespace flashlm::kernels::detail {
namespace {

#if defined(__ARM_FEATURE_DOTPROD)
constexpr bool k_sdot = true;
#else
constexpr bool k_sdot = false;  // a compiler without +dotprod: the dotprod file runs the Armv8.0 code
#endif

// acc += Σ over 4-byte groups of a · b, lane i getting bytes 4i..4i+3 (sdot), or, without dotprod,
// lane i getting bytes {2i, 2i+1, 8+2i, 9+2i} (vmull/vmlal: |pair sum| ≤ 2 · 127², no int16 overflow;
// vpadalq: pairwise into int32). Only the lane sum is used where the lane assignment differs.
template <bool Dot>
int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    if constexpr (Dot) return vdotq_s32(acc, a, b);
#endif
    return vpadalq_s16(acc, vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b));
}

// Weight bytes {-1, 0, +1} for weights 16g..16g+15 of a block whose planes sit in one q-register as
// bytes [nonzero 0..7 | negative 0..7]: a table lookup copies plane byte 2g / 2g+1 to 8 lanes each, a
// bit test against 1, 2, .., 128 turns lane l's bit into 0x00 / 0xff; q = (nonzero & 1) | negative.
struct Weights16 {
    uint8x16_t idx_nz[4], idx_neg[4], bit, one;
    Weights16() {
        static constexpr uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        bit = vld1q_u8(bits);
        one = vdupq_n_u8(1);
        for (int g = 0; g < 4; ++g) {
            uint8_t idx[16];
            for (int l = 0; l < 16; ++l) idx[l] = uint8_t(2 * g + l / 8);
            idx_nz[g] = vld1q_u8(idx);
            idx_neg[g] = vaddq_u8(idx_nz[g], vdupq_n_u8(8));
        }
    }
    static uint8x16_t planes(const uint64_t* wb) { return vreinterpretq_u8_u64(vld1q_u64(wb)); }
    int8x16_t operator()(uint8x16_t planes, int g) const {
        const uint8x16_t nz = vtstq_u8(vqtbl1q_u8(planes, idx_nz[g]), bit);
        const uint8x16_t neg = vtstq_u8(vqtbl1q_u8(planes, idx_neg[g]), bit);
        return vreinterpretq_s8_u8(vorrq_u8(vandq_u8(nz, one), neg));
    }
};

// x stays signed (sdot and vmull are signed × signed), so no bias and no row_sums correction. Four rows
// share each x load; each row keeps one accumulator per 16-weight group.
template <bool Dot, int NR>
void i8_rows(const I8Job& j, const Weights16& wq, int64_t r, const int8_t* x, float xscale, float* y) {
    int32x4_t acc[NR][2];
    for (int i = 0; i < NR; ++i) acc[i][0] = acc[i][1] = vdupq_n_s32(0);
    for (int64_t b = 0; b < j.blocks; ++b) {
        int8x16_t xv[4];
        for (int g = 0; g < 4; ++g) xv[g] = vld1q_s8(x + 64 * b + 16 * g);
        for (int i = 0; i < NR; ++i) {
            const uint8x16_t p = Weights16::planes(j.planes + ((r + i) * j.blocks + b) * 2);
            for (int g = 0; g < 4; ++g) acc[i][g & 1] = dot16<Dot>(acc[i][g & 1], wq(p, g), xv[g]);
        }
    }
    for (int i = 0; i < NR; ++i) {
        const int32_t dot = vaddvq_s32(vaddq_s32(acc[i][0], acc[i][1]));
        y[r + i] = float(dot) * j.wscale / xscale;
    }
}

template <bool Dot>
void i8_job(const I8Job& j) {
    const Weights16 wq;
    for (int64_t m = 0; m < j.M; ++m) {
        const int8_t* x = j.x + m * j.ldx;
        float* y = j.y + m * j.ldy;
        int64_t r = j.r0;
        for (; r + 4 <= j.r1; r += 4) i8_rows<Dot, 4>(j, wq, r, x, j.xscale[m], y);
        for (; r < j.r1; ++r) i8_rows<Dot, 1>(j, wq, r, x, j.xscale[m], y);
    }
}

// One 16-row tile of a DenseI8Job. Per group of 4 columns the tile holds 64 bytes, rows 4k..4k+3 in
// bytes 16k..16k+15; x[4g..4g+3] is broadcast to all four 32-bit lanes. With sdot, lane i of acc[k]
// is row 4k + i directly; without, vmull/vpadal leave [row 4k: cols 0-1, 2-3 | row 4k+1: ...] in the
// low half and rows 4k+2, 4k+3 in the high half, folded by one vpaddq at the end.
template <bool Dot>
void dense_i8_tile(const DenseI8Job& j, int64_t t) {
    const int64_t G = j.groups;
    const int8_t* w = j.w + t * G * 64;
    int32x4_t lo[4], hi[4];
    for (int k = 0; k < 4; ++k) lo[k] = hi[k] = vdupq_n_s32(0);
    for (int64_t g = 0; g < G; ++g) {
        int32_t v;
        std::memcpy(&v, j.x + 4 * g, 4);
        const int8x16_t xb = vreinterpretq_s8_s32(vdupq_n_s32(v));
        for (int k = 0; k < 4; ++k) {
            const int8x16_t q = vld1q_s8(w + g * 64 + 16 * k);
            if constexpr (Dot && k_sdot) {
                lo[k] = dot16<true>(lo[k], q, xb);
            } else {
                lo[k] = vpadalq_s16(lo[k], vmull_s8(vget_low_s8(q), vget_low_s8(xb)));
                hi[k] = vpadalq_s16(hi[k], vmull_high_s8(q, xb));
            }
        }
    }
    const float32x4_t xs = vdupq_n_f32(j.xscale);
    for (int k = 0; k < 4; ++k) {
        const int64_t r0 = t * 16 + 4 * k;
        if (r0 >= j.rows) break;
        const int32x4_t dot = Dot && k_sdot ? lo[k] : vpaddq_s32(lo[k], hi[k]);
        float out[4];
        vst1q_f32(out, vdivq_f32(vmulq_f32(vcvtq_f32_s32(dot), vld1q_f32(j.wscale + r0)), xs));
        for (int64_t i = 0; i < 4 && r0 + i < j.rows; ++i) j.y[r0 + i] = out[i];
    }
}

template <bool Dot>
void dense_i8(const DenseI8Job& j) {
    for (int64_t t = j.t0; t < j.t1; ++t) dense_i8_tile<Dot>(j, t);
}

}  // namespace
}  // namespace flashlm::kernels::detail
