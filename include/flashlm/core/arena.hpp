#pragma once
// Arena: bump allocator for activations and their gradients. The first training step sizes it; reset()
// folds any overflow chunks into one block, so every later step of the same shape allocates nothing.
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
        n = round_up(n);
        if (chunks_.empty() || used_ + n > chunks_.back().size()) {
            std::size_t cap = chunks_.empty() ? 0 : chunks_.back().size();
            add_chunk(std::max(n, std::max<std::size_t>(cap, 1 << 16)));
            retired_ += used_;
            used_ = 0;
        }
        T* p = chunks_.back().data() + used_;
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
        if (chunks_.size() > 1) {
            std::size_t total = 0;
            for (auto& c : chunks_) total += c.size();
            chunks_.clear();
            add_chunk(total);
        }
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
    static std::size_t round_up(std::size_t n) {
        constexpr std::size_t a = k_alignment / sizeof(T) ? k_alignment / sizeof(T) : 1;
        return (n + a - 1) / a * a;
    }
    std::vector<Storage<T>> chunks_;
    std::size_t used_ = 0, retired_ = 0, peak_ = 0;
};

}  // namespace flashlm
