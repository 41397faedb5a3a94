#pragma once
// Ternary matvec / matmul on PackedTernary weights (ternary_pack.hpp), dispatched at run time to the
// best kernel the CPU runs: avx512 (F/BW/DQ/VL + VNNI) > avx2 (+FMA) > sse2 > scalar on x86-64,
// neon_dotprod (Armv8.2 sdot) > neon (Armv8.0 Advanced SIMD) > scalar on AArch64.
//
// Two families:
//  - exact:  y = scale · Σ_k q[r,k] · x[k] in float. Only adds, sign flips and selects touch x, so the
//            result is the float GEMV with W̃ up to summation order (SIMD paths sum in lanes).
//  - int8:   x is quantised per row (BitNet b1.58 absmax: s = 127 / max|x|, q = round(x·s) in ±127),
//            the dot product is exact in int32, y = dot · scale / s. Every path agrees bit for bit.
//
// The ISA is chosen once, on first use: FLASHLM_ISA=scalar|sse2|avx2|avx512|neon|neon_dotprod forces
// one (tests, benchmarks), otherwise the best available. set_isa() switches it later; it is process-wide, so do not
// switch while another thread runs a kernel.
//
// Linking: the SIMD kernels live in kernels/arch/*.cpp, which the consumer compiles with per-file ISA
// flags: call flashlm_add_kernels(<target>) from cmake/FlashlmKernels.cmake. This header needs no flags.
#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)  // glibc < 2.28
#endif
#endif

#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/cpu_features.hpp"
#include "flashlm/kernels/ternary_abi.hpp"
#include "flashlm/kernels/ternary_pack.hpp"

