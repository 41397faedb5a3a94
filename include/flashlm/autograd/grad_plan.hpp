#pragma once
// GradPlan: activation gradients share memory by lifetime. During the forward each activation's gradient
// gets a placeholder address (core/placeholder_range.hpp). When backward starts the whole graph is known,
// and so is every gradient's lifetime: from the backward of the last node that refers to it (the first to
// add into it) down to the backward of the first (its producer, the last to read it). Gradients whose
// lifetimes do not overlap get the same memory, each is zeroed when its lifetime begins, and the nodes'
// pointers are rewritten to the real addresses. Gradient memory becomes the most that is alive at any
// one node instead of a buffer per activation, and the forward no longer zeroes buffers ahead of time.
// The price, as in PyTorch (where only leaves keep .grad): an activation's gradient is gone after
// backward. Parameters and other buffers the tape did not hand out are never touched.
// Every node field that can hold a gradient pointer is looked at: in[].grad, out.grad and saved[] (an op
// may carry an extra input's gradient there).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "flashlm/autograd/node.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/core/placeholder_range.hpp"
#include "flashlm/core/storage.hpp"

namespace flashlm {

template <class T>
class GradPlan {
public:
    // n elements of placeholder gradient; null where no placeholder range is available (the tape then
    // allocates the gradient as it did before).
    T* placeholder(std::size_t n) {
        n = aligned_count<T>(n);
        T* p = static_cast<T*>(range_.take(n * sizeof(T)));
        if (p) slots_.push_back(Slot{p, n});
        return p;
    }
    bool empty() const { return slots_.empty(); }
    // Forgets the placeholders (the tape's reset); the real buffer is kept for the next step.
    void reset() {
        range_.reset();
        slots_.clear();
        planned_ = false;
    }

    // Plans the lifetimes over `nodes` (recording order), allocates, rewrites the nodes' pointers and
    // returns `seeded` (the gradient the caller writes before the first node runs: the loss's) mapped.
    // That one is alive from the start. Allocates only when a step needs more than any before it.
    T* plan(std::vector<Node<T>>& nodes, T* seeded) {
        FLASHLM_CHECK(!planned_, "backward: this tape's graph was already run backward; reset() it and record again "
                                 "(or keep every gradient with Tape::set_retain_grads(true))");
        planned_ = true;
        const int64_t N = int64_t(nodes.size());
        for (Slot& s : slots_) s.lo = N + 1, s.hi = -1;
        auto touch = [&](const T* p, int64_t i) {
            if (Slot* s = find(p)) s->lo = std::min(s->lo, i), s->hi = std::max(s->hi, i);
        };
        for (int64_t i = 0; i < N; ++i) each_grad_pointer(nodes[std::size_t(i)], [&](T* p) { touch(p, i); });
        if (Slot* s = find(seeded)) s->hi = N, s->lo = std::min(s->lo, N);

        births_.clear();
        deaths_.clear();
        for (std::size_t k = 0; k < slots_.size(); ++k)
            if (slots_[k].hi >= 0) births_.push_back(k), deaths_.push_back(k);
        std::sort(births_.begin(), births_.end(), [&](std::size_t a, std::size_t b) { return slots_[a].hi > slots_[b].hi; });
        std::sort(deaths_.begin(), deaths_.end(), [&](std::size_t a, std::size_t b) { return slots_[a].lo > slots_[b].lo; });

        // Backward runs node N-1 down to 0 (N: the seeding before it). At node i the gradients born there
        // are allocated first, those that die there are freed after: both are alive while node i runs.
        free_.clear();
        std::size_t end = 0, peak = 0, b = 0, d = 0;
        for (int64_t i = N; i >= 0; --i) {
            for (; b < births_.size() && slots_[births_[b]].hi == i; ++b) {
                Slot& s = slots_[births_[b]];
                s.off = take(s.n, end);
                peak = std::max(peak, end);
            }
            for (; d < deaths_.size() && slots_[deaths_[d]].lo == i; ++d) give(slots_[deaths_[d]], end);
        }
        peak_ = peak;
        if (live_.size() < peak) live_.resize_uninitialized(peak + peak / 4);  // a later step may need a little more

        auto map = [&](T* p) -> T* {
            const Slot* s = find(p);
            return s ? live_.data() + s->off + (p - s->fake) : p;
        };
        for (Node<T>& n : nodes) each_grad_pointer(n, [&](T*& p) { p = map(p); });
        next_birth_ = 0;
        return map(seeded);
    }

