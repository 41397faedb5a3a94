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
// In the sequential form (the reference; DeltaForm below, the chunked form is ops/gated_delta_chunk.hpp)
// the backward is backpropagation through time over the state: with dS the adjoint of S_t (from o_t and
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
#include "flashlm/ops/gated_delta_chunk.hpp"

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

// What both backward passes read back from a node recorded by gated_delta_rule (its slot layout):
// in = q, k, v, g; saved = δ, checkpoints (+ per-thread scratch after them), β, dβ; i = H, compat, chunk, block.
template <class T>
struct SavedNode {
    Dims d;
    bool compat;
    const T* delta;
    const T* ckpt;  // [B·H, chunks, dk·dv]: S entering each chunk
    T* scratch;     // per-thread, right after the checkpoints
    const T* beta;
    T* dbeta;
    explicit SavedNode(const Node<T>& n)
        : d{n.in[0].dim(0), n.in[0].dim(1), n.i[0], n.in[0].dim(2) / n.i[0], n.in[2].dim(2) / n.i[0], n.i[2]},
          compat(n.i[1] != 0),
          delta(n.saved[0]),
          ckpt(n.saved[1]),
          scratch(n.saved[1] + d.B * d.H * d.chunks() * d.mat()),
          beta(n.saved[2]),
          dbeta(n.saved[3]) {}
};

}  // namespace gdn

// Which algorithm the op runs. `chunked` (what bolt-deltanet trains with) is the chunkwise-parallel form of
// ops/gated_delta_chunk.hpp, forward and backward; `sequential` is the reference: the token loop forward
// and BPTT over the state backward. Both give the same outputs and gradients up to float rounding.
enum class DeltaForm { sequential, chunked };

// Backward of the chunked form: per (batch row, head), checkpoint spans in reverse. Each span's states
// at its block starts are recomputed from the checkpoint and the saved δ (one GEMM per block), then the
// blocks run backwards through gdn::chunk_backward, carrying the state adjoint.
template <class T>
void gated_delta_rule_chunked_backward(Node<T>& n) {
    const Tensor<T>& q = n.in[0];
    const Tensor<T>& k = n.in[1];
    const Tensor<T>& v = n.in[2];
    const Tensor<T>& g = n.in[3];
    const gdn::SavedNode<T> s(n);
    const gdn::Dims& d = s.d;
    const T *beta = s.beta, *delta = s.delta, *ckpt = s.ckpt;
    T *dbeta = s.dbeta, *scratch = s.scratch;
    const bool compat = s.compat;
    const int64_t H = d.H, L = d.L, dk = d.dk, dv = d.dv, M = d.mat(), nc = d.chunks(), C = d.chunk, Bk = n.i[3];
    const int64_t nb = (C + Bk - 1) / Bk;  // blocks per checkpoint span
    const int64_t cw = gdn::ChunkWork<T>::floats(Bk, dk, dv) + (nb + 1) * M;
    const T* dO = n.out.grad;
    parallel_for_tid(d.B * H, d.B * H * L * M * 12, [&](int64_t u0, int64_t u1, int tid) {
        T* base = scratch + int64_t(tid) * cw;
        const gdn::ChunkWork<T> w(base, Bk, dk, dv);
        T* dS = base + w.size;
        T* Sb = dS + M;  // states entering each block of the span
        for (int64_t unit = u0; unit < u1; ++unit) {
            const int64_t b = unit / H, h = unit % H;
            std::fill(dS, dS + M, T(0));
            for (int64_t c = nc - 1; c >= 0; --c) {
                const int64_t t0 = c * C, t1 = std::min(L, t0 + C), nbc = (t1 - t0 + Bk - 1) / Bk;
                std::copy(ckpt + (unit * nc + c) * M, ckpt + (unit * nc + c + 1) * M, Sb);
                for (int64_t j = 0; j + 1 < nbc; ++j) {
                    const int64_t r = b * L + t0 + j * Bk;
                    gdn::chunk_state(Sb + j * M, Sb + (j + 1) * M, k.data + r * H * dk + h * dk, g.data + r * H + h,
                                     beta + r * H + h, delta + r * H * dv + h * dv, Bk, H, dk, dv, w);
                }
                for (int64_t j = nbc - 1; j >= 0; --j) {
                    const int64_t s0 = t0 + j * Bk, len = std::min(Bk, t1 - s0), r = b * L + s0;
                    const int64_t ok = r * H * dk + h * dk, ov = r * H * dv + h * dv, og = r * H + h;
                    gdn::chunk_backward(Sb + j * M, dS, q.data + ok, k.data + ok, g.data + og, beta + og, delta + ov,
                                        dO + ov, len, H, dk, dv, compat, q.grad ? q.grad + ok : nullptr,
                                        k.grad ? k.grad + ok : nullptr, v.grad ? v.grad + ov : nullptr,
                                        g.grad ? g.grad + og : nullptr, dbeta ? dbeta + og : nullptr, w);
                }
            }
        }
    });
}

