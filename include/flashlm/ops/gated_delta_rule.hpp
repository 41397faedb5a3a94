#pragma once
// Gated delta rule (Gated DeltaNet, Yang et al. 2024), the token mixer of the altpav fork's
// "TeenyLM Delta" (VARIANTS.md §11.2). Per batch row and head, a matrix state S ∈ R^{dk×dv} (zero at
// t = 0) evolves token by token:
//   p_t = c_t · S_{t−1}ᵀ k_t                  prediction of v_t from the state
//   δ_t = v_t − p_t,   u_t = β_t δ_t
//   S_t = a_t S_{t−1} + k_t u_tᵀ               a_t = exp(g_t) (g is the log decay)
//   o_t = S_tᵀ q_t                             read after the update, no 1/√dk
// With c_t = a_t this is the published rule S_t = a_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ: the
// correction subtracts what the decayed state (the one being written) predicts. upstream_compat sets
// c_t = 1, the fork's arithmetic (A:trainv4_gdn.py@8456f4d predicts from the undecayed S_{t−1};
// VARIANTS.md §16 Q14).
//
// Backward is backpropagation through time over the state: with dS the adjoint of S_t (from o_t and
// all later steps),
//   dS += q_t do_tᵀ;  dq_t = S_t do_t;  dk_t = dS u_t;  du = dSᵀ k_t;  da_t = ⟨dS, S_{t−1}⟩
//   dv_t = β_t du;  dβ_t = du·δ_t;  dp = −β_t du
//   dk_t += c_t S_{t−1} dp;  da_t += [c_t = a_t] dp·(S_{t−1}ᵀ k_t);  dS ← a_t dS + c_t k_t dpᵀ;  dg_t = a_t da_t.
// Storing every S_t would cost B·H·T·dk·dv floats (1 GB for the small config at b16×256 over 6 layers),
// so the forward keeps S only at every `chunk`-th step plus δ (B·T·H·dv) and the backward recomputes the
// states of one chunk at a time (one extra rank-1 pass per step) into per-thread scratch.
// Work is split over (batch row, head) pairs, so each thread owns the gradient slices it writes.
#include <algorithm>
#include <cmath>
#include <string>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

