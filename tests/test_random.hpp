#pragma once
// Seeded test inputs shared by the kernel tests: the same seed gives the same numbers in every binary.
#include <cstdint>
#include <random>
#include <vector>

namespace flashlm::test {

// n draws from N(0, stddev²) with std::mt19937(seed); n ≤ 0 gives an empty vector.
inline std::vector<float> randn(int64_t n, unsigned seed, float stddev = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, stddev);
    std::vector<float> v(size_t(n > 0 ? n : 0));
    for (auto& x : v) x = d(rng);
    return v;
}

}  // namespace flashlm::test
