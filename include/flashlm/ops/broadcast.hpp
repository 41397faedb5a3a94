#pragma once
// Broadcast of one row to every row of a new tensor (a learned initial state such as v6's planner_init
// [1, 1, d] expanded over batch and time): y[m, :] = p for every m. Backward: dp += Σ_m dy[m, :].
#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void broadcast_rows_backward(Node<T>& n) {
    const int64_t M = n.out.rows(), D = n.out.cols();
    for (int64_t c = 0; c < D; ++c) {
        double acc = 0;
        for (int64_t m = 0; m < M; ++m) acc += double(n.out.grad[m * D + c]);
        n.in[0].grad[c] += T(acc);
    }
}

// p: any shape with out.cols() elements -> a tensor of shape out.
template <class T>
Tensor<T> broadcast_rows(Tape<T>& tape, const Tensor<T>& p, Shape out) {
    FLASHLM_CHECK(p.numel() == out.cols(), "broadcast_rows: " + p.shape.str() + " does not fill rows of " + out.str());
    Tensor<T> y = tape.make(out, tape.recording({p}));
    const int64_t M = y.rows(), D = y.cols();
    parallel_for(M, M * D, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            for (int64_t c = 0; c < D; ++c) y.data[r * D + c] = p.data[c];
    });
    if (y.grad) {
        auto& n = tape.record(&broadcast_rows_backward<T>);
        n.in[0] = p;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
