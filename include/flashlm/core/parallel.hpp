#pragma once
// Thin OpenMP helpers: one place decides how many threads kernels use.
#include <omp.h>

namespace flashlm {

inline int max_threads() { return omp_get_max_threads(); }
inline void set_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}
inline int thread_id() { return omp_get_thread_num(); }

// Row loops smaller than this stay serial: forking threads costs more than the work.
inline constexpr long k_parallel_min_work = 1 << 15;

}  // namespace flashlm
