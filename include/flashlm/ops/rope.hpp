#pragma once
// Rotary position embedding, rotate-half convention (GPT-NeoX / the v5.2 script): per head of width d,
// pair i < d/2 is (x[i], x[i + d/2]) rotated by the angle p·θᵢ, θᵢ = base^(−2i/d), at position p:
//   y[i] = x[i]·cos − x[i+d/2]·sin,  y[i+d/2] = x[i+d/2]·cos + x[i]·sin.
// Backward rotates by −p·θᵢ. The op reads a column range of its input, so q and k are rotated straight
// out of a fused qkv projection (no split copies); a differential-attention layer rotates its wider q/k
// the same way (every head_dim-wide group of columns is a head).
#include <cmath>
#include <vector>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

// cos/sin of p·θᵢ for p < max_len, i < head_dim/2 (row-major [max_len, head_dim/2]); built once per layer.
// Angles are computed in double, then rounded.
template <class T>
struct RopeTable {
    int64_t head_dim = 0, max_len = 0;
    std::vector<T> cos, sin;
    RopeTable() = default;
    RopeTable(int64_t d, int64_t len, double base = 10000.0) : head_dim(d), max_len(len) {
        FLASHLM_CHECK(d > 0 && d % 2 == 0, "rope: head dimension must be even");
        const int64_t h = d / 2;
        cos.resize(size_t(len * h));
        sin.resize(size_t(len * h));
        for (int64_t p = 0; p < len; ++p)
            for (int64_t i = 0; i < h; ++i) {
                const double a = double(p) * std::pow(base, -2.0 * double(i) / double(d));
                cos[size_t(p * h + i)] = T(std::cos(a));
                sin[size_t(p * h + i)] = T(std::sin(a));
            }
    }
};

// Rotates n = width/head_dim heads of one row in place (src may equal dst); sgn = −1 rotates backwards.
template <class T>
inline void rope_row(const T* src, T* dst, int64_t width, int64_t head_dim, const T* cs, const T* sn, T sgn,
                     bool accumulate) {
    const int64_t h = head_dim / 2;
    for (int64_t c0 = 0; c0 < width; c0 += head_dim) {
        const T* a = src + c0;
        T* y = dst + c0;
        for (int64_t i = 0; i < h; ++i) {
            const T x1 = a[i], x2 = a[i + h], c = cs[i], s = sgn * sn[i];
            const T y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
            if (accumulate) {
                y[i] += y1, y[i + h] += y2;
            } else {
                y[i] = y1, y[i + h] = y2;
            }
        }
    }
}

template <class T>
void rope_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const int64_t C = x.cols(), W = n.out.cols(), M = n.out.rows();
    const int64_t c0 = n.i[0], d = n.i[1], L = n.i[2], p0 = n.i[3], h = d / 2;
    parallel_for(M, 4 * M * W, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const int64_t p = p0 + r % L;
            rope_row(n.out.grad + r * W, x.grad + r * C + c0, W, d, n.saved[0] + p * h, n.saved[1] + p * h, T(-1), true);
        }
    });
}

// x [B, L, C]; rotates columns [c0, c1) (a whole number of heads) at positions pos0 … pos0+L−1 and
// returns them as [B, L, c1 − c0].
template <class T>
Tensor<T> rope(Tape<T>& tape, const Tensor<T>& x, int64_t c0, int64_t c1, const RopeTable<T>& table, int64_t pos0 = 0) {
    FLASHLM_CHECK(x.shape.rank == 3, "rope: input must be [B, L, C], got " + x.shape.str());
    const int64_t C = x.cols(), W = c1 - c0, L = x.dim(1), M = x.rows(), d = table.head_dim, h = d / 2;
    FLASHLM_CHECK(0 <= c0 && c0 < c1 && c1 <= C && d > 0 && W % d == 0,
                  "rope: columns must be whole heads inside " + x.shape.str());
    FLASHLM_CHECK(pos0 >= 0 && pos0 + L <= table.max_len,
                  "rope: positions up to " + std::to_string(pos0 + L) + " exceed the table's " +
                      std::to_string(table.max_len));
    Tensor<T> y = tape.make(Shape{x.dim(0), L, W}, tape.recording({x}));
    parallel_for(M, 4 * M * W, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const int64_t p = pos0 + r % L;
            rope_row(x.data + r * C + c0, y.data + r * W, W, d, table.cos.data() + p * h, table.sin.data() + p * h, T(1),
                     false);
        }
    });
    if (y.grad) {
        auto& n = tape.record(&rope_backward<T>);
        n.in[0] = x;
        n.out = y;
        n.saved[0] = const_cast<T*>(table.cos.data());
        n.saved[1] = const_cast<T*>(table.sin.data());
        n.i[0] = c0, n.i[1] = d, n.i[2] = L, n.i[3] = pos0;
    }
    return y;
}

}  // namespace flashlm::ops
