#pragma once
// Fused gate of the v4 token mixer: given u = [g, v] (the up-projection, [B, T, 2C]),
//   out = CausalDWConv(v) ⊙ σ(g)
// in one op instead of split → conv → sigmoid → mul. It stores the conv output h (one [B,T,C] buffer)
// and recomputes σ(g) in backward, where the unfused chain kept five activations and five gradients.
// The conv loops are conv1d.hpp's, reading the value half of u in place (row stride 2C).
#include <Eigen/Core>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/conv1d.hpp"

namespace flashlm::ops {

template <class T>
void gated_causal_conv_backward(Node<T>& n) {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    using Map = Eigen::Map<Arr, Eigen::Unaligned>;
    using CMap = Eigen::Map<const Arr, Eigen::Unaligned>;
    const Tensor<T>& u = n.in[0];
    const Tensor<T>& w = n.in[1];
    const int64_t B = u.dim(0), L = u.dim(1), C2 = u.dim(2), C = C2 / 2, K = w.dim(2);
    const T* h = n.saved[0];
    T* dh = n.saved[1];
    // dg = dout ⊙ h ⊙ σ'(g);  dh = dout ⊙ σ(g)
    parallel_for(B * L, B * L * C * 8, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            CMap g(u.data + r * C2, C), d(n.out.grad + r * C, C), hr(h + r * C, C);
            Map s(dh + r * C, C);  // σ(g) first, then dh = dout ⊙ σ(g)
            s = T(1) / (T(1) + (-g).exp());
            if (u.grad) Map(u.grad + r * C2, C) += d * hr * s * (T(1) - s);
            s *= d;
        }
    });
    if (u.grad) conv::backward_input(dh, n.saved[2], B, L, C, K, u.grad + C, C2);
    if (w.grad) conv::backward_weight(dh, u.data + C, C2, B, L, C, K, n.saved[3], w.grad);
}

// u: [B, T, 2C] = [gate, value]; w: [C, 1, K]. Returns [B, T, C].
template <class T>
Tensor<T> gated_causal_conv(Tape<T>& tape, const Tensor<T>& u, const Tensor<T>& w) {
    FLASHLM_CHECK(u.shape.rank == 3 && u.dim(2) % 2 == 0, "gated_causal_conv: input must be [B, T, 2C], got " + u.shape.str());
    const int64_t B = u.dim(0), L = u.dim(1), C2 = u.dim(2), C = C2 / 2;
    FLASHLM_CHECK(w.shape.rank == 3 && w.dim(0) == C && w.dim(1) == 1,
                  "gated_causal_conv: weight " + w.shape.str() + " does not match input " + u.shape.str());
    const int64_t K = w.dim(2);
    T* wt = conv::transpose_weight(tape, w);
    Tensor<T> y = tape.make(Shape{B, L, C}, tape.recording({u, w}));
    // With a gradient the conv output h is kept for backward; the gate is applied on a copy.
    T* h = y.grad ? tape.scratch(B * L * C) : y.data;
    conv::forward(u.data + C, C2, wt, B, L, C, K, h);
    parallel_for(B * L, B * L * C * 8, [&](int64_t r0, int64_t r1) {
        using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
        for (int64_t r = r0; r < r1; ++r) {
            Eigen::Map<const Arr, Eigen::Unaligned> g(u.data + r * C2, C), hr(h + r * C, C);
            Eigen::Map<Arr, Eigen::Unaligned>(y.data + r * C, C) = hr / (T(1) + (-g).exp());
        }
    });
    if (y.grad) {
        auto& n = tape.record(&gated_causal_conv_backward<T>);
        n.in[0] = u;
        n.in[1] = w;
        n.out = y;
        n.saved[0] = h;
        n.saved[1] = tape.scratch(B * L * C);
        n.saved[2] = wt;
        n.saved[3] = conv::weight_partials(tape, w);
    }
    return y;
}

}  // namespace flashlm::ops
