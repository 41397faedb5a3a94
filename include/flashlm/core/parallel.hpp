#pragma once
// Threading helpers. parallel_for and parallel_for_balanced cut [0, n) into ranges whose bounds depend on
// n and the thread count alone, so results are deterministic for a given thread count; parallel_for_tid
// and parallel_sum give each thread one static range (their callers combine per-thread partials). Small
// loops, nested calls and single-thread runs never enter an OpenMP region: libgomp mallocs a fresh team
// for every serialized (one-thread) region, which would break the no-allocation-per-step guarantee.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace flashlm {

inline int max_threads() { return omp_get_max_threads(); }
inline void set_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}
inline int thread_id() { return omp_get_thread_num(); }

// Below this many scalar operations a loop stays serial: forking threads costs more than the work.
inline constexpr int64_t k_parallel_min_work = 1 << 15;
// Upper bound on threads for fixed-size per-thread scratch (partial sums).
inline constexpr int k_max_threads = 256;

inline bool go_parallel(int64_t n, int64_t work) {
    return n > 1 && work >= k_parallel_min_work && max_threads() > 1 && !omp_in_parallel();
}

// Chunk c of [0, n) for k threads in a balanced loop: level l = c / k holds k equal chunks of half of what
// the levels before it left (n/2k each at level 0, n/4k at level 1, ...); the last level, once chunks
// would fall under about n/32k items, takes the rest. Bounds depend on (n, k) only. Returns false past
// the last chunk.
inline bool balanced_chunk(int64_t c, int64_t n, int64_t k, int64_t& b, int64_t& e) {
    int64_t levels = 1;  // level l covers [n − ⌊n/2^l⌋, n − ⌊n/2^(l+1)⌋), the last one up to n
    while (levels < 6 && (n >> levels) >= 2 * k) ++levels;
    const int64_t level = c / k, j = c % k;
    if (level >= levels) return false;
    const int64_t lo = n - (n >> level), hi = level + 1 == levels ? n : n - (n >> (level + 1));
    // Bounds of a long loop fall on multiples of 16 items: a flat float array's ranges then start 64-byte
    // aligned (when the array is), and Eigen's vectorised expressions, which peel unaligned heads into
    // scalar code with different roundings (exp), give the same bits whatever the split.
    const int64_t g = n >= 1024 * k ? 16 : 1;
    auto at = [&](int64_t i) { return hi == n && i == k ? n : (lo + (hi - lo) * i / k) / g * g; };
    b = at(j);
    e = at(j + 1);
    return true;
}

// Calls f(begin, end, tid) on disjoint ranges covering [0, n): each thread's first is its level-0 chunk,
// the rest are handed out as threads ask, biggest first (balanced_chunk), so a thread slowed by its
// neighbours on a shared host, or by costlier items, takes fewer. `work` is the total scalar work, used
// only to decide whether threads pay off. Each range's result must not depend on which thread runs it,
// apart from tid-indexed scratch.
template <class F>
void parallel_for_balanced(int64_t n, int64_t work, F&& f) {
    if (!go_parallel(n, work)) {
        if (n > 0) f(int64_t(0), n, 0);
        return;
    }
    // Thread t always runs chunk t (level 0, the biggest) first, and only then takes chunks from the
    // counter: every thread then works in every loop from the first step, so per-thread buffers that grow
    // on first use (GEMM workspaces, attention scratch) reach their size in the first step, never later.
    std::atomic<int64_t> next{0};
#pragma omp parallel
    {
        const int t = omp_get_thread_num();
        const int64_t k = omp_get_num_threads();
        int64_t b = 0, e = 0;
        for (int64_t c = t; balanced_chunk(c, n, k, b, e); c = k + next.fetch_add(1, std::memory_order_relaxed))
            if (b < e) f(b, e, t);
    }
}

// Calls f(begin, end) on disjoint ranges covering [0, n) (balanced, as parallel_for_balanced).
template <class F>
void parallel_for(int64_t n, int64_t work, F&& f) {
    parallel_for_balanced(n, work, [&](int64_t b, int64_t e, int) { f(b, e); });
}

// One static range per thread, with the thread index (0..threads-1) for per-thread scratch or partials;
// returns how many threads ran (their partials are the ones to combine).
template <class F>
int parallel_for_tid(int64_t n, int64_t work, F&& f) {
    if (!go_parallel(n, work)) {
        if (n > 0) f(int64_t(0), n, 0);
        return 1;
    }
    int used = 1;
#pragma omp parallel
    {
        const int64_t t = omp_get_thread_num(), k = omp_get_num_threads();
        if (t == 0) used = int(k);
        const int64_t b = n * t / k, e = n * (t + 1) / k;
        if (b < e) f(b, e, int(t));
    }
    return used;
}

// Σ f(begin, end) over a static split; partial sums are added in thread order (deterministic).
template <class F>
double parallel_sum(int64_t n, int64_t work, F&& f) {
    if (!go_parallel(n, work)) return n > 0 ? f(int64_t(0), n) : 0.0;
    double part[k_max_threads] = {};
    int used = 1;
#pragma omp parallel
    {
        const int64_t t = omp_get_thread_num(), k = omp_get_num_threads();
        if (t == 0) used = int(k);
        const int64_t b = n * t / k, e = n * (t + 1) / k;
        if (b < e && t < k_max_threads) part[t] = f(b, e);
    }
    double s = 0;
    for (int t = 0; t < used && t < k_max_threads; ++t) s += part[t];
    return s;
}

// Sums over rows with the same bits on any thread count: each fixed block of k_sum_block rows sums into
// its own partial (whichever thread runs it), and the partials are added in block order.
inline constexpr int64_t k_sum_block = 64;
inline int64_t sum_blocks(int64_t rows) { return (rows + k_sum_block - 1) / k_sum_block; }
// out[c] += Σ_b part[b·stride + c] for c < n, b < blocks, in block order.
template <class T>
void add_block_partials(const T* part, int64_t blocks, int64_t stride, int64_t n, T* out) {
    for (int64_t c = 0; c < n; ++c) {
        T acc = 0;
        for (int64_t b = 0; b < blocks; ++b) acc += part[b * stride + c];
        out[c] += acc;
    }
}

// memset of n bytes, split over the threads when it is large. The tape zeroes every activation gradient
// and parameter-gradient buffer each step (hundreds of MB for Bolt b16x256); done serially, that was
// single-threaded time in every 2-thread step.
inline void parallel_memset_zero(void* p, std::size_t bytes) {
    constexpr int64_t block = 1 << 16;  // bytes per unit of work: whole cache lines, few units
    const int64_t units = (int64_t(bytes) + block - 1) / block;
    if (bytes < std::size_t(1) << 20 || !go_parallel(units, int64_t(bytes))) {
        if (bytes) std::memset(p, 0, bytes);
        return;
    }
    parallel_for(units, int64_t(bytes), [&](int64_t b, int64_t e) {
        const std::size_t lo = std::size_t(b * block), hi = std::min(bytes, std::size_t(e * block));
        std::memset(static_cast<char*>(p) + lo, 0, hi - lo);
    });
}

}  // namespace flashlm
