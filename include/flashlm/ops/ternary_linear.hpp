#pragma once
// The two products of a ternary linear layer that read its quantised weight W̃ (every row α_r · {-1, 0, 1}),
// for every ternary op's forward and backward: y = x W̃ᵀ and dx = dy W̃ (dW = dyᵀ x reads no W̃).
// In float, each goes to the first that applies:
//   - the forward under `--quant int8`: the int8 kernel (ops/bitlinear_int8.hpp);
//   - under `--matmul bf16`: the bf16 GEMM (twice the f32 FMA rate beats the add kernel below);
//   - the add kernel (kernels/ternary_add_gemm.hpp), which refuses a W̃ not of that form;
//   - the float GEMM (kernels/gemm.hpp), as for any linear layer. Doubles always take it.
#include <type_traits>

#include "flashlm/kernels/gemm.hpp"
#include "flashlm/kernels/ternary_add_gemm.hpp"
#include "flashlm/ops/bitlinear_int8.hpp"
#include "flashlm/ops/linear.hpp"

namespace flashlm::ops {

namespace ternary_detail {
inline bool add_kernel() { return kernels::matmul_mode() != kernels::Matmul::bf16; }
}  // namespace ternary_detail

// y[M, N] = x[M, K] · wqᵀ.
template <class T>
void ternary_linear_forward(int64_t M, int64_t N, int64_t K, const T* x, const T* wq, T* y) {
    if constexpr (std::is_same_v<T, float>) {
        if (int8_forward()) {
            // Grown on the first step and reused: a training step allocates nothing.
            thread_local kernels::TernaryI8Weights w;
            thread_local kernels::Int8Activations a;
            kernels::pack_ternary_i8(wq, N, K, w);
            kernels::quantize_activations_u8(x, M, K, a);
            kernels::ternary_gemm_i8(w, a, y);
            return;
        }
        if (ternary_detail::add_kernel() && kernels::ternary_add_nt(M, N, K, x, wq, y, false)) return;
    }
    kernels::gemm_nt(M, N, K, x, wq, y, false);
}

// dx[M, K] (+)= dy[M, N] · wq (wq: [N, K]).
template <class T>
void ternary_linear_dx(int64_t M, int64_t K, int64_t N, const T* dy, const T* wq, T* dx, bool accumulate) {
    if constexpr (std::is_same_v<T, float>)
        if (ternary_detail::add_kernel() && kernels::ternary_add_nn(M, K, N, dy, wq, dx, accumulate)) return;
    kernels::gemm_nn(M, K, N, dy, wq, dx, accumulate);
}

// linear_backward_raw (ops/linear.hpp) for a ternary wq: dx through ternary_linear_dx.
template <class T>
void ternary_linear_backward_raw(const Tensor<T>& x, const T* wq, T* dW, int64_t N, const Tensor<T>& out,
                                 bool dx_accumulate = true) {
    const int64_t M = x.rows(), K = x.cols();
    if (x.grad) ternary_linear_dx(M, K, N, out.grad, wq, x.grad, dx_accumulate);
    if (dW) kernels::gemm_tn(N, K, M, out.grad, x.data, dW, true);
}

}  // namespace flashlm::ops