namespace flashlm::kernels {

enum class Isa : int { scalar, sse2, avx2, avx512, neon, neon_dotprod };

namespace detail {

inline constexpr std::string_view k_isa_names[] = {"scalar", "sse2", "avx2", "avx512", "neon", "neon_dotprod"};
inline constexpr int k_isa_count = int(std::size(k_isa_names));

// Rows per OpenMP task, and the least work (weights × input rows) worth forking threads for: a
// kernel streams ~10-50 G weights/s per core, so below this the fork (a few µs) costs more than it saves.
inline constexpr int64_t k_row_block = 16;
inline constexpr int64_t k_m_block = 64;
inline constexpr int64_t k_parallel_min_work = int64_t(1) << 17;

inline bool cpu_has(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
    const CpuFeatures& f = cpu_features();  // CPUID + XGETBV, shared with the popcount and bf16 kernels
    switch (isa) {
        case Isa::scalar: return true;
        case Isa::sse2: return f.sse2;
        case Isa::avx2: return f.avx2 && f.fma;
        case Isa::avx512: return f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl && f.avx512vnni;
        default: return false;
    }
#elif defined(__aarch64__)
    // Advanced SIMD is part of every AArch64 CPU (xsimd reports neon64 unconditionally there); the dot
    // product is optional before Armv8.4 (Cortex-A53/A72 lack it), so ask the kernel (HWCAP_ASIMDDP).
    switch (isa) {
        case Isa::scalar: return true;
        case Isa::neon: return xsimd::available_architectures().neon64;
        case Isa::neon_dotprod:
#if defined(__linux__)
            return xsimd::available_architectures().neon64 && (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
            return false;  // no portable query off Linux: the Armv8.0 path is always correct
#endif
        default: return false;
    }
#else
    return isa == Isa::scalar;
#endif
}

inline bool parse_isa(std::string_view name, Isa& out) {
    for (int i = 0; i < k_isa_count; ++i)
        if (name == k_isa_names[i]) return out = Isa(i), true;
    return false;
}

inline Isa best_isa() {
    for (Isa isa : {Isa::avx512, Isa::avx2, Isa::sse2, Isa::neon_dotprod, Isa::neon})
        if (cpu_has(isa)) return isa;
    return Isa::scalar;
}

inline std::atomic<Isa>& isa_slot() {
    static std::atomic<Isa> slot{[] {
        Isa isa = best_isa(), forced;
        if (const char* env = std::getenv("FLASHLM_ISA"); env && *env) {
            if (parse_isa(env, forced) && cpu_has(forced))
                isa = forced;
            else
                std::fprintf(stderr, "flashlm: FLASHLM_ISA=%s is not available on this CPU; using %s\n", env,
                             k_isa_names[int(isa)].data());
        }
        return isa;
    }()};
    return slot;
}

// Reference kernels, always available. They walk the set bits of the nonzero plane in k order.
inline void scalar_rows(const F32Job& j) {
    for (int64_t r = j.r0; r < j.r1; ++r) {
        const uint64_t* w = j.planes + r * j.blocks * 2;
        for (int64_t m = 0; m < j.M; ++m) {
            const float* x = j.x + m * j.ldx;
            float acc = 0;
            for (int64_t b = 0; b < j.blocks; ++b)
                for (uint64_t nz = w[2 * b]; nz; nz &= nz - 1) {
                    const int k = std::countr_zero(nz);
                    const float v = x[b * k_block + k];
                    acc += (w[2 * b + 1] >> k & 1) ? -v : v;
                }
            j.y[m * j.ldy + r] = j.scale * acc;
        }
    }
}

inline void scalar_rows(const I8Job& j) {
    for (int64_t r = j.r0; r < j.r1; ++r) {
        const uint64_t* w = j.planes + r * j.blocks * 2;
        for (int64_t m = 0; m < j.M; ++m) {
            const int8_t* x = j.x + m * j.ldx;
            int32_t dot = 0;
            for (int64_t b = 0; b < j.blocks; ++b)
                for (uint64_t nz = w[2 * b]; nz; nz &= nz - 1) {
                    const int k = std::countr_zero(nz);
                    const int32_t v = x[b * k_block + k];
                    dot += (w[2 * b + 1] >> k & 1) ? -v : v;
                }
            j.y[m * j.ldy + r] = float(dot) * j.wscale / j.xscale[m];
        }
    }
}

// Splits the job into row blocks × input-row blocks and runs them on the active ISA.
template <class Job>
void run_on(Isa isa, const Job& j) {
    switch (isa) {
        case Isa::scalar: scalar_rows(j); break;
#if defined(__x86_64__) || defined(__i386__)
        case Isa::sse2: TernaryRows{}(xsimd::sse2{}, j); break;
        case Isa::avx2: TernaryRows{}(xsimd::avx2{}, j); break;
        case Isa::avx512: TernaryRows{}(xsimd::avx512bw{}, j); break;
#elif defined(__aarch64__)
        case Isa::neon: TernaryRows{}(xsimd::neon64{}, j); break;
        case Isa::neon_dotprod: TernaryRows{}(neon64_dotprod{}, j); break;
#endif
        default: scalar_rows(j); break;
    }
}

// Every output element is computed by one kernel call on its own (rows are independent), so how the
// job is split changes no number.
template <class Job>
void run(const Job& job, int64_t rows, int64_t cols) {
    const Isa isa = isa_slot().load(std::memory_order_relaxed);
    const int64_t nr = (rows + k_row_block - 1) / k_row_block, nm = (job.M + k_m_block - 1) / k_m_block;
    // flashlm::parallel_for never opens a serialized OpenMP region (libgomp mallocs a team for each),
    // so a per-token matvec allocates nothing.
    const int64_t work = rows * cols * job.M >= k_parallel_min_work ? flashlm::k_parallel_min_work : 0;
    if (!flashlm::go_parallel(nr * nm, work)) {
        // One thread: one call per block of input rows over all output rows (a Bolt matvec is a single
        // call instead of 12-32 row-block tasks).
        for (int64_t m0 = 0; m0 < job.M; m0 += k_m_block) {
            Job j = job;
            j.r0 = 0;
            j.r1 = rows;
            j.M = std::min(job.M - m0, k_m_block);
            j.x += m0 * j.ldx;
            j.y += m0 * j.ldy;
            if constexpr (std::is_same_v<Job, I8Job>) j.xscale += m0;
            run_on(isa, j);
        }
        return;
    }
    flashlm::parallel_for(nr * nm, work, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
        Job j = job;
        const int64_t m0 = t % nm * k_m_block;
        j.r0 = t / nm * k_row_block;
        j.r1 = std::min(rows, j.r0 + k_row_block);
        j.M = std::min(job.M - m0, k_m_block);
        j.x += m0 * j.ldx;
        j.y += m0 * j.ldy;
        if constexpr (std::is_same_v<Job, I8Job>) j.xscale += m0;
        run_on(isa, j);
    }
    });
}

// Kernels read whole blocks; a ragged input is copied into zero-padded rows of stride cols_padded.
template <class T>
const T* padded_rows(const T* x, int64_t M, int64_t cols, int64_t cols_padded, std::vector<T>& buf) {
    if (cols == cols_padded) return x;
    buf.assign(size_t(M * cols_padded), T(0));
    for (int64_t m = 0; m < M; ++m) std::copy(x + m * cols, x + (m + 1) * cols, buf.data() + m * cols_padded);
    return buf.data();
}

// round_half_even(clamp(xs, ±127)), the int8 activation code of xs = x · s (both int8 quantisers). The
// clamp only catches the last ulp of |x · s| ≤ 127; its tests are written so that a NaN becomes -127
// instead of reaching the int cast, which it would make undefined (the row's scale carries the NaN). It
// comes before the rounding, which gives the same codes and keeps a caller's product from being
// contracted into an FMA with the add below (one rounding instead of two). Adding and subtracting
// 1.5 · 2²³ rounds v to the nearest integer, ties to even, in the default rounding mode: the numbers of
// std::nearbyint, which is a libm call (~2 ns a value) where this vectorises.
inline int32_t activation_code(float xs) {
    float v = xs > -127.0f ? xs : -127.0f;
    v = v < 127.0f ? v : 127.0f;
    return int32_t((v + 12582912.0f) - 12582912.0f);
}

// amax = max|x|, s = 127 / max(amax, 1e-5), q = activation_code(x · s). Written so that
// the compiler vectorises both loops (a per-token cost of the int8 generators: ~9 % of an int8 Bolt step
// as scalar code): |x| is compared as its bit pattern (for non-NaN floats the unsigned order of
// |x|'s bits is the order of |x|, and integer max reductions vectorise where float ones do not without
// -ffast-math).
inline void quantize_rows_int8(const float* x, int64_t M, int64_t K, int8_t* q, int64_t ldq, float* scales) {
    for (int64_t m = 0; m < M; ++m) {
        const float* xr = x + m * K;
        uint32_t abits = 0;
        for (int64_t k = 0; k < K; ++k) abits = std::max(abits, std::bit_cast<uint32_t>(xr[k]) & 0x7fffffffu);
        const float amax = std::bit_cast<float>(abits);
        const float s = 127.0f / std::max(amax, 1e-5f);
        int8_t* qr = q + m * ldq;
        for (int64_t k = 0; k < K; ++k) qr[k] = int8_t(activation_code(xr[k] * s));
        scales[m] = s;
    }
}

}  // namespace detail