    // Zeroes the gradients whose lifetime begins at node i (i == node count: before seeding).
    void begin(int64_t i) {
        for (; next_birth_ < births_.size() && slots_[births_[next_birth_]].hi >= i; ++next_birth_) {
            const Slot& s = slots_[births_[next_birth_]];
            parallel_memset_zero(static_cast<void*>(live_.data() + s.off), s.n * sizeof(T));
        }
    }

    // Elements: gradient memory the last plan needed at its peak, and what one buffer per activation
    // would have taken.
    std::size_t peak() const { return peak_; }
    std::size_t unplanned() const {
        std::size_t t = 0;
        for (const Slot& s : slots_) t += s.n;
        return t;
    }
    std::size_t capacity() const { return live_.size(); }

private:
    struct Slot {
        T* fake = nullptr;
        std::size_t n = 0;
        int64_t lo = 0, hi = -1;  // first and last node referring to it (recording order)
        std::size_t off = 0;      // in live_
    };

    // Calls f on every node field that can hold a gradient pointer, so that the lifetimes and the
    // rewrite see the same ones.
    template <class F>
    static void each_grad_pointer(Node<T>& n, F&& f) {
        for (Tensor<T>& t : n.in) f(t.grad);
        f(n.out.grad);
        for (T*& s : n.saved) f(s);
    }

    // The slot whose placeholder holds p (views point inside one), or null. Slots are in address order:
    // the range hands out addresses upwards.
    Slot* find(const T* p) {
        if (!p || !range_.contains(p)) return nullptr;
        const auto a = reinterpret_cast<std::uintptr_t>(p);
        auto it = std::upper_bound(slots_.begin(), slots_.end(), a,
                                   [](std::uintptr_t x, const Slot& s) { return x < reinterpret_cast<std::uintptr_t>(s.fake); });
        if (it == slots_.begin()) return nullptr;
        --it;
        return a < reinterpret_cast<std::uintptr_t>(it->fake + it->n) ? &*it : nullptr;
    }
    // First fit in the free blocks (kept in offset order), else past the end.
    std::size_t take(std::size_t n, std::size_t& end) {
        for (std::size_t k = 0; k < free_.size(); ++k)
            if (free_[k].n >= n) {
                const std::size_t off = free_[k].off;
                free_[k].off += n, free_[k].n -= n;
                if (free_[k].n == 0) free_.erase(free_.begin() + std::ptrdiff_t(k));
                return off;
            }
        end += n;
        return end - n;
    }
    void give(const Slot& s, std::size_t& end) {
        auto it = std::lower_bound(free_.begin(), free_.end(), s.off, [](const Block& f, std::size_t o) { return f.off < o; });
        it = free_.insert(it, Block{s.off, s.n});
        if (auto nx = it + 1; nx != free_.end() && it->off + it->n == nx->off) it->n += nx->n, free_.erase(nx);
        if (it != free_.begin())
            if (auto pv = it - 1; pv->off + pv->n == it->off) pv->n += it->n, it = free_.erase(it) - 1;
        if (it->off + it->n == end) end = it->off, free_.erase(it);
    }

    struct Block {
        std::size_t off, n;
    };
    PlaceholderRange range_;
    std::vector<Slot> slots_;
    std::vector<std::size_t> births_, deaths_;  // slot indices by lifetime start / end, backward order
    std::vector<Block> free_;
    Storage<T> live_;
    std::size_t peak_ = 0, next_birth_ = 0;
    bool planned_ = false;
};

}  // namespace flashlm
