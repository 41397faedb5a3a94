#pragma once
// The two pre-norm residual sublayers of FlashLM v4 "Bolt" (VARIANTS.md §5), each one tape node:
//   prenorm_gated_conv_residual:  out = x + W̃_down(CausalDWConv(v) ⊙ σ(g)),  [g, v] = RMSNorm(x) W̃_upᵀ
//   prenorm_ternary_glu_residual: out = x + W̃_down(SiLU(h W̃_gateᵀ) ⊙ h W̃_upᵀ),  h = RMSNorm(x)
// with Q1 absmean BitLinears (ops/bitlinear.hpp), or with the float weights themselves
// (BranchWeights::dense: CORTEX-III/VI's token mixer and SwiGLU FFN, VARIANTS.md §10, whose blocks have
// the same two sublayers with nn::Linear). The numbers are the chain rmsnorm → bitlinear (linear) →
// gated_causal_conv → bitlinear → add (resp. rmsnorm → bitlinear ×2 → swiglu → bitlinear → add): both
// passes call the same loops and GEMMs in the same order. What changes is the memory: the chain kept
// every intermediate activation and a gradient of its size for the whole step; these nodes keep only
// what the backward cannot rebuild without a GEMM — the up projection [g, v] (mixer), the gate and up
// pre-activations (GLU), the RMSNorm row scales and the quantised weights. RMSNorm(x), the depthwise
// conv and its gate, and SiLU(a) ⊙ b are recomputed in the backward, and every
// inner gradient lives in the tape's workspace, which all nodes share since they run one at a time.
// The output also takes over x's gradient buffer: out's gradient is x's gradient plus the branch's, so
// the backward reads the incoming gradient from x.grad and then adds the branch's contribution in place.
// A stack of these layers therefore keeps one residual gradient instead of two per sublayer. This needs
// x to have no other consumer recorded after this op (its backward would add into the gradient this op
// reads as its own); Bolt's blocks satisfy it. When x has no gradient buffer, out gets its own.
#include <algorithm>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/bitlinear.hpp"
#include "flashlm/ops/conv1d.hpp"
#include "flashlm/ops/gated_conv.hpp"
#include "flashlm/ops/rmsnorm.hpp"
#include "flashlm/ops/swiglu.hpp"

namespace flashlm::ops {

// What the branch GEMMs multiply by: W's Q1 absmean ternarisation (Bolt), or W (CORTEX's float layers).
enum class BranchWeights : int64_t { absmean_ternary = 0, dense = 1 };

namespace prenorm_detail {
// The weight matrix a branch GEMM uses: W itself, or its ternarisation written to buf (n elements).
template <class T>
const T* branch_weight(const Tensor<T>& W, T* buf, BranchWeights kind) {
    if (kind == BranchWeights::dense) return W.data;
    quantize_absmean(W.data, buf, W.numel());
    return buf;
}

// y = x wᵀ as ops::linear (dense) or ops::bitlinear (ternary: int8 under --quant int8) computes it.
template <class T>
void branch_forward(int64_t M, int64_t N, int64_t K, const T* x, const T* w, T* y, BranchWeights kind) {
    if (kind == BranchWeights::dense)
        kernels::gemm_nt(M, N, K, x, w, y, false);
    else
        ternary_linear_forward(M, N, K, x, w, y);
}
// The backward of branch_forward: dx (+)= dy w, dW += dyᵀ x.
template <class T>
void branch_backward(const Tensor<T>& x, const T* w, T* dW, int64_t N, const Tensor<T>& out, bool dx_accumulate,
                     BranchWeights kind) {
    if (kind == BranchWeights::dense)
        linear_backward_raw(x, w, dW, N, out, dx_accumulate);
    else
        ternary_linear_backward_raw(x, w, dW, N, out, dx_accumulate);
}

// Sub-buffers start on 64-byte boundaries like arena blocks: Eigen's elementwise loops peel unaligned
// heads with scalar code, whose exp differs from the vector one in the last bit.
inline int64_t a16(int64_t n) { return (n + 15) / 16 * 16; }

template <class T>
Tape<T>& tape_of(const Node<T>& n) {
    return *static_cast<Tape<T>*>(const_cast<void*>(n.ctx));
}

// out shares x's gradient (see the header comment); a fresh one when x has none.
template <class T>
Tensor<T> residual_output(Tape<T>& tape, const Tensor<T>& x, bool rec) {
    if (rec && x.grad) return Tensor<T>(tape.scratch(x.numel()), x.grad, x.shape);
    return tape.make(x.shape, rec);
}

// y = x + y (the residual add after the branch's GEMM wrote y; the same sum as ops::add(x, branch)).
template <class T>
void add_residual(const T* x, T* y, int64_t N) {
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y[i] = x[i] + y[i];
    });
}

