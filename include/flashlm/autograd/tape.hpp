#pragma once
// Tape: a flat list of whole-tensor op records walked in reverse by backward(). A node is plain data
// (inputs, output, saved buffers, a few scalars and a backward function pointer), so recording an op
// never allocates: the node vector and the arena keep their capacity across steps.
#include <cstdint>
#include <vector>

#include "flashlm/core/arena.hpp"
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

template <class T>
class Tape {
public:
    Tape() { nodes_.reserve(256); }

    bool grad_enabled() const { return grad_enabled_; }
    void set_grad_enabled(bool on) { grad_enabled_ = on; }

    // A fresh activation. It gets a zeroed gradient buffer only if gradients are being recorded and
    // one of the op's inputs needs one.
    Tensor<T> make(Shape s, bool needs_grad) {
        T* d = arena_.alloc(static_cast<std::size_t>(s.numel()));
        T* g = (needs_grad && grad_enabled_) ? arena_.alloc_zeroed(static_cast<std::size_t>(s.numel())) : nullptr;
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
        FLASHLM_CHECK(loss.numel() == 1 && loss.grad, "backward: loss must be a scalar that requires grad");
        loss.grad[0] += T(1);
        run_backward();
    }
    // The same, calling after_node(i) once node i (recording order) has run or been skipped; from then
    // on no later node touches the gradients node i's inputs point at (data-parallel training starts
    // reducing finished parameter gradients from there while the rest of backward runs).
    template <class F>
    void backward(const Tensor<T>& loss, F&& after_node) {
        FLASHLM_CHECK(loss.numel() == 1 && loss.grad, "backward: loss must be a scalar that requires grad");
        loss.grad[0] += T(1);
        run_backward(after_node);
    }
    // Backward from gradients the caller has already seeded (e.g. a vector-Jacobian product in tests).
    void run_backward() {
        run_backward([](std::size_t) {});
    }
    template <class F>
    void run_backward(F&& after_node) {
        for (std::size_t i = nodes_.size(); i-- > 0;) {
            Node<T>& n = nodes_[i];
            if (n.out.grad) n.backward(n);
            after_node(i);
        }
    }
    // Drops the graph and recycles all activation memory for the next step.
    void reset() {
        nodes_.clear();
        arena_.reset();
    }
    std::size_t size() const { return nodes_.size(); }
    const std::vector<Node<T>>& nodes() const { return nodes_; }
    const Arena<T>& arena() const { return arena_; }

private:
    Arena<T> arena_;
    Storage<T> work_;
    std::vector<Node<T>> nodes_;
    bool grad_enabled_ = true;
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
