#pragma once
// L2 normalisation of consecutive groups of `group` channels in the last dimension (per attention head),
// torch.nn.functional.normalize(x, dim=-1, eps) on the [.., H, group] view: y = x / max(‖x‖, eps).
// Backward: where ‖x‖ > eps, dx = (dy − y (y·dy)) / ‖x‖; where the clamp is active, dx = dy / eps.
#include <cmath>
#include <string>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void l2_normalize_backward(Node<T>& n) {
    const int64_t G = n.i[0], N = n.out.numel() / G;
    const T eps = T(n.f[0]);
    const T* nrm = n.saved[0];
    parallel_for(N, N * G, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const T* y = n.out.data + r * G;
            const T* dy = n.out.grad + r * G;
            T* dx = n.in[0].grad + r * G;
            if (nrm[r] > eps) {
                T dot = 0;
                for (int64_t c = 0; c < G; ++c) dot += y[c] * dy[c];
                const T inv = T(1) / nrm[r];
                for (int64_t c = 0; c < G; ++c) dx[c] += (dy[c] - y[c] * dot) * inv;
            } else {
                for (int64_t c = 0; c < G; ++c) dx[c] += dy[c] / eps;
            }
        }
    });
}

template <class T>
Tensor<T> l2_normalize(Tape<T>& tape, const Tensor<T>& x, int64_t group, double eps = 1e-12) {
    FLASHLM_CHECK(group >= 1 && x.cols() % group == 0,
                  "l2_normalize: group " + std::to_string(group) + " does not divide the last dimension of " + x.shape.str());
    const int64_t G = group, N = x.numel() / G;
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    T* nrm = tape.scratch(N);
    parallel_for(N, N * G, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const T* xr = x.data + r * G;
            T ss = 0;
            for (int64_t c = 0; c < G; ++c) ss += xr[c] * xr[c];
            nrm[r] = std::sqrt(ss);
            const T inv = T(1) / std::max(nrm[r], T(eps));
            for (int64_t c = 0; c < G; ++c) y.data[r * G + c] = xr[c] * inv;
        }
    });
    if (y.grad) {
        auto& n = tape.record(&l2_normalize_backward<T>);
        n.in[0] = x;
        n.out = y;
        n.saved[0] = nrm;
        n.i[0] = G;
        n.f[0] = eps;
    }
    return y;
}

}  // namespace flashlm::ops
