#pragma once
// SUPERNOVA II's parallel sub-layer (VARIANTS.md §8.3) as one tape node:
//   h = RMSNorm(x)
//   out = x + reasoning(h) + state_gate(h) + slot_mem(h)
//   reasoning(h)  = out_proj(Σ_s w_s · proj_s(h)),  w = softmax(h W_rᵀ + b_r)      (float router)
//   state_gate(h) = gate(RMSNorm_R(σ(planner h) ⊙ tanh(executor h)))
//   slot_mem(h)   = out_proj_m(softmax(query(h) slotsᵀ · scale) slots)
// Every projection is BitLinear-Q3 (ops/bitlinear_median.hpp: median threshold, ±1 unscaled, clipped STE).
// As an op chain this is ~25 nodes per layer, seven of them skinny products of the same h and three
// more whose sum is added to x. Here the S + 3 input projections are one product
//   Y = h [proj_0; …; proj_{S−1}; planner; executor; query]̃ᵀ        ([M, S·R + 2R + D])
// and the three output projections one product of depth 2R + D over
//   Z = [Σ_s w_s Y_s | RMSNorm_R(σ(Y_p) ⊙ tanh(Y_e)) | A slots]     ([M, 2R + D])
// with the weights' ternarisations side by side: two products forward where the chain ran S + 6, and
// the backward's input gradient is one product of depth S·R + 2R + D instead of S + 3 accumulating ones.
// Everything between the products runs row by row in one pass. Each weight keeps its own median α and
// clip mask. The node keeps h, Y (with σ and tanh applied to the planner's and executor's columns), Z,
// the router weights w, the slot weights A and both norms' row scales; the output takes over x's
// gradient buffer as the pre-norm residual nodes do (x has no later consumer).
// Numbers: the chain's to rounding (the three branch outputs and the input gradient's terms are summed
// in another order); tests/variants/supernova2_fused.cpp bounds it.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "flashlm/ops/bitlinear_median.hpp"
#include "flashlm/ops/prenorm_residual.hpp"
#include "flashlm/ops/rmsnorm.hpp"
#include "flashlm/ops/softmax.hpp"

