#pragma once
// Rng: mt19937_64 with its own normal/uniform transforms, so a seed gives the same numbers on every
// standard library, and the state serialises to a string for checkpoints.
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>

namespace flashlm {

class Rng {
public:
    explicit Rng(uint64_t seed = 42) : eng_(seed) {}
    uint64_t next_u64() { return eng_(); }
    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return double(eng_() >> 11) * (1.0 / 9007199254740992.0); }
    // Uniform integer in [0, n).
    uint64_t below(uint64_t n) { return n ? eng_() % n : 0; }
    // Box–Muller; the spare value is discarded so the sequence depends only on the call count.
    double normal(double mean = 0, double std = 1) {
        double u1 = uniform(), u2 = uniform();
        if (u1 < 1e-300) u1 = 1e-300;
        return mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
    std::string state() const {
        std::ostringstream os;
        os << eng_;
        return os.str();
    }
    void set_state(const std::string& s) {
        std::istringstream is(s);
        is >> eng_;
        if (is.fail()) throw std::runtime_error("invalid RNG state");
    }

private:
    std::mt19937_64 eng_;
};

}  // namespace flashlm
