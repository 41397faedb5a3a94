#pragma once
// Decayed causal outer-product ("Hebbian") memory read of FlashLM v7.2 CORTEX-VI (VARIANTS.md §10.2):
//   R_j = s · Σ_{i ≤ j} γ^(j−i) (Vm_i · Q_j) K_i          K, Vm, Q, R: [B, T, d]
// Masked quadratic form, per sequence: W = s · (Vm Qᵀ ⊙ Γ) with Γ[i,j] = γ^(j−i) for i ≤ j, else 0;
// R = Wᵀ K. Equivalent recurrence (cached inference): M_j = γ M_{j−1} + K_j Vm_jᵀ, R_j = s · M_j Q_j.
// Backward, with G = K dRᵀ (G[i,j] = K_i · dR_j) and dS = s · G ⊙ Γ:
//   dK = W dR,  dVm = dS Q,  dQ = dSᵀ Vm.
// W is kept for the backward ([B, T, T]); the GEMMs parallelise inside, the batch loop is serial.
#include <cmath>

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
}  // namespace detail

template <class T>
void decayed_memory_backward(Node<T>& n) {
    const Tensor<T>& K = n.in[0];
    const Tensor<T>& Vm = n.in[1];
    const Tensor<T>& Q = n.in[2];
    const int64_t B = K.dim(0), L = K.dim(1), d = K.dim(2);
    const T scale = T(n.f[0]);
    const T* W = n.saved[0];   // [B, T, T], scaled and masked
    T* G = n.saved[1];         // [T, T] scratch
    const T* pw = n.saved[2];  // γ^k, k < T
    for (int64_t b = 0; b < B; ++b) {
        const int64_t o = b * L * d;
        const T* dR = n.out.grad + o;
        if (K.grad) kernels::gemm_nn(L, d, L, W + b * L * L, dR, K.grad + o, true);
        if (!Vm.grad && !Q.grad) continue;
        kernels::gemm_nt(L, L, d, K.data + o, dR, G, false);
        detail::apply_decay_mask(G, pw, L, scale);
        if (Vm.grad) kernels::gemm_nn(L, d, L, G, Q.data + o, Vm.grad + o, true);
        if (Q.grad) kernels::gemm_tn(L, d, L, G, Vm.data + o, Q.grad + o, true);
    }
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
    for (int64_t k = 0; k < L; ++k) pw[k] = T(std::pow(decay, double(k)));
    // The scores are needed for the backward only when recording; otherwise one [T, T] buffer is reused.
    T* W = tape.scratch(rec ? B * L * L : L * L);
    for (int64_t b = 0; b < B; ++b) {
        const int64_t o = b * L * d;
        T* Wb = rec ? W + b * L * L : W;
        kernels::gemm_nt(L, L, d, Vm.data + o, Q.data + o, Wb, false);
        detail::apply_decay_mask(Wb, pw, L, T(scale));
        kernels::gemm_tn(L, d, L, Wb, K.data + o, R.data + o, false);
    }
    if (R.grad) {
        auto& n = tape.record(&decayed_memory_backward<T>);
        n.in[0] = K;
        n.in[1] = Vm;
        n.in[2] = Q;
        n.out = R;
        n.saved[0] = W;
        n.saved[1] = (Vm.grad || Q.grad) ? tape.scratch(L * L) : nullptr;
        n.saved[2] = pw;
        n.f[0] = scale;
        n.f[1] = decay;
    }
    return R;
}

}  // namespace flashlm::ops
