#pragma once
// Sparse mixture-of-experts routing (FlashLM v6.1 MoEFFN, VARIANTS.md §8.3):
//   p = softmax(router logits); the top-k experts of each token by p, their probabilities renormalised
//   to sum 1 (= a softmax over the k selected logits); output Σ_j gate_j · expert_{e_j}(x).
// Only the selected experts run on a token: route_topk() lists, per expert, the rows it serves; the
// caller gathers those rows (ops::embedding as a row gather), runs the expert on that batch, and
// scatter_rows_weighted() adds gate · expert output back into one [M, D] accumulator. Backward is as
// sparse: the gather and scatter move gradients only through the rows an expert saw.
// Load balancing (upstream's aux loss): coeff · E · Σ_e f_e P_e where f_e and P_e are both the batch mean
// of the softmax probabilities (not the Switch formula with hard counts).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/softmax.hpp"

namespace flashlm::ops {

// Indices of the k largest of x[0..E) in descending order (ties: the lower index first).
template <class T>
void topk_indices(const T* x, int64_t E, int64_t k, int32_t* idx) {
    for (int64_t j = 0; j < k; ++j) {
        int32_t best = -1;
        for (int64_t e = 0; e < E; ++e) {
            bool taken = false;
            for (int64_t i = 0; i < j; ++i) taken |= idx[i] == e;
            if (!taken && (best < 0 || x[e] > x[best])) best = int32_t(e);
        }
        idx[j] = best;
    }
}

// The routing of one MoE layer for one forward: top-k expert ids per token and, per expert, the tokens it
// serves. Kept by the model until the backward has run (the tape's nodes point into it); vectors keep
// their capacity, so steady-state steps do not allocate.
struct Routing {
    int64_t M = 0, E = 0, k = 0;
    std::vector<int32_t> topk;      // [M, k] expert ids, best first
    std::vector<int64_t> offset;    // [E + 1] expert e serves rows offset[e] .. offset[e + 1] of token/assign
    std::vector<int32_t> token;     // token row each served row comes from (the gather ids)
    std::vector<int32_t> assign;    // gate index t·k + j of the served row, −1 when the row is not routed there
    int64_t served(int64_t e) const { return offset[size_t(e + 1)] - offset[size_t(e)]; }
    const int32_t* tokens_of(int64_t e) const { return token.data() + offset[size_t(e)]; }
    const int32_t* assign_of(int64_t e) const { return assign.data() + offset[size_t(e)]; }
};

// Fills r.offset/token/assign from r.topk. dense: every expert serves every token (unrouted rows get
// assign −1, so they contribute nothing) — the same result with E/k times the expert work, for speed
// comparisons.
inline void build_expert_lists(Routing& r, bool dense = false) {
    const int64_t M = r.M, E = r.E, k = r.k;
    r.offset.assign(size_t(E + 1), 0);
    if (dense) {
        r.token.resize(size_t(M * E));
        r.assign.assign(size_t(M * E), -1);
        for (int64_t e = 0; e < E; ++e) {
            r.offset[size_t(e + 1)] = (e + 1) * M;
            for (int64_t t = 0; t < M; ++t) r.token[size_t(e * M + t)] = int32_t(t);
        }
        for (int64_t t = 0; t < M; ++t)
            for (int64_t j = 0; j < k; ++j) r.assign[size_t(r.topk[size_t(t * k + j)] * M + t)] = int32_t(t * k + j);
        return;
    }
    for (int64_t a = 0; a < M * k; ++a) ++r.offset[size_t(r.topk[size_t(a)] + 1)];
    for (int64_t e = 0; e < E; ++e) r.offset[size_t(e + 1)] += r.offset[size_t(e)];
    r.token.resize(size_t(M * k));
    r.assign.resize(size_t(M * k));
    std::vector<int64_t>& fill = r.offset;  // reuse: advance a cursor per expert, then shift back
    for (int64_t t = 0; t < M; ++t)
        for (int64_t j = 0; j < k; ++j) {
            const int64_t pos = fill[size_t(r.topk[size_t(t * k + j)])]++;
            r.token[size_t(pos)] = int32_t(t);
            r.assign[size_t(pos)] = int32_t(t * k + j);
        }
    for (int64_t e = E; e > 0; --e) fill[size_t(e)] = fill[size_t(e - 1)];
    fill[0] = 0;
}

template <class T>
void route_topk_backward(Node<T>& n) {
    const int64_t M = n.in[0].rows(), E = n.in[0].cols(), k = n.out.cols();
    const int32_t* idx = n.ids;
    parallel_for(M, 4 * M * k, [&](int64_t b_, int64_t e_) {
        for (int64_t t = b_; t < e_; ++t) {
            const T* g = n.out.data + t * k;
            const T* dg = n.out.grad + t * k;
            T dot = 0;
            for (int64_t j = 0; j < k; ++j) dot += g[j] * dg[j];
            for (int64_t j = 0; j < k; ++j) n.in[0].grad[t * E + idx[t * k + j]] += g[j] * (dg[j] - dot);
        }
    });
}

// logits: [M, E] router outputs. Picks the top r.k experts per row into r.topk (r.M/E/k set here; k from
// r.k) and returns the gates [M, k]: softmax over the selected logits, which equals the selected softmax
// probabilities renormalised to sum 1. Gradients reach only the selected logits.
template <class T>
Tensor<T> route_topk(Tape<T>& tape, const Tensor<T>& logits, Routing& r) {
    const int64_t M = logits.rows(), E = logits.cols(), k = r.k;
    FLASHLM_CHECK(k >= 1 && k <= E, "route_topk: top-" + std::to_string(k) + " of " + std::to_string(E) + " experts");
    r.M = M, r.E = E;
    r.topk.resize(size_t(M * k));
    Tensor<T> g = tape.make(Shape{M, k}, tape.recording({logits}));
    parallel_for(M, 4 * M * E, [&](int64_t b_, int64_t e_) {
        for (int64_t t = b_; t < e_; ++t) {
            int32_t* idx = r.topk.data() + t * k;
            const T* l = logits.data + t * E;
            topk_indices(l, E, k, idx);
            T* gt = g.data + t * k;
            for (int64_t j = 0; j < k; ++j) gt[j] = l[idx[j]];
            softmax_row(gt, gt, k);
        }
    });
    if (g.grad) {
        auto& n = tape.record(&route_topk_backward<T>);
        n.in[0] = logits;
        n.out = g;
        n.ids = r.topk.data();
    }
    return g;
}

template <class T>
void balance_loss_backward(Node<T>& n) {
    const int64_t M = n.in[0].rows(), E = n.in[0].cols();
    const T* p = n.saved[0];      // [M, E] probabilities
    const T* P = n.saved[1];      // [E] batch means
    const T c = T(n.f[0]) * n.out.grad[0];
    parallel_for(M, 4 * M * E, [&](int64_t b_, int64_t e_) {
        constexpr int64_t cap = 64;
        T dp[cap];
        for (int64_t t = b_; t < e_; ++t) {
            for (int64_t e = 0; e < E; ++e) dp[e] = c * T(2) * P[e] / T(M);
            softmax_row_backward(p + t * E, dp, n.in[0].grad + t * E, E, true);
        }
    });
}

// logits: [M, E] → scalar coeff · E · Σ_e P_e², P_e = mean over rows of softmax(logits)_e.
template <class T>
Tensor<T> balance_loss(Tape<T>& tape, const Tensor<T>& logits, double coeff) {
    const int64_t M = logits.rows(), E = logits.cols();
    FLASHLM_CHECK(E >= 1 && E <= 64 && M >= 1, "balance_loss: 1 to 64 experts and at least one row, got " + logits.shape.str());
    T* p = tape.scratch(M * E);
    T* P = tape.scratch(E);
    parallel_for(M, 4 * M * E, [&](int64_t b_, int64_t e_) {
        for (int64_t t = b_; t < e_; ++t) softmax_row(logits.data + t * E, p + t * E, E);
    });
    T loss = 0;
    for (int64_t e = 0; e < E; ++e) {
        double s = 0;
        for (int64_t t = 0; t < M; ++t) s += double(p[t * E + e]);
        P[e] = T(s / double(M));
        loss += P[e] * P[e];
    }
    Tensor<T> y = tape.make(Shape{1}, tape.recording({logits}));
    y.data[0] = T(coeff * double(E)) * loss;
    if (y.grad) {
        auto& n = tape.record(&balance_loss_backward<T>);
        n.in[0] = logits;
        n.out = y;
        n.saved[0] = p;
        n.saved[1] = P;
        n.f[0] = coeff * double(E);
    }
    return y;
}

// A zeroed [M, D] accumulator for scatter_rows_weighted (with a gradient when grad is true and recording).
template <class T>
Tensor<T> moe_accumulator(Tape<T>& tape, int64_t M, int64_t D, bool grad) {
    Tensor<T> acc = tape.make(Shape{M, D}, grad);
    std::fill(acc.data, acc.data + M * D, T(0));
    return acc;
}

template <class T>
void scatter_rows_weighted_backward(Node<T>& n) {
    const Tensor<T>& src = n.in[0];
    const Tensor<T>& g = n.in[1];
    const int64_t R = src.rows(), D = src.cols(), k = n.i[0];
    parallel_for(R, 2 * R * D, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const int32_t a = n.ids[r];
            if (a < 0) continue;
            const T* dy = n.out.grad + (a / k) * D;
            const T* s = src.data + r * D;
            if (src.grad) {
                T* ds = src.grad + r * D;
                for (int64_t c = 0; c < D; ++c) ds[c] += g.data[a] * dy[c];
            }
            if (g.grad) {
                T dot = 0;
                for (int64_t c = 0; c < D; ++c) dot += dy[c] * s[c];
                g.grad[a] += dot;
            }
        }
    });
}

