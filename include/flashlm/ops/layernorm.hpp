#pragma once
// LayerNorm over the last dimension (torch.nn.LayerNorm, affine): y = x̂ ⊙ w + b, x̂ = (x − μ) · r,
// r = 1/sqrt(var + eps) with the biased variance. Saves μ and r per row.
// Backward: with u = dy ⊙ w, dx = r (u − mean(u) − x̂ · mean(u ⊙ x̂)); dw = Σ_rows dy ⊙ x̂; db = Σ_rows dy.
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/group_norm.hpp"

namespace flashlm::ops {

// The rows run through group_norm_rows_raw with one group (Eigen's vectorised sums); the weight and bias
// gradients are summed per fixed block of rows on every thread and the blocks added in order, so the
// result does not depend on the thread count (it was a serial pass over all rows: single-threaded time
// in every 2-thread step of the LayerNorm variants).
template <class T>
void layernorm_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const Tensor<T>& w = n.in[1];
    const Tensor<T>& b = n.in[2];
    const int64_t M = x.rows(), D = x.cols();
    T* part = (w.grad || b.grad) ? static_cast<Tape<T>*>(const_cast<void*>(n.ctx))->workspace(sum_blocks(M) * 2 * D)
                                 : nullptr;
    group_norm_rows_backward_raw(x.data, w.data, n.saved[0], n.saved[1], n.out.grad, x.grad, true, w.grad, b.grad, part, M,
                                 D, int64_t(1));
}

// x [..., D], w [D], b [D].
template <class T>
Tensor<T> layernorm(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& w, const Tensor<T>& b, double eps = 1e-5) {
    FLASHLM_CHECK(w.numel() == x.cols() && b.numel() == x.cols(),
                  "layernorm: weight " + w.shape.str() + " / bias " + b.shape.str() + " do not match input " + x.shape.str());
    const int64_t M = x.rows(), D = x.cols();
    Tensor<T> y = tape.make(x.shape, tape.recording({x, w, b}));
    T* mu = tape.scratch(M);
    T* r = tape.scratch(M);
    group_norm_rows_raw(x.data, w.data, b.data, eps, y.data, mu, r, M, D, int64_t(1));
    if (y.grad) {
        auto& n = tape.record(&layernorm_backward<T>);
        n.in[0] = x;
        n.in[1] = w;
        n.in[2] = b;
        n.out = y;
        n.saved[0] = mu;
        n.saved[1] = r;
        n.ctx = &tape;
    }
    return y;
}

// One row, for cached generation.
inline void layernorm_vec(const float* x, const float* w, const float* b, float* y, int64_t D, float eps) {
    float s = 0;
    for (int64_t c = 0; c < D; ++c) s += x[c];
    const float m = s / float(D);
    float ss = 0;
    for (int64_t c = 0; c < D; ++c) ss += (x[c] - m) * (x[c] - m);
    const float r = 1.0f / std::sqrt(ss / float(D) + eps);
    for (int64_t c = 0; c < D; ++c) y[c] = (x[c] - m) * r * w[c] + b[c];
}

}  // namespace flashlm::ops
