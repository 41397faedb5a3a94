#pragma once
// The interface of the bf16 GEMM (`flashlm train --matmul bf16`) without its kernels: the mode switch
// (Matmul, MatmulScope), which kernel the CPU runs, and entry points that call the kernels through
// function pointers. gemm.hpp, tied_head_ce.hpp and the trainer include only this header; the AMX /
// AVX512_BF16 kernels (gemm_bf16.hpp, ~600 lines of target-attribute intrinsics) are compiled once per
// program, in kernels/arch/gemm_bf16.cpp, which flashlm_add_kernels() adds and which fills the pointers
// at static initialisation. Before, every translation unit that multiplied a float matrix compiled them.
// A program without that file runs f32 only: set_matmul(Matmul::bf16) refuses with a message.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "flashlm/kernels/cpu_features.hpp"

namespace flashlm::kernels {

// How an operand is stored: k_inner = K contiguous (A: row-major [M,K]; B: [N,K], i.e. xWᵀ's W);
// k_outer = K is the slow index (A: [K,M], the transposed dyᵀ; B: row-major [K,N]).
enum class KLayout { k_inner, k_outer };

// ---- run-time availability -------------------------------------------------------------------------

// Which bf16 kernel runs: amx (AMX-BF16 tiles, tdpbf16ps), avx512 (AVX512_BF16 vdpbf16ps) or none.
// Both take the same packed operands and give the same sums up to the order inside a pair.
enum class Bf16Kernel { none, avx512, amx };

// B packed once for several products (gemm_bf16_packed), e.g. the tied head's embedding per step.
struct Bf16PackedB {
    std::vector<uint32_t> data;
    int64_t N = 0, K = 0, kp = 0;
    Bf16Kernel kernel = Bf16Kernel::none;
};

// The kernels' entry points, filled by kernels/arch/gemm_bf16.cpp (register_bf16_kernels in gemm_bf16.hpp).
struct Bf16Hooks {
    void (*gemm)(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, KLayout la, const float* B, int64_t ldb,
                 KLayout lb, float* C, int64_t ldc, bool accumulate, float alpha) = nullptr;
    void (*pack_b)(const float* B, int64_t ldb, KLayout lb, int64_t N, int64_t K, Bf16PackedB& out) = nullptr;
    void (*gemm_packed)(int64_t M, const float* A, int64_t lda, KLayout la, const Bf16PackedB& b, float* C, int64_t ldc,
                        bool accumulate, float alpha) = nullptr;
};
inline Bf16Hooks& bf16_hooks() {
    static Bf16Hooks hooks;
    return hooks;
}

namespace bf16_detail {

inline bool cpu_has_avx512_bf16() {
    const CpuFeatures& f = cpu_features();
    return f.avx512f && f.avx512bw && f.avx512dq && f.avx512bf16;
}

// AMX needs the CPU bits (AMX-BF16, AMX-TILE) and the kernel's permission for the tile state, asked once.
inline bool cpu_has_amx_bf16() { return cpu_features().amx_bf16 && cpu_has_avx512_bf16() && request_amx_permission(); }

// FLASHLM_BF16=avx512|amx forces one (benchmarks, tests); FLASHLM_ISA set below avx512 hides both, as
// does a program without the kernels (no arch/gemm_bf16.cpp).
inline std::atomic<Bf16Kernel>& kernel_slot() {
    static std::atomic<Bf16Kernel> slot{[] {
        if (isa_env_hides_avx512()) return Bf16Kernel::none;
        if (!bf16_hooks().gemm) return Bf16Kernel::none;
        const bool avx = cpu_has_avx512_bf16(), amx = avx && cpu_has_amx_bf16();
        if (const char* env = std::getenv("FLASHLM_BF16"); env && *env) {
            if (std::string(env) == "avx512" && avx) return Bf16Kernel::avx512;
            if (std::string(env) == "amx" && amx) return Bf16Kernel::amx;
            std::fprintf(stderr, "flashlm: FLASHLM_BF16=%s is not available on this CPU\n", env);
        }
        return amx ? Bf16Kernel::amx : avx ? Bf16Kernel::avx512 : Bf16Kernel::none;
    }()};
    return slot;
}

[[noreturn]] inline void no_kernels(const char* what) {
    throw std::runtime_error(std::string(what) +
                             ": the bf16 kernels are not in this program (compile kernels/arch/gemm_bf16.cpp into it: "
                             "flashlm_add_kernels(<target>))");
}

}  // namespace bf16_detail

inline Bf16Kernel bf16_kernel() { return bf16_detail::kernel_slot().load(std::memory_order_relaxed); }
inline bool bf16_available() { return bf16_kernel() != Bf16Kernel::none; }
inline const char* bf16_kernel_name(Bf16Kernel k) {
    return k == Bf16Kernel::amx ? "amx" : k == Bf16Kernel::avx512 ? "avx512_bf16" : "none";
}
// Switches between the kernels the CPU has (tests and benchmarks run both); false if k is unavailable.
inline bool set_bf16_kernel(Bf16Kernel k) {
    static const Bf16Kernel best = bf16_kernel();
    const bool ok = k == Bf16Kernel::none || k == best || (k == Bf16Kernel::avx512 && best == Bf16Kernel::amx);
    if (ok) bf16_detail::kernel_slot().store(k, std::memory_order_relaxed);
    return ok;
}

// Which arithmetic the float training GEMMs (kernels::gemm_nt/nn/tn) use. Process-wide; switch it only
// while no GEMM runs.
enum class Matmul { f32, bf16 };

inline std::atomic<Matmul>& matmul_slot() {
    static std::atomic<Matmul> slot{Matmul::f32};
    return slot;
}
inline Matmul matmul_mode() { return matmul_slot().load(std::memory_order_relaxed); }

inline Matmul parse_matmul(const std::string& name) {
    if (name == "f32") return Matmul::f32;
    if (name == "bf16") return Matmul::bf16;
    throw std::invalid_argument("--matmul must be f32 or bf16, not '" + name + "'");
}

// Throws (one clear message) when bf16 is asked for on a CPU without AVX512_BF16.
inline void set_matmul(Matmul m) {
    if (m == Matmul::bf16 && !bf16_available()) {
        if (!bf16_hooks().gemm && bf16_detail::cpu_has_avx512_bf16()) bf16_detail::no_kernels("--matmul bf16");
        throw std::runtime_error(
            "--matmul bf16 needs a CPU with AVX512_BF16 (vdpbf16ps: Intel Cooper Lake / Sapphire Rapids or newer, AMD "
            "Zen 4 or newer); this CPU lacks it (or FLASHLM_ISA hides it). Use --matmul f32");
    }
    matmul_slot().store(m, std::memory_order_relaxed);
}

// Sets the mode for a scope (the training steps; evaluation back in f32) and restores the previous one.
class MatmulScope {
public:
    explicit MatmulScope(Matmul m) : prev_(matmul_mode()) { set_matmul(m); }
    ~MatmulScope() { matmul_slot().store(prev_, std::memory_order_relaxed); }
    MatmulScope(const MatmulScope&) = delete;
    MatmulScope& operator=(const MatmulScope&) = delete;

private:
    Matmul prev_;
};

// ---- entry points (gemm_bf16.hpp documents the arithmetic) ----------------------------------------------

// C[M,N] = alpha · A·B (+ C), bf16 operands, f32 sums. Needs bf16_available(); A is [M,K] (layout la,
// leading dim lda), B is [K,N] given as lb k_inner ([N,K]) or k_outer ([K,N]). Called from outside
// parallel regions (it forks its own threads).
inline void gemm_bf16(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, KLayout la, const float* B,
                      int64_t ldb, KLayout lb, float* C, int64_t ldc, bool accumulate, float alpha = 1.0f) {
    if (!bf16_hooks().gemm) bf16_detail::no_kernels("gemm_bf16");
    bf16_hooks().gemm(M, N, K, A, lda, la, B, ldb, lb, C, ldc, accumulate, alpha);
}

// Packs B ([K,N] as the product sees it, layout lb) for gemm_bf16_packed.
inline void pack_bf16_b(const float* B, int64_t ldb, KLayout lb, int64_t N, int64_t K, Bf16PackedB& out) {
    if (!bf16_hooks().pack_b) bf16_detail::no_kernels("pack_bf16_b");
    bf16_hooks().pack_b(B, ldb, lb, N, K, out);
}

// C[M, b.N] = alpha · A·B (+ C) with B from pack_bf16_b.
inline void gemm_bf16_packed(int64_t M, const float* A, int64_t lda, KLayout la, const Bf16PackedB& b, float* C,
                             int64_t ldc, bool accumulate, float alpha = 1.0f) {
    if (!bf16_hooks().gemm_packed) bf16_detail::no_kernels("gemm_bf16_packed");
    bf16_hooks().gemm_packed(M, A, lda, la, b, C, ldc, accumulate, alpha);
}

// The three products of a linear layer, same argument order as kernels::gemm_nt/nn/tn (gemm.hpp).
// C[M,N] (+)= A[M,K] · B[N,K]ᵀ
inline void gemm_bf16_nt(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C, bool accumulate) {
    gemm_bf16(M, N, K, A, K, KLayout::k_inner, B, K, KLayout::k_inner, C, N, accumulate);
}
// C[M,N] (+)= A[M,K] · B[K,N]
inline void gemm_bf16_nn(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C, bool accumulate) {
    gemm_bf16(M, N, K, A, K, KLayout::k_inner, B, N, KLayout::k_outer, C, N, accumulate);
}
// C[M,N] (+)= A[K,M]ᵀ · B[K,N]
inline void gemm_bf16_tn(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C, bool accumulate) {
    gemm_bf16(M, N, K, A, M, KLayout::k_outer, B, N, KLayout::k_outer, C, N, accumulate);
}

}  // namespace flashlm::kernels
