#pragma once
// Fused gate of the v4 token mixer: given u = [g, v] (the up-projection, [B, T, 2C]),
//   out = CausalDWConv(v) ⊙ σ(g)
// in one op instead of split → conv → sigmoid → mul. It stores the conv output h (one [B,T,C] buffer)
// and recomputes σ(g) in backward, where the unfused chain kept five activations and five gradients.
#include <algorithm>
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/activation.hpp"

namespace flashlm::ops {

template <class T>
void gated_causal_conv_backward(Node<T>& n) {
    const Tensor<T>& u = n.in[0];
    const Tensor<T>& w = n.in[1];
    const int64_t B = u.dim(0), L = u.dim(1), C2 = u.dim(2), C = C2 / 2, K = w.dim(2);
    const T* h = n.saved[0];
    T* dh = n.saved[1];
    const T* wt = n.saved[2];  // [K, C]
    const T* dout = n.out.grad;
    // dg = dout ⊙ h ⊙ σ'(g);  dh = dout ⊙ σ(g)
    parallel_for(B * L, B * L * C * 8, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
            Eigen::Map<const Arr, Eigen::Unaligned> g(u.data + r * C2, C), d(dout + r * C, C), hr(h + r * C, C);
            Eigen::Map<Arr, Eigen::Unaligned> s(dh + r * C, C);  // σ(g) first, then dh = dout ⊙ σ(g)
            s = T(1) / (T(1) + (-g).exp());
            if (u.grad) Eigen::Map<Arr, Eigen::Unaligned>(u.grad + r * C2, C) += d * hr * s * (T(1) - s);
            s *= d;
        }
    });
    if (u.grad) {
        parallel_for(B * L, B * L * C * K, [&](int64_t r0, int64_t r1) {
            for (int64_t bs = r0; bs < r1; ++bs) {
                const int64_t b = bs / L, s = bs % L;
                T* dv = u.grad + bs * C2 + C;
                for (int64_t j = 0; j < K; ++j) {
                    const int64_t t = s + (K - 1) - j;
                    if (t >= L) continue;
                    const T* dht = dh + (b * L + t) * C;
                    const T* wj = wt + j * C;
                    for (int64_t c = 0; c < C; ++c) dv[c] += wj[c] * dht[c];
                }
            }
        });
    }
    if (w.grad) {
        T* part = n.saved[3];  // [threads, K, C], zeroed at forward
        const int used = parallel_for_tid(B * L, B * L * K * C, [&](int64_t r0, int64_t r1, int tid) {
            T* acc = part + int64_t(tid) * K * C;
            for (int64_t bt = r0; bt < r1; ++bt) {
                const int64_t b = bt / L, t = bt % L;
                const T* dht = dh + bt * C;
                for (int64_t j = std::max<int64_t>(0, (K - 1) - t); j < K; ++j) {
                    const T* vs = u.data + (b * L + t + j - (K - 1)) * C2 + C;
                    T* a = acc + j * C;
                    for (int64_t c = 0; c < C; ++c) a[c] += dht[c] * vs[c];
                }
            }
        });
        for (int p = 0; p < used; ++p)
            for (int64_t j = 0; j < K; ++j)
                for (int64_t c = 0; c < C; ++c) w.grad[c * K + j] += part[(int64_t(p) * K + j) * C + c];
    }
}

// u: [B, T, 2C] = [gate, value]; w: [C, 1, K]. Returns [B, T, C].
template <class T>
Tensor<T> gated_causal_conv(Tape<T>& tape, const Tensor<T>& u, const Tensor<T>& w) {
    FLASHLM_CHECK(u.shape.rank == 3 && u.dim(2) % 2 == 0, "gated_causal_conv: input must be [B, T, 2C], got " + u.shape.str());
    const int64_t B = u.dim(0), L = u.dim(1), C2 = u.dim(2), C = C2 / 2;
    FLASHLM_CHECK(w.shape.rank == 3 && w.dim(0) == C && w.dim(1) == 1,
                  "gated_causal_conv: weight " + w.shape.str() + " does not match input " + u.shape.str());
    const int64_t K = w.dim(2);
    T* wt = tape.scratch(K * C);
    for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < K; ++j) wt[j * C + c] = w.data[c * K + j];
    Tensor<T> y = tape.make(Shape{B, L, C}, tape.recording({u, w}));
    T* h = y.grad ? tape.scratch(B * L * C) : nullptr;
    parallel_for(B * L, B * L * C * (K + 8), [&](int64_t r0, int64_t r1) {
        for (int64_t bt = r0; bt < r1; ++bt) {
            const int64_t b = bt / L, t = bt % L;
            T* yt = y.data + bt * C;
            std::fill(yt, yt + C, T(0));
            for (int64_t j = std::max<int64_t>(0, (K - 1) - t); j < K; ++j) {
                const T* vs = u.data + (b * L + t + j - (K - 1)) * C2 + C;
                const T* wj = wt + j * C;
                for (int64_t c = 0; c < C; ++c) yt[c] += wj[c] * vs[c];
            }
            if (h) std::copy(yt, yt + C, h + bt * C);
            using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
            Eigen::Map<const Arr, Eigen::Unaligned> g(u.data + bt * C2, C);
            Eigen::Map<Arr, Eigen::Unaligned> yv(yt, C);
            yv /= T(1) + (-g).exp();
        }
    });
    if (y.grad) {
        auto& n = tape.record(&gated_causal_conv_backward<T>);
        n.in[0] = u;
        n.in[1] = w;
        n.out = y;
        n.saved[0] = h;
        n.saved[1] = tape.scratch(B * L * C);
        n.saved[2] = wt;
        n.saved[3] = w.grad ? tape.scratch_zeroed(int64_t(max_threads()) * K * C) : nullptr;
    }
    return y;
}

}  // namespace flashlm::ops