// swiglu_backward_raw's numbers without zeroed output buffers: dy is overwritten with da = dy ⊙ b ⊙
// σ(a)(1 + a(1 − σ(a))) and b with db = dy ⊙ SiLU(a), chunk by chunk (each chunk's dy is copied first).
// Adding a value to a zero gives that value, so assigning yields the bits of the += into zeroed buffers;
// the destinations have the same alignment, so Eigen vectorises the same elements.
template <class T>
void swiglu_backward_inplace(const T* a, T* b, T* dy, int64_t N) {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    using Map = Eigen::Map<Arr, Eigen::Unaligned>;
    using CMap = Eigen::Map<const Arr, Eigen::Unaligned>;
    parallel_for(N, 8 * N, [&](int64_t i0, int64_t i1) {
        constexpr int64_t chunk = 256;
        alignas(64) T sbuf[chunk];
        alignas(64) T gbuf[chunk];
        for (int64_t c0 = i0; c0 < i1; c0 += chunk) {
            const int64_t len = std::min(chunk, i1 - c0);
            Map s(sbuf, len), gv(gbuf, len), bv(b + c0, len);
            CMap av(a + c0, len);
            gv = Map(dy + c0, len);
            s = T(1) / (T(1) + (-av).exp());
            Map(dy + c0, len) = gv * bv * s * (T(1) + av * (T(1) - s));
            bv = gv * av * s;
        }
    });
}

template <class T>
void zero(T* p, int64_t n) {
    std::fill(p, p + n, T(0));
}
}  // namespace prenorm_detail

// saved: [0] row scales r [M], [1] u = [g, v] [M, 2D], [3] transposed conv weight | conv weight partials.
template <class T>
void prenorm_gated_conv_residual_backward(Node<T>& n) {
    using namespace prenorm_detail;
    const Tensor<T>&x = n.in[0], &g = n.in[1], &Wup = n.in[2], &cw = n.in[3], &Wdown = n.in[4];
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2), M = B * L, K = cw.dim(2);
    T *r = n.saved[0], *u = n.saved[1];
    T *wt = n.saved[3], *part = wt + a16(K * D);
    const int64_t md = a16(M * D);
    T* ws = tape_of(n).workspace(5 * md + a16(2 * D * D) + a16(D * D));
    // h: the conv output; A: c, dh, then h1; Bf: dc, then dh1; du: [M, 2D]
    T *h = ws, *A = ws + md, *Bf = ws + 2 * md, *du = ws + 3 * md;
    // The quantised weights are rebuilt rather than kept: two passes over the weights, same values.
    const auto kind = BranchWeights(n.i[0]);
    const T* wq_up = branch_weight(Wup, ws + 5 * md, kind);
    const T* wq_down = branch_weight(Wdown, ws + 5 * md + a16(2 * D * D), kind);
    // down: its input c = h ⊙ σ(g) recomputed (h too: K taps per element, against the GEMMs' D or 2D);
    // the residual's gradient is its output gradient
    conv::forward(u + D, 2 * D, wt, B, L, D, K, h);
    sigmoid_gate_raw(u, h, A, M, D);
    branch_backward(Tensor<T>(A, Bf, Shape{M, D}), wq_down, Wdown.grad, D, Tensor<T>(nullptr, n.out.grad, Shape{M, D}),
                    false, kind);
    // gated conv
    zero(du, 2 * M * D);
    if (cw.grad) zero(part, int64_t(max_threads()) * K * D);
    gated_causal_conv_backward_raw(u, du, h, Bf, A, wt, part, cw.grad, B, L, D, K);
    // up: its input h1 = RMSNorm(x) recomputed (r rewritten with the same values)
    rmsnorm_raw(x.data, g.data, n.f[0], A, r, M, D);
    branch_backward(Tensor<T>(A, Bf, Shape{M, D}), wq_up, Wup.grad, 2 * D, Tensor<T>(u, du, Shape{M, 2 * D}), false,
                    kind);
    rmsnorm_backward_raw(x.data, g.data, r, Bf, x.grad, g.grad, M, D);
}

