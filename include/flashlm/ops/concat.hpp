#pragma once
// Concatenation along the last dimension, torch.cat([a, b], dim=-1) (a gate reading [x, m] through one
// weight matrix whose quantizer sees the whole matrix, so the product cannot be split into two layers).
#include <cstring>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/linear.hpp"

namespace flashlm::ops {

template <class T>
void concat_cols_backward(Node<T>& n) {
    const int64_t M = n.out.rows(), Ca = n.in[0].cols(), Cb = n.in[1].cols(), C = Ca + Cb;
    parallel_for(M, M * C, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const T* g = n.out.grad + r * C;
            if (n.in[0].grad)
                for (int64_t c = 0; c < Ca; ++c) n.in[0].grad[r * Ca + c] += g[c];
            if (n.in[1].grad)
                for (int64_t c = 0; c < Cb; ++c) n.in[1].grad[r * Cb + c] += g[Ca + c];
        }
    });
}

// a: [..., Ca], b: [..., Cb] with the same leading dimensions → [..., Ca + Cb].
template <class T>
Tensor<T> concat_cols(Tape<T>& tape, const Tensor<T>& a, const Tensor<T>& b) {
    FLASHLM_CHECK(a.shape.rank == b.shape.rank && a.rows() == b.rows(),
                  "concat_cols: shapes " + a.shape.str() + " and " + b.shape.str() + " differ before the last dimension");
    const int64_t M = a.rows(), Ca = a.cols(), Cb = b.cols(), C = Ca + Cb;
    Tensor<T> y = tape.make(with_last_dim(a.shape, C), tape.recording({a, b}));
    parallel_for(M, M * C, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            std::memcpy(y.data + r * C, a.data + r * Ca, size_t(Ca) * sizeof(T));
            std::memcpy(y.data + r * C + Ca, b.data + r * Cb, size_t(Cb) * sizeof(T));
        }
    });
    if (y.grad) {
        auto& n = tape.record(&concat_cols_backward<T>);
        n.in[0] = a;
        n.in[1] = b;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
