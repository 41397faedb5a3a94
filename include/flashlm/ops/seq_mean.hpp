#pragma once
// Mean over the time axis, x: [B, T, D] -> [B, T, D]:
//   causal:      y_t = (1/(t+1)) Σ_{s≤t} x_s   (running mean: position t summarises only its past)
//   whole:       y_t = (1/T) Σ_s x_s for every t (torch's x.mean(dim=1, keepdim=True), broadcast back
//                over T; every position sees the future — v6's planner summary, VARIANTS.md §16 Q3)
// Backward: causal dx_s += Σ_{t≥s} dy_t/(t+1) (a reverse running sum); whole dx_s += (1/T) Σ_t dy_t.
// Sums run in double per (sequence, channel), so the result does not depend on the thread count.
#include <vector>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void seq_mean_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2);
    const bool causal = n.i[0] != 0;
    const T* dy = n.out.grad;
    parallel_for(B * D, 2 * B * L * D, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t b = i / D, c = i % D;
            const int64_t base = b * L * D + c;
            double acc = 0;
            if (causal) {
                for (int64_t t = L; t-- > 0;) {
                    acc += double(dy[base + t * D]) / double(t + 1);
                    x.grad[base + t * D] += T(acc);
                }
            } else {
                for (int64_t t = 0; t < L; ++t) acc += double(dy[base + t * D]);
                const T g = T(acc / double(L));
                for (int64_t t = 0; t < L; ++t) x.grad[base + t * D] += g;
            }
        }
    });
}

template <class T>
Tensor<T> seq_mean(Tape<T>& tape, const Tensor<T>& x, bool causal) {
    FLASHLM_CHECK(x.shape.rank == 3, "seq_mean: input must be [B, T, D], got " + x.shape.str());
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2);
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    parallel_for(B * D, 2 * B * L * D, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t b = i / D, c = i % D;
            const int64_t base = b * L * D + c;
            double acc = 0;
            if (causal) {
                for (int64_t t = 0; t < L; ++t) {
                    acc += double(x.data[base + t * D]);
                    y.data[base + t * D] = T(acc / double(t + 1));
                }
            } else {
                for (int64_t t = 0; t < L; ++t) acc += double(x.data[base + t * D]);
                const T m = T(acc / double(L));
                for (int64_t t = 0; t < L; ++t) y.data[base + t * D] = m;
            }
        }
    });
    if (y.grad) {
        auto& n = tape.record(&seq_mean_backward<T>);
        n.in[0] = x;
        n.out = y;
        n.i[0] = causal ? 1 : 0;
    }
    return y;
}

}  // namespace flashlm::ops
