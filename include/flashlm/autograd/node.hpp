#pragma once
// Node: one recorded op. Plain data (inputs, output, saved buffers, a few scalars and a backward function
// pointer), so recording an op never allocates.
#include <cstddef>
#include <cstdint>

#include "flashlm/core/tensor.hpp"

namespace flashlm {

template <class T>
struct Node {
    void (*backward)(Node&) = nullptr;
    Tensor<T> in[6];  // fused ops (ops/prenorm_residual.hpp) read a residual, a norm gain and three weights
    Tensor<T> out;
    T* saved[4] = {nullptr, nullptr, nullptr, nullptr};
    const int32_t* ids = nullptr;
    int64_t i[4] = {0, 0, 0, 0};
    double f[2] = {0, 0};
    const void* ctx = nullptr;  // an op's own context that outlives the step (ops/recompute.hpp)
    std::size_t arena_mark = 0;  // arena elements handed out before this node was recorded (memory reports)
};

}  // namespace flashlm
