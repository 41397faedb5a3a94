#pragma once
// Fused SwiGLU gate: y = SiLU(a) ⊙ b, one activation instead of silu → mul (two activations and two
// gradients); backward recomputes σ(a).
#include <algorithm>
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/activation.hpp"

namespace flashlm::ops {

template <class T>
void swiglu_backward(Node<T>& n) {
    const Tensor<T>& a = n.in[0];
    const Tensor<T>& b = n.in[1];
    const int64_t N = n.out.numel();
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    using Map = Eigen::Map<Arr, Eigen::Unaligned>;
    using CMap = Eigen::Map<const Arr, Eigen::Unaligned>;
    parallel_for(N, 8 * N, [&](int64_t i0, int64_t i1) {
        // Chunks keep σ(a) in a stack buffer; Eigen's array exp is vectorised, std::exp is not.
        constexpr int64_t chunk = 256;
        T sbuf[chunk];
        for (int64_t c0 = i0; c0 < i1; c0 += chunk) {
            const int64_t len = std::min(chunk, i1 - c0);
            Map s(sbuf, len);
            CMap av(a.data + c0, len), bv(b.data + c0, len), g(n.out.grad + c0, len);
            s = T(1) / (T(1) + (-av).exp());
            if (a.grad) Map(a.grad + c0, len) += g * bv * s * (T(1) + av * (T(1) - s));
            if (b.grad) Map(b.grad + c0, len) += g * av * s;
        }
    });
}

template <class T>
Tensor<T> swiglu(Tape<T>& tape, const Tensor<T>& a, const Tensor<T>& b) {
    FLASHLM_CHECK(a.shape == b.shape, "swiglu: shapes " + a.shape.str() + " and " + b.shape.str() + " differ");
    Tensor<T> y = tape.make(a.shape, tape.recording({a, b}));
    const int64_t N = a.numel();
    parallel_for(N, 8 * N, [&](int64_t i0, int64_t i1) {
        using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
        Eigen::Map<const Arr, Eigen::Unaligned> av(a.data + i0, i1 - i0), bv(b.data + i0, i1 - i0);
        Eigen::Map<Arr, Eigen::Unaligned>(y.data + i0, i1 - i0) = av / (T(1) + (-av).exp()) * bv;
    });
    if (y.grad) {
        auto& n = tape.record(&swiglu_backward<T>);
        n.in[0] = a;
        n.in[1] = b;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
