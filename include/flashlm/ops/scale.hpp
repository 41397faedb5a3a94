#pragma once
// Scaling by broadcast factors:
//   mul_col(x, w, k):   y[m, :] = w[m, k] · x[m, :]   (per-row router weights, w: [M, K], x: [M, D])
//   mul_scalar(x, s):   y = s · x with s a one-element tensor (a learned scalar gate)
//   mul_const(x, c):    y = c · x (a fixed constant, e.g. the embedding scale 1/√D)
// Backward: dx += factor · dy; dw[m, k] += Σ_d dy[m, d] x[m, d]; ds += Σ dy ⊙ x.
#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void mul_col_backward(Node<T>& n) {
    const Tensor<T>&x = n.in[0], &w = n.in[1];
    const int64_t M = x.rows(), D = x.cols(), K = w.cols(), k = n.i[0];
    parallel_for(M, 2 * M * D, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* dy = n.out.grad + r * D;
            if (x.grad) {
                const T f = w.data[r * K + k];
                for (int64_t c = 0; c < D; ++c) x.grad[r * D + c] += f * dy[c];
            }
            if (w.grad) {
                T s = 0;
                for (int64_t c = 0; c < D; ++c) s += dy[c] * x.data[r * D + c];
                w.grad[r * K + k] += s;
            }
        }
    });
}

template <class T>
Tensor<T> mul_col(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& w, int64_t k) {
    FLASHLM_CHECK(w.rows() == x.rows() && k >= 0 && k < w.cols(),
                  "mul_col: weights " + w.shape.str() + " column " + std::to_string(k) + " do not match " + x.shape.str());
    const int64_t M = x.rows(), D = x.cols(), K = w.cols();
    Tensor<T> y = tape.make(x.shape, tape.recording({x, w}));
    parallel_for(M, M * D, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T f = w.data[r * K + k];
            for (int64_t c = 0; c < D; ++c) y.data[r * D + c] = f * x.data[r * D + c];
        }
    });
    if (y.grad) {
        auto& n = tape.record(&mul_col_backward<T>);
        n.in[0] = x;
        n.in[1] = w;
        n.out = y;
        n.i[0] = k;
    }
    return y;
}

template <class T>
void mul_scalar_backward(Node<T>& n) {
    const Tensor<T>&x = n.in[0], &s = n.in[1];
    const int64_t N = x.numel();
    const T* dy = n.out.grad;
    if (x.grad) {
        const T f = s.data[0];
        parallel_for(N, N, [&](int64_t b_, int64_t e_) {
            for (int64_t i = b_; i < e_; ++i) x.grad[i] += f * dy[i];
        });
    }
    if (s.grad) {
        double acc = 0;
        for (int64_t i = 0; i < N; ++i) acc += double(dy[i]) * double(x.data[i]);
        s.grad[0] += T(acc);
    }
}

template <class T>
Tensor<T> mul_scalar(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& s) {
    FLASHLM_CHECK(s.numel() == 1, "mul_scalar: factor must have one element, got " + s.shape.str());
    const int64_t N = x.numel();
    Tensor<T> y = tape.make(x.shape, tape.recording({x, s}));
    const T f = s.data[0];
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = f * x.data[i];
    });
    if (y.grad) {
        auto& n = tape.record(&mul_scalar_backward<T>);
        n.in[0] = x;
        n.in[1] = s;
        n.out = y;
    }
    return y;
}

template <class T>
void mul_const_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T f = T(n.f[0]);
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) n.in[0].grad[i] += f * n.out.grad[i];
    });
}

template <class T>
Tensor<T> mul_const(Tape<T>& tape, const Tensor<T>& x, double c) {
    const int64_t N = x.numel();
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    const T f = T(c);
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = f * x.data[i];
    });
    if (y.grad) {
        auto& n = tape.record(&mul_const_backward<T>);
        n.in[0] = x;
        n.out = y;
        n.f[0] = c;
    }
    return y;
}

}  // namespace flashlm::ops