namespace gdn {

// One token for one head: S [dk, dv] (row-major) advances in place; writes δ_t (dv) and o_t (dv).
// Shared by the training op and the cached generators, so both run the same arithmetic.
template <class T>
inline void step(T* S, const T* q, const T* k, const T* v, T a, T beta, int64_t dk, int64_t dv, bool compat,
                 T* delta, T* o) {
    for (int64_t j = 0; j < dv; ++j) delta[j] = T(0);
    for (int64_t i = 0; i < dk; ++i) {
        const T* Si = S + i * dv;
        const T ki = k[i];
        for (int64_t j = 0; j < dv; ++j) delta[j] += Si[j] * ki;
    }
    const T c = compat ? T(1) : a;
    for (int64_t j = 0; j < dv; ++j) delta[j] = v[j] - c * delta[j];
    for (int64_t j = 0; j < dv; ++j) o[j] = T(0);
    for (int64_t i = 0; i < dk; ++i) {
        T* Si = S + i * dv;
        const T bk = beta * k[i], qi = q[i];
        for (int64_t j = 0; j < dv; ++j) {
            Si[j] = a * Si[j] + bk * delta[j];
            o[j] += qi * Si[j];
        }
    }
}

// S_t from S_{t−1} and the saved δ_t (the backward's recompute).
template <class T>
inline void advance(const T* Sp, T* S, const T* k, const T* delta, T a, T beta, int64_t dk, int64_t dv) {
    for (int64_t i = 0; i < dk; ++i) {
        const T* Spi = Sp + i * dv;
        T* Si = S + i * dv;
        const T bk = beta * k[i];
        for (int64_t j = 0; j < dv; ++j) Si[j] = a * Spi[j] + bk * delta[j];
    }
}

// Geometry of one call, in the node's integer slots and for the scratch layout.
struct Dims {
    int64_t B, L, H, dk, dv, chunk;
    int64_t chunks() const { return (L + chunk - 1) / chunk; }
    int64_t mat() const { return dk * dv; }
    // Per-thread backward scratch: chunk+1 states, dS, and du / dp / sk vectors.
    int64_t thread_scratch() const { return (std::min(chunk, L) + 2) * mat() + 3 * dv; }
};

// Scratch of the chunked forward per thread: cumulative log decays and β (3·chunk), two chunk×chunk
// matrices, a chunk×dv right-hand side and a chunk×dk scaled-key buffer.
inline int64_t chunked_scratch(int64_t chunk, int64_t dk, int64_t dv) { return 3 * chunk + 2 * chunk * chunk + chunk * (dv + dk); }

// One chunk of n ≤ chunk tokens for one head in the chunkwise-parallel form (Yang et al. 2024, WY/UT
// representation). With G_r = Σ_{s≤r} g_s inside the chunk, G'_r = G_r (or G_{r−1} in compat mode),
// S_0 the state entering the chunk and u_s = β_s δ_s, unrolling the recurrence gives
//   δ_r + Σ_{s<r} e^{G'_r − G_s} (k_r·k_s) β_s δ_s = v_r − e^{G'_r} S_0ᵀ k_r      (unit lower-triangular)
//   o_r = e^{G_r} S_0ᵀ q_r + Σ_{s≤r} e^{G_r − G_s} (q_r·k_s) u_s
//   S_n = e^{G_n} S_0 + Σ_s e^{G_n − G_s} k_s u_sᵀ
// i.e. δ = T (V − diag(e^{G'}) K S_0) with T = (I + L)^{-1} the UT transform of the chunk's strictly lower
// L; it is applied by one triangular solve (TRSM) rather than formed. Every exponent is ≤ 0, so no
// decay product over the chunk is ever divided by. Writes δ and o for the chunk, advances S in place.
template <class T>
void chunk_forward(T* S, const T* q, const T* k, const T* v, const T* g, const T* beta, int64_t n, int64_t H,
                   int64_t dk, int64_t dv, bool compat, T* delta, T* o, T* scratch, int64_t chunk) {
    using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using CMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
    using WMap = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
    using SMap = Eigen::Map<Mat>;
    const CMap Q(q, n, dk, Eigen::OuterStride<>(H * dk)), K(k, n, dk, Eigen::OuterStride<>(H * dk));
    const CMap V(v, n, dv, Eigen::OuterStride<>(H * dv));
    WMap D(delta, n, dv, Eigen::OuterStride<>(H * dv)), O(o, n, dv, Eigen::OuterStride<>(H * dv));
    SMap St(S, dk, dv);
    T* G = scratch;
    T* Gp = scratch + chunk;
    SMap A(scratch + 2 * chunk, n, n), P(scratch + 2 * chunk + chunk * chunk, n, n);
    SMap X(scratch + 2 * chunk + 2 * chunk * chunk, n, dv);
    SMap Ks(scratch + 2 * chunk + 2 * chunk * chunk + chunk * dv, n, dk);
    T* Bc = scratch + 2 * chunk + 2 * chunk * chunk + chunk * (dv + dk);
    T acc = 0;
    for (int64_t r = 0; r < n; ++r) {
        Bc[r] = beta[r * H];
        Gp[r] = acc;  // G_{r−1}
        acc += g[r * H];
        G[r] = acc;
        if (!compat) Gp[r] = acc;
    }
    // Right-hand side V − diag(e^{G'}) K S_0, then the unit lower-triangular system.
    X.noalias() = K * St;
    for (int64_t r = 0; r < n; ++r) X.row(r) = V.row(r) - std::exp(Gp[r]) * X.row(r);
    A.noalias() = K * K.transpose();
    const Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>> Gv(G, n);
    const Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>> bcol(Bc, n);
    for (int64_t r = 1; r < n; ++r)  // Eigen's vectorised exp: a chunk needs n² of them
        A.row(r).head(r).array() *= (Gp[r] - Gv.head(r).array()).exp() * bcol.head(r).array();
    A.template triangularView<Eigen::UnitLower>().solveInPlace(X);
    D = X;
    for (int64_t r = 0; r < n; ++r) X.row(r) *= beta[r * H];  // U
    // Outputs: inter-chunk part from S_0 plus the masked intra-chunk attention.
    P.noalias() = Q * K.transpose();
    for (int64_t r = 0; r < n; ++r) {
        P.row(r).head(r + 1).array() *= (G[r] - Gv.head(r + 1).array()).exp();
        P.row(r).tail(n - r - 1).setZero();
    }
    O.noalias() = Q * St;
    for (int64_t r = 0; r < n; ++r) O.row(r) *= std::exp(G[r]);
    O.noalias() += P * X;
    // State leaving the chunk.
    const T Gn = G[n - 1];
    for (int64_t r = 0; r < n; ++r) Ks.row(r) = std::exp(Gn - G[r]) * K.row(r);
    St *= std::exp(Gn);
    St.noalias() += Ks.transpose() * X;
}

}  // namespace gdn

// Which forward the op runs. Both give the same δ, checkpoints and output (to round-off) and share the
// BPTT backward; `chunked` is the chunkwise-parallel form (gdn::chunk_forward), `sequential` the token loop.
enum class DeltaForm { sequential, chunked };

