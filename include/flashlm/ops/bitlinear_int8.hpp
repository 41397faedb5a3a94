#pragma once
// The int8 training forward of BitLinear (`flashlm train --quant int8`, the kernels' int8 family in
// training): with the switch on, a BitLinear whose quantised weight W̃ has one magnitude per row (Q1
// absmean, Q1', Q2 rows, Q0 threshold, Q3 median) computes y = x W̃ᵀ as
//   xq = round(x · s) per token (s = 127 / max|x|, BitNet b1.58 absmax), codes = sign(W̃) packed once per
//   forward call, y = (xq · codesᵀ exactly in int32) · α_r / s   (kernels/ternary_gemm_i8.hpp),
// instead of the float GEMM. The backward is untouched: the identity straight-through estimator, with dx
// from the float W̃ and dW from the float x, so the int8 rounding of x shows up only in the forward
// value. Q5 blockwise (several scales per row) and double precision keep the float forward.
// The switch is process-wide, like the kernel ISA: set it before training, not while a forward runs.
#include <atomic>

#include "flashlm/kernels/ternary_gemm_i8.hpp"

namespace flashlm::ops {

inline std::atomic<bool>& int8_forward_slot() {
    static std::atomic<bool> on{false};
    return on;
}
inline void set_int8_forward(bool on) { int8_forward_slot().store(on); }
inline bool int8_forward() { return int8_forward_slot().load(std::memory_order_relaxed); }

}  // namespace flashlm::ops
