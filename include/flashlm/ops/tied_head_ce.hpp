#pragma once
// Tied output head fused with cross-entropy: loss = CE(h Eᵀ, targets) computed by row blocks, so the
// [M, V] logits tensor (the largest activation of the small models) is never stored whole. When a
// gradient is wanted, the forward also forms dh and dE for a unit upstream gradient (three GEMMs per
// block, the same count as an unfused head), and backward scales them by the loss gradient.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/gemm.hpp"
#include "flashlm/ops/cross_entropy.hpp"

namespace flashlm::ops {

namespace detail {
// The embedding packed for the bf16 head GEMMs (0: logits, 1: dh), kept between steps.
template <int Which>
kernels::Bf16PackedB& head_bf16_e() {
    static kernels::Bf16PackedB packed;
    return packed;
}
}  // namespace detail

template <class T>
void tied_head_ce_backward(Node<T>& n) {
    const T g = n.out.grad[0];
    const Tensor<T>& h = n.in[0];
    const Tensor<T>& E = n.in[1];
    auto axpy = [g](T* dst, const T* src, int64_t len) {
        parallel_for(len, len, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) dst[i] += g * src[i];
        });
    };
    if (h.grad) axpy(h.grad, n.saved[0], h.numel());
    if (E.grad) axpy(E.grad, n.saved[1], E.numel());
}

// h: [..., D]; E: [V, D]; targets: one id per row of h. Returns the mean loss as a scalar tensor.
template <class T>
Tensor<T> tied_head_cross_entropy(Tape<T>& tape, const Tensor<T>& h, const Tensor<T>& E, const int32_t* targets,
                                  int64_t block_rows = 256) {
    FLASHLM_CHECK(E.shape.rank == 2 && E.dim(1) == h.cols(),
                "tied_head_cross_entropy: hidden " + h.shape.str() + " does not match head " + E.shape.str());
    const int64_t M = h.rows(), D = h.cols(), V = E.dim(0);
    detail::check_targets(targets, M, V);
    Tensor<T> loss = tape.make(Shape{1}, tape.recording({h, E}));
    const bool grad = loss.grad != nullptr;
    const int64_t R = std::min(block_rows, M);
    T* z = tape.scratch(R * V);
    T* dh = grad ? tape.scratch(M * D) : nullptr;
    T* dE = grad ? tape.scratch_zeroed(V * D) : nullptr;
    const T inv_m = T(1) / T(M);
    double total = 0;
    // --matmul bf16: E is packed once per step for the forward and once for dh, not once per row block.
    [[maybe_unused]] const bool bf16 = kernels::detail::use_bf16<T>();
    if constexpr (std::is_same_v<T, float>)
        if (bf16) {
            kernels::pack_bf16_b(E.data, D, kernels::KLayout::k_inner, V, D, detail::head_bf16_e<0>());
            if (grad) kernels::pack_bf16_b(E.data, D, kernels::KLayout::k_outer, D, V, detail::head_bf16_e<1>());
        }
    // f32/f64: E is packed once per step for the logits and once for dh, each shared by the threads, instead
    // of by every thread for every row block (32 packings of 7.7 MB per Bolt step and thread). Bit-identical:
    // Eigen's micro-kernel gets the same panels. The panels live in the tape workspace, which no backward
    // uses while the forward runs (that keeps Bolt's peak RSS where it was).
    kernels::PackedB<T> e_z, e_dh;
    if (!bf16) {
        const int64_t nz = kernels::packed_b_size<T>(R, V, D, false), ndh = grad ? kernels::packed_b_size<T>(R, D, V, false) : 0;
        T* panels = tape.workspace(nz + ndh);
        kernels::pack_b_nt(e_z, R, V, D, E.data, false, panels);
        if (grad) kernels::pack_b_nn(e_dh, R, D, V, E.data, false, panels + nz);
    }
    for (int64_t r0 = 0; r0 < M; r0 += R) {
        const int64_t r = std::min(R, M - r0);
        const T* hb = h.data + r0 * D;
        if constexpr (std::is_same_v<T, float>)
            if (bf16) kernels::gemm_bf16_packed(r, hb, D, kernels::KLayout::k_inner, detail::head_bf16_e<0>(), z, V, false);
        if (!bf16) kernels::gemm_nt_packed(r, V, D, hb, E.data, z, false, e_z);
        total += parallel_sum(r, r * V, [&](int64_t b_, int64_t e_) {
            double part = 0;
            for (int64_t i = b_; i < e_; ++i) {
                T* zi = z + i * V;
                const int32_t t = targets[r0 + i];
                const T zt = zi[t];
                if (grad) {
                    part += double(detail::row_softmax_inplace(zi, V, inv_m) - zt);
                    zi[t] -= inv_m;
                } else {
                    part += double(detail::row_logsumexp(zi, V) - zt);
                }
            }
            return part;
        });
        if (grad) {
            if constexpr (std::is_same_v<T, float>)
                if (bf16) kernels::gemm_bf16_packed(r, z, V, kernels::KLayout::k_inner, detail::head_bf16_e<1>(), dh + r0 * D, D, false);
            if (!bf16) kernels::gemm_nn_packed(r, D, V, z, E.data, dh + r0 * D, false, e_dh);
            kernels::gemm_tn(V, D, r, z, hb, dE, true);
        }
    }
    loss.data[0] = T(total / double(M));
    if (grad) {
        auto& n = tape.record(&tied_head_ce_backward<T>);
        n.in[0] = h;
        n.in[1] = E;
        n.out = loss;
        n.saved[0] = dh;
        n.saved[1] = dE;
    }
    return loss;
}

}  // namespace flashlm::ops
