#pragma once
// Tape: a flat list of whole-tensor op records (autograd/node.hpp) walked in reverse by backward().
// Recording an op never allocates: the node vector and the arena keep their capacity across steps.
// Activation gradients are planned by lifetime when backward starts (autograd/grad_plan.hpp) unless
// set_retain_grads(true) gives every activation a gradient buffer of its own, as before planning.
#include <cstdint>
#include <vector>

#include "flashlm/autograd/grad_plan.hpp"
#include "flashlm/autograd/node.hpp"
#include "flashlm/core/arena.hpp"
#include "flashlm/core/tensor.hpp"

namespace flashlm {

template <class T>
class Tape {
public:
    Tape() { nodes_.reserve(256); }

    bool grad_enabled() const { return grad_enabled_; }
    void set_grad_enabled(bool on) { grad_enabled_ = on; }
    // true: every activation gets a zeroed gradient buffer of its own in the forward, readable after
    // backward, and callers may seed output gradients themselves for run_backward() (gradient checks,
    // recomputation's side tape). false (the default): activation gradients are placeholders until
    // backward(loss) plans them by lifetime. Set it before recording.
    void set_retain_grads(bool on) {
        FLASHLM_CHECK(nodes_.empty() && plan_.empty(), "set_retain_grads: set it before recording (or after reset())");
        retain_grads_ = on;
    }
    bool retain_grads() const { return retain_grads_; }

    // A fresh activation. It gets a gradient only if gradients are being recorded and one of the op's
    // inputs needs one: zeroed memory of its own (retain_grads), else a placeholder that backward maps.
    Tensor<T> make(Shape s, bool needs_grad) {
        const auto n = static_cast<std::size_t>(s.numel());
        T* d = arena_.alloc(n);
        T* g = nullptr;
        if (needs_grad && grad_enabled_) {
            if (!retain_grads_) g = plan_.placeholder(n);
            if (!g) g = arena_.alloc_zeroed(n);
        }
        return Tensor<T>(d, g, s);
    }
    // Scratch memory that lives until reset(), e.g. values an op saves for its backward.
    T* scratch(int64_t n) { return arena_.alloc(static_cast<std::size_t>(n)); }
    T* scratch_zeroed(int64_t n) { return arena_.alloc_zeroed(static_cast<std::size_t>(n)); }

    bool recording(std::initializer_list<Tensor<T>> ins) const {
        if (!grad_enabled_) return false;
        for (auto& t : ins)
            if (t.requires_grad()) return true;
        return false;
    }
    Node<T>& record(void (*bw)(Node<T>&)) {
        nodes_.emplace_back();
        nodes_.back().backward = bw;
        nodes_.back().arena_mark = arena_.used();
        return nodes_.back();
    }
    // Memory that only one node's backward uses at a time (fused ops' recomputed activations and inner
    // gradients): one buffer for every node of the tape instead of arena space per node. Grown on the
    // first step and kept, so later steps allocate nothing; the pointer is valid until the next call.
    T* workspace(int64_t n) {
        if (std::size_t(n) > work_.size()) work_.resize_uninitialized(std::size_t(n));
        return work_.data();
    }
    std::size_t workspace_size() const { return work_.size(); }

    // Seeds d(loss)/d(loss) = 1 and runs every node in reverse; gradients accumulate.
    void backward(const Tensor<T>& loss) {
        backward(loss, [](std::size_t) {});
    }
    // The same, calling after_node(i) once node i (recording order) has run or been skipped; from then
    // on no later node touches the gradients node i's inputs point at (data-parallel training starts
    // reducing finished parameter gradients from there while the rest of backward runs).
    template <class F>
    void backward(const Tensor<T>& loss, F&& after_node) {
        FLASHLM_CHECK(loss.numel() == 1 && loss.grad, "backward: loss must be a scalar that requires grad");
        T* seed = loss.grad;
        if (!plan_.empty()) {
            seed = plan_.plan(nodes_, seed);
            plan_.begin(int64_t(nodes_.size()));
        }
        seed[0] += T(1);
        walk(after_node);
    }
    // Backward from gradients the caller has already seeded (e.g. a vector-Jacobian product in tests):
    // needs set_retain_grads(true), so that the seeded buffers are real.
    void run_backward() {
        FLASHLM_CHECK(plan_.empty(), "run_backward: seeding gradients by hand needs Tape::set_retain_grads(true) "
                                     "before recording; backward(loss) plans them otherwise");
        walk([](std::size_t) {});
    }
    // Drops the graph and recycles all activation memory for the next step.
    void reset() {
        nodes_.clear();
        arena_.reset();
        plan_.reset();
    }
    // Gradient memory of the last planned backward (elements): its peak, what one buffer per activation
    // would have taken, and what is held for the next step.
    std::size_t grad_peak() const { return plan_.peak(); }
    std::size_t grad_unplanned() const { return plan_.unplanned(); }
    std::size_t grad_capacity() const { return plan_.capacity(); }
    std::size_t size() const { return nodes_.size(); }
    const std::vector<Node<T>>& nodes() const { return nodes_; }
    const Arena<T>& arena() const { return arena_; }

private:
    // Runs the nodes in reverse; on a planned tape each gradient is zeroed as its lifetime begins.
    template <class F>
    void walk(F&& after_node) {
        const bool planned = !plan_.empty();
        for (std::size_t i = nodes_.size(); i-- > 0;) {
            Node<T>& n = nodes_[i];
            if (planned) plan_.begin(int64_t(i));
            if (n.out.grad) n.backward(n);
            after_node(i);
        }
    }

    Arena<T> arena_;
    Storage<T> work_;
    GradPlan<T> plan_;
    std::vector<Node<T>> nodes_;
    bool grad_enabled_ = true, retain_grads_ = false;
};

// Eval and generation: ops run without recording nodes or allocating gradients.
template <class T>
class NoGradGuard {
public:
    explicit NoGradGuard(Tape<T>& t) : tape_(t), prev_(t.grad_enabled()) { t.set_grad_enabled(false); }
    ~NoGradGuard() { tape_.set_grad_enabled(prev_); }
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    Tape<T>& tape_;
    bool prev_;
};

}  // namespace flashlm
