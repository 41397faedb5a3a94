#pragma once
// Learning-rate schedule: linear warm-up from 0 to the peak, then cosine from the peak to a floor.
// `progress` is the fraction of the run done, in steps (--steps) or in wall time (--minutes/--hours),
// so a fixed-time run decays fully inside its budget (upstream v4 laid the cosine over 10 epochs
// regardless of --hours; VARIANTS.md §16 Q9).
// With `cycle_steps` > 0 the cosine instead restarts every `cycle_steps` steps after warm-up, each cycle's
// peak `cycle_decay` times the previous one (the "cosine with warm restarts" of v5.2, v6 and v7, which
// count cycles in steps, not in run fractions).
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace flashlm::optim {

struct WarmupCosine {
    double peak = 4e-3, floor = 1e-5;
    int64_t warmup_steps = 500;
    // Fraction of the run at which warm-up ends when the run is measured in time.
    double warmup_progress = 0;
    int64_t cycle_steps = 0;  // 0: one cosine over the run
    double cycle_decay = 1.0;

    double at(int64_t step, double progress) const {
        if (step < warmup_steps) return peak * double(step) / double(warmup_steps);
        if (cycle_steps > 0) {
            const int64_t s = step - warmup_steps, cycle = s / cycle_steps;
            const double top = peak * std::pow(cycle_decay, double(cycle));
            const double p = double(s % cycle_steps) / double(cycle_steps);
            return floor + 0.5 * (std::max(top, floor) - floor) * (1 + std::cos(3.141592653589793 * p));
        }
        double p0 = warmup_progress;
        double p = p0 >= 1 ? 1 : std::clamp((progress - p0) / (1 - p0), 0.0, 1.0);
        return floor + 0.5 * (peak - floor) * (1 + std::cos(3.141592653589793 * p));
    }
};

}  // namespace flashlm::optim
