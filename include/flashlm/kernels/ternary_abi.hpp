#pragma once
// What the dispatcher (ternary_matmul.hpp) shares with the per-ISA translation units in kernels/arch/:
// two plain job records and one functor whose operator() has an overload per xsimd arch tag, each
// defined in arch/ternary_<isa>.cpp and compiled with that ISA's flags (cmake/FlashlmKernels.cmake).
// This header holds no inline code on purpose: an inline function compiled into the AVX-512 unit could
// be the copy the linker keeps, and would then run (and fault) on a CPU without AVX-512.
#include <cstdint>

#include <xsimd/config/xsimd_arch.hpp>

namespace flashlm::kernels::detail {

// Rows [r0, r1) of a packed matrix (see ternary_pack.hpp) against M input rows. Input rows hold at least
// blocks · 64 readable elements at stride ldx (zero-padded by the caller when cols is ragged); outputs
// go to y[m · ldy + r].
struct RowsJob {
    const uint64_t* planes;
    int64_t blocks;
    int64_t r0, r1;
    int64_t M, ldx, ldy;
};

// Exact family: y = scale · Σ_k q·x in float, with adds, sign flips and selects only.
struct F32Job : RowsJob {
    const float* x;
    float scale;
    float* y;
};

// int8 family: dot = Σ_k q·xq in int32 (exact, so every ISA agrees bit for bit), then
// y = float(dot) * wscale / xscale[m], written in exactly that order everywhere.
struct I8Job : RowsJob {
    const int8_t* x;
    const float* xscale;
    const int32_t* row_sums;
    float wscale;
    float* y;
};

// Dense int8 rows (the quantised tied head, dense.hpp): row tiles [t0, t1) of 16 rows in the
// VNNI layout w[(t · groups + g) · 64 + 4i + j] = q[16t + i, 4g + j]. x holds groups · 4 int8 values
// (zero-padded); dot_r = Σ_k q[r,k] · x[k] exactly in int32, y[r] = float(dot_r) * wscale[r] / xscale in
// exactly that order on every path, for r < rows (the last tile may be partial).
struct DenseI8Job {
    const int8_t* w;
    int64_t groups;
    int64_t t0, t1, rows;
    const int8_t* x;
    float xscale;
    const float* wscale;
    const int32_t* row_sums;  // Σ_k q[r,k], for kernels that bias x to unsigned
    float* y;
};

// Ternary int8 rows in tiles (ternary_tiles.hpp): tiles [t0, t1) of 16 rows; per tile and group of 4
// columns the planes nonzero / negative at planes[(t · groups + g) · 2 + {0, 1}], bit 4i + c for row
// 16t + i, column 4g + c. dot_r exact in int32, y[r] = float(dot_r) * wscale / xscale, for r < rows.
struct TernTilesI8Job {
    const uint64_t* planes;
    int64_t groups;
    int64_t t0, t1, rows;
    const int8_t* x;
    float xscale, wscale;
    const int32_t* row_sums;  // Σ_k q[r,k], padded to whole tiles, for kernels that bias x to unsigned
    float* y;
};

// Dense float rows: y[r] = Σ_k w[r · ld + k] · x[k] for r in [r0, r1), summation order up to the path.
struct DenseF32Job {
    const float* w;
    int64_t cols, ld;
    int64_t r0, r1;
    const float* x;
    float* y;
};

// Ternary × int8 GEMM for training (ternary_gemm_i8.hpp): codes in {-1, 0, +1} in the VNNI tile layout
// of DenseI8Job (w[(t · groups + g) · 64 + 4i + j] = q[16t + i, 4g + j]), tokens [m0, m1) of x as
// unsigned bytes biased by 128 (xq + 128) at stride ldx ≥ groups · 4. dot = Σ_k q · xq exactly in int32,
// then y[m · ldy + r] = float(dot) * wscale[r] * xinv[m] in that order on every path, for r < rows.
struct TernaryGemmI8Job {
    const int8_t* w;
    int64_t groups, tiles, rows;
    const uint8_t* x;
    int64_t m0, m1, ldx;
    const float* xinv;
    const float* wscale;      // per row, padded to whole tiles
    const int32_t* row_sums;  // Σ_k q[r, k], padded to whole tiles
    float* y;
    int64_t ldy;
};

// xsimd 8.1 has one arch tag for AArch64 (neon64); the int8 kernels also come in a variant for CPUs with
// the Armv8.2 dot product (sdot, FEAT_DotProd), tagged by this refinement of neon64. Overload resolution
// sends a job without a dotprod overload (the exact family, dense float) to the neon64 one.
struct neon64_dotprod : xsimd::neon64 {};

struct TernaryRows {
    void operator()(xsimd::sse2, const F32Job&) const noexcept;
    void operator()(xsimd::sse2, const I8Job&) const noexcept;
    void operator()(xsimd::avx2, const F32Job&) const noexcept;
    void operator()(xsimd::avx2, const I8Job&) const noexcept;
    void operator()(xsimd::avx2, const DenseI8Job&) const noexcept;
    void operator()(xsimd::avx2, const DenseF32Job&) const noexcept;
    void operator()(xsimd::avx2, const TernaryGemmI8Job&) const noexcept;
    // Needs AVX-512 F/BW/DQ/VL and VNNI (vpdpbusd).
    void operator()(xsimd::avx512bw, const F32Job&) const noexcept;
    void operator()(xsimd::avx512bw, const I8Job&) const noexcept;
    void operator()(xsimd::avx512bw, const DenseI8Job&) const noexcept;
    void operator()(xsimd::avx512bw, const DenseF32Job&) const noexcept;
    void operator()(xsimd::avx512bw, const TernaryGemmI8Job&) const noexcept;
    void operator()(xsimd::avx512bw, const TernTilesI8Job&) const noexcept;
    // AArch64 (arch/ternary_neon.cpp): Armv8.0 Advanced SIMD only, int8 through vmull_s8 + vpadalq_s16.
    void operator()(xsimd::neon64, const F32Job&) const noexcept;
    void operator()(xsimd::neon64, const I8Job&) const noexcept;
    void operator()(xsimd::neon64, const DenseI8Job&) const noexcept;
    void operator()(xsimd::neon64, const DenseF32Job&) const noexcept;
    // arch/ternary_neon_dotprod.cpp, compiled with +dotprod: int8 through vdotq_s32.
    void operator()(neon64_dotprod, const I8Job&) const noexcept;
    void operator()(neon64_dotprod, const DenseI8Job&) const noexcept;
};

}  // namespace flashlm::kernels::detail
