#pragma once
// Causal depthwise conv1d over time, PyTorch Conv1d(C, C, k, groups=C, padding=k-1, bias=False) with
// the first T outputs kept: y[b,t,c] = Σ_j w[c,0,j] · x[b, t+j-(k-1), c] (zero before t=0).
// Activations stay [B, T, C] (channels last) so the inner loop runs over contiguous channels.
#include <algorithm>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void causal_dwconv1d_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const Tensor<T>& w = n.in[1];
    const int64_t B = x.dim(0), L = x.dim(1), C = x.dim(2), K = w.dim(2);
    const T* wt = n.saved[0];  // [K, C]
    const T* dy = n.out.grad;
    if (x.grad) {
        parallel_for(B * L, B * L * C * K, [&](int64_t b_, int64_t e_) {
            for (int64_t bs = b_; bs < e_; ++bs) {
                const int64_t b = bs / L, s = bs % L;
                T* dx = x.grad + bs * C;
                for (int64_t j = 0; j < K; ++j) {
                    const int64_t t = s + (K - 1) - j;
                    if (t >= L) continue;
                    const T* dyt = dy + (b * L + t) * C;
                    const T* wj = wt + j * C;
                    for (int64_t c = 0; c < C; ++c) dx[c] += wj[c] * dyt[c];
                }
            }
        });
    }
    if (w.grad) {
        T* part = n.saved[1];  // [threads, K, C], zeroed at forward
        const int used = parallel_for_tid(B * L, B * L * K * C, [&](int64_t b0, int64_t b1, int tid) {
            T* acc = part + int64_t(tid) * K * C;
            for (int64_t bt = b0; bt < b1; ++bt) {
                const int64_t b = bt / L, t = bt % L;
                const T* dyt = dy + bt * C;
                for (int64_t j = std::max<int64_t>(0, (K - 1) - t); j < K; ++j) {
                    const T* xs = x.data + (b * L + t + j - (K - 1)) * C;
                    T* a = acc + j * C;
                    for (int64_t c = 0; c < C; ++c) a[c] += dyt[c] * xs[c];
                }
            }
        });
        for (int p = 0; p < used; ++p)
            for (int64_t j = 0; j < K; ++j)
                for (int64_t c = 0; c < C; ++c) w.grad[c * K + j] += part[(int64_t(p) * K + j) * C + c];
    }
}

// x: [B, T, C]; w: [C, 1, K] (PyTorch's depthwise weight layout).
template <class T>
Tensor<T> causal_dwconv1d(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& w) {
    FLASHLM_CHECK(x.shape.rank == 3, "causal_dwconv1d: input must be [B, T, C], got " + x.shape.str());
    FLASHLM_CHECK(w.shape.rank == 3 && w.dim(0) == x.dim(2) && w.dim(1) == 1,
                "causal_dwconv1d: weight " + w.shape.str() + " does not match input " + x.shape.str());
    const int64_t B = x.dim(0), L = x.dim(1), C = x.dim(2), K = w.dim(2);
    T* wt = tape.scratch(K * C);
    for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < K; ++j) wt[j * C + c] = w.data[c * K + j];
    Tensor<T> y = tape.make(x.shape, tape.recording({x, w}));
    parallel_for(B * L, B * L * C * K, [&](int64_t b_, int64_t e_) {
        for (int64_t bt = b_; bt < e_; ++bt) {
            const int64_t b = bt / L, t = bt % L;
            T* yt = y.data + bt * C;
            std::fill(yt, yt + C, T(0));
            for (int64_t j = std::max<int64_t>(0, (K - 1) - t); j < K; ++j) {
                const T* xs = x.data + (b * L + t + j - (K - 1)) * C;
                const T* wj = wt + j * C;
                for (int64_t c = 0; c < C; ++c) yt[c] += wj[c] * xs[c];
            }
        }
    });
    if (y.grad) {
        auto& n = tape.record(&causal_dwconv1d_backward<T>);
        n.in[0] = x;
        n.in[1] = w;
        n.out = y;
        n.saved[0] = wt;
        n.saved[1] = w.grad ? tape.scratch_zeroed(int64_t(max_threads()) * K * C) : nullptr;
    }
    return y;
}

}  // namespace flashlm::ops
