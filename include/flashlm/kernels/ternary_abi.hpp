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

struct TernaryRows {
    void operator()(xsimd::sse2, const F32Job&) const noexcept;
    void operator()(xsimd::sse2, const I8Job&) const noexcept;
    void operator()(xsimd::avx2, const F32Job&) const noexcept;
    void operator()(xsimd::avx2, const I8Job&) const noexcept;
    // Needs AVX-512 F/BW/DQ/VL and VNNI (vpdpbusd).
    void operator()(xsimd::avx512bw, const F32Job&) const noexcept;
    void operator()(xsimd::avx512bw, const I8Job&) const noexcept;
};

}  // namespace flashlm::kernels::detail