template <class T>
void gated_delta_rule_backward(Node<T>& n) {
    const Tensor<T>& q = n.in[0];
    const Tensor<T>& k = n.in[1];
    const Tensor<T>& v = n.in[2];
    const Tensor<T>& g = n.in[3];
    const gdn::SavedNode<T> s(n);
    const gdn::Dims& d = s.d;
    const T *beta = s.beta, *delta = s.delta, *ckpt = s.ckpt;
    T *dbeta = s.dbeta, *scratch = s.scratch;
    const bool compat = s.compat;
    const int64_t H = d.H, L = d.L, dk = d.dk, dv = d.dv, M = d.mat(), nc = d.chunks();
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
// q and k are used as given (the caller normalises them). `chunk` is the interval at which the state is
// checkpointed for the backward (both forms). The chunked form works in blocks of `block` tokens inside
// each chunk (its WY/UT block length); the sequential form recomputes one chunk's per-token states.
template <class T>
Tensor<T> gated_delta_rule(Tape<T>& tape, const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                           const Tensor<T>& g, const Tensor<T>& beta, int64_t heads, bool upstream_compat = false,
                           int64_t chunk = 64, DeltaForm form = DeltaForm::sequential, int64_t block = 16) {
    FLASHLM_CHECK(q.shape.rank == 3 && k.shape == q.shape,
                  "gated_delta_rule: q " + q.shape.str() + " and k " + k.shape.str() + " must be the same [B, T, H*dk]");
    FLASHLM_CHECK(heads >= 1 && q.dim(2) % heads == 0 && v.shape.rank == 3 && v.dim(0) == q.dim(0) &&
                      v.dim(1) == q.dim(1) && v.dim(2) % heads == 0,
                  "gated_delta_rule: v " + v.shape.str() + " or heads " + std::to_string(heads) + " do not match q " +
                      q.shape.str());
    const Shape gs{q.dim(0), q.dim(1), heads};
    FLASHLM_CHECK(g.shape == gs && beta.shape == gs,
                  "gated_delta_rule: g " + g.shape.str() + " and beta " + beta.shape.str() + " must be " + gs.str());
    FLASHLM_CHECK(chunk >= 1 && block >= 1, "gated_delta_rule: chunk and block must be positive");
    block = std::min(block, chunk);
    const int64_t H = heads;
    const gdn::Dims d{q.dim(0), q.dim(1), H, q.dim(2) / H, v.dim(2) / H, chunk};
    const int64_t L = d.L, dk = d.dk, dv = d.dv, M = d.mat(), nc = d.chunks();
    const bool rec = tape.recording({q, k, v, g, beta});
    Tensor<T> o = tape.make(v.shape, rec);
    T* delta = tape.scratch(d.B * L * H * dv);
    const bool chunked = form == DeltaForm::chunked;
    // Per-thread workspace, once per call: the chunked form's (its backward adds the state adjoint and
    // the states at the block starts of one chunk), or the sequential backward's recompute buffers.
    const int64_t cw = gdn::ChunkWork<T>::floats(block, dk, dv);
    const int64_t per_thread = chunked ? cw + ((chunk + block - 1) / block + 1) * M : d.thread_scratch();
    T* ckpt = rec ? tape.scratch(d.B * H * nc * M + int64_t(max_threads()) * per_thread) : nullptr;
    T* state = tape.scratch(d.B * H * M);
    if (chunked) {
        T* work = rec ? ckpt + d.B * H * nc * M : tape.scratch(int64_t(max_threads()) * per_thread);
        parallel_for_tid(d.B * H, d.B * H * L * M * 4, [&](int64_t u0, int64_t u1, int tid) {
            const gdn::ChunkWork<T> w(work + int64_t(tid) * per_thread, block, dk, dv);
            for (int64_t unit = u0; unit < u1; ++unit) {
                const int64_t b = unit / H, h = unit % H;
                T* S = state + unit * M;
                std::fill(S, S + M, T(0));
                for (int64_t t0 = 0, n = 0; t0 < L; t0 += n) {  // a block is short only at a chunk's or T's end
                    if (rec && t0 % chunk == 0) std::copy(S, S + M, ckpt + (unit * nc + t0 / chunk) * M);
                    n = std::min({block, L - t0, chunk - t0 % chunk});
                    const int64_t r = b * L + t0;
                    gdn::chunk_forward(S, q.data + r * H * dk + h * dk, k.data + r * H * dk + h * dk,
                                       v.data + r * H * dv + h * dv, g.data + r * H + h, beta.data + r * H + h, n, H, dk,
                                       dv, upstream_compat, delta + r * H * dv + h * dv, o.data + r * H * dv + h * dv, w);
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
        auto& n = tape.record(chunked ? &gated_delta_rule_chunked_backward<T> : &gated_delta_rule_backward<T>);
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
        n.i[3] = block;
    }
    return o;
}

}  // namespace flashlm::ops
