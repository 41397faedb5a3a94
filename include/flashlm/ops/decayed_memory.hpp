#pragma once
// Decayed causal outer-product ("Hebbian") memory read of FlashLM v7.2 CORTEX-VI (VARIANTS.md §10.2):
//   R_j = s · Σ_{i ≤ j} γ^(j−i) (Vm_i · Q_j) K_i          K, Vm, Q, R: [B, T, d]
// Masked quadratic form, per sequence: W = s · (Vm Qᵀ ⊙ Γ) with Γ[i,j] = γ^(j−i) for i ≤ j, else 0;
// R = Wᵀ K. Equivalent recurrence (cached inference): M_j = γ M_{j−1} + K_j Vm_jᵀ, R_j = s · M_j Q_j.
// Backward, with G = K dRᵀ (G[i,j] = K_i · dR_j) and dS = s · G ⊙ Γ:
//   dK = W dR,  dVm = dS Q,  dQ = dSᵀ Vm.
// W is kept for the backward ([B, T, T]). The per-sequence products are small (T × T × d), so when the
// batch splits evenly the threads take whole sequences and run their GEMMs alone (one OpenMP region
// per pass instead of one per GEMM); otherwise the batch loop is serial and the GEMMs parallelise
// inside. A product's bits do not depend on which thread computes it, so both give the same numbers.
#include <cmath>
#include <type_traits>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/gemm.hpp"

namespace flashlm::ops {

namespace detail {
// a[i, j] = (i ≤ j) ? scale · pw[j − i] · a[i, j] : 0 for a [T, T] row-major matrix.
template <class T>
void apply_decay_mask(T* a, const T* pw, int64_t L, T scale) {
    parallel_for(L, L * L, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) {
            T* row = a + i * L;
            for (int64_t j = 0; j < i; ++j) row[j] = T(0);
            for (int64_t j = i; j < L; ++j) row[j] *= scale * pw[j - i];
        }
    });
}
// A sequence's products: on the calling thread alone when the threads split the batch
// (kernels::gemm_f32_*), else kernels::gemm_*, which parallelise inside. Same bits either way.
template <class T>
struct SeqGemm {
    bool local;
    void nt(int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, bool acc) const {
        if constexpr (std::is_same_v<T, float>)
            if (local) return kernels::gemm_f32_nt(M, N, K, A, B, C, acc);
        kernels::gemm_nt(M, N, K, A, B, C, acc);
    }
    void nn(int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, bool acc) const {
        if constexpr (std::is_same_v<T, float>)
            if (local) return kernels::gemm_f32_nn(M, N, K, A, B, C, acc);
        kernels::gemm_nn(M, N, K, A, B, C, acc);
    }
    void tn(int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, bool acc) const {
        if constexpr (std::is_same_v<T, float>)
            if (local) return kernels::gemm_f32_tn(M, N, K, A, B, C, acc);
        kernels::gemm_tn(M, N, K, A, B, C, acc);
    }
};

// Calls f(b, tid, gemm) for every sequence b < B: a thread per group of whole sequences when the f32
// kernel can run per thread and the batch splits evenly over the threads (or is large enough that the
// remainder hardly matters), else serially with tid 0 and GEMMs that parallelise inside.
template <class T, class F>
void for_each_sequence(int64_t B, int64_t work, F&& f) {
    const int64_t t = max_threads();
    bool local = false;
    if constexpr (std::is_same_v<T, float>) local = kernels::local_f32_gemm();
    if (local && t > 1 && B >= t && (B % t == 0 || B >= 4 * t) && go_parallel(B, work)) {
        parallel_for_tid(B, work, [&](int64_t b0, int64_t b1, int tid) {
            for (int64_t b = b0; b < b1; ++b) f(b, tid, SeqGemm<T>{true});
        });
        return;
    }
    for (int64_t b = 0; b < B; ++b) f(b, 0, SeqGemm<T>{false});
}
}  // namespace detail

// γ^k for k < L.
template <class T>
void decay_powers(T* pw, int64_t L, double decay) {
    for (int64_t k = 0; k < L; ++k) pw[k] = T(std::pow(decay, double(k)));
}