namespace flashlm::ops {

// The sub-layer's parameters (tensors of the model's parameter store). R: the reasoning and state-gate
// width; S: the number of reasoning scales (≤ k_max_scales); n: slots.
template <class T>
struct ParallelBranch {
    static constexpr int k_max_scales = 16;
    Tensor<T> norm;                         // [D]     norm2.scale
    Tensor<T> router_w, router_b;           // [S, D], [S]  reasoning.router (float)
    std::array<Tensor<T>, k_max_scales> proj;  // [R, D] reasoning.projections.s
    int64_t scales = 0;
    Tensor<T> out_proj;                     // [D, R]  reasoning.out_proj
    Tensor<T> planner, executor;            // [R, D]
    Tensor<T> sg_norm;                      // [R]     state_gate.norm.scale
    Tensor<T> sg_gate;                      // [D, R]  state_gate.gate
    Tensor<T> slots;                        // [n, D]  slot_mem.slots (float)
    Tensor<T> query, slot_out;              // [D, D]  slot_mem.query_proj, slot_mem.out_proj
    double eps = 1e-6, sg_eps = 1e-6, slot_scale = 1;
};

namespace branch_detail {

// Σ a⊙b with 16 independent partial sums, so the compiler vectorises it (a plain loop is one dependent chain).
template <class T>
T dot(const T* a, const T* b, int64_t n) {
    constexpr int64_t w = 16;
    T acc[w] = {};
    int64_t c = 0;
    for (; c + w <= n; c += w)
        for (int64_t l = 0; l < w; ++l) acc[l] += a[c + l] * b[c + l];
    T s = 0;
    for (int64_t l = 0; l < w; ++l) s += acc[l];
    for (; c < n; ++c) s += a[c] * b[c];
    return s;
}

// Sizes and offsets of Y's and Z's column blocks.
struct Layout {
    int64_t M, D, R, S, n;
    int64_t yp() const { return S * R; }          // planner
    int64_t ye() const { return S * R + R; }      // executor
    int64_t yq() const { return S * R + 2 * R; }  // query
    int64_t ny() const { return S * R + 2 * R + D; }
    int64_t nz() const { return 2 * R + D; }      // [mixed | state | slot read]
};

// The S + 3 input weights in Y's row order, and the three output weights in Z's column order.
template <class T>
void input_weights(const ParallelBranch<T>& p, const Tensor<T>** w) {
    for (int64_t s = 0; s < p.scales; ++s) w[s] = &p.proj[size_t(s)];
    w[p.scales] = &p.planner, w[p.scales + 1] = &p.executor, w[p.scales + 2] = &p.query;
}
template <class T>
void output_weights(const ParallelBranch<T>& p, const Tensor<T>** w) {
    w[0] = &p.out_proj, w[1] = &p.sg_gate, w[2] = &p.slot_out;
}

// The node's context, copied into the arena (trivially copyable, lives until the tape's reset).
template <class T>
struct Saved {
    ParallelBranch<T> p;
    Layout l;
    T *r, *h, *Y, *Z, *w, *A, *r2, *wq_in, *wq_out, *alpha;
};

}  // namespace branch_detail

template <class T>
void parallel_branch_residual_backward(Node<T>& n) {
    using namespace branch_detail;
    using prenorm_detail::a16;
    const auto& s = *reinterpret_cast<const Saved<T>*>(n.saved[0]);
    const ParallelBranch<T>& p = s.p;
    const Layout l = s.l;
    const int64_t M = l.M, D = l.D, R = l.R, S = l.S, ns = l.n, ny = l.ny(), nz = l.nz();
    const Tensor<T>& x = n.in[0];
    const T* dout = n.out.grad;  // x's own gradient buffer when shared: read before the norm's backward adds to it
    // The state norm's gain and the slots sum over rows: partial sums per fixed block of rows, added in
    // block order, so the bits do not depend on the thread count.
    constexpr int64_t k_block = 64;
    const int64_t blocks = (M + k_block - 1) / k_block;
    const int64_t part = a16(R + ns * D);
    T* ws = prenorm_detail::tape_of(n).workspace(a16(M * nz) + a16(M * ny) + a16(M * D) + a16(M * S) +
                                                a16(std::max(ny, D) * std::max(nz, D)) + blocks * part);
    T *dZ = ws, *dY = dZ + a16(M * nz), *dh = dY + a16(M * ny), *drl = dh + a16(M * D), *G = drl + a16(M * S);
    T* parts = G + a16(std::max(ny, D) * std::max(nz, D));
    const Tensor<T>* wi[ParallelBranch<T>::k_max_scales + 3];
    const Tensor<T>* wo[3];
    input_weights(p, wi);
    output_weights(p, wo);

    // output projections: dZ = dout W̃_out, dW_out = doutᵀ Z (clipped per weight)
    ternary_linear_dx(M, nz, D, dout, s.wq_out, dZ, false);
    kernels::gemm_tn(D, nz, M, dout, s.Z, G, false);
    for (int k = 0, c0 = 0; k < 3; c0 += int(wo[k]->dim(1)), ++k) median_clipped_add(*wo[k], s.alpha[S + 3 + k], G, nz, c0);

    // Z's three parts back to Y (and the routers, the state norm's gain and the slots), row by row
    std::fill(parts, parts + blocks * part, T(0));
    const T* gs = p.sg_norm.data;
    const T* sl = p.slots.data;
    const T sc = T(p.slot_scale);
    parallel_for(blocks, M * (ny + nz + 4 * ns * D), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
            T* dg = parts + b * part;  // [R] state-norm gain, then [n, D] slots
            T* dsl = dg + R;
            T dw[ParallelBranch<T>::k_max_scales];
            for (int64_t r = b * k_block; r < std::min(M, (b + 1) * k_block); ++r) {
                const T* y = s.Y + r * ny;
                const T* dz = dZ + r * nz;
                T* dy = dY + r * ny;
                // reasoning: mixed = Σ w_s Y_s
                const T* w = s.w + r * S;
                for (int64_t k = 0; k < S; ++k) {
                    dw[k] = dot(dz, y + k * R, R);
                    for (int64_t c = 0; c < R; ++c) dy[k * R + c] = w[k] * dz[c];
                }
                softmax_row_backward(w, dw, drl + r * S, S, false);
                // state gate: Z_s = RMSNorm(a) ⊙ g, a = σ(Y_p) ⊙ tanh(Y_e) (Y holds σ(Y_p) and tanh(Y_e))
                {
                    const T* sp = y + l.yp();
                    const T* th = y + l.ye();
                    const T* dn = dz + R;
                    const T ri = s.r2[r];
                    T dotv = 0;
                    for (int64_t c = 0; c < R; ++c) {
                        const T a = sp[c] * th[c];
                        dotv += dn[c] * gs[c] * a;
                        dg[c] += dn[c] * a * ri;
                    }
                    const T kk = dotv * ri * ri / T(R);
                    for (int64_t c = 0; c < R; ++c) {
                        const T g = ri * (dn[c] * gs[c] - sp[c] * th[c] * kk);
                        dy[l.yp() + c] = g * th[c] * sp[c] * (T(1) - sp[c]);
                        dy[l.ye() + c] = g * sp[c] * (T(1) - th[c] * th[c]);
                    }
                }
                // slot memory: Z_m = A slots, A = softmax(scale · q slotsᵀ)
                {
                    const T* dm = dz + 2 * R;
                    const T* a = s.A + r * ns;
                    const T* q = y + l.yq();
                    T dA[64];
                    for (int64_t j = 0; j < ns; ++j) {
                        dA[j] = dot(dm, sl + j * D, D);
                        T* dsj = dsl + j * D;
                        for (int64_t c = 0; c < D; ++c) dsj[c] += a[j] * dm[c];
                    }
                    softmax_row_backward(a, dA, dA, ns, false);
                    T* dq = dy + l.yq();
                    for (int64_t c = 0; c < D; ++c) dq[c] = 0;
                    for (int64_t j = 0; j < ns; ++j) {
                        const T g = sc * dA[j];
                        const T* sj = sl + j * D;
                        T* dsj = dsl + j * D;
                        for (int64_t c = 0; c < D; ++c) dq[c] += g * sj[c], dsj[c] += g * q[c];
                    }
                }
            }
        }
    });
    for (int64_t b = 0; b < blocks; ++b) {
        const T* pt = parts + b * part;
        if (p.sg_norm.grad)
            for (int64_t c = 0; c < R; ++c) p.sg_norm.grad[c] += pt[c];
        if (p.slots.grad)
            for (int64_t i = 0; i < ns * D; ++i) p.slots.grad[i] += pt[R + i];
    }
    // router: dW_r += drlᵀ h, db_r += Σ drl; its share of dh is added below
    if (p.router_w.grad) kernels::gemm_tn(S, D, M, drl, s.h, p.router_w.grad, true);
    if (p.router_b.grad)
        for (int64_t r = 0; r < M; ++r)
            for (int64_t k = 0; k < S; ++k) p.router_b.grad[k] += drl[r * S + k];

    // input projections: dh = dY W̃_in + drl W_r, dW_in = dYᵀ h (clipped per weight)
    ternary_linear_dx(M, D, ny, dY, s.wq_in, dh, false);
    kernels::gemm_nn(M, D, S, drl, p.router_w.data, dh, true);
    kernels::gemm_tn(ny, D, M, dY, s.h, G, false);
    for (int64_t k = 0, r0 = 0; k < S + 3; r0 += wi[k]->dim(0), ++k) median_clipped_add(*wi[k], s.alpha[k], G + r0 * D, D, 0);
    rmsnorm_backward_raw(x.data, p.norm.data, s.r, dh, x.grad, p.norm.grad, M, D);
}

