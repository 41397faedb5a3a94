#pragma once
// Chunkwise-parallel form of the gated delta rule (ops/gated_delta_rule.hpp), forward and backward for
// one chunk of n ≤ C tokens of one head, as flash-linear-attention's chunk_gated_delta_rule organises
// it (Yang et al. 2024, WY/UT representation): the per-token rank-1 updates become a few chunk-sized
// GEMMs and one triangular solve, so the arithmetic runs at matrix-matrix rather than matrix-vector rate.
//
// Inside a chunk, with G_r = Σ_{s≤r} g_s, G'_r = G_r (or G_{r−1} in upstream_compat mode, where the
// prediction uses the undecayed state), S_0 the state entering the chunk, δ the prediction errors and
// U = diag(β) δ, unrolling the recurrence gives
//   (I + A) δ = X0 := V − diag(e^{G'}) K S_0,     A_rs = e^{G'_r − G_s} (k_r·k_s) β_s  (s < r)
//   O   = diag(e^G) Q S_0 + P U,                  P_rs = e^{G_r − G_s} (q_r·k_s)       (s ≤ r)
//   S_n = e^{G_n} S_0 + (diag(e^{G_n − G}) K)ᵀ U
// (I + A)^{-1} is the UT transform; it is applied by a unit-lower-triangular solve, never formed. Every
// exponent is ≤ 0, so nothing is divided by a decay product.
//
// The backward differentiates exactly these matrix forms (no BPTT over tokens). Given dO and dS_n (the
// adjoint of the state leaving the chunk, from later chunks) it recomputes A and P from the chunk's q, k
// and gates, takes δ from the forward, and forms
//   dU = Pᵀ dO + K_d dS_n,  dP = dO Uᵀ,  dβ = rowsum(dU ⊙ δ) + …,  dX0 = (I + A)^{-T} (β ⊙ dU),
//   dA = −dX0 δᵀ,  dK_A = (W + Wᵀ) K with W = dA ⊙ e^{G'−G} ⊙ β,  [dQ_S; dK_S] = [dO; dX0] S_0ᵀ,
//   dS_0 = e^{G_n} dS_n + [diag(e^G) Q; −diag(e^{G'}) K]ᵀ [dO; dX0]
// and the log-decay adjoints from every e^{…} factor, summed back over the cumulative sum.
#include <algorithm>
#include <Eigen/Core>
#include <Eigen/Dense>
#include <cmath>
#include <cstdint>

namespace flashlm::ops::gdn {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// One thread's workspace for chunks of up to C tokens, carved from one block that the op allocates
// once per call (nothing is allocated per chunk). Sizing and use share this layout.
template <class T>
struct ChunkWork {
    T *G = nullptr, *Gp = nullptr, *eG = nullptr, *eGp = nullptr, *eGn = nullptr, *bc = nullptr;
    T *dG = nullptr, *dGp = nullptr, *db = nullptr;  // C each
    T* QK = nullptr;                                 // 2C × dk: the chunk's q rows, then its k rows
    T* M = nullptr;                                  // 2C × C: [Q; K] Kᵀ
    T *P = nullptr, *A = nullptr, *dP = nullptr, *dA = nullptr;  // C × C
    T *EP = nullptr, *EA = nullptr;  // C × C: e^{G_r − G_s} (s ≤ r) and e^{G'_r − G_s} (s < r), 0 elsewhere
    T *tmp = nullptr, *tv = nullptr; // C × C and C: temporaries of the gate adjoints
    T* ZW = nullptr;                                             // C × 2C
    T* ST = nullptr;                                             // 2C × dv: [Q; K] S_0, or [dO; dX0]
    T* U = nullptr;                                              // C × dv
    T *Kd = nullptr, *dQ = nullptr, *dK = nullptr, *dKd = nullptr;  // C × dk
    T *R = nullptr, *LHS = nullptr;                                 // 2C × dk
    int64_t size = 0;

