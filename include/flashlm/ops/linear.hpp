#pragma once
// Dense linear y = x Wᵀ (PyTorch layout: W is [out, in]); kernels::gemm_* for all three products.
// Also used as the tied output head (W = the embedding matrix).
#include "flashlm/autograd/tape.hpp"
#include "flashlm/kernels/gemm.hpp"

namespace flashlm::ops {

inline Shape with_last_dim(Shape s, int64_t n) {
    s.dims[s.rank - 1] = n;
    return s;
}

// dx += dy W ; dW += dyᵀ x, for y = x Wᵀ with x [M,K], W [N,K], y [M,N]. With dx_accumulate false dx is
// overwritten: the bits of += into a zeroed dx (a product adds its whole sum to C), without the memset.
template <class T>
void linear_backward_raw(const Tensor<T>& x, const T* W, T* dW, int64_t N, const Tensor<T>& out,
                         bool dx_accumulate = true) {
    const int64_t M = x.rows(), K = x.cols();
    if (x.grad) kernels::gemm_nn(M, K, N, out.grad, W, x.grad, dx_accumulate);
    if (dW) kernels::gemm_tn(N, K, M, out.grad, x.data, dW, true);
}

template <class T>
void linear_backward(Node<T>& n) {
    linear_backward_raw(n.in[0], n.in[1].data, n.in[1].grad, n.in[1].dim(0), n.out);
}

// x: [..., K], W: [N, K] -> [..., N]
template <class T>
Tensor<T> linear(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& W) {
    FLASHLM_CHECK(W.shape.rank == 2 && W.dim(1) == x.cols(),
                "linear: input " + x.shape.str() + " does not match weight " + W.shape.str());
    const int64_t N = W.dim(0);
    Tensor<T> y = tape.make(with_last_dim(x.shape, N), tape.recording({x, W}));
    kernels::gemm_nt(x.rows(), N, x.cols(), x.data, W.data, y.data, false);
    if (y.grad) {
        auto& n = tape.record(&linear_backward<T>);
        n.in[0] = x;
        n.in[1] = W;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
