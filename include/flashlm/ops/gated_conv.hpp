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

// Backward of out = h ⊙ σ(g) with h = CausalDWConv(v), u = [g, v] rows of 2C: du (may be null) gets
// dg and dv, dw (may be null) the weight gradient; dh is [B·L, C] scratch, part conv::weight_partials.
// Shared with fused callers (ops/prenorm_residual.hpp), which must get the very same numbers.
template <class T>
void gated_causal_conv_backward_raw(const T* u, T* du, const T* h, const T* dout, T* dh, const T* wt, T* part, T* dw,
                                    int64_t B, int64_t L, int64_t C, int64_t K) {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    using Map = Eigen::Map<Arr, Eigen::Unaligned>;
    using CMap = Eigen::Map<const Arr, Eigen::Unaligned>;
    const int64_t C2 = 2 * C;
    // dg = dout ⊙ h ⊙ σ'(g);  dh = dout ⊙ σ(g)
    parallel_for(B * L, B * L * C * 8, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            CMap g(u + r * C2, C), d(dout + r * C, C), hr(h + r * C, C);
            Map s(dh + r * C, C);  // σ(g) first, then dh = dout ⊙ σ(g)
            s = T(1) / (T(1) + (-g).exp());
            if (du) Map(du + r * C2, C) += d * hr * s * (T(1) - s);
            s *= d;
        }
    });
    if (du) conv::backward_input(dh, wt, B, L, C, K, du + C, C2);
    if (dw) conv::backward_weight(dh, u + C, C2, B, L, C, K, part, dw);
}

// y = h ⊙ σ(g) for the gate half g of u (rows of 2C) and h [B·L, C].
template <class T>
void sigmoid_gate_raw(const T* u, const T* h, T* y, int64_t rows, int64_t C) {
    parallel_for(rows, rows * C * 8, [&](int64_t r0, int64_t r1) {
        using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
        for (int64_t r = r0; r < r1; ++r) {
            Eigen::Map<const Arr, Eigen::Unaligned> g(u + r * 2 * C, C), hr(h + r * C, C);
            Eigen::Map<Arr, Eigen::Unaligned>(y + r * C, C) = hr / (T(1) + (-g).exp());
        }
    });
}

template <class T>
void gated_causal_conv_backward(Node<T>& n) {
    const Tensor<T>& u = n.in[0];
    const Tensor<T>& w = n.in[1];
    gated_causal_conv_backward_raw(u.data, u.grad, n.saved[0], n.out.grad, n.saved[1], n.saved[2], n.saved[3], w.grad,
                                   u.dim(0), u.dim(1), u.dim(2) / 2, w.dim(2));
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
    sigmoid_gate_raw(u.data, h, y.data, B * L, C);
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
