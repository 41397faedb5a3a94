#pragma once
// Learning-rate schedule: linear warm-up from 0 to the peak, then cosine from the peak to a floor.
// `progress` is the fraction of the run done, in steps (--steps) or in wall time (--minutes/--hours),
// so a fixed-time run decays fully inside its budget (upstream v4 laid the cosine over 10 epochs
// regardless of --hours; VARIANTS.md §16 Q9).
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace flashlm::optim {

struct WarmupCosine {
    double peak = 4e-3, floor = 1e-5;
    int64_t warmup_steps = 500;
    // Fraction of the run at which warm-up ends when the run is measured in time.
    double warmup_progress = 0;

    double at(int64_t step, double progress) const {
        if (step < warmup_steps) return peak * double(step) / double(warmup_steps);
        double p0 = warmup_progress;
        double p = p0 >= 1 ? 1 : std::clamp((progress - p0) / (1 - p0), 0.0, 1.0);
        return floor + 0.5 * (peak - floor) * (1 + std::cos(3.141592653589793 * p));
    }
};

}  // namespace flashlm::optim
