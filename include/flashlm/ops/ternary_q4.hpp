#pragma once
// Q4 linear of the v6.1 C engine (VARIANTS.md §2 Q4, §8.4): ternary weights AND ternary activations,
//   y = int32_dot(t(x), t(W)) · s_x · s_W
// with t(W) = ±1 where |W/s_W| > 0.5, s_W = mean|W| + 1e-8 (per tensor); t(x) = sign(x)·[|x| > 0.6745
// mean_k|x|] per row; s_x = mean_k|x_i| + 1e-8 per row (default) or mean|X| + 1e-8 over the whole
// [M, K] input (upstream, Q4Options::global_act_scale). The integer product is the popcount GEMM.
//
// Backward: the identity straight-through estimator on both operands, i.e. the gradient of x̃ W̃ᵀ with
// x̃ = s_x t(x), W̃ = s_W t(W) (no gradient through the scales):
//   dx += dy · W̃ (ops/ternary_linear.hpp: the ternary add kernel, else the GEMM),
//   dW += dyᵀ · x̃ = Σ_i s_x,i · dy_iᵀ t(x_i)   (a float GEMM on the unpacked operand).
// Upstream drops s_x from dW (Q4Options::omit_act_scale_in_grad, --upstream-compat): its weight gradient
// is that of a model whose activations are t(x) unscaled, which is not the model it runs forward.
#include <algorithm>
#include <cstdint>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/kernels/gemm.hpp"
#include "flashlm/kernels/popcount_gemm.hpp"
#include "flashlm/ops/linear.hpp"
#include "flashlm/ops/ternary_linear.hpp"

namespace flashlm::ops {

struct Q4Options {
    bool global_act_scale = false;        // s_x over the whole input tensor (upstream) instead of per row
    bool omit_act_scale_in_grad = false;  // upstream's dW = t(x)ᵀ dy
};

namespace detail {

// Bytes from the tape's arena (64-byte aligned), which only hands out T.
template <class T, class U>
U* scratch_as(Tape<T>& tape, int64_t n) {
    return reinterpret_cast<U*>(tape.scratch((n * int64_t(sizeof(U)) + int64_t(sizeof(T)) - 1) / int64_t(sizeof(T))));
}

}  // namespace detail

namespace detail {
// t(x)'s value and sign planes share one scratch block, each part 64-byte aligned.
inline int64_t q4_plane_stride(int64_t M, int64_t KB) { return (M * KB + 63) / 64 * 64; }
}  // namespace detail

// saved: [0] W̃ = s_W t(W) [N, K], [1] per-row gradient factor for dW (s_x,i, or 1), [2] t(x) planes
// (values, then signs at detail::q4_plane_stride), [3] room for x̃ [M, K] (from the tape, so steady-state
// steps allocate nothing).
template <class T>
void q4_linear_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const Tensor<T>& W = n.in[1];
    const int64_t M = x.rows(), K = x.cols(), N = W.dim(0);
    const T* dy = n.out.grad;
    // W̃ is s_W · {-1, 0, 1}: the ternary add kernel's form (it runs where it can, else the GEMM)
    if (x.grad) ternary_linear_dx(M, K, N, dy, n.saved[0], x.grad, true);
    if (W.grad) {
        // dW += dyᵀ x̃ with x̃ = f_i · t(x_i) unpacked: flashlm's Eigen GEMM runs this 3-4x faster than
        // the engine's scatter-add (kernels::ternary_transpose_matmul, bench_popcount), same sums up to order.
        const int64_t KB = kernels::bitplane_bytes(K);
        const auto* xv = reinterpret_cast<const uint8_t*>(n.saved[2]);
        const auto* xs = xv + detail::q4_plane_stride(M, KB);
        const T* f = n.saved[1];
        T* xt = n.saved[3];
        parallel_for(M, M * K, [&](int64_t i0, int64_t i1) {
            kernels::unpack_bitplanes(xv + i0 * KB, xs + i0 * KB, i1 - i0, K, xt + i0 * K, f + i0);
        });
        kernels::gemm_tn(N, K, M, dy, xt, W.grad, true);
    }
}

