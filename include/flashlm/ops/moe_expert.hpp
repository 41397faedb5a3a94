#pragma once
// One ternary GLU expert of a sparse MoE layer (FlashLM v6.1 "SUPERNOVA II", VARIANTS.md §8.3) as a
// single tape node:
//   xe = z[rows]  (the n rows the expert serves);  ye = W̃_down (SiLU(xe W̃_gateᵀ) ⊙ xe W̃_upᵀ)
// with the three projections Q3 BitLinears (ops/bitlinear_median.hpp). The same numbers as the chain
// embedding → bitlinear_median ×2 → swiglu → bitlinear_median (the backward calls the same kernels in the
// same order), but the tape keeps only the gate and up pre-activations [n, d_ffn] (no gradients) and ye:
// the chain kept xe, both pre-activations and the SwiGLU output, each with a gradient of its size — about
// 5× the expert's memory. xe and SiLU(g) ⊙ u are recomputed in the backward (a row copy and an
// elementwise pass) into a workspace shared by every expert of every layer, since tape nodes run one at a
// time. rows must stay alive until the backward (ops::Routing does).
// Gradients reach z and, through the clipped STE, the three weights.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/bitlinear_median.hpp"
#include "flashlm/ops/prenorm_residual.hpp"
#include "flashlm/ops/swiglu.hpp"

namespace flashlm::ops {

namespace detail {
// Every buffer starts on a 64-byte boundary like the arena's: Eigen peels unaligned heads of
// elementwise loops with scalar code (its scalar exp differs from the vector one in the last bit), so
// the same numbers as the unfused chain need the same alignment.
inline int64_t aligned16(int64_t n) { return (n + 15) / 16 * 16; }
}  // namespace detail

// Workspace elements expert_glu_median needs for up to n rows: three [n, F] and two [n, D] buffers.
inline int64_t expert_glu_work_size(int64_t n, int64_t D, int64_t F) {
    return 3 * detail::aligned16(n * F) + 2 * detail::aligned16(n * D);
}

namespace detail {
template <class T>
void gather_rows_into(const T* z, const int32_t* rows, int64_t n, int64_t D, T* out) {
    parallel_for(n, n * D, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) std::memcpy(out + r * D, z + int64_t(rows[r]) * D, size_t(D) * sizeof(T));
    });
}
}  // namespace detail

template <class T>
void expert_glu_median_backward(Node<T>& n) {
    const Tensor<T>&z = n.in[0], &Wg = n.in[1], &Wu = n.in[2], &Wd = n.in[3];
    const int64_t R = n.out.rows(), D = z.cols(), F = Wg.dim(0);
    const int32_t* rows = n.ids;
    const T* G = n.saved[0];
    const int64_t nf = detail::aligned16(R * F), fd = detail::aligned16(F * D);
    const T* U = G + nf;
    T* wqg = n.saved[1];
    T* wqu = wqg + fd;
    T* wqd = wqu + fd;
    const T* alpha = wqd + fd;
    T* work = n.saved[2];
    T *b1 = work, *b2 = b1 + nf, *xe = work + 3 * nf, *dxe = xe + detail::aligned16(R * D);
    const bool want_x = z.grad != nullptr;
    // The passes below overwrite their outputs instead of adding into zeroed buffers: adding to zero
    // gives the value itself, so the bits are those of the chain's accumulating backward.
    // down projection: x = S = SiLU(G) ⊙ U (recomputed), dS written
    swiglu_raw(G, U, b1, R * F);
    bitlinear_median_backward_raw(b1, b2, Wd.data, Wd.grad, wqd, alpha[2], n.out.grad, R, D, F, false);
    // SwiGLU: dG over dS (b2), dU over U (its last reader is this pass)
    T* dU = const_cast<T*>(U);
    prenorm_detail::swiglu_backward_inplace(G, dU, b2, R * F);
    // up, then gate (reverse recording order), both reading xe, into dxe
    detail::gather_rows_into(z.data, rows, R, D, xe);
    bitlinear_median_backward_raw(xe, want_x ? dxe : nullptr, Wu.data, Wu.grad, wqu, alpha[1], dU, R, F, D, false);
    bitlinear_median_backward_raw(xe, want_x ? dxe : nullptr, Wg.data, Wg.grad, wqg, alpha[0], b2, R, F, D);
    if (!want_x) return;
    auto add_row = [&](int64_t r) {
        T* dst = z.grad + int64_t(rows[r]) * D;
        const T* src = dxe + r * D;
        for (int64_t c = 0; c < D; ++c) dst[c] += src[c];
    };
    if (n.i[0])  // rows without repeats (an expert's tokens under top-k routing): each thread its own rows
        parallel_for(R, R * D, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) add_row(r);
        });
    else  // serial like embedding_backward: a row index may repeat in general
        for (int64_t r = 0; r < R; ++r) add_row(r);
}

