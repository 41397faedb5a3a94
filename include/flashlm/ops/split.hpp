#pragma once
// Column slice and split along the last dimension (torch.chunk(2, dim=-1)). Rows of the input are
// contiguous but its halves are not, so the slice copies into a fresh activation.
#include <cstring>
#include <utility>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/linear.hpp"

namespace flashlm::ops {

template <class T>
void slice_cols_backward(Node<T>& n) {
    const int64_t M = n.out.rows(), W = n.out.cols(), C = n.in[0].cols(), c0 = n.i[0];
    parallel_for(M, M * W, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            T* dst = n.in[0].grad + r * C + c0;
            const T* src = n.out.grad + r * W;
            for (int64_t c = 0; c < W; ++c) dst[c] += src[c];
        }
    });
}

// Columns [c0, c1) of the last dimension.
template <class T>
Tensor<T> slice_cols(Tape<T>& tape, const Tensor<T>& x, int64_t c0, int64_t c1) {
    const int64_t C = x.cols(), M = x.rows(), W = c1 - c0;
    FLASHLM_CHECK(0 <= c0 && c0 < c1 && c1 <= C, "slice_cols: range outside " + x.shape.str());
    Tensor<T> y = tape.make(with_last_dim(x.shape, W), tape.recording({x}));
    parallel_for(M, M * W, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) std::memcpy(y.data + r * W, x.data + r * C + c0, W * sizeof(T));
    });
    if (y.grad) {
        auto& n = tape.record(&slice_cols_backward<T>);
        n.in[0] = x;
        n.out = y;
        n.i[0] = c0;
    }
    return y;
}

// Two equal halves of the last dimension (first half, second half).
template <class T>
std::pair<Tensor<T>, Tensor<T>> split2(Tape<T>& tape, const Tensor<T>& x) {
    const int64_t C = x.cols();
    FLASHLM_CHECK(C % 2 == 0, "split2: last dimension " + std::to_string(C) + " is odd");
    return {slice_cols(tape, x, 0, C / 2), slice_cols(tape, x, C / 2, C)};
}

}  // namespace flashlm::ops
