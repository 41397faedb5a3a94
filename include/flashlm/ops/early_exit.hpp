#pragma once
// Early-exit objective of FlashLM v7 "CORTEX" (VARIANTS.md §9, v7/train.py@49423a9). With an exit head
// after some blocks, each exit e adds to the final cross-entropy
//   w_e · CE(z_e, y)                                        exit cross-entropy
//   + λ_div · mean_i (1 − H(p_e,i)/ln V) · [argmax z_e,i ≠ argmax z_f,i]    "diversity": over-confident
//                                                           exit rows that disagree with the final head
//   + λ_cons · BCE(gate_e,i, [argmax z_e,i = argmax z_f,i])  "consistency": the gate learns to predict
//                                                           agreement
// with H(p) = −Σ_j p_j log(p_j + 1e-10) (upstream's ε). The ops here:
//  - exit_head_loss: a head fused with its weighted CE (+ the diversity term), by row blocks so [M, V]
//    logits are never stored whole (like ops::tied_head_cross_entropy), also writing each row's argmax;
//  - binary_cross_entropy: torch's F.binary_cross_entropy on probabilities (log clamped at −100);
//  - add_weighted: a + w·b, to sum the terms;
//  - exit_confidence: 1 − H(softmax(z/τ))/ln V, the inference-time exit test (no gradient).
#include <algorithm>
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/gemm.hpp"
#include "flashlm/ops/cross_entropy.hpp"
#include "flashlm/ops/tied_head_ce.hpp"

namespace flashlm::ops {

namespace detail {
inline constexpr double k_entropy_eps = 1e-10;

// Index of the first maximum (torch.argmax's tie rule).
template <class T>
int32_t row_argmax(const T* z, int64_t V) {
    int64_t best = 0;
    for (int64_t j = 1; j < V; ++j)
        if (z[j] > z[best]) best = j;
    return int32_t(best);
}
}  // namespace detail

// 1 − H(softmax(z/τ))/ln V with H = −Σ p log(p + 1e-10): 0 for a uniform row, → 1 for a one-hot one.
template <class T>
double exit_confidence(const T* z, int64_t V, double temperature) {
    double mx = -INFINITY;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(z[j]) / temperature);
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(double(z[j]) / temperature - mx);
    double H = 0;
    for (int64_t j = 0; j < V; ++j) {
        const double p = std::exp(double(z[j]) / temperature - mx) / s;
        H -= p * std::log(p + detail::k_entropy_eps);
    }
    return 1.0 - H / std::log(double(V));
}

// h: [..., D]; W: [V, D]; targets: one id per row. Writes argmax_out[i] = argmax_j (h_i Wᵀ)_j. Returns
//   ce_weight · mean_i CE_i + div_weight · mean_i (1 − H_i/ln V) · [argmax_out[i] ≠ ref_argmax[i]]
// (the second term only when ref_argmax is given). The gradient of a unit upstream gradient is formed
// in the forward (dz per block, then dh = dz W and dW += dzᵀ h) and scaled in the backward.
template <class T>
Tensor<T> exit_head_loss(Tape<T>& tape, const Tensor<T>& h, const Tensor<T>& W, const int32_t* targets,
                         int32_t* argmax_out, const int32_t* ref_argmax, double ce_weight, double div_weight,
                         int64_t block_rows = 256) {
    FLASHLM_CHECK(W.shape.rank == 2 && W.dim(1) == h.cols(),
                  "exit_head_loss: hidden " + h.shape.str() + " does not match head " + W.shape.str());
    const int64_t M = h.rows(), D = h.cols(), V = W.dim(0);
    detail::check_targets(targets, M, V);
    Tensor<T> loss = tape.make(Shape{1}, tape.recording({h, W}));
    const bool grad = loss.grad != nullptr;
    const bool div = ref_argmax && div_weight != 0;
    const int64_t R = std::min(block_rows, M);
    T* z = tape.scratch(R * V);
    T* dh = grad ? tape.scratch(M * D) : nullptr;
    T* dW = grad ? tape.scratch_zeroed(V * D) : nullptr;
    const T ce_scale = T(ce_weight / double(M));
    const T eps = T(detail::k_entropy_eps), lnV = T(std::log(double(V)));
    const T div_scale = T(-div_weight / (double(M) * std::log(double(V))));  // d/dz of −H/ln V, per row
    double total = 0;
    for (int64_t r0 = 0; r0 < M; r0 += R) {
        const int64_t r = std::min(R, M - r0);
        const T* hb = h.data + r0 * D;
        kernels::gemm_nt(r, V, D, hb, W.data, z, false);
        total += parallel_sum(r, r * V, [&](int64_t b_, int64_t e_) {
            double part = 0;
            for (int64_t i = b_; i < e_; ++i) {
                T* zi = z + i * V;
                const int64_t row = r0 + i;
                const int32_t t = targets[row];
                const int32_t am = detail::row_argmax(zi, V);
                argmax_out[row] = am;
                const T zt = zi[t];
                detail::ArrMap<T> p(zi, V);
                const T lse = detail::row_softmax_inplace(zi, V, T(1));  // zi now holds p
                part += ce_weight * double(lse - zt);
                if (div && am != ref_argmax[row]) {
                    const auto lg = (p + eps).log();
                    const T H = -(p * lg).sum();
                    part += div_weight * double(T(1) - H / lnV);
                    if (grad) {
                        // dH/dz_j = p_j (a_j − Σ_k p_k a_k), a = dH/dp = −log(p + ε) − p/(p + ε). Lazy
                        // expressions, evaluated per coefficient: no temporary array (no allocation).
                        const T pa = (p * (-lg - p / (p + eps))).sum();
                        p = ce_scale * p + div_scale * p * ((-(p + eps).log() - p / (p + eps)) - pa);
                        zi[t] -= ce_scale;
                        continue;
                    }
                }
                if (grad) {
                    p *= ce_scale;
                    zi[t] -= ce_scale;
                }
            }
            return part;
        });
        if (grad) {
            kernels::gemm_nn(r, D, V, z, W.data, dh + r0 * D, false);
            kernels::gemm_tn(V, D, r, z, hb, dW, true);
        }
    }
    loss.data[0] = T(total / double(M));
    if (grad) {
        auto& n = tape.record(&tied_head_ce_backward<T>);
        n.in[0] = h;
        n.in[1] = W;
        n.out = loss;
        n.saved[0] = dh;
        n.saved[1] = dW;
    }
    return loss;
}

