#pragma once
// x + ((a + b) + c): a residual plus three parallel branches (v6.1's reasoning, state gate and slot
// memory), summed in the order of the three add() calls it replaces, so the numbers are the same; the
// tape keeps one output and its gradient instead of three. Backward: every input gets dy.
#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void residual_add3_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    for (int k = 0; k < 4; ++k) {
        T* g = n.in[k].grad;
        if (!g) continue;
        parallel_for(N, N, [&](int64_t b_, int64_t e_) {
            for (int64_t i = b_; i < e_; ++i) g[i] += n.out.grad[i];
        });
    }
}

template <class T>
Tensor<T> residual_add3(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& a, const Tensor<T>& b, const Tensor<T>& c) {
    FLASHLM_CHECK(a.shape == x.shape && b.shape == x.shape && c.shape == x.shape,
                  "residual_add3: shapes " + x.shape.str() + ", " + a.shape.str() + ", " + b.shape.str() + ", " +
                      c.shape.str() + " differ");
    Tensor<T> y = tape.make(x.shape, tape.recording({x, a, b, c}));
    const int64_t N = x.numel();
    parallel_for(N, 3 * N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = x.data[i] + ((a.data[i] + b.data[i]) + c.data[i]);
    });
    if (y.grad) {
        auto& n = tape.record(&residual_add3_backward<T>);
        n.in[0] = x, n.in[1] = a, n.in[2] = b, n.in[3] = c;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
