#pragma once
// Causal depthwise conv1d over time, PyTorch Conv1d(C, C, k, groups=C, padding=k-1, bias=False) with
// the first T outputs kept: y[b,t,c] = Σ_j w[c,0,j] · x[b, t+j-(k-1), c] (zero before t=0).
// Activations stay [B, T, C] (channels last) so the inner loop runs over contiguous channels. The
// loops take a row stride for x so the fused gated conv can read the value half of [g, v] in place.
#include <algorithm>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

namespace conv {

// PyTorch's [C, 1, K] weight → [K, C], so the inner loops run over contiguous channels.
template <class T>
T* transpose_weight(Tape<T>& tape, const Tensor<T>& w) {
    const int64_t C = w.dim(0), K = w.dim(2);
    T* wt = tape.scratch(K * C);
    for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < K; ++j) wt[j * C + c] = w.data[c * K + j];
    return wt;
}

// y[bt, :] = Σ_j wt[j, :] ⊙ x[bt + j - (K-1), :] within each sequence; x rows are ldx apart.
template <class T>
void forward(const T* x, int64_t ldx, const T* wt, int64_t B, int64_t L, int64_t C, int64_t K, T* y) {
    parallel_for(B * L, B * L * C * K, [&](int64_t r0, int64_t r1) {
        for (int64_t bt = r0; bt < r1; ++bt) {
            const int64_t b = bt / L, t = bt % L;
            T* yt = y + bt * C;
            std::fill(yt, yt + C, T(0));
            for (int64_t j = std::max<int64_t>(0, (K - 1) - t); j < K; ++j) {
                const T* xs = x + (b * L + t + j - (K - 1)) * ldx;
                const T* wj = wt + j * C;
                for (int64_t c = 0; c < C; ++c) yt[c] += wj[c] * xs[c];
            }
        }
    });
}

// dx[bs, :] += Σ_j wt[j, :] ⊙ dy[bs + (K-1) - j, :]; dx rows are ldx apart.
template <class T>
void backward_input(const T* dy, const T* wt, int64_t B, int64_t L, int64_t C, int64_t K, T* dx, int64_t ldx) {
    parallel_for(B * L, B * L * C * K, [&](int64_t r0, int64_t r1) {
        for (int64_t bs = r0; bs < r1; ++bs) {
            const int64_t b = bs / L, s = bs % L;
            T* d = dx + bs * ldx;
            for (int64_t j = 0; j < K; ++j) {
                const int64_t t = s + (K - 1) - j;
                if (t >= L) continue;
                const T* dyt = dy + (b * L + t) * C;
                const T* wj = wt + j * C;
                for (int64_t c = 0; c < C; ++c) d[c] += wj[c] * dyt[c];
            }
        }
    });
}

// dw[c, 0, j] += Σ_{b,t} dy[bt, c] · x[bt + j - (K-1), c], through per-thread partials `part`
// ([threads, K, C], zeroed) summed in thread order so the result is deterministic.
template <class T>
void backward_weight(const T* dy, const T* x, int64_t ldx, int64_t B, int64_t L, int64_t C, int64_t K, T* part, T* dw) {
    const int used = parallel_for_tid(B * L, B * L * K * C, [&](int64_t r0, int64_t r1, int tid) {
        T* acc = part + int64_t(tid) * K * C;
        for (int64_t bt = r0; bt < r1; ++bt) {
            const int64_t b = bt / L, t = bt % L;
            const T* dyt = dy + bt * C;
            for (int64_t j = std::max<int64_t>(0, (K - 1) - t); j < K; ++j) {
                const T* xs = x + (b * L + t + j - (K - 1)) * ldx;
                T* a = acc + j * C;
                for (int64_t c = 0; c < C; ++c) a[c] += dyt[c] * xs[c];
            }
        }
    });
    for (int p = 0; p < used; ++p)
        for (int64_t j = 0; j < K; ++j)
            for (int64_t c = 0; c < C; ++c) dw[c * K + j] += part[(int64_t(p) * K + j) * C + c];
}

template <class T>
T* weight_partials(Tape<T>& tape, const Tensor<T>& w) {
    return w.grad ? tape.scratch_zeroed(int64_t(max_threads()) * w.dim(0) * w.dim(2)) : nullptr;
}

}  // namespace conv

template <class T>
void causal_dwconv1d_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const Tensor<T>& w = n.in[1];
    const int64_t B = x.dim(0), L = x.dim(1), C = x.dim(2), K = w.dim(2);
    if (x.grad) conv::backward_input(n.out.grad, n.saved[0], B, L, C, K, x.grad, C);
    if (w.grad) conv::backward_weight(n.out.grad, x.data, C, B, L, C, K, n.saved[1], w.grad);
}

// x: [B, T, C]; w: [C, 1, K] (PyTorch's depthwise weight layout).
template <class T>
Tensor<T> causal_dwconv1d(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& w) {
    FLASHLM_CHECK(x.shape.rank == 3, "causal_dwconv1d: input must be [B, T, C], got " + x.shape.str());
    FLASHLM_CHECK(w.shape.rank == 3 && w.dim(0) == x.dim(2) && w.dim(1) == 1,
                  "causal_dwconv1d: weight " + w.shape.str() + " does not match input " + x.shape.str());
    const int64_t B = x.dim(0), L = x.dim(1), C = x.dim(2), K = w.dim(2);
    T* wt = conv::transpose_weight(tape, w);
    Tensor<T> y = tape.make(x.shape, tape.recording({x, w}));
    conv::forward(x.data, C, wt, B, L, C, K, y.data);
    if (y.grad) {
        auto& n = tape.record(&causal_dwconv1d_backward<T>);
        n.in[0] = x;
        n.in[1] = w;
        n.out = y;
        n.saved[0] = wt;
        n.saved[1] = conv::weight_partials(tape, w);
    }
    return y;
}

}  // namespace flashlm::ops