// x: [..., K], W: [N, K] -> [..., N]
template <class T>
Tensor<T> q4_linear(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& W, Q4Options opt = {}) {
    FLASHLM_CHECK(W.shape.rank == 2 && W.dim(1) == x.cols(),
                  "q4_linear: input " + x.shape.str() + " does not match weight " + W.shape.str());
    const int64_t M = x.rows(), K = x.cols(), N = W.dim(0), KB = kernels::bitplane_bytes(K);
    auto* wv = detail::scratch_as<T, uint8_t>(tape, N * KB);
    auto* ws = detail::scratch_as<T, uint8_t>(tape, N * KB);
    const T sw = kernels::quantize_weight_planes(W.data, N, K, wv, ws);
    auto* xv = detail::scratch_as<T, uint8_t>(tape, 2 * detail::q4_plane_stride(M, KB));
    auto* xs = xv + detail::q4_plane_stride(M, KB);
    T* sx = tape.scratch(M);
    kernels::requantize_rows(x.data, M, K, xv, xs, sx);
    if (opt.global_act_scale) {
        double s = 0;  // mean|X| = the row means' mean (rows have equal length)
        for (int64_t i = 0; i < M; ++i) s += double(sx[i]);
        std::fill(sx, sx + M, T(s / double(M)));
    }
    for (int64_t i = 0; i < M; ++i) sx[i] += T(1e-8);

    const int64_t pw = kernels::popcount_panel_words(N, KB);
    auto* pv = detail::scratch_as<T, uint64_t>(tape, pw);
    auto* ps = detail::scratch_as<T, uint64_t>(tape, pw);
    const kernels::PopcountPanel panel = kernels::make_popcount_panel(wv, ws, N, KB, pv, ps);
    auto* c = detail::scratch_as<T, int32_t>(tape, M * N);
    kernels::popcount_gemm(xv, xs, M, panel, c, N);

    Tensor<T> y = tape.make(with_last_dim(x.shape, N), tape.recording({x, W}));
    parallel_for(M, M * N, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const T s = sx[i] * sw;
            for (int64_t j = 0; j < N; ++j) y.data[i * N + j] = T(c[i * N + j]) * s;
        }
    });
    if (y.grad) {
        T* wq = tape.scratch(N * K);
        kernels::unpack_bitplanes(wv, ws, N, K, wq);
        for (int64_t e = 0; e < N * K; ++e) wq[e] *= sw;
        T* f = sx;
        if (opt.omit_act_scale_in_grad) {
            f = tape.scratch(M);
            std::fill(f, f + M, T(1));
        }
        auto& n = tape.record(&q4_linear_backward<T>);
        n.in[0] = x;
        n.in[1] = W;
        n.out = y;
        n.saved[0] = wq;
        n.saved[1] = f;
        n.saved[2] = reinterpret_cast<T*>(xv);
        n.saved[3] = W.grad ? tape.scratch(M * K) : nullptr;
    }
    return y;
}

// x̃ = s_x · t(x) per row (the STE's linearisation point for dW), for tests and the finite-difference table.
template <class T>
void q4_dequantize_activations(const T* x, int64_t M, int64_t K, T* out) {
    std::vector<uint8_t> v(size_t(M * kernels::bitplane_bytes(K))), s(v.size());
    std::vector<T> mean(static_cast<size_t>(M));
    kernels::requantize_rows(x, M, K, v.data(), s.data(), mean.data());
    kernels::unpack_bitplanes(v.data(), s.data(), M, K, out);
    for (int64_t i = 0; i < M; ++i)
        for (int64_t k = 0; k < K; ++k) out[i * K + k] *= mean[size_t(i)] + T(1e-8);
}

// W̃ = s_W · t(W).
template <class T>
void q4_dequantize_weights(const T* W, int64_t N, int64_t K, T* out) {
    std::vector<uint8_t> v(size_t(N * kernels::bitplane_bytes(K))), s(v.size());
    const T sw = kernels::quantize_weight_planes(W, N, K, v.data(), s.data());
    kernels::unpack_bitplanes(v.data(), s.data(), N, K, out);
    for (int64_t e = 0; e < N * K; ++e) out[e] *= sw;
}

}  // namespace flashlm::ops
