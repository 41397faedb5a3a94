#pragma once
// PlaceholderRange: addresses that stand for memory not chosen yet. A range of address space is reserved
// with no access and no backing (PROT_NONE, MAP_NORESERVE: it costs neither memory nor commit charge) and
// handed out by a bump pointer. The tape gives activation gradients such addresses during the forward and
// maps them to real buffers once backward has planned them (autograd/grad_plan.hpp); an access through
// one that was never mapped faults at once instead of landing somewhere unplanned.
// Where mmap is missing (FLASHLM_STORAGE_MMAP off) nothing is reserved and take() returns null.
#include <cstddef>
#include <cstdint>
#include <utility>

#include "flashlm/core/storage.hpp"

namespace flashlm {

class PlaceholderRange {
public:
    PlaceholderRange() = default;
    ~PlaceholderRange() { release(); }
    PlaceholderRange(const PlaceholderRange&) = delete;
    PlaceholderRange& operator=(const PlaceholderRange&) = delete;
    PlaceholderRange(PlaceholderRange&& o) noexcept
        : base_(std::exchange(o.base_, nullptr)), used_(std::exchange(o.used_, 0)), tried_(std::exchange(o.tried_, false)) {}
    PlaceholderRange& operator=(PlaceholderRange&& o) noexcept {
        if (this != &o) {
            release();
            base_ = std::exchange(o.base_, nullptr);
            used_ = std::exchange(o.used_, 0);
            tried_ = std::exchange(o.tried_, false);
        }
        return *this;
    }

    // `bytes` (rounded up to whole cache lines) of placeholder addresses; null once the range is spent or
    // where none could be reserved.
    void* take(std::size_t bytes) {
        if (!base_ && !reserve()) return nullptr;
        bytes = (bytes + k_alignment - 1) / k_alignment * k_alignment;
        if (bytes > k_bytes - used_) return nullptr;
        void* p = base_ + used_;
        used_ += bytes;
        return p;
    }
    // Every address handed out since the last reset() becomes free to hand out again.
    void reset() { used_ = 0; }
    bool contains(const void* p) const {
        const auto a = reinterpret_cast<std::uintptr_t>(p), b = reinterpret_cast<std::uintptr_t>(base_);
        return base_ && a >= b && a < b + used_;
    }

private:
    static constexpr std::size_t k_bytes = std::size_t(1) << 36;  // 64 GiB of addresses, no memory

    bool reserve() {
        if (tried_) return false;
        tried_ = true;
#if FLASHLM_STORAGE_MMAP
        void* p = ::mmap(nullptr, k_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) base_ = static_cast<char*>(p);
#endif
        return base_ != nullptr;
    }
    void release() {
#if FLASHLM_STORAGE_MMAP
        if (base_) ::munmap(base_, k_bytes);
#endif
        base_ = nullptr;
        used_ = 0;
    }

    char* base_ = nullptr;
    std::size_t used_ = 0;
    bool tried_ = false;
};

}  // namespace flashlm
