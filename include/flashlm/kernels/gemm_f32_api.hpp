#pragma once
// The interface of flashlm's own f32 GEMM (kernels/gemm_f32.hpp: an AVX-512F vfmadd231ps micro-kernel with
// packed panels) without the kernel: whether it runs, and entry points that call it through function
// pointers. kernels/arch/gemm_f32.cpp compiles the kernel once per program (flashlm_add_kernels) and fills
// the pointers at static initialisation, as gemm_bf16.cpp does for the bf16 kernels. kernels::gemm_nt/nn/tn
// (gemm.hpp) send float products here when f32_kernel_enabled(): by default wherever it can run.
// FLASHLM_F32_GEMM=eigen (or set_f32_kernel(false)) keeps Eigen's GEMM. Per shape it measured 0.98-1.19x
// Eigen on a loaded VM; a whole Bolt b16x256 training step on the idle VM ran 1.13-1.14x faster with it
// at 2 threads, b64 1.11x, cortex6 1.05-1.09x (docs/training-speed.md, Session 8). Doubles, CPUs without
// AVX-512F, programs without the file and FLASHLM_ISA set to anything but avx512 always keep Eigen.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "flashlm/kernels/cpu_features.hpp"
#include "flashlm/kernels/gemm_bf16_api.hpp"  // KLayout

namespace flashlm::kernels {

// Columns of one packed B panel; a packed B is ceil(N / 32) panels of K × 32 floats (zero past N).
inline constexpr int64_t k_f32_nr = 32;
inline int64_t f32_packed_b_size(int64_t N, int64_t K) { return (N + k_f32_nr - 1) / k_f32_nr * k_f32_nr * K; }

struct F32Hooks {
    // C[M,N] (+)= A·B; A is [M,K] (layout la, leading dim lda), B is [K,N] as lb k_inner ([N,K]) or k_outer
    // ([K,N]), or, when b_packed is set, B packed by pack_b (then B and ldb are not read).
    void (*gemm)(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, KLayout la, const float* B, int64_t ldb,
                 KLayout lb, float* C, int64_t ldc, bool accumulate, const float* b_packed) = nullptr;
    // B -> f32_packed_b_size(N, K) floats at dst (64-byte aligned), split over the threads.
    void (*pack_b)(const float* B, int64_t ldb, KLayout lb, int64_t N, int64_t K, float* dst) = nullptr;
};
inline F32Hooks& f32_hooks() {
    static F32Hooks hooks;
    return hooks;
}

namespace f32_detail {
inline bool f32_kernel_available() {
    if (isa_env_hides_avx512()) return false;
    return f32_hooks().gemm && cpu_features().avx512f;
}
inline std::atomic<bool>& f32_slot() {
    static std::atomic<bool> slot{[] {
        const char* env = std::getenv("FLASHLM_F32_GEMM");
        return f32_kernel_available() && !(env && std::string(env) == "eigen");
    }()};
    return slot;
}
}  // namespace f32_detail

// Whether float gemm_nt/nn/tn run this kernel (else Eigen: FLASHLM_F32_GEMM=eigen, or no AVX-512F). Read
// on every call.
inline bool f32_kernel_enabled() { return f32_detail::f32_slot().load(std::memory_order_relaxed); }
// Switches between this kernel and Eigen (benchmarks, tests); false if the kernel cannot run here.
// Process-wide: switch only while no GEMM runs, and not between packing a B and using it.
inline bool set_f32_kernel(bool on) {
    const bool ok = !on || f32_detail::f32_kernel_available();
    if (ok) f32_detail::f32_slot().store(on, std::memory_order_relaxed);
    return ok;
}

inline void gemm_f32(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, KLayout la, const float* B,
                     int64_t ldb, KLayout lb, float* C, int64_t ldc, bool accumulate, const float* b_packed = nullptr) {
    f32_hooks().gemm(M, N, K, A, lda, la, B, ldb, lb, C, ldc, accumulate, b_packed);
}
// The three products of a linear layer, same argument order as kernels::gemm_nt/nn/tn (gemm.hpp), which
// dispatch here, as gemm_bf16_nt/nn/tn (gemm_bf16_api.hpp) do for the bf16 kernel. Called directly they
// also run inside a parallel region, on the calling thread's buffers (the dispatchers fall back to Eigen
// there).
// C[M,N] (+)= A[M,K] · B[N,K]ᵀ
inline void gemm_f32_nt(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C, bool accumulate) {
    gemm_f32(M, N, K, A, K, KLayout::k_inner, B, K, KLayout::k_inner, C, N, accumulate);
}
// C[M,N] (+)= A[M,K] · B[K,N]
inline void gemm_f32_nn(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C, bool accumulate) {
    gemm_f32(M, N, K, A, K, KLayout::k_inner, B, N, KLayout::k_outer, C, N, accumulate);
}
// C[M,N] (+)= A[K,M]ᵀ · B[K,N]
inline void gemm_f32_tn(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C, bool accumulate) {
    gemm_f32(M, N, K, A, M, KLayout::k_outer, B, N, KLayout::k_outer, C, N, accumulate);
}
inline void pack_f32_b(const float* B, int64_t ldb, KLayout lb, int64_t N, int64_t K, float* dst) {
    f32_hooks().pack_b(B, ldb, lb, N, K, dst);
}

}  // namespace flashlm::kernels