template <class T>
void gated_delta_rule_backward(Node<T>& n) {
    const Tensor<T>& q = n.in[0];
    const Tensor<T>& k = n.in[1];
    const Tensor<T>& v = n.in[2];
    const Tensor<T>& g = n.in[3];
    const T* beta = n.saved[2];
    T* dbeta = n.saved[3];
    const int64_t H = n.i[0];
    const bool compat = n.i[1] != 0;
    const gdn::Dims d{q.dim(0), q.dim(1), H, q.dim(2) / H, v.dim(2) / H, n.i[2]};
    const int64_t L = d.L, dk = d.dk, dv = d.dv, M = d.mat(), nc = d.chunks();
    const T* delta = n.saved[0];
    const T* ckpt = n.saved[1];                          // [B·H, chunks, dk·dv]: S before each chunk
    T* scratch = n.saved[1] + d.B * H * nc * M;          // per-thread
    const T* dO = n.out.grad;
    using MatC = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
    using Mat = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
    using VecC = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;
    using Vec = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;
    parallel_for_tid(d.B * H, d.B * H * L * M * 6, [&](int64_t u0, int64_t u1, int tid) {
        T* Sbuf = scratch + int64_t(tid) * d.thread_scratch();
        T* dS = Sbuf + (std::min(d.chunk, L) + 1) * M;
        T* du = dS + M;
        T* dp = du + dv;
        T* sk = dp + dv;
        for (int64_t unit = u0; unit < u1; ++unit) {
            const int64_t b = unit / H, h = unit % H;
            std::fill(dS, dS + M, T(0));
            for (int64_t c = nc - 1; c >= 0; --c) {
                const int64_t t0 = c * d.chunk, t1 = std::min(L, t0 + d.chunk);
                std::copy(ckpt + (unit * nc + c) * M, ckpt + (unit * nc + c + 1) * M, Sbuf);
                for (int64_t t = t0; t < t1; ++t) {
                    const int64_t r = b * L + t;
                    gdn::advance(Sbuf + (t - t0) * M, Sbuf + (t - t0 + 1) * M, k.data + r * H * dk + h * dk,
                                 delta + r * H * dv + h * dv, std::exp(g.data[r * H + h]), beta[r * H + h], dk, dv);
                }
                for (int64_t t = t1 - 1; t >= t0; --t) {
                    const int64_t r = b * L + t;
                    const T* Sp = Sbuf + (t - t0) * M;
                    const T* Sc = Sp + M;
                    const T* qt = q.data + r * H * dk + h * dk;
                    const T* kt = k.data + r * H * dk + h * dk;
                    const T* dt = delta + r * H * dv + h * dv;
                    const T* dot = dO + r * H * dv + h * dv;
                    const T a = std::exp(g.data[r * H + h]), bt = beta[r * H + h];
                    const T cc = compat ? T(1) : a;
                    T* dqt = q.grad ? q.grad + r * H * dk + h * dk : nullptr;
                    T* dkt = k.grad ? k.grad + r * H * dk + h * dk : nullptr;
                    // Eigen matrix-vector forms: its reductions are vectorised, the scalar loops' are not.
                    const MatC SpM(Sp, dk, dv), ScM(Sc, dk, dv);
                    Mat dSM(dS, dk, dv);
                    const VecC qv(qt, dk), kv(kt, dk), dtv(dt, dv), dov(dot, dv);
                    Vec duv(du, dv), dpv(dp, dv), skv(sk, dv);
                    if (dqt) Vec(dqt, dk).noalias() += ScM * dov;
                    dSM.noalias() += qv * dov.transpose();
                    if (dkt) Vec(dkt, dk).noalias() += bt * (dSM * dtv);  // dS u_t with u_t = β δ_t
                    duv.noalias() = dSM.transpose() * kv;
                    T da = (dSM.array() * SpM.array()).sum();
                    if (dbeta) dbeta[r * H + h] += duv.dot(dtv);
                    if (v.grad) Vec(v.grad + r * H * dv + h * dv, dv) += bt * duv;
                    dpv = -bt * duv;
                    if (dkt) Vec(dkt, dk).noalias() += cc * (SpM * dpv);
                    if (!compat) {
                        skv.noalias() = SpM.transpose() * kv;
                        da += dpv.dot(skv);
                    }
                    dSM *= a;
                    dSM.noalias() += (cc * kv) * dpv.transpose();
                    if (g.grad) g.grad[r * H + h] += a * da;
                }
            }
        }
    });
}

