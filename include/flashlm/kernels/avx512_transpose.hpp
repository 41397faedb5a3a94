#pragma once
// 16 × 16 transpose of 32-bit lanes in zmm registers, used by the packing of both GEMM kernels
// (gemm_bf16.hpp, gemm_f32.hpp). Compiled for AVX-512F alone, so the bf16 kernel's wider target
// (avx512bf16) can inline it too. x86 only; callers run it only after their own run-time CPU check.
#include "flashlm/core/x86_intrinsics.hpp"
#if defined(__x86_64__) || defined(__i386__)

namespace flashlm::kernels::avx512 {

// r[i] lane l -> r[l] lane i. Zero-masked forms throughout: gcc 12 warns about the unmasked forms'
// undefined source operand.
__attribute__((target("avx512f"))) inline void transpose16(__m512i r[16]) {
    const __mmask16 all16 = 0xffff;
    const __mmask8 all8 = 0xff;
    __m512i t[16], u[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_maskz_unpacklo_epi32(all16, r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_maskz_unpackhi_epi32(all16, r[2 * i], r[2 * i + 1]);
    }
    // u[4i + c], 128-bit lane j: column 4j + c of rows 4i .. 4i + 3
    for (int i = 0; i < 4; ++i) {
        u[4 * i + 0] = _mm512_maskz_unpacklo_epi64(all8, t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_maskz_unpackhi_epi64(all8, t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_maskz_unpacklo_epi64(all8, t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_maskz_unpackhi_epi64(all8, t[4 * i + 1], t[4 * i + 3]);
    }
    for (int c = 0; c < 4; ++c) {
        const __m512i x0 = _mm512_maskz_shuffle_i32x4(all16, u[c], u[4 + c], 0x44);
        const __m512i x1 = _mm512_maskz_shuffle_i32x4(all16, u[c], u[4 + c], 0xee);
        const __m512i y0 = _mm512_maskz_shuffle_i32x4(all16, u[8 + c], u[12 + c], 0x44);
        const __m512i y1 = _mm512_maskz_shuffle_i32x4(all16, u[8 + c], u[12 + c], 0xee);
        r[c] = _mm512_maskz_shuffle_i32x4(all16, x0, y0, 0x88);
        r[4 + c] = _mm512_maskz_shuffle_i32x4(all16, x0, y0, 0xdd);
        r[8 + c] = _mm512_maskz_shuffle_i32x4(all16, x1, y1, 0x88);
        r[12 + c] = _mm512_maskz_shuffle_i32x4(all16, x1, y1, 0xdd);
    }
}

}  // namespace flashlm::kernels::avx512
#endif
