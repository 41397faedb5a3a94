#pragma once
// Threading helpers. Work is split statically into one contiguous range per thread, so results are
// deterministic for a given thread count. Small loops, nested calls and single-thread runs never enter
// an OpenMP region: libgomp mallocs a fresh team for every serialized (one-thread) region, which would
// break the no-allocation-per-step guarantee.
#include <omp.h>

#include <algorithm>
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

// Calls f(begin, end) on disjoint ranges covering [0, n); `work` is the total scalar work, used only to
// decide whether threads pay off.
template <class F>
void parallel_for(int64_t n, int64_t work, F&& f) {
    if (!go_parallel(n, work)) {
        if (n > 0) f(int64_t(0), n);
        return;
    }
#pragma omp parallel
    {
        const int64_t t = omp_get_thread_num(), k = omp_get_num_threads();
        const int64_t b = n * t / k, e = n * (t + 1) / k;
        if (b < e) f(b, e);
    }
}

// Like parallel_for, but also passes the thread index (0..threads-1) for per-thread scratch.
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
