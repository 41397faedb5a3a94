#pragma once
// Arena: bump allocator for activations and their gradients. The first training step sizes it: its
// chunks are kept, and every later step walks them in the same order, so a step of the same shape
// allocates nothing and touches no page the first did not (no page faults from the second step on).
// A later step that outgrows them, or fills them differently (data-dependent routing), makes the next
// reset() fold all chunks into one block with a quarter to spare, whose slack absorbs such variation.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "flashlm/core/parallel.hpp"
#include "flashlm/core/storage.hpp"

namespace flashlm {

template <class T>
class Arena {
public:
    explicit Arena(std::size_t initial = 0) {
        if (initial) add_chunk(initial);
    }
    T* alloc(std::size_t n) {
        n = aligned_count<T>(n);
        // The tail of a chunk too short for n stays unused this step.
        while (cur_ < chunks_.size() && used_ + n > chunks_[cur_].size()) {
            // A step that leaves a chunk at another fill than the first step did has sizes of its own:
            // fold the chunks once, or such steps would go on reaching untouched pages of chunk tails
            // (each faulting once) for many steps to come.
            if (!sized_) {
                fill_.push_back(used_);
                // Every later step leaves this tail unwritten too; a huge page may have made it resident.
                chunks_[cur_].release_tail(used_);
            } else if (cur_ >= fill_.size() || fill_[cur_] != used_) outgrown_ = true;
            retired_ += used_;
            used_ = 0;
            ++cur_;
        }
        if (cur_ == chunks_.size()) {
            std::size_t cap = chunks_.empty() ? 0 : chunks_.back().size();
            add_chunk(std::max(n, std::max<std::size_t>(cap, 1 << 16)));
            if (sized_) outgrown_ = true;
        }
        T* p = chunks_[cur_].data() + used_;
        used_ += n;
        peak_ = std::max(peak_, retired_ + used_);
        return p;
    }
    T* alloc_zeroed(std::size_t n) {
        T* p = alloc(n);
        parallel_memset_zero(static_cast<void*>(p), n * sizeof(T));
        return p;
    }
    // Invalidates every pointer handed out since the last reset.
    void reset() {
        if (!sized_ && cur_ < chunks_.size()) chunks_[cur_].release_tail(used_);  // the first step's last chunk
        if (outgrown_ && chunks_.size() > 1) {
            std::size_t total = 0;
            for (auto& c : chunks_) total += c.size();
            chunks_.clear();
            // A quarter more: pages never touched cost address space, not memory, and a step that
            // outgrew its predecessors may be outgrown again.
            add_chunk(total + total / 4);
            fill_.clear();
        }
        sized_ = !chunks_.empty();
        outgrown_ = false;
        cur_ = 0;
        used_ = 0;
        retired_ = 0;
    }
    std::size_t capacity() const {
        std::size_t t = 0;
        for (auto& c : chunks_) t += c.size();
        return t;
    }
    std::size_t peak() const { return peak_; }
    // Elements handed out since the last reset.
    std::size_t used() const { return retired_ + used_; }

private:
    // Not zero-filled: alloc() hands out recycled memory anyway, and alloc_zeroed() zeroes what it hands
    // out, so untouched capacity stays out of the resident set.
    void add_chunk(std::size_t n) {
        chunks_.emplace_back();
        chunks_.back().resize_uninitialized(n);
    }
    std::vector<Storage<T>> chunks_;
    std::size_t cur_ = 0;        // the chunk alloc() takes from
    std::vector<std::size_t> fill_;  // what the first step used of each chunk it moved past
    std::size_t used_ = 0, retired_ = 0, peak_ = 0;
    // sized_: chunks existed when this step began (it is not the first); outgrown_: such a step added a
    // chunk or left one at another fill than the first step did.
    bool sized_ = false, outgrown_ = false;
};

}  // namespace flashlm