// x: [..., D] → x + the three branches, same shape.
template <class T>
Tensor<T> parallel_branch_residual(Tape<T>& tape, const Tensor<T>& x, const ParallelBranch<T>& p) {
    using namespace branch_detail;
    using prenorm_detail::a16;
    static_assert(std::is_trivially_copyable_v<Saved<T>>);
    const int64_t D = x.cols(), M = x.rows(), S = p.scales, R = p.planner.dim(0), ns = p.slots.dim(0);
    // Messages are built only on failure: a training step allocates nothing (tests/test_alloc.cpp).
    auto sh = [&] { return "parallel_branch_residual: input " + x.shape.str(); };
    FLASHLM_CHECK(S >= 1 && S <= ParallelBranch<T>::k_max_scales, sh() + ", " + std::to_string(S) + " scales (1..16)");
    FLASHLM_CHECK(R >= 1 && R <= 64 * 1024 && ns >= 1 && ns <= 64, sh() + ": need 1 <= n_slots <= 64 and a positive width");
    auto check = [&](const Tensor<T>& t, Shape want, const char* what) {
        FLASHLM_CHECK(t.shape == want, sh() + ": " + what + " is " + t.shape.str() + ", expected " + want.str());
    };
    check(p.norm, Shape{D}, "norm gain");
    check(p.router_w, Shape{S, D}, "router weight");
    check(p.router_b, Shape{S}, "router bias");
    for (int64_t k = 0; k < S; ++k) check(p.proj[size_t(k)], Shape{R, D}, "a reasoning projection");
    check(p.out_proj, Shape{D, R}, "reasoning out_proj");
    check(p.planner, Shape{R, D}, "planner");
    check(p.executor, Shape{R, D}, "executor");
    check(p.sg_norm, Shape{R}, "state norm gain");
    check(p.sg_gate, Shape{D, R}, "state gate");
    check(p.slots, Shape{ns, D}, "slots");
    check(p.query, Shape{D, D}, "query_proj");
    check(p.slot_out, Shape{D, D}, "slot out_proj");
    const Layout l{M, D, R, S, ns};
    const int64_t ny = l.ny(), nz = l.nz();
    const Tensor<T>* wi[ParallelBranch<T>::k_max_scales + 3];
    const Tensor<T>* wo[3];
    input_weights(p, wi);
    output_weights(p, wo);
    bool rec = tape.recording({x, p.norm, p.router_w, p.router_b, p.sg_norm, p.slots});
    for (int64_t k = 0; k < S + 3; ++k) rec = rec || tape.recording({*wi[k]});
    for (int k = 0; k < 3; ++k) rec = rec || tape.recording({*wo[k]});

    // the weights' ternarisations, side by side
    T* wq_in = tape.scratch(a16(ny * D));
    T* wq_out = tape.scratch(a16(D * nz));
    T* alpha = tape.scratch(a16(S + 6));
    T* work = tape.workspace(D * std::max(D, R));  // a median's copy (double)
    for (int64_t k = 0, r0 = 0; k < S + 3; r0 += wi[k]->dim(0), ++k) alpha[k] = quantize_median_into(*wi[k], wq_in + r0 * D, D, 0, work);
    for (int k = 0, c0 = 0; k < 3; c0 += int(wo[k]->dim(1)), ++k) alpha[S + 3 + k] = quantize_median_into(*wo[k], wq_out, nz, c0, work);

    T* r = tape.scratch(a16(M));
    T* h = tape.scratch(a16(M * D));
    rmsnorm_raw(x.data, p.norm.data, p.eps, h, r, M, D);
    T* Y = tape.scratch(a16(M * ny));
    ternary_linear_forward(M, ny, D, h, wq_in, Y);  // int8 under --quant int8, as BitLinear
    T* Z = tape.scratch(a16(M * nz));
    T* w = tape.scratch(a16(M * S));
    T* A = tape.scratch(a16(M * ns));
    T* r2 = tape.scratch(a16(M));
    const T* gs = p.sg_norm.data;
    const T* sl = p.slots.data;
    const T sc = T(p.slot_scale), sg_eps = T(p.sg_eps);
    using Map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
    parallel_for(M, M * (ny + nz + 2 * ns * D), [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
            const T* hi = h + i * D;
            T* y = Y + i * ny;
            T* z = Z + i * nz;
            // reasoning: w = softmax(h W_rᵀ + b), mixed = Σ w_s Y_s
            T* wi_ = w + i * S;
            for (int64_t k = 0; k < S; ++k) wi_[k] = dot(hi, p.router_w.data + k * D, D) + p.router_b.data[k];
            softmax_row(wi_, wi_, S);
            for (int64_t c = 0; c < R; ++c) z[c] = 0;
            for (int64_t k = 0; k < S; ++k)
                for (int64_t c = 0; c < R; ++c) z[c] += wi_[k] * y[k * R + c];
            // state gate: RMSNorm_R(σ(Y_p) ⊙ tanh(Y_e)) ⊙ g. Y_p and Y_e are replaced by σ(Y_p) and tanh(Y_e),
            // all the backward needs of them (Eigen's vectorised exp and tanh: scalar ones were ~10 % of the node)
            Map sp(y + l.yp(), R), th(y + l.ye(), R);
            sp = (T(1) + (-sp).exp()).inverse();
            th = th.tanh();
            T* zs = z + R;
            T ss = 0;
            for (int64_t c = 0; c < R; ++c) {
                const T a = sp[c] * th[c];
                zs[c] = a;
                ss += a * a;
            }
            const T ri = T(1) / std::sqrt(ss / T(R) + sg_eps);
            r2[i] = ri;
            for (int64_t c = 0; c < R; ++c) zs[c] = zs[c] * ri * gs[c];
            // slot memory: A = softmax(scale · q slotsᵀ), read = A slots
            const T* q = y + l.yq();
            T* a = A + i * ns;
            for (int64_t j = 0; j < ns; ++j) a[j] = dot(q, sl + j * D, D) * sc;
            softmax_row(a, a, ns);
            T* zm = z + 2 * R;
            for (int64_t c = 0; c < D; ++c) zm[c] = 0;
            for (int64_t j = 0; j < ns; ++j) {
                const T* sj = sl + j * D;
                for (int64_t c = 0; c < D; ++c) zm[c] += a[j] * sj[c];
            }
        }
    });
    Tensor<T> out = prenorm_detail::residual_output(tape, x, rec);
    ternary_linear_forward(M, D, nz, Z, wq_out, out.data);
    prenorm_detail::add_residual(x.data, out.data, M * D);
    if (rec) {
        auto& n = tape.record(&parallel_branch_residual_backward<T>);
        T* ctx = tape.scratch(a16(int64_t((sizeof(Saved<T>) + sizeof(T) - 1) / sizeof(T))));
        Saved<T> sv{p, l, r, h, Y, Z, w, A, r2, wq_in, wq_out, alpha};
        std::memcpy(static_cast<void*>(ctx), &sv, sizeof sv);
        n.in[0] = x;
        n.out = out;
        n.saved[0] = ctx;
        n.ctx = &tape;
    }
    return out;
}

}  // namespace flashlm::ops
