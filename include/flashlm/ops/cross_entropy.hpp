#pragma once
// Fused log-softmax + cross-entropy, mean over rows: loss = mean_i (lse_i − z_i[t_i]).
// Saves the per-row logsumexp; backward writes (softmax − onehot) · g / M without storing probabilities.
#include <cmath>
#include <string>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

namespace detail {
template <class T>
using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Unaligned>;

// Eigen's array exp is vectorised (AVX-512/AVX2); std::exp in a loop is a scalar libm call per element.
template <class T>
T row_logsumexp(const T* z, int64_t V) {
    ArrMap<T> a(const_cast<T*>(z), V);
    const T mx = a.maxCoeff();
    return mx + std::log((a - mx).exp().sum());
}
// Replaces the row by softmax(z) · scale and returns logsumexp(z).
template <class T>
T row_softmax_inplace(T* z, int64_t V, T scale) {
    ArrMap<T> a(z, V);
    const T mx = a.maxCoeff();
    a = (a - mx).exp();
    const T s = a.sum();
    a *= scale / s;
    return mx + std::log(s);
}
inline void check_targets(const int32_t* t, int64_t M, int64_t V) {
    for (int64_t i = 0; i < M; ++i)
        if (t[i] < 0 || t[i] >= V)
            throw std::out_of_range("cross_entropy: target " + std::to_string(t[i]) + " outside vocabulary of " +
                                    std::to_string(V));
}
}  // namespace detail

template <class T>
void cross_entropy_backward(Node<T>& n) {
    const Tensor<T>& z = n.in[0];
    const int64_t M = z.rows(), V = z.cols();
    const T scale = n.out.grad[0] / T(M);
    const T* lse = n.saved[0];
    parallel_for(M, M * V, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) {
            const T* zi = z.data + i * V;
            T* gi = z.grad + i * V;
            detail::ArrMap<T>(gi, V) += scale * (detail::ArrMap<T>(const_cast<T*>(zi), V) - lse[i]).exp();
            gi[n.ids[i]] -= scale;
        }
    });
}

// logits: [..., V]; targets: one id per row. Returns a scalar tensor.
template <class T>
Tensor<T> cross_entropy(Tape<T>& tape, const Tensor<T>& logits, const int32_t* targets) {
    const int64_t M = logits.rows(), V = logits.cols();
    detail::check_targets(targets, M, V);
    Tensor<T> loss = tape.make(Shape{1}, tape.recording({logits}));
    T* lse = tape.scratch(M);
    double total = 0;
    total += parallel_sum(M, M * V, [&](int64_t b_, int64_t e_) {
        double total = 0;
        for (int64_t i = b_; i < e_; ++i) {
            const T* zi = logits.data + i * V;
            lse[i] = detail::row_logsumexp(zi, V);
            total += double(lse[i] - zi[targets[i]]);
        }
        return total;
    });
    loss.data[0] = T(total / double(M));
    if (loss.grad) {
        auto& n = tape.record(&cross_entropy_backward<T>);
        n.in[0] = logits;
        n.out = loss;
        n.saved[0] = lse;
        n.ids = targets;
    }
    return loss;
}

}  // namespace flashlm::ops
