#pragma once
// Embedding gather: out[i, :] = W[ids[i], :]; backward scatter-adds rows of dout into dW.
#include <cstdint>
#include <cstring>
#include <string>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void embedding_backward(Node<T>& n) {
    const Tensor<T>& W = n.in[0];
    const int64_t M = n.i[0], D = W.dim(1);
    for (int64_t r = 0; r < M; ++r) {
        T* dst = W.grad + int64_t(n.ids[r]) * D;
        const T* src = n.out.grad + r * D;
        for (int64_t c = 0; c < D; ++c) dst[c] += src[c];
    }
}

// W: [V, D]; ids: M token ids in [0, V). Returns [M, D].
template <class T>
Tensor<T> embedding(Tape<T>& tape, const Tensor<T>& W, const int32_t* ids, int64_t M) {
    FLASHLM_CHECK(W.shape.rank == 2, "embedding: weight must be [V, D]");
    const int64_t V = W.dim(0), D = W.dim(1);
    for (int64_t r = 0; r < M; ++r)
        if (ids[r] < 0 || ids[r] >= V)
            throw std::out_of_range("embedding: token id " + std::to_string(ids[r]) + " outside vocabulary of " +
                                    std::to_string(V));
    Tensor<T> out = tape.make(Shape{M, D}, tape.recording({W}));
    parallel_for(M, M * D, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) std::memcpy(out.data + r * D, W.data + int64_t(ids[r]) * D, D * sizeof(T));
    });
    if (out.grad) {
        auto& n = tape.record(&embedding_backward<T>);
        n.in[0] = W;
        n.out = out;
        n.ids = ids;
        n.i[0] = M;
    }
    return out;
}

}  // namespace flashlm::ops
