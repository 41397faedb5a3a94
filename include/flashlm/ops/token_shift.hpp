#pragma once
// Learned token shift of FlashLM v5 (VARIANTS.md §6.2, §15.9): a per-channel lerp with the previous
// position, u: [B, T, D], m: [D],
//   y_t = σ(m)⊙u_t + (1−σ(m))⊙u_{t−1},   u_{−1} = 0 (each sequence starts fresh).
// Backward: du_t = σ(m)⊙dy_t + (1−σ(m))⊙dy_{t+1};  dm = σ(m)(1−σ(m)) Σ_{b,t} dy_t⊙(u_t − u_{t−1}).
// Work is split over (sequence, block of channels); dm is summed per sequence into a [B, D] scratch
// and then over sequences in a fixed order, so the result does not depend on the thread count.
#include <algorithm>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/activation.hpp"

namespace flashlm::ops {

namespace detail {
inline constexpr int64_t k_shift_block = 64;  // channels per task
}

// token_shift on raw buffers, for fused callers: M = B·L rows of D, s = σ(m) given.
template <class T>
void token_shift_raw(const T* u, const T* s, T* y, int64_t M, int64_t L, int64_t D) {
    parallel_for(M, 3 * M * D, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* ut = u + r * D;
            T* yt = y + r * D;
            if (r % L == 0)
                for (int64_t c = 0; c < D; ++c) yt[c] = s[c] * ut[c];
            else
                for (int64_t c = 0; c < D; ++c) yt[c] = s[c] * ut[c] + (T(1) - s[c]) * ut[c - D];
        }
    });
}

// token_shift_raw's backward: du_t = s⊙dy_t + (1−s)⊙dy_{t+1} written (du must not be dy), and
// dm += s(1−s) Σ dy_t⊙(u_t − u_{t−1}) through row-block partials in part ([sum_blocks(M), D]).
template <class T>
void token_shift_backward_raw(const T* u, const T* s, const T* dy, T* du, T* dm, T* part, int64_t M, int64_t L, int64_t D) {
    const int64_t blocks = sum_blocks(M);
    parallel_for(blocks, 6 * M * D, [&](int64_t b0, int64_t b1) {
        for (int64_t bk = b0; bk < b1; ++bk) {
            T* pb = dm ? part + bk * D : nullptr;
            if (pb) std::fill(pb, pb + D, T(0));
            for (int64_t r = bk * k_sum_block; r < std::min(M, (bk + 1) * k_sum_block); ++r) {
                const T *dyt = dy + r * D, *ut = u + r * D;
                T* d = du + r * D;
                if ((r + 1) % L != 0)
                    for (int64_t c = 0; c < D; ++c) d[c] = s[c] * dyt[c] + (T(1) - s[c]) * dyt[c + D];
                else
                    for (int64_t c = 0; c < D; ++c) d[c] = s[c] * dyt[c];
                if (!pb) continue;
                if (r % L != 0)
                    for (int64_t c = 0; c < D; ++c) pb[c] += dyt[c] * (ut[c] - ut[c - D]);
                else
                    for (int64_t c = 0; c < D; ++c) pb[c] += dyt[c] * ut[c];
            }
        }
    });
    if (!dm) return;
    for (int64_t c = 0; c < D; ++c) {  // add_block_partials with the σ' factor
        T acc = 0;
        for (int64_t b = 0; b < blocks; ++b) acc += part[b * D + c];
        dm[c] += s[c] * (T(1) - s[c]) * acc;
    }
}

template <class T>
void token_shift_backward(Node<T>& n) {
    const Tensor<T>& u = n.in[0];
    const Tensor<T>& m = n.in[1];
    const int64_t B = u.dim(0), L = u.dim(1), D = u.dim(2);
    const int64_t blk = detail::k_shift_block, nb = (D + blk - 1) / blk;
    const T* s = n.saved[0];
    T* part = n.saved[1];  // [B, D]
    const T* dy = n.out.grad;
    parallel_for(B * nb, 4 * B * L * D, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t b = i / nb, c0 = i % nb * blk, c1 = std::min(D, c0 + blk);
            T* pb = part + b * D;
            for (int64_t c = c0; c < c1; ++c) pb[c] = T(0);
            for (int64_t t = 0; t < L; ++t) {
                const int64_t row = (b * L + t) * D;
                const T* dyt = dy + row;
                if (u.grad) {
                    T* du = u.grad + row;
                    if (t + 1 < L) {
                        const T* dyn = dyt + D;
                        for (int64_t c = c0; c < c1; ++c) du[c] += s[c] * dyt[c] + (T(1) - s[c]) * dyn[c];
                    } else {
                        for (int64_t c = c0; c < c1; ++c) du[c] += s[c] * dyt[c];
                    }
                }
                if (m.grad) {
                    const T* ut = u.data + row;
                    if (t > 0)
                        for (int64_t c = c0; c < c1; ++c) pb[c] += dyt[c] * (ut[c] - ut[c - D]);
                    else
                        for (int64_t c = c0; c < c1; ++c) pb[c] += dyt[c] * ut[c];
                }
            }
        }
    });
    if (m.grad)
        for (int64_t c = 0; c < D; ++c) {
            T acc = 0;
            for (int64_t b = 0; b < B; ++b) acc += part[b * D + c];
            m.grad[c] += s[c] * (T(1) - s[c]) * acc;
        }
}

// u: [B, T, D]; m: [D] (the mix logits, upstream `mix1`/`mix2`).
template <class T>
Tensor<T> token_shift(Tape<T>& tape, const Tensor<T>& u, const Tensor<T>& m) {
    FLASHLM_CHECK(u.shape.rank == 3, "token_shift: input must be [B, T, D], got " + u.shape.str());
    FLASHLM_CHECK(m.numel() == u.dim(2), "token_shift: mix " + m.shape.str() + " does not match input " + u.shape.str());
    const int64_t B = u.dim(0), L = u.dim(1), D = u.dim(2);
    Tensor<T> y = tape.make(u.shape, tape.recording({u, m}));
    T* s = tape.scratch(D);
    for (int64_t c = 0; c < D; ++c) s[c] = sigmoid_scalar(m.data[c]);
    parallel_for(B * L, 3 * B * L * D, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* ut = u.data + r * D;
            T* yt = y.data + r * D;
            if (r % L == 0)
                for (int64_t c = 0; c < D; ++c) yt[c] = s[c] * ut[c];
            else
                for (int64_t c = 0; c < D; ++c) yt[c] = s[c] * ut[c] + (T(1) - s[c]) * ut[c - D];
        }
    });
    if (y.grad) {
        auto& n = tape.record(&token_shift_backward<T>);
        n.in[0] = u;
        n.in[1] = m;
        n.out = y;
        n.saved[0] = s;
        n.saved[1] = tape.scratch(B * D);
    }
    return y;
}

}  // namespace flashlm::ops