// ---- ISA control ------------------------------------------------------------------------------------

inline std::string active_isa() { return std::string(detail::k_isa_names[int(detail::isa_slot().load())]); }

// Names of the paths this CPU runs, scalar first.
inline std::vector<std::string> available_isas() {
    std::vector<std::string> out;
    for (int i = 0; i < detail::k_isa_count; ++i)
        if (detail::cpu_has(Isa(i))) out.emplace_back(detail::k_isa_names[i]);
    return out;
}

// Forces a path ("scalar", "sse2", "avx2", "avx512", "neon", "neon_dotprod"; "auto" = best). False, and
// no change, when the name is unknown or the CPU cannot run it.
inline bool set_isa(std::string_view name) {
    Isa isa = detail::best_isa();
    if (name != "auto" && !(detail::parse_isa(name, isa) && detail::cpu_has(isa))) return false;
    detail::isa_slot().store(isa);
    return true;
}

// ---- exact family -------------------------------------------------------------------------------------

// Y[M, rows] = X[M, cols] · W̃ᵀ (PyTorch linear layout), row-major.
inline void ternary_matmul(const PackedTernary& W, const float* X, int64_t M, float* Y) {
    if (W.rows == 0 || M == 0) return;
    // Inputs whose width is not a multiple of 64 are copied into zero-padded rows; the buffer is kept per
    // thread so steady-state generation through narrow layers (K = 32) allocates nothing.
    thread_local std::vector<float> buf;
    detail::F32Job job{};
    job.planes = W.planes.data();
    job.blocks = W.blocks();
    job.M = M;
    job.ldx = W.cols_padded;
    job.ldy = W.rows;
    job.x = detail::padded_rows(X, M, W.cols, W.cols_padded, buf);
    job.scale = W.scale;
    job.y = Y;
    detail::run(job, W.rows, W.cols);
}

