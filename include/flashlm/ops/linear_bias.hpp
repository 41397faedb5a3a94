#pragma once
// Dense linear with bias, y = x Wᵀ + b (torch.nn.Linear with its default bias; the v7 exit-gate MLP).
#include "flashlm/autograd/tape.hpp"
#include "flashlm/ops/linear.hpp"

namespace flashlm::ops {

template <class T>
void linear_bias_backward(Node<T>& n) {
    linear_backward_raw(n.in[0], n.in[1].data, n.in[1].grad, n.in[1].dim(0), n.out);
    const Tensor<T>& b = n.in[2];
    if (!b.grad) return;
    const int64_t M = n.out.rows(), N = n.out.cols();
    for (int64_t r = 0; r < M; ++r)
        for (int64_t c = 0; c < N; ++c) b.grad[c] += n.out.grad[r * N + c];
}

// x: [..., K], W: [N, K], b: [N] -> [..., N]
template <class T>
Tensor<T> linear_bias(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& W, const Tensor<T>& b) {
    FLASHLM_CHECK(W.shape.rank == 2 && W.dim(1) == x.cols() && b.shape.rank == 1 && b.dim(0) == W.dim(0),
                  "linear_bias: input " + x.shape.str() + ", weight " + W.shape.str() + " and bias " + b.shape.str() +
                      " do not match");
    const int64_t M = x.rows(), N = W.dim(0);
    Tensor<T> y = tape.make(with_last_dim(x.shape, N), tape.recording({x, W, b}));
    kernels::gemm_nt(M, N, x.cols(), x.data, W.data, y.data, false);
    for (int64_t r = 0; r < M; ++r)
        for (int64_t c = 0; c < N; ++c) y.data[r * N + c] += b.data[c];
    if (y.grad) {
        auto& n = tape.record(&linear_bias_backward<T>);
        n.in[0] = x;
        n.in[1] = W;
        n.in[2] = b;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
