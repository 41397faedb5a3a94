#pragma once
// Activation recomputation ("gradient checkpointing") of a segment y = f(x), e.g. one residual block.
// Forward runs f on a side tape with gradients off and keeps only y on the main tape; backward reruns f
// on the side tape with gradients on, seeds y's gradient there and runs the side tape's backward, which
// accumulates into the parameters' gradients and, in place, into x's gradient. Peak activation memory
// becomes one segment's instead of every segment's, for one more forward of each segment. f must be
// deterministic (flashlm's kernels are: static row splits, fixed reduction orders), and everything it
// reads besides x (parameters, ids) must stay alive and unchanged until backward.
#include <algorithm>
#include <functional>

#include "flashlm/autograd/tape.hpp"

namespace flashlm::ops {

template <class T>
struct RecomputeSegment {
    std::function<Tensor<T>(Tape<T>&, const Tensor<T>&)> f;
    Tape<T>* side = nullptr;  // shared by the segments of a model: they run one at a time
};

template <class T>
void recompute_backward(Node<T>& n) {
    const auto& seg = *static_cast<const RecomputeSegment<T>*>(n.ctx);
    Tape<T>& side = *seg.side;
    side.reset();
    side.set_retain_grads(true);  // y's gradient is seeded by hand below
    Tensor<T> y = seg.f(side, n.in[0]);  // n.in[0] carries x's own gradient buffer: dx lands in place
    FLASHLM_CHECK(y.shape == n.out.shape && y.grad, "recompute: the segment's output changed between passes");
    for (int64_t i = 0; i < y.numel(); ++i) y.grad[i] += n.out.grad[i];
    side.run_backward();
    side.reset();
}

template <class T>
Tensor<T> recompute(Tape<T>& tape, const RecomputeSegment<T>& seg, const Tensor<T>& x) {
    Tape<T>& side = *seg.side;
    side.reset();
    Tensor<T> y;
    {
        NoGradGuard<T> g(side);
        const Tensor<T> ys = seg.f(side, Tensor<T>(x.data, nullptr, x.shape));
        // The segment's parameters need gradients whenever the main tape records.
        y = tape.make(ys.shape, tape.grad_enabled());
        std::copy(ys.data, ys.data + ys.numel(), y.data);
    }
    side.reset();
    if (y.grad) {
        auto& n = tape.record(&recompute_backward<T>);
        n.in[0] = x;
        n.out = y;
        n.ctx = &seg;
    }
    return y;
}

}  // namespace flashlm::ops
