#pragma once
// Top-1 mixture-of-experts routing and soft token gates (v5.2 Nova-Ignition as announced, VARIANTS.md §7.1):
//  - top1_softmax_gate: p = softmax(logits) per row; the chosen expert e = argmax p (first maximum, like
//    torch.topk(1) on distinct values) and the gate g = p_e, returned as [N, 1]; the choice goes to the
//    caller. Backward (through the softmax, the choice held fixed): ∂g/∂z_j = p_e (δ_je − p_j).
//  - the tokens routed to one expert are gathered into a dense [M, D] block (gather_rows, ops/rows.hpp),
//    the expert runs on that block only, and its rows are added back at their positions
//    (scatter_add_rows_into: the later experts add into the first one's output in place).
//  - scale_rows: x ⊙ s with one scalar per row (the gate on an expert's output, the soft MoD weight
//    σ(router(x)) on the attention output); ops/scale.hpp's mul_col does the arithmetic.
#include <algorithm>
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/rows.hpp"
#include "flashlm/ops/scale.hpp"

namespace flashlm::ops {

template <class T>
void top1_softmax_gate_backward(Node<T>& n) {
    const Tensor<T>& z = n.in[0];
    const int64_t N = z.rows(), E = z.cols();
    parallel_for(N, N * E, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const T* zr = z.data + r * E;
            int64_t best = 0;
            for (int64_t j = 1; j < E; ++j)
                if (zr[j] > zr[best]) best = j;
            T sum = 0;
            for (int64_t j = 0; j < E; ++j) sum += std::exp(zr[j] - zr[best]);
            const T pe = T(1) / sum, g = n.out.grad[r];
            T* dz = z.grad + r * E;
            for (int64_t j = 0; j < E; ++j) {
                const T pj = std::exp(zr[j] - zr[best]) / sum;
                dz[j] += g * pe * ((j == best ? T(1) : T(0)) - pj);
            }
        }
    });
}

// logits [..., E] -> gate [rows, 1]; choice[r] ∈ [0, E) for each of the rows (caller's buffer).
template <class T>
Tensor<T> top1_softmax_gate(Tape<T>& tape, const Tensor<T>& logits, int32_t* choice) {
    const int64_t N = logits.rows(), E = logits.cols();
    FLASHLM_CHECK(E >= 1, "top1_softmax_gate: no experts in " + logits.shape.str());
    Tensor<T> g = tape.make(Shape{N, 1}, tape.recording({logits}));
    parallel_for(N, N * E, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const T* zr = logits.data + r * E;
            int64_t best = 0;
            for (int64_t j = 1; j < E; ++j)
                if (zr[j] > zr[best]) best = j;
            T sum = 0;
            for (int64_t j = 0; j < E; ++j) sum += std::exp(zr[j] - zr[best]);
            g.data[r] = T(1) / sum;  // p_best = exp(0) / Σ
            choice[r] = int32_t(best);
        }
    });
    if (g.grad) {
        auto& n = tape.record(&top1_softmax_gate_backward<T>);
        n.in[0] = logits;
        n.out = g;
    }
    return g;
}

// Groups rows by their choice: order[offset[e] … offset[e+1]) are the rows (ascending) that chose e.
// order needs N entries, offset E + 1. No allocation (training steps stay heap-free).
inline void group_by_choice(const int32_t* choice, int64_t N, int64_t E, int32_t* order, int64_t* offset) {
    std::fill(offset, offset + E + 1, int64_t(0));
    for (int64_t r = 0; r < N; ++r) ++offset[choice[r] + 1];
    for (int64_t e = 0; e < E; ++e) offset[e + 1] += offset[e];
    // offset[e] serves as expert e's write cursor; afterwards it points at expert e + 1's start.
    for (int64_t r = 0; r < N; ++r) order[offset[choice[r]]++] = int32_t(r);
    for (int64_t e = E; e > 0; --e) offset[e] = offset[e - 1];
    offset[0] = 0;
}

// x [..., D] times one scalar per row, s: [..., 1] with x.rows() rows. The same op as mul_col's column 0.
template <class T>
Tensor<T> scale_rows(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& s) {
    FLASHLM_CHECK(s.cols() == 1 && s.rows() == x.rows(),
                  "scale_rows: " + s.shape.str() + " is not one scalar per row of " + x.shape.str());
    return mul_col(tape, x, s, 0);
}

}  // namespace flashlm::ops