// y[rows] = W̃ x.
inline void ternary_matvec(const PackedTernary& W, const float* x, float* y) { ternary_matmul(W, x, 1, y); }

// ---- int8 family --------------------------------------------------------------------------------------

// Per-row absmax quantisation of X[M, K] into q[M, K] and scales[M] (x ≈ q / scale).
inline void quantize_activations_int8(const float* x, int64_t M, int64_t K, int8_t* q, float* scales) {
    detail::quantize_rows_int8(x, M, K, q, K, scales);
}

namespace detail {
// x: M rows at stride cols_padded, zero-padded.
inline void run_int8(const PackedTernary& W, const int8_t* x, const float* x_scales, int64_t M, float* Y) {
    I8Job job{};
    job.planes = W.planes.data();
    job.blocks = W.blocks();
    job.M = M;
    job.ldx = W.cols_padded;
    job.ldy = W.rows;
    job.x = x;
    job.xscale = x_scales;
    job.row_sums = W.row_sums.data();
    job.wscale = W.scale;
    job.y = Y;
    run(job, W.rows, W.cols);
}
}  // namespace detail

// Y[M, rows] = (Xq · qᵀ) · W.scale / x_scales[m], from activations already quantised.
inline void ternary_matmul_int8(const PackedTernary& W, const int8_t* Xq, const float* x_scales, int64_t M,
                                float* Y) {
    if (W.rows == 0 || M == 0) return;
    thread_local std::vector<int8_t> buf;  // as in ternary_matmul
    detail::run_int8(W, detail::padded_rows(Xq, M, W.cols, W.cols_padded, buf), x_scales, M, Y);
}

inline void ternary_matvec_int8(const PackedTernary& W, const int8_t* xq, float x_scale, float* y) {
    ternary_matmul_int8(W, xq, &x_scale, 1, y);
}

// Float input: quantises X straight into padded rows, then runs the int8 kernels.
inline void ternary_matmul_int8(const PackedTernary& W, const float* X, int64_t M, float* Y) {
    if (W.rows == 0 || M == 0) return;
    std::vector<int8_t> q(size_t(M * W.cols_padded), 0);
    std::vector<float> s(static_cast<size_t>(M));
    detail::quantize_rows_int8(X, M, W.cols, q.data(), W.cols_padded, s.data());
    detail::run_int8(W, q.data(), s.data(), M, Y);
}

inline void ternary_matvec_int8(const PackedTernary& W, const float* x, float* y) {
    ternary_matmul_int8(W, x, 1, y);
}

}  // namespace flashlm::kernels
