#pragma once
// Concatenation along the last dimension, torch.cat([a, b], dim=-1): a [..., Da], b [..., Db] with the
// same rows -> [..., Da + Db]. Backward scatters the two column ranges back.
#include <cstring>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/linear.hpp"

namespace flashlm::ops {

template <class T>
void concat_cols_backward(Node<T>& n) {
    const Tensor<T>&a = n.in[0], &b = n.in[1];
    const int64_t M = a.rows(), Da = a.cols(), Db = b.cols(), C = Da + Db;
    parallel_for(M, M * C, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* g = n.out.grad + r * C;
            if (a.grad)
                for (int64_t c = 0; c < Da; ++c) a.grad[r * Da + c] += g[c];
            if (b.grad)
                for (int64_t c = 0; c < Db; ++c) b.grad[r * Db + c] += g[Da + c];
        }
    });
}

template <class T>
Tensor<T> concat_cols(Tape<T>& tape, const Tensor<T>& a, const Tensor<T>& b) {
    FLASHLM_CHECK(a.rows() == b.rows() && a.shape.rank == b.shape.rank,
                  "concat_cols: " + a.shape.str() + " and " + b.shape.str() + " differ before the last dimension");
    const int64_t M = a.rows(), Da = a.cols(), Db = b.cols(), C = Da + Db;
    Tensor<T> y = tape.make(with_last_dim(a.shape, C), tape.recording({a, b}));
    parallel_for(M, M * C, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            std::memcpy(y.data + r * C, a.data + r * Da, size_t(Da) * sizeof(T));
            std::memcpy(y.data + r * C + Da, b.data + r * Db, size_t(Db) * sizeof(T));
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
