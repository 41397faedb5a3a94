#pragma once
// CORTEX-VI's memory sublayer (VARIANTS.md §10.2) as one tape node, beside the mixer and FFN nodes of
// ops/prenorm_residual.hpp:
//   out = x + R W_outᵀ,  R = decayed_memory(K, V, Q),  [K | V | Q] = RMSNorm(x) W_kvqᵀ
// W_kvq is [3d, D]: the key, value and query projections' rows back to back (the three layers'
// parameters lie so in the parameter buffer), so the three skinny products become one with N = 3d
// forward and with depth 3d for the input gradient. At b64×256 the three N = 64 products ran at 46–59 %
// of the FMA peak, the one N = 192 product at 63–65 % (bench_gemm_shapes --cortex --tokens 16384).
// The node keeps the RMSNorm row scales, K, V, Q, the masked scores W and R; RMSNorm(x) is recomputed in
// the backward and the inner gradients live in the tape's workspace. The output takes over x's gradient
// buffer as the other pre-norm residual nodes do (same condition: x has no later consumer).
// Numbers: the chain's, except that dRMSNorm(x) is one sum over the 3d rows of W_kvq where the chain added
// three sums of d (rounding differs in the last bits); tests/variants/cortex_fused.cpp bounds it.
#include "flashlm/ops/decayed_memory.hpp"
#include "flashlm/ops/prenorm_residual.hpp"

namespace flashlm::ops {

namespace memory_detail {
// [M, 3d] rows <-> three [M, d] blocks.
template <class T>
void split_rows(const T* kvq, T* k, T* v, T* q, int64_t M, int64_t d) {
    parallel_for(M, 3 * M * d, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* s = kvq + r * 3 * d;
            std::copy(s, s + d, k + r * d);
            std::copy(s + d, s + 2 * d, v + r * d);
            std::copy(s + 2 * d, s + 3 * d, q + r * d);
        }
    });
}
template <class T>
void join_rows(const T* k, const T* v, const T* q, T* kvq, int64_t M, int64_t d) {
    parallel_for(M, 3 * M * d, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            T* o = kvq + r * 3 * d;
            std::copy(k + r * d, k + r * d + d, o);
            std::copy(v + r * d, v + r * d + d, o + d);
            std::copy(q + r * d, q + r * d + d, o + 2 * d);
        }
    });
}
}  // namespace memory_detail

// saved: [0] row scales r [M], [1] K | V | Q ([M, d] each, 16-aligned), [2] W [B, T, T], [3] R [M, d] then γ^k.
template <class T>
void prenorm_memory_residual_backward(Node<T>& n) {
    using namespace prenorm_detail;
    const Tensor<T>&x = n.in[0], &g = n.in[1], &Wkvq = n.in[2], &Wout = n.in[3];
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2), M = B * L, d = Wout.dim(1);
    const int64_t md = a16(M * D), mk = a16(M * d);
    FLASHLM_CHECK(n.i[0] >= max_threads(), "prenorm_memory_residual: the thread count grew between forward and backward");
    T* r = n.saved[0];
    const T *K = n.saved[1], *V = K + mk, *Q = V + mk, *W = n.saved[2], *R = n.saved[3], *pw = R + mk;
    T* ws = tape_of(n).workspace(4 * mk + a16(3 * M * d) + 2 * md + n.i[0] * L * L);
    T *dR = ws, *dK = ws + mk, *dV = dK + mk, *dQ = dV + mk, *dkvq = dQ + mk;
    T *h = dkvq + a16(3 * M * d), *dh = h + md, *Gs = dh + md;
    // mem_out: dR = dy W_out (written), dW_out += dyᵀ R
    linear_backward_raw(Tensor<T>(const_cast<T*>(R), dR, Shape{M, d}), Wout.data, Wout.grad, D,
                        Tensor<T>(nullptr, n.out.grad, Shape{M, D}), false);
    decayed_memory_backward_raw(K, V, Q, W, dR, pw, T(n.f[1]), B, L, d, Gs, dK, dV, dQ, false);
    memory_detail::join_rows(dK, dV, dQ, dkvq, M, d);
    // projections, over h = RMSNorm(x) recomputed (r rewritten with the same values)
    rmsnorm_raw(x.data, g.data, n.f[0], h, r, M, D);
    linear_backward_raw(Tensor<T>(h, dh, Shape{M, D}), Wkvq.data, Wkvq.grad, 3 * d, Tensor<T>(nullptr, dkvq, Shape{M, 3 * d}),
                        false);
    rmsnorm_backward_raw(x.data, g.data, r, dh, x.grad, g.grad, M, D);
}

// x: [B, T, D]; g: [D]; W_kvq: [3d, D] (key, value, query rows); W_out: [D, d]. decay γ and scale s as
// ops::decayed_memory. Returns [B, T, D].
template <class T>
Tensor<T> prenorm_memory_residual(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& g, const Tensor<T>& Wkvq,
                                  const Tensor<T>& Wout, double decay, double scale, double eps = 1e-6) {
    using namespace prenorm_detail;
    FLASHLM_CHECK(x.shape.rank == 3, "prenorm_memory_residual: input must be [B, T, D], got " + x.shape.str());
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2), M = B * L;
    FLASHLM_CHECK(Wout.shape.rank == 2 && Wout.dim(0) == D, "prenorm_memory_residual: output weight " + Wout.shape.str() +
                                                                 " does not match input " + x.shape.str());
    const int64_t d = Wout.dim(1);
    FLASHLM_CHECK(g.numel() == D && Wkvq.shape == (Shape{3 * d, D}),
                  "prenorm_memory_residual: input " + x.shape.str() + ", gain " + g.shape.str() + ", weights " +
                      Wkvq.shape.str() + ", " + Wout.shape.str());
    const bool rec = tape.recording({x, g, Wkvq, Wout});
    const int64_t md = a16(M * D), mk = a16(M * d), threads = max_threads();
    T* ws = tape.workspace(md + a16(3 * M * d));
    T *h = ws, *kvq = ws + md;
    T* r = tape.scratch(M);
    rmsnorm_raw(x.data, g.data, eps, h, r, M, D);
    kernels::gemm_nt(M, 3 * d, D, h, Wkvq.data, kvq, false);
    T* K = tape.scratch(3 * mk);
    T *V = K + mk, *Q = V + mk;
    memory_detail::split_rows(kvq, K, V, Q, M, d);
    T* R = tape.scratch(mk + L);
    T* pw = R + mk;
    decay_powers(pw, L, decay);
    T* W = tape.scratch((rec ? B : threads) * L * L);
    decayed_memory_forward_raw(K, V, Q, B, L, d, pw, T(scale), W, rec, R);
    Tensor<T> y = residual_output(tape, x, rec);
    kernels::gemm_nt(M, D, d, R, Wout.data, y.data, false);
    add_residual(x.data, y.data, M * D);
    if (rec) {
        auto& n = tape.record(&prenorm_memory_residual_backward<T>);
        n.in[0] = x, n.in[1] = g, n.in[2] = Wkvq, n.in[3] = Wout;
        n.out = y;
        n.saved[0] = r, n.saved[1] = K, n.saved[2] = W, n.saved[3] = R;
        n.f[0] = eps, n.f[1] = scale;
        n.i[0] = threads;
        n.ctx = &tape;
    }
    return y;
}

}  // namespace flashlm::ops
