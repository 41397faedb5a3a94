#pragma once
// Gated interpolation y = g ⊙ m + (1 − g) ⊙ x = x + g ⊙ (m − x) (v6.1 SimpleGatedMix), one activation
// instead of two products and a sum.
#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void lerp_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T *x = n.in[0].data, *m = n.in[1].data, *g = n.in[2].data, *dy = n.out.grad;
    T *dx = n.in[0].grad, *dm = n.in[1].grad, *dg = n.in[2].grad;
    parallel_for(N, 2 * N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) {
            if (dx) dx[i] += dy[i] * (T(1) - g[i]);
            if (dm) dm[i] += dy[i] * g[i];
            if (dg) dg[i] += dy[i] * (m[i] - x[i]);
        }
    });
}

template <class T>
Tensor<T> lerp(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& m, const Tensor<T>& g) {
    FLASHLM_CHECK(x.shape == m.shape && x.shape == g.shape,
                  "lerp: shapes " + x.shape.str() + ", " + m.shape.str() + " and " + g.shape.str() + " differ");
    Tensor<T> y = tape.make(x.shape, tape.recording({x, m, g}));
    const int64_t N = x.numel();
    parallel_for(N, 2 * N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = x.data[i] + g.data[i] * (m.data[i] - x.data[i]);
    });
    if (y.grad) {
        auto& n = tape.record(&lerp_backward<T>);
        n.in[0] = x;
        n.in[1] = m;
        n.in[2] = g;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