    ChunkWork(T* base, int64_t C, int64_t dk, int64_t dv) {
        const auto take = [&](T*& p, int64_t n) {
            p = base ? base + size : nullptr;
            size += n;
        };
        for (T** p : {&G, &Gp, &eG, &eGp, &eGn, &bc, &dG, &dGp, &db}) take(*p, C);
        take(QK, 2 * C * dk);
        take(M, 2 * C * C);
        for (T** p : {&P, &A, &dP, &dA, &EP, &EA, &tmp}) take(*p, C * C);
        take(tv, C);
        take(ZW, 2 * C * C);
        take(ST, 2 * C * dv);
        take(U, C * dv);
        for (T** p : {&Kd, &dQ, &dK, &dKd}) take(*p, C * dk);
        take(R, 2 * C * dk);
        take(LHS, 2 * C * dk);
    }
    static int64_t floats(int64_t C, int64_t dk, int64_t dv) { return ChunkWork(nullptr, C, dk, dv).size; }
};

namespace chunk_detail {

template <class T>
using Map = Eigen::Map<RowMat<T>>;
template <class T>
using CStrided = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using Strided = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using CMap = Eigen::Map<const RowMat<T>>;
template <class T>
using Vec = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;

// Gates of the chunk, the chunk's q and k gathered into one contiguous [Q; K], M = [Q; K] Kᵀ, the
// decayed β-scaled strictly-lower A and the causal decayed P. Shared by forward and backward.
template <class T>
void prepare(const T* q, const T* k, const T* g, const T* beta, int64_t n, int64_t H, int64_t dk, bool compat,
             const ChunkWork<T>& w) {
    T acc = 0;
    for (int64_t r = 0; r < n; ++r) {
        w.bc[r] = beta[r * H];
        w.Gp[r] = acc;  // G_{r−1}
        acc += g[r * H];
        w.G[r] = acc;
        if (!compat) w.Gp[r] = acc;
    }
    const Vec<T> G(w.G, n), Gp(w.Gp, n), bc(w.bc, n);
    Vec<T>(w.eG, n) = G.array().exp();
    Vec<T>(w.eGp, n) = Gp.array().exp();
    Vec<T>(w.eGn, n) = (G[n - 1] - G.array()).exp();
    Map<T> QK(w.QK, 2 * n, dk);
    QK.topRows(n) = CStrided<T>(q, n, dk, Eigen::OuterStride<>(H * dk));
    QK.bottomRows(n) = CStrided<T>(k, n, dk, Eigen::OuterStride<>(H * dk));
    Map<T> M(w.M, 2 * n, n), P(w.P, n, n), A(w.A, n, n), EP(w.EP, n, n), EA(w.EA, n, n);
    M.noalias() = QK * QK.bottomRows(n).transpose();
    // Decay masks, causal part only, in whole SIMD packets (Eigen's vectorised exp; the scalar tails of
    // exact-length rows dominated), then the rest of the row zeroed so that every later use is a plain
    // full-matrix product. The clamp keeps the discarded upper entries from overflowing.
    constexpr int64_t pk = 16;
    for (int64_t r = 0; r < n; ++r) {
        const int64_t m = std::min(n, (r + pk) / pk * pk);
        EP.row(r).head(m).array() = (G[r] - G.head(m).transpose().array()).min(T(0)).exp();
        EP.row(r).tail(n - r - 1).setZero();
        if (compat) {
            EA.row(r).head(m).array() = (Gp[r] - G.head(m).transpose().array()).min(T(0)).exp();
            EA.row(r).tail(n - r).setZero();
        }
    }
    if (!compat) {
        EA = EP;
        EA.diagonal().setZero();
    }
    P.array() = M.topRows(n).array() * EP.array();
    A.array() = M.bottomRows(n).array() * EA.array();
    A.array().rowwise() *= bc.transpose().array();  // only the strictly lower part is read
}

}  // namespace chunk_detail

// Forward over one chunk: writes δ and o for its n tokens (rows strided by H·dk / H·dv, i.e. the
// pointers address this head inside [B, T, H·d] tensors) and advances S [dk, dv] in place.
template <class T>
void chunk_forward(T* S, const T* q, const T* k, const T* v, const T* g, const T* beta, int64_t n, int64_t H,
                   int64_t dk, int64_t dv, bool compat, T* delta, T* o, const ChunkWork<T>& w) {
    using namespace chunk_detail;
    prepare(q, k, g, beta, n, H, dk, compat, w);
    const Map<T> QK(w.QK, 2 * n, dk), P(w.P, n, n), A(w.A, n, n);
    const Vec<T> eG(w.eG, n), eGp(w.eGp, n), eGn(w.eGn, n), bc(w.bc, n);
    Map<T> St(S, dk, dv), ST(w.ST, 2 * n, dv), U(w.U, n, dv), Kd(w.Kd, n, dk);
    ST.noalias() = QK * St;  // [Q S_0; K S_0]
    U = CStrided<T>(v, n, dv, Eigen::OuterStride<>(H * dv)) - eGp.asDiagonal() * ST.bottomRows(n);
    A.template triangularView<Eigen::UnitLower>().solveInPlace(U);
    Strided<T>(delta, n, dv, Eigen::OuterStride<>(H * dv)) = U;
    U = bc.asDiagonal() * U;
    Strided<T> O(o, n, dv, Eigen::OuterStride<>(H * dv));
    O.noalias() = eG.asDiagonal() * ST.topRows(n);
    O.noalias() += P * U;
    Kd.noalias() = eGn.asDiagonal() * QK.bottomRows(n);
    St *= std::exp(w.G[n - 1]);
    St.noalias() += Kd.transpose() * U;
}

// S_n from S_0 and the chunk's saved δ alone (the backward's recompute of the states at block starts
// between two checkpoints): S_n = e^{G_n} S_0 + (diag(e^{G_n − G}) K)ᵀ diag(β) δ. S_out must not alias S_in.
template <class T>
void chunk_state(const T* S_in, T* S_out, const T* k, const T* g, const T* beta, const T* delta, int64_t n, int64_t H,
                 int64_t dk, int64_t dv, const ChunkWork<T>& w) {
    using namespace chunk_detail;
    T acc = 0;
    for (int64_t r = 0; r < n; ++r) w.G[r] = (acc += g[r * H]);
    for (int64_t r = 0; r < n; ++r) w.eGn[r] = std::exp(acc - w.G[r]) * beta[r * H];
    Map<T> Kd(w.Kd, n, dk);
    Kd.noalias() = Vec<T>(w.eGn, n).asDiagonal() * CStrided<T>(k, n, dk, Eigen::OuterStride<>(H * dk));
    Map<T> So(S_out, dk, dv);
    So = std::exp(acc) * CMap<T>(S_in, dk, dv);
    So.noalias() += Kd.transpose() * CStrided<T>(delta, n, dv, Eigen::OuterStride<>(H * dv));
}

// Backward over one chunk. S0 is the state that entered it (the forward's checkpoint), dS the adjoint
// of the state leaving it on entry and of the state entering it on return. Gradients are accumulated
// into dq, dk, dv, dg, dbeta (same strided layout as the inputs); a null one is skipped.
template <class T>
void chunk_backward(const T* S0, T* dS, const T* q, const T* k, const T* g, const T* beta, const T* delta,
                    const T* dout, int64_t n, int64_t H, int64_t dk, int64_t dv, bool compat, T* dq, T* dkey,
                    T* dval, T* dg, T* dbeta, const ChunkWork<T>& w) {
    using namespace chunk_detail;
    prepare(q, k, g, beta, n, H, dk, compat, w);
    const Map<T> QK(w.QK, 2 * n, dk), M(w.M, 2 * n, n), P(w.P, n, n), A(w.A, n, n), EP(w.EP, n, n), EA(w.EA, n, n);
    const auto Q = QK.topRows(n);
    const auto K = QK.bottomRows(n);
    const Vec<T> G(w.G, n), Gp(w.Gp, n), eG(w.eG, n), eGp(w.eGp, n), eGn(w.eGn, n), bc(w.bc, n);
    Vec<T> dG(w.dG, n), dGp(w.dGp, n), db(w.db, n);
    dG.setZero(), dGp.setZero();
    const CMap<T> S0m(S0, dk, dv);
    Map<T> dSm(dS, dk, dv);
    const CStrided<T> D(delta, n, dv, Eigen::OuterStride<>(H * dv)), dO(dout, n, dv, Eigen::OuterStride<>(H * dv));
    Map<T> U(w.U, n, dv), Kd(w.Kd, n, dk), ST(w.ST, 2 * n, dv), dP(w.dP, n, n), dA(w.dA, n, n), ZW(w.ZW, n, 2 * n);
    Map<T> R(w.R, 2 * n, dk), LHS(w.LHS, 2 * n, dk), dQl(w.dQ, n, dk), dKl(w.dK, n, dk), dKd(w.dKd, n, dk);
    U = bc.asDiagonal() * D;
    Kd.noalias() = eGn.asDiagonal() * K;
    // Through S_n = e^{G_n} S_0 + K_dᵀ U.
    const T Gn = w.G[n - 1], eGn_all = std::exp(Gn);
    dG[n - 1] += eGn_all * (dSm.array() * S0m.array()).sum();
    dKd.noalias() = U * dSm.transpose();
    ST.topRows(n) = dO;
    auto dX = ST.bottomRows(n);  // dU, then dδ, then dX0
    dX.noalias() = P.transpose() * dO;
    dX.noalias() += Kd * dSm;
    {
        Vec<T> c(w.tv, n);
        c = (Kd.array() * dKd.array()).rowwise().sum();
        dG[n - 1] += c.sum();
        dG -= c;
    }
    // Through O = diag(e^G) Q S_0 + P U: dP = dO Uᵀ on the causal part; Z = dP ⊙ decay feeds dQ, dK.
    dP.noalias() = dO * U.transpose();
    {
        Map<T> pm(w.tmp, n, n);
        pm.array() = dP.array() * P.array();  // 0 above the diagonal
        dG.array() += pm.array().rowwise().sum() - pm.array().colwise().sum().transpose();
        dP.array() *= EP.array();  // Z
    }
    // U = diag(β) δ, then δ = (I + A)^{-1} X0.
    db = (dX.array() * D.array()).rowwise().sum();
    dX = bc.asDiagonal() * dX;
    A.transpose().template triangularView<Eigen::UnitUpper>().solveInPlace(dX);
    dA.noalias() = -dX * D.transpose();
    {
        dA.array() *= EA.array();  // dA ⊙ e^{G'_r − G_s}, strictly lower
        Map<T> kk(w.tmp, n, n);
        kk.array() = dA.array() * M.bottomRows(n).array();
        db.array() += kk.array().colwise().sum().transpose();
        kk.array().rowwise() *= bc.transpose().array();  // dA ⊙ A
        dGp.array() += kk.array().rowwise().sum();
        dG.array() -= kk.array().colwise().sum().transpose();
        dA.array().rowwise() *= bc.transpose().array();  // W
    }
    // K Kᵀ and Q Kᵀ feed dK through one GEMM: dK = [Zᵀ | W + Wᵀ] [Q; K].
    ZW.leftCols(n) = dP.transpose();
    ZW.rightCols(n) = dA + dA.transpose();
    dKl.noalias() = ZW * QK;
    dQl.noalias() = dP * K;
    // Through the S_0 terms: [dO; dX0] S_0ᵀ gives dQ (scaled e^G) and dK (scaled −e^{G'}).
    R.noalias() = ST * S0m.transpose();
    dQl.noalias() += eG.asDiagonal() * R.topRows(n);
    dG.array() += eG.array() * (Q.array() * R.topRows(n).array()).rowwise().sum();
    dKl.noalias() -= eGp.asDiagonal() * R.bottomRows(n);
    dGp.array() -= eGp.array() * (K.array() * R.bottomRows(n).array()).rowwise().sum();
    dKl.noalias() += eGn.asDiagonal() * dKd;
    // State adjoint entering the chunk.
    LHS.topRows(n) = eG.asDiagonal() * Q;
    LHS.bottomRows(n) = -(eGp.asDiagonal() * K);
    dSm *= eGn_all;
    dSm.noalias() += LHS.transpose() * ST;
    // G' is G (or G shifted by one token); G is the cumulative sum of g.
    if (compat) {
        for (int64_t r = 1; r < n; ++r) dG[r - 1] += dGp[r];
    } else {
        dG += dGp;
    }
    if (dg) {
        T acc = 0;
        for (int64_t r = n - 1; r >= 0; --r) dg[r * H] += (acc += dG[r]);
    }
    if (dbeta)
        for (int64_t r = 0; r < n; ++r) dbeta[r * H] += db[r];
    if (dq) Strided<T>(dq, n, dk, Eigen::OuterStride<>(H * dk)) += dQl;
    if (dkey) Strided<T>(dkey, n, dk, Eigen::OuterStride<>(H * dk)) += dKl;
    if (dval) Strided<T>(dval, n, dv, Eigen::OuterStride<>(H * dv)) += dX;
}

}  // namespace flashlm::ops::gdn
