#pragma once
// Storage: an owning, 64-byte aligned buffer. Parameters, gradients and optimizer state each live in
// one Storage so that optimizer updates, clipping and checkpoint writes are single flat loops.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <utility>

#include "flashlm/core/parallel.hpp"

#if defined(__linux__) && !defined(FLASHLM_STORAGE_MMAP)
#define FLASHLM_STORAGE_MMAP 1
#endif
#if FLASHLM_STORAGE_MMAP
#include <sys/mman.h>
#endif

namespace flashlm {

inline constexpr std::size_t k_alignment = 64;
// n elements rounded up to whole k_alignment blocks, so that buffers carved one after another from one
// block (the arena, the gradient plan) all start aligned.
template <class T>
constexpr std::size_t aligned_count(std::size_t n) {
    constexpr std::size_t a = k_alignment / sizeof(T) ? k_alignment / sizeof(T) : 1;
    return (n + a - 1) / a * a;
}
#if FLASHLM_STORAGE_MMAP
inline constexpr std::size_t k_mmap_bytes = std::size_t(1) << 20;  // page-aligned, so 64-byte aligned too
inline constexpr std::size_t k_page_bytes = 4096;
inline constexpr std::size_t k_huge_page_bytes = std::size_t(2) << 20;
#endif

template <class T>
class Storage {
public:
    Storage() = default;
    explicit Storage(std::size_t n) { resize(n); }
    ~Storage() { release(); }
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    Storage(Storage&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    Storage& operator=(Storage&& o) noexcept {
        if (this != &o) {
            release();
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    // Discards the old contents; the new buffer is zero-filled.
    void resize(std::size_t n) {
        resize_uninitialized(n);
        if (n) std::memset(static_cast<void*>(data_), 0, n * sizeof(T));
    }
    // Discards the old contents and leaves the new buffer's pages untouched, so they count towards the
    // resident set only once something writes them (the arena: its tail past a step's peak never is).
    void resize_uninitialized(std::size_t n) {
        release();
        if (n == 0) return;
#if FLASHLM_STORAGE_MMAP
        // Large buffers map their own pages, and freeing one unmaps them at once. Through malloc they
        // did not always: once a freed buffer of up to 32 MiB has raised glibc's dynamic mmap threshold,
        // later buffers below it (arena chunks of a few MiB) come from the heap, and an arena fold that
        // freed hundreds of them kept them resident beside the new block (nova-diff's peak RSS went from
        // 3.5 to 5.7 GB on a change of workspace sizes).
        if (n * sizeof(T) >= k_mmap_bytes) {
            void* p = ::mmap(nullptr, n * sizeof(T), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) throw std::bad_alloc();
            // Huge pages where the kernel gives them only on request (THP "madvise", as here): one fault
            // per 2 MiB instead of 512 (nova-diff's arena fold: 663k faults -> 2k), and fewer TLB misses
            // over activations swept every step (nova-diff +6-8 % tok/s at 2 threads; docs/design.md).
            // Where THP is "never" this does nothing; under "always" it only changes how hard a fault
            // tries for a huge page (the THP defrag setting).
            if (n * sizeof(T) >= k_huge_page_bytes) ::madvise(p, n * sizeof(T), MADV_HUGEPAGE);
            data_ = static_cast<T*>(p);
            size_ = n;
            return;
        }
#endif
        data_ = static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{k_alignment}));
        size_ = n;
    }
    // Gives back the pages past the first `used` elements that a huge page made resident although nothing
    // was written there (the arena's chunk tails, up to 2 MiB each); they stay mapped and read as zero.
    void release_tail(std::size_t used) {
#if FLASHLM_STORAGE_MMAP
        const std::size_t bytes = size_ * sizeof(T);
        if (bytes < k_mmap_bytes) return;  // from the heap: pages shared with other blocks
        const std::size_t from = (std::min(used, size_) * sizeof(T) + k_page_bytes - 1) / k_page_bytes * k_page_bytes;
        if (from < bytes) ::madvise(reinterpret_cast<char*>(data_) + from, bytes - from, MADV_DONTNEED);
#else
        (void)used;
#endif
    }
    void zero() {
        if (size_) parallel_memset_zero(static_cast<void*>(data_), size_ * sizeof(T));
    }
    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }
    T& operator[](std::size_t i) { return data_[i]; }
    const T& operator[](std::size_t i) const { return data_[i]; }

private:
    void release() {
        if (!data_) return;
#if FLASHLM_STORAGE_MMAP
        if (size_ * sizeof(T) >= k_mmap_bytes)
            ::munmap(static_cast<void*>(data_), size_ * sizeof(T));
        else
            ::operator delete(data_, std::align_val_t{k_alignment});
#else
        ::operator delete(data_, std::align_val_t{k_alignment});
#endif
        data_ = nullptr;
        size_ = 0;
    }
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace flashlm