// x: [B, T, D]; g: [D]; W_up: [2D, D]; conv weight: [D, 1, K]; W_down: [D, D]. Returns [B, T, D].
template <class T>
Tensor<T> prenorm_gated_conv_residual(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& g, const Tensor<T>& Wup,
                                      const Tensor<T>& cw, const Tensor<T>& Wdown, double eps = 1e-6,
                                      BranchWeights kind = BranchWeights::absmean_ternary) {
    using namespace prenorm_detail;
    FLASHLM_CHECK(x.shape.rank == 3, "prenorm_gated_conv_residual: input must be [B, T, D], got " + x.shape.str());
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2), M = B * L;
    FLASHLM_CHECK(g.numel() == D && Wup.shape == (Shape{2 * D, D}) && Wdown.shape == (Shape{D, D}) && cw.shape.rank == 3 &&
                      cw.dim(0) == D && cw.dim(1) == 1,
                  "prenorm_gated_conv_residual: input " + x.shape.str() + ", gain " + g.shape.str() + ", weights " +
                      Wup.shape.str() + ", " + cw.shape.str() + ", " + Wdown.shape.str());
    const int64_t K = cw.dim(2);
    const bool rec = tape.recording({x, g, Wup, cw, Wdown});
    const int64_t md = a16(M * D);
    T* ws = tape.workspace(3 * md + a16(2 * D * D) + a16(D * D));
    T *h1 = ws, *c = ws + md, *h = ws + 2 * md;
    T* r = tape.scratch(M);
    rmsnorm_raw(x.data, g.data, eps, h1, r, M, D);
    T* pack = tape.scratch(a16(K * D) + (rec ? int64_t(max_threads()) * K * D : 0));
    T* wt = pack;
    const T* wq_up = branch_weight(Wup, ws + 3 * md, kind);
    T* u = tape.scratch(2 * M * D);
    branch_forward(M, 2 * D, D, h1, wq_up, u, kind);
    for (int64_t ch = 0; ch < D; ++ch)  // [D, 1, K] → [K, D] as conv::transpose_weight
        for (int64_t j = 0; j < K; ++j) wt[j * D + ch] = cw.data[ch * K + j];
    conv::forward(u + D, 2 * D, wt, B, L, D, K, h);
    sigmoid_gate_raw(u, h, c, M, D);
    const T* wq_down = branch_weight(Wdown, ws + 3 * md + a16(2 * D * D), kind);
    Tensor<T> y = residual_output(tape, x, rec);
    branch_forward(M, D, D, c, wq_down, y.data, kind);
    add_residual(x.data, y.data, M * D);
    if (rec) {
        auto& n = tape.record(&prenorm_gated_conv_residual_backward<T>);
        n.in[0] = x, n.in[1] = g, n.in[2] = Wup, n.in[3] = cw, n.in[4] = Wdown;
        n.out = y;
        n.saved[0] = r, n.saved[1] = u, n.saved[3] = pack;
        n.f[0] = eps;
        n.i[0] = int64_t(kind);
        n.ctx = &tape;
    }
    return y;
}

