#pragma once
// Row gather and scatter-add, the ops that move a subset of the rows of an activation:
//  - gather_rows: x [N, D] -> the rows an index list picks, [M, D]; backward scatter-adds.
//  - scatter_add_rows / scatter_add_rows_into: y [M, D] added back at its rows of an [N, D] tensor.
// Users: mixture-of-experts routing (ops/moe_routing.hpp) and v3's train-time position subsampling (the
// tied head runs on the sampled rows only).
// Row indices are copied into the tape (as T values, exact below 2²⁴ rows), so the caller's index
// buffer need not outlive the forward.
#include <algorithm>
#include <cstring>
#include <string>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

namespace detail {
template <class T>
T* save_rows(Tape<T>& tape, const int32_t* rows, int64_t M) {
    T* r = tape.scratch(std::max<int64_t>(M, 1));
    for (int64_t m = 0; m < M; ++m) r[m] = T(rows[m]);
    return r;
}

// The row checks every scatter-add shares: y's rows fit dst's width, and every index lies inside dst.
template <class T>
void check_scatter_rows(const char* op, const Tensor<T>& dst, const Tensor<T>& y, const int32_t* rows) {
    const int64_t N = dst.rows(), M = y.rows();
    FLASHLM_CHECK(y.cols() == dst.cols(), std::string(op) + ": rows " + y.shape.str() + " do not match " + dst.shape.str());
    FLASHLM_CHECK(N < (int64_t(1) << 24), std::string(op) + ": more than 2^24 rows");
    for (int64_t m = 0; m < M; ++m)
        FLASHLM_CHECK(rows[m] >= 0 && rows[m] < N, std::string(op) + ": row index outside " + dst.shape.str());
}

// dst[rows[m]] += y[m]. Serial: the rows may repeat, and the adds must not race.
template <class T>
void add_rows_at(T* dst, const T* y, const int32_t* rows, int64_t M, int64_t D) {
    for (int64_t m = 0; m < M; ++m) {
        T* d = dst + int64_t(rows[m]) * D;
        const T* src = y + m * D;
        for (int64_t c = 0; c < D; ++c) d[c] += src[c];
    }
}

// dy[m] += dout[rows[m]], the gradient of add_rows_at for y (rows saved as T values on the tape).
template <class T>
void gather_add_rows(const T* dout, const T* saved_rows, int64_t M, int64_t D, T* dy) {
    parallel_for(M, M * D, [&](int64_t b_, int64_t e_) {
        for (int64_t m = b_; m < e_; ++m) {
            const T* src = dout + int64_t(saved_rows[m]) * D;
            T* dst = dy + m * D;
            for (int64_t c = 0; c < D; ++c) dst[c] += src[c];
        }
    });
}
}  // namespace detail

template <class T>
void gather_rows_backward(Node<T>& n) {
    const int64_t M = n.out.rows(), D = n.out.cols();
    // Serial: the rows may repeat, and the scatter-add must not race.
    for (int64_t m = 0; m < M; ++m) {
        T* dst = n.in[0].grad + int64_t(n.saved[0][m]) * D;
        const T* src = n.out.grad + m * D;
        for (int64_t c = 0; c < D; ++c) dst[c] += src[c];
    }
}

// x [N, D] (any leading shape, flattened to rows), rows[0 … M) in [0, N) -> [M, D].
template <class T>
Tensor<T> gather_rows(Tape<T>& tape, const Tensor<T>& x, const int32_t* rows, int64_t M) {
    const int64_t N = x.rows(), D = x.cols();
    FLASHLM_CHECK(N < (int64_t(1) << 24), "gather_rows: more than 2^24 rows");
    for (int64_t m = 0; m < M; ++m)
        FLASHLM_CHECK(rows[m] >= 0 && rows[m] < N, "gather_rows: row index outside " + x.shape.str());
    Tensor<T> y = tape.make(Shape{M, D}, tape.recording({x}));
    parallel_for(M, M * D, [&](int64_t b_, int64_t e_) {
        for (int64_t m = b_; m < e_; ++m) std::memcpy(y.data + m * D, x.data + int64_t(rows[m]) * D, size_t(D) * sizeof(T));
    });
    if (y.grad) {
        auto& n = tape.record(&gather_rows_backward<T>);
        n.in[0] = x;
        n.out = y;
        n.saved[0] = detail::save_rows(tape, rows, M);
    }
    return y;
}

template <class T>
void scatter_add_rows_backward(Node<T>& n) {
    const int64_t N = n.out.numel(), M = n.in[1].rows(), D = n.in[1].cols();
    if (n.in[0].grad) {
        T* d = n.in[0].grad;
        parallel_for(N, N, [&](int64_t b_, int64_t e_) {
            for (int64_t i = b_; i < e_; ++i) d[i] += n.out.grad[i];
        });
    }
    if (n.in[1].grad) detail::gather_add_rows(n.out.grad, n.saved[0], M, D, n.in[1].grad);
}

// base [N, D] (any leading shape) plus y [M, D] added at rows[0 … M) (repeats accumulate) -> base's shape.
template <class T>
Tensor<T> scatter_add_rows(Tape<T>& tape, const Tensor<T>& base, const Tensor<T>& y, const int32_t* rows) {
    detail::check_scatter_rows("scatter_add_rows", base, y, rows);
    const int64_t M = y.rows();
    Tensor<T> out = tape.make(base.shape, tape.recording({base, y}));
    std::memcpy(out.data, base.data, size_t(base.numel()) * sizeof(T));
    detail::add_rows_at(out.data, y.data, rows, M, base.cols());
    if (out.grad) {
        auto& n = tape.record(&scatter_add_rows_backward<T>);
        n.in[0] = base;
        n.in[1] = y;
        n.out = out;
        n.saved[0] = detail::save_rows(tape, rows, M);
    }
    return out;
}

template <class T>
void scatter_add_rows_into_backward(Node<T>& n) {
    if (n.in[1].grad) detail::gather_add_rows(n.out.grad, n.saved[0], n.in[1].rows(), n.in[1].cols(), n.in[1].grad);
}

// acc[rows[m]] += y[m] in place (repeats accumulate); returns acc. For the second and later experts of a
// layer: acc must be the output of an earlier scatter_add_rows (an activation of its own that no other
// node reads), so every expert adds into one [N, D] buffer instead of copying the whole sum once per
// expert. The same numbers as scatter_add_rows: the sum is linear, each node's backward reads the final
// d acc, and d acc reaches the first node's base unchanged.
template <class T>
Tensor<T> scatter_add_rows_into(Tape<T>& tape, const Tensor<T>& acc, const Tensor<T>& y, const int32_t* rows) {
    detail::check_scatter_rows("scatter_add_rows_into", acc, y, rows);
    const int64_t M = y.rows();
    detail::add_rows_at(acc.data, y.data, rows, M, acc.cols());
    if (acc.grad && tape.recording({y})) {
        auto& n = tape.record(&scatter_add_rows_into_backward<T>);
        n.in[1] = y;
        n.out = acc;
        n.saved[0] = detail::save_rows(tape, rows, M);
    }
    return acc;
}

}  // namespace flashlm::ops