template <class T>
void binary_cross_entropy_backward(Node<T>& n) {
    const Tensor<T>& p = n.in[0];
    const int64_t M = p.numel();
    const T g = n.out.grad[0] / T(M);
    for (int64_t i = 0; i < M; ++i) {
        const T y = T(n.ids[i]), q = p.data[i];
        p.grad[i] += g * (q - y) / std::max((T(1) - q) * q, T(1e-12));
    }
}

// p: probabilities (any shape, M values in [0, 1]); labels: M values in {0, 1}. Returns the mean of
// −(y log p + (1 − y) log(1 − p)) with each log clamped at −100, as torch.
template <class T>
Tensor<T> binary_cross_entropy(Tape<T>& tape, const Tensor<T>& p, const int32_t* labels) {
    const int64_t M = p.numel();
    Tensor<T> loss = tape.make(Shape{1}, tape.recording({p}));
    double total = 0;
    for (int64_t i = 0; i < M; ++i) {
        FLASHLM_CHECK(labels[i] == 0 || labels[i] == 1, "binary_cross_entropy: labels must be 0 or 1");
        const T q = p.data[i];
        total -= labels[i] ? double(std::max(std::log(q), T(-100))) : double(std::max(std::log(T(1) - q), T(-100)));
    }
    loss.data[0] = T(total / double(M));
    if (loss.grad) {
        auto& n = tape.record(&binary_cross_entropy_backward<T>);
        n.in[0] = p;
        n.out = loss;
        n.ids = labels;
    }
    return loss;
}

template <class T>
void add_weighted_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T w = T(n.f[0]);
    for (int64_t i = 0; i < N; ++i) {
        if (n.in[0].grad) n.in[0].grad[i] += n.out.grad[i];
        if (n.in[1].grad) n.in[1].grad[i] += w * n.out.grad[i];
    }
}

// a + w · b for same-shaped tensors (the weighted sum of loss terms).
template <class T>
Tensor<T> add_weighted(Tape<T>& tape, const Tensor<T>& a, const Tensor<T>& b, double w) {
    FLASHLM_CHECK(a.shape == b.shape, "add_weighted: shapes " + a.shape.str() + " and " + b.shape.str() + " differ");
    Tensor<T> y = tape.make(a.shape, tape.recording({a, b}));
    for (int64_t i = 0; i < a.numel(); ++i) y.data[i] = a.data[i] + T(w) * b.data[i];
    if (y.grad) {
        auto& n = tape.record(&add_weighted_backward<T>);
        n.in[0] = a;
        n.in[1] = b;
        n.out = y;
        n.f[0] = w;
    }
    return y;
}

}  // namespace flashlm::ops