// acc[assign[r] / k] += gates[assign[r]] · src[r] for every row r of src (rows with assign −1 skipped);
// returns acc. The accumulator is shared by several of these nodes (one per expert): the sum is linear,
// so each node's backward reads the same final d acc. Within one call every token appears at most once.
template <class T>
Tensor<T> scatter_rows_weighted(Tape<T>& tape, const Tensor<T>& acc, const Tensor<T>& src, const Tensor<T>& gates,
                                const int32_t* assign) {
    const int64_t R = src.rows(), D = src.cols(), k = gates.cols();
    FLASHLM_CHECK(acc.cols() == D && gates.rows() == acc.rows(),
                  "scatter_rows_weighted: accumulator " + acc.shape.str() + ", rows " + src.shape.str() + ", gates " +
                      gates.shape.str());
    parallel_for(R, 2 * R * D, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const int32_t a = assign[r];
            if (a < 0) continue;
            T* y = acc.data + (a / k) * D;
            const T w = gates.data[a];
            const T* s = src.data + r * D;
            for (int64_t c = 0; c < D; ++c) y[c] += w * s[c];
        }
    });
    if (acc.grad && tape.recording({src, gates})) {
        auto& n = tape.record(&scatter_rows_weighted_backward<T>);
        n.in[0] = src;
        n.in[1] = gates;
        n.out = acc;
        n.ids = assign;
        n.i[0] = k;
    }
    return acc;
}

}  // namespace flashlm::ops
