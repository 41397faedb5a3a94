#pragma once
// Squared-ReLU GLU gate (FlashLM v3's TernaryGLU, VARIANTS.md §4.2): y = relu(a)² ⊙ b, one activation
// instead of relu → square → mul. Backward: da = dy ⊙ b ⊙ 2·relu(a), db = dy ⊙ relu(a)².
#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void relu2_glu_backward(Node<T>& n) {
    const Tensor<T>& a = n.in[0];
    const Tensor<T>& b = n.in[1];
    const T* dy = n.out.grad;
    const int64_t N = n.out.numel();
    parallel_for(N, 4 * N, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const T r = a.data[i] > T(0) ? a.data[i] : T(0);
            if (a.grad) a.grad[i] += dy[i] * b.data[i] * T(2) * r;
            if (b.grad) b.grad[i] += dy[i] * r * r;
        }
    });
}

template <class T>
Tensor<T> relu2_glu(Tape<T>& tape, const Tensor<T>& a, const Tensor<T>& b) {
    FLASHLM_CHECK(a.shape == b.shape, "relu2_glu: shapes " + a.shape.str() + " and " + b.shape.str() + " differ");
    Tensor<T> y = tape.make(a.shape, tape.recording({a, b}));
    const int64_t N = a.numel();
    parallel_for(N, 4 * N, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const T r = a.data[i] > T(0) ? a.data[i] : T(0);
            y.data[i] = r * r * b.data[i];
        }
    });
    if (y.grad) {
        auto& n = tape.record(&relu2_glu_backward<T>);
        n.in[0] = a;
        n.in[1] = b;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