// q, k: [B, T, H·dk]; v: [B, T, H·dv]; g (log decay, a = exp g) and beta: [B, T, H]. Returns o: [B, T, H·dv].
// q and k are used as given (the caller normalises them). `chunk` is the backward's recompute length.
template <class T>
Tensor<T> gated_delta_rule(Tape<T>& tape, const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                           const Tensor<T>& g, const Tensor<T>& beta, int64_t heads, bool upstream_compat = false,
                           int64_t chunk = 64, DeltaForm form = DeltaForm::sequential) {
    FLASHLM_CHECK(q.shape.rank == 3 && k.shape == q.shape,
                  "gated_delta_rule: q " + q.shape.str() + " and k " + k.shape.str() + " must be the same [B, T, H*dk]");
    FLASHLM_CHECK(heads >= 1 && q.dim(2) % heads == 0 && v.shape.rank == 3 && v.dim(0) == q.dim(0) &&
                      v.dim(1) == q.dim(1) && v.dim(2) % heads == 0,
                  "gated_delta_rule: v " + v.shape.str() + " or heads " + std::to_string(heads) + " do not match q " +
                      q.shape.str());
    const Shape gs{q.dim(0), q.dim(1), heads};
    FLASHLM_CHECK(g.shape == gs && beta.shape == gs,
                  "gated_delta_rule: g " + g.shape.str() + " and beta " + beta.shape.str() + " must be " + gs.str());
    FLASHLM_CHECK(chunk >= 1, "gated_delta_rule: chunk must be positive");
    const int64_t H = heads;
    const gdn::Dims d{q.dim(0), q.dim(1), H, q.dim(2) / H, v.dim(2) / H, chunk};
    const int64_t L = d.L, dk = d.dk, dv = d.dv, M = d.mat(), nc = d.chunks();
    const bool rec = tape.recording({q, k, v, g, beta});
    Tensor<T> o = tape.make(v.shape, rec);
    T* delta = tape.scratch(d.B * L * H * dv);
    T* ckpt = rec ? tape.scratch(d.B * H * nc * M + int64_t(max_threads()) * d.thread_scratch()) : nullptr;
    T* state = tape.scratch(d.B * H * M);
    if (form == DeltaForm::chunked) {
        const int64_t cs = gdn::chunked_scratch(chunk, dk, dv);
        T* work = tape.scratch(int64_t(max_threads()) * cs);
        parallel_for_tid(d.B * H, d.B * H * L * M * 3, [&](int64_t u0, int64_t u1, int tid) {
            for (int64_t unit = u0; unit < u1; ++unit) {
                const int64_t b = unit / H, h = unit % H;
                T* S = state + unit * M;
                std::fill(S, S + M, T(0));
                for (int64_t c = 0; c < nc; ++c) {
                    if (rec) std::copy(S, S + M, ckpt + (unit * nc + c) * M);
                    const int64_t t0 = c * chunk, n = std::min(chunk, L - t0), r = b * L + t0;
                    gdn::chunk_forward(S, q.data + r * H * dk + h * dk, k.data + r * H * dk + h * dk,
                                       v.data + r * H * dv + h * dv, g.data + r * H + h, beta.data + r * H + h, n, H, dk,
                                       dv, upstream_compat, delta + r * H * dv + h * dv, o.data + r * H * dv + h * dv,
                                       work + int64_t(tid) * cs, chunk);
                }
            }
        });
    } else {
        parallel_for(d.B * H, d.B * H * L * M * 3, [&](int64_t u0, int64_t u1) {
            for (int64_t unit = u0; unit < u1; ++unit) {
                const int64_t b = unit / H, h = unit % H;
                T* S = state + unit * M;
                std::fill(S, S + M, T(0));
                for (int64_t t = 0; t < L; ++t) {
                    if (rec && t % chunk == 0) std::copy(S, S + M, ckpt + (unit * nc + t / chunk) * M);  // S entering the chunk
                    const int64_t r = b * L + t;
                    gdn::step(S, q.data + r * H * dk + h * dk, k.data + r * H * dk + h * dk, v.data + r * H * dv + h * dv,
                              std::exp(g.data[r * H + h]), beta.data[r * H + h], dk, dv, upstream_compat,
                              delta + r * H * dv + h * dv, o.data + r * H * dv + h * dv);
                }
            }
        });
    }
    if (o.grad) {
        auto& n = tape.record(&gated_delta_rule_backward<T>);
        n.in[0] = q;
        n.in[1] = k;
        n.in[2] = v;
        n.in[3] = g;
        n.out = o;
        n.saved[0] = delta;
        n.saved[1] = ckpt;
        n.saved[2] = beta.data;  // Node has four input slots: beta travels in saved[2..3]
        n.saved[3] = beta.grad;
        n.i[0] = H;
        n.i[1] = upstream_compat ? 1 : 0;
        n.i[2] = chunk;
    }
    return o;
}

}  // namespace flashlm::ops
