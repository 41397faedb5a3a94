#pragma once
// Fused SwiGLU gate: y = SiLU(a) ⊙ b, one activation instead of silu → mul (two activations and two
// gradients); backward recomputes σ(a).
#include <algorithm>
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/activation.hpp"

namespace flashlm::ops {

// da += g ⊙ b ⊙ σ(a)(1 + a(1 − σ(a))), db += g ⊙ SiLU(a) over n elements (either output may be null).
// Shared with fused callers (ops/moe_expert.hpp), which must get the very same numbers.
template <class T>
void swiglu_backward_raw(const T* a, const T* b, const T* g, T* da, T* db, int64_t N) {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    using Map = Eigen::Map<Arr, Eigen::Unaligned>;
    using CMap = Eigen::Map<const Arr, Eigen::Unaligned>;
    parallel_for(N, 8 * N, [&](int64_t i0, int64_t i1) {
        // Chunks keep σ(a) in a stack buffer; Eigen's array exp is vectorised, std::exp is not.
        constexpr int64_t chunk = 256;
        alignas(64) T sbuf[chunk];
        for (int64_t c0 = i0; c0 < i1; c0 += chunk) {
            const int64_t len = std::min(chunk, i1 - c0);
            Map s(sbuf, len);
            CMap av(a + c0, len), bv(b + c0, len), gv(g + c0, len);
            s = T(1) / (T(1) + (-av).exp());
            if (da) Map(da + c0, len) += gv * bv * s * (T(1) + av * (T(1) - s));
            if (db) Map(db + c0, len) += gv * av * s;
        }
    });
}

// y = SiLU(a) ⊙ b over n elements.
template <class T>
void swiglu_raw(const T* a, const T* b, T* y, int64_t N) {
    parallel_for(N, 8 * N, [&](int64_t i0, int64_t i1) {
        using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
        Eigen::Map<const Arr, Eigen::Unaligned> av(a + i0, i1 - i0), bv(b + i0, i1 - i0);
        Eigen::Map<Arr, Eigen::Unaligned>(y + i0, i1 - i0) = av / (T(1) + (-av).exp()) * bv;
    });
}

template <class T>
void swiglu_backward(Node<T>& n) {
    swiglu_backward_raw(n.in[0].data, n.in[1].data, n.out.grad, n.in[0].grad, n.in[1].grad, n.out.numel());
}

template <class T>
Tensor<T> swiglu(Tape<T>& tape, const Tensor<T>& a, const Tensor<T>& b) {
    FLASHLM_CHECK(a.shape == b.shape, "swiglu: shapes " + a.shape.str() + " and " + b.shape.str() + " differ");
    Tensor<T> y = tape.make(a.shape, tape.recording({a, b}));
    swiglu_raw(a.data, b.data, y.data, a.numel());
    if (y.grad) {
        auto& n = tape.record(&swiglu_backward<T>);
        n.in[0] = a;
        n.in[1] = b;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