// saved: [0] row scales r [M], [1] a | b (gate and up pre-activations, [M, H] each; the backward
// overwrites b with its gradient once nothing reads b any more).
template <class T>
void prenorm_ternary_glu_residual_backward(Node<T>& n) {
    using namespace prenorm_detail;
    const Tensor<T>&x = n.in[0], &g = n.in[1], &Wg = n.in[2], &Wu = n.in[3], &Wd = n.in[4];
    const int64_t D = x.cols(), M = x.rows(), H = Wg.dim(0);
    const int64_t mh = a16(M * H), md = a16(M * D), hd = a16(H * D);
    T* r = n.saved[0];
    const T* a = n.saved[1];
    T* b = n.saved[1] + mh;
    T* ws = tape_of(n).workspace(mh + 2 * md + 3 * hd);
    T *s1 = ws, *h = s1 + mh, *dh = h + md;  // s1: S, then dS, then da
    // The quantised weights are rebuilt rather than kept: two passes over the weights, same values.
    const auto kind = BranchWeights(n.i[0]);
    const T* wqg = branch_weight(Wg, dh + md, kind);
    const T* wqu = branch_weight(Wu, dh + md + hd, kind);
    const T* wqd = branch_weight(Wd, dh + md + 2 * hd, kind);
    // down, the residual's gradient being its output gradient: dW_down from S = SiLU(a) ⊙ b
    // (recomputed), then dS over S (the two products are independent; the same calls as one backward)
    const Tensor<T> dout(nullptr, n.out.grad, Shape{M, D});
    swiglu_raw(a, b, s1, M * H);
    branch_backward(Tensor<T>(s1, nullptr, Shape{M, H}), wqd, Wd.grad, D, dout, true, kind);
    branch_backward(Tensor<T>(nullptr, s1, Shape{M, H}), wqd, static_cast<T*>(nullptr), D, dout, false, kind);
    // SwiGLU: da over dS, db over b (its last reader is this pass)
    swiglu_backward_inplace(a, b, s1, M * H);
    T* db = b;
    // gate, then up, both into dh (h = RMSNorm(x) recomputed): the chain's backward order as g++ builds
    // nn::TernaryGLU, whose swiglu(gate(x), up(x)) evaluates (records) up first; the order matters
    // once the GEMM splits H into several K blocks
    rmsnorm_raw(x.data, g.data, n.f[0], h, r, M, D);
    branch_backward(Tensor<T>(h, dh, Shape{M, D}), wqg, Wg.grad, H, Tensor<T>(nullptr, s1, Shape{M, H}), false, kind);
    branch_backward(Tensor<T>(h, dh, Shape{M, D}), wqu, Wu.grad, H, Tensor<T>(nullptr, db, Shape{M, H}), true, kind);
    rmsnorm_backward_raw(x.data, g.data, r, dh, x.grad, g.grad, M, D);
}

// x: [..., D]; g: [D]; W_gate, W_up: [H, D]; W_down: [D, H]. Returns x's shape.
template <class T>
Tensor<T> prenorm_ternary_glu_residual(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& g, const Tensor<T>& Wg,
                                       const Tensor<T>& Wu, const Tensor<T>& Wd, double eps = 1e-6,
                                       BranchWeights kind = BranchWeights::absmean_ternary) {
    using namespace prenorm_detail;
    const int64_t D = x.cols(), M = x.rows();
    FLASHLM_CHECK(Wg.shape.rank == 2, "prenorm_ternary_glu_residual: gate weight " + Wg.shape.str() + " is not a matrix");
    const int64_t H = Wg.dim(0);
    FLASHLM_CHECK(g.numel() == D && Wg.shape == (Shape{H, D}) && Wu.shape == (Shape{H, D}) && Wd.shape == (Shape{D, H}),
                  "prenorm_ternary_glu_residual: input " + x.shape.str() + ", gain " + g.shape.str() + ", weights " +
                      Wg.shape.str() + ", " + Wu.shape.str() + ", " + Wd.shape.str());
    const bool rec = tape.recording({x, g, Wg, Wu, Wd});
    const int64_t mh = a16(M * H), md = a16(M * D), hd = a16(H * D);
    T* ws = tape.workspace(md + mh + 3 * hd);
    T *h = ws, *s = ws + md, *wbuf = s + mh;
    T* r = tape.scratch(M);
    rmsnorm_raw(x.data, g.data, eps, h, r, M, D);
    T* ab = tape.scratch(2 * mh);
    T *a = ab, *b = ab + mh;
    branch_forward(M, H, D, h, branch_weight(Wg, wbuf, kind), a, kind);
    branch_forward(M, H, D, h, branch_weight(Wu, wbuf + hd, kind), b, kind);
    swiglu_raw(a, b, s, M * H);
    const T* wqd = branch_weight(Wd, wbuf + 2 * hd, kind);
    Tensor<T> y = residual_output(tape, x, rec);
    branch_forward(M, D, H, s, wqd, y.data, kind);
    add_residual(x.data, y.data, M * D);
    if (rec) {
        auto& n = tape.record(&prenorm_ternary_glu_residual_backward<T>);
        n.in[0] = x, n.in[1] = g, n.in[2] = Wg, n.in[3] = Wu, n.in[4] = Wd;
        n.out = y;
        n.saved[0] = r, n.saved[1] = ab;
        n.f[0] = eps;
        n.i[0] = int64_t(kind);
        n.ctx = &tape;
    }
    return y;
}

}  // namespace flashlm::ops
