#pragma once
// Train-time position subsampling (v3's recipe, "a speed measure"): the loss of a step is computed on a
// random share of the batch's B·L positions, drawn without replacement as upstream's
// torch.randperm(B·L)[:n]. The tied head is nearly all of v3's arithmetic, so a quarter of the positions
// makes its three head products a quarter as long.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "flashlm/core/rng.hpp"

namespace flashlm::train {

// Positions a fraction of n keeps: max(1, ⌊n·fraction⌋), upstream's count.
inline int64_t sampled_positions(int64_t n, double fraction) {
    if (!(fraction > 0 && fraction <= 1))
        throw std::invalid_argument("position fraction " + std::to_string(fraction) + " is outside (0, 1]");
    return std::clamp(int64_t(double(n) * fraction), int64_t(1), n);
}

// out = sampled_positions(n, fraction) distinct positions of [0, n), ascending (the gather then reads the
// hidden states front to back). A partial Fisher–Yates shuffle: one draw per sampled position. `out` and
// `scratch` keep their capacity across steps, so a training step allocates nothing here.
inline void sample_positions(Rng& rng, int64_t n, double fraction, std::vector<int32_t>& out,
                             std::vector<int32_t>& scratch) {
    if (n <= 0 || n > int64_t(INT32_MAX)) throw std::invalid_argument("sample_positions: bad position count");
    const int64_t k = sampled_positions(n, fraction);
    scratch.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) scratch[size_t(i)] = int32_t(i);
    for (int64_t i = 0; i < k; ++i) std::swap(scratch[size_t(i)], scratch[size_t(i + int64_t(rng.below(uint64_t(n - i))))]);
    out.assign(scratch.begin(), scratch.begin() + k);
    std::sort(out.begin(), out.end());
}

}  // namespace flashlm::train