// R = per sequence Wᵀ K with W = s · (Vm Qᵀ ⊙ Γ). W is kept per sequence (W: [B, T, T]) when keep, else
// W is per-thread scratch ([threads, T, T]). Shared with ops/prenorm_memory_residual.hpp.
template <class T>
void decayed_memory_forward_raw(const T* K, const T* Vm, const T* Q, int64_t B, int64_t L, int64_t d, const T* pw,
                                T scale, T* W, bool keep, T* R) {
    detail::for_each_sequence<T>(B, 4 * B * L * L * d, [&](int64_t b, int tid, const detail::SeqGemm<T>& g) {
        const int64_t o = b * L * d;
        T* Wb = W + (keep ? b : int64_t(tid)) * L * L;
        g.nt(L, L, d, Vm + o, Q + o, Wb, false);
        detail::apply_decay_mask(Wb, pw, L, scale);
        g.tn(L, d, L, Wb, K + o, R + o, false);
    });
}

// dK = W dR, dVm = dS Q, dQ = dSᵀ Vm (each null: not wanted), added to the buffers when accumulate, else
// written (the bits of adding into zeros). Gs: [threads, T, T] scratch.
template <class T>
void decayed_memory_backward_raw(const T* K, const T* Vm, const T* Q, const T* W, const T* dR_all, const T* pw, T scale,
                                 int64_t B, int64_t L, int64_t d, T* Gs, T* dK, T* dVm, T* dQ, bool accumulate) {
    detail::for_each_sequence<T>(B, 8 * B * L * L * d, [&](int64_t b, int tid, const detail::SeqGemm<T>& g) {
        const int64_t o = b * L * d;
        const T* dR = dR_all + o;
        if (dK) g.nn(L, d, L, W + b * L * L, dR, dK + o, accumulate);
        if (!dVm && !dQ) return;
        T* G = Gs + int64_t(tid) * L * L;
        g.nt(L, L, d, K + o, dR, G, false);
        detail::apply_decay_mask(G, pw, L, scale);
        if (dVm) g.nn(L, d, L, G, Q + o, dVm + o, accumulate);
        if (dQ) g.tn(L, d, L, G, Vm + o, dQ + o, accumulate);
    });
}

template <class T>
void decayed_memory_backward(Node<T>& n) {
    const Tensor<T>& K = n.in[0];
    const Tensor<T>& Vm = n.in[1];
    const Tensor<T>& Q = n.in[2];
    FLASHLM_CHECK(n.i[0] >= max_threads(), "decayed_memory: the thread count grew between forward and backward");
    // saved: [0] W [B, T, T] (scaled and masked), [1] [threads, T, T] scratch, [2] γ^k for k < T
    decayed_memory_backward_raw(K.data, Vm.data, Q.data, n.saved[0], n.out.grad, n.saved[2], T(n.f[0]), K.dim(0),
                                K.dim(1), K.dim(2), n.saved[1], K.grad, Vm.grad, Q.grad, true);
}

// K, Vm, Q: [B, T, d] (same shape). decay γ in (0, 1]; scale s multiplies every read.
template <class T>
Tensor<T> decayed_memory(Tape<T>& tape, const Tensor<T>& K, const Tensor<T>& Vm, const Tensor<T>& Q, double decay,
                         double scale) {
    FLASHLM_CHECK(K.shape.rank == 3, "decayed_memory: keys must be [B, T, d], got " + K.shape.str());
    FLASHLM_CHECK(Vm.shape == K.shape && Q.shape == K.shape,
                  "decayed_memory: keys " + K.shape.str() + ", values " + Vm.shape.str() + " and queries " +
                      Q.shape.str() + " must have the same shape");
    const int64_t B = K.dim(0), L = K.dim(1), d = K.dim(2);
    const bool rec = tape.recording({K, Vm, Q});
    Tensor<T> R = tape.make(K.shape, rec);
    T* pw = tape.scratch(L);
    decay_powers(pw, L, decay);
    // The scores are needed for the backward only when recording; otherwise per-thread buffers are reused.
    const int64_t threads = max_threads();
    T* W = tape.scratch((rec ? B : threads) * L * L);
    decayed_memory_forward_raw(K.data, Vm.data, Q.data, B, L, d, pw, T(scale), W, rec, R.data);
    if (R.grad) {
        auto& n = tape.record(&decayed_memory_backward<T>);
        n.in[0] = K;
        n.in[1] = Vm;
        n.in[2] = Q;
        n.out = R;
        n.saved[0] = W;
        n.saved[1] = (Vm.grad || Q.grad) ? tape.scratch(threads * L * L) : nullptr;
        n.saved[2] = pw;
        n.i[0] = threads;
        n.f[0] = scale;
        n.f[1] = decay;
    }
    return R;
}

}  // namespace flashlm::ops