// z: [M, D]; rows[0 … n) in [0, M); Wg, Wu: [F, D]; Wd: [D, F]. work: expert_glu_work_size(n, D, F)
// elements alive until the backward; its contents need not survive between the passes (both recompute
// what they read), so one buffer serves every expert node of a tape. Returns ye [n, D].
template <class T>
Tensor<T> expert_glu_median(Tape<T>& tape, const Tensor<T>& z, const int32_t* rows, int64_t n, const Tensor<T>& Wg,
                            const Tensor<T>& Wu, const Tensor<T>& Wd, T* work) {
    FLASHLM_CHECK(Wg.shape.rank == 2, "expert_glu_median: gate weight " + Wg.shape.str() + " is not a matrix");
    const int64_t M = z.rows(), D = z.cols(), F = Wg.dim(0);
    const Shape up{F, D}, down{D, F};
    FLASHLM_CHECK(Wg.shape == up && Wu.shape == up && Wd.shape == down,
                  "expert_glu_median: input " + z.shape.str() + ", weights " + Wg.shape.str() + ", " + Wu.shape.str() +
                      ", " + Wd.shape.str());
    // Row indices checked, and whether any repeats (the backward then adds serially).
    thread_local std::vector<uint8_t> seen;
    seen.assign(size_t(M), 0);
    bool unique = true;
    for (int64_t r = 0; r < n; ++r) {
        FLASHLM_CHECK(rows[r] >= 0 && rows[r] < M, "expert_glu_median: row index outside " + z.shape.str());
        unique = unique && !seen[size_t(rows[r])];
        seen[size_t(rows[r])] = 1;
    }
    const bool rec = tape.recording({z, Wg, Wu, Wd});
    const int64_t nf = detail::aligned16(n * F), fd = detail::aligned16(F * D);
    T* GU = tape.scratch(std::max<int64_t>(2 * nf, 1));
    T* G = GU;
    T* U = GU + nf;
    T* wq = tape.scratch(3 * fd + 3);
    T *wqg = wq, *wqu = wq + fd, *wqd = wqu + fd, *alpha = wqd + fd;
    alpha[0] = quantize_median(Wg.data, wqg, F * D);
    alpha[1] = quantize_median(Wu.data, wqu, F * D);
    alpha[2] = quantize_median(Wd.data, wqd, D * F);
    T* xe = work + 3 * nf;
    T* S = work;
    detail::gather_rows_into(z.data, rows, n, D, xe);
    kernels::gemm_nt(n, F, D, xe, wqg, G, false);
    kernels::gemm_nt(n, F, D, xe, wqu, U, false);
    swiglu_raw(G, U, S, n * F);
    Tensor<T> y = tape.make(Shape{n, D}, rec);
    kernels::gemm_nt(n, D, F, S, wqd, y.data, false);
    if (y.grad) {
        auto& nd = tape.record(&expert_glu_median_backward<T>);
        nd.in[0] = z, nd.in[1] = Wg, nd.in[2] = Wu, nd.in[3] = Wd;
        nd.out = y;
        nd.saved[0] = GU;
        nd.saved[1] = wq;
        nd.saved[2] = work;
        nd.ids = rows;
        nd.i[0] = unique;
    }
    return y;
}

}  // namespace flashlm::ops
