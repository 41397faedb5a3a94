// The vectorised rewrites of session 6's variant speed work must keep every bit of what they replace:
// kernels::expf_array against libm's expf, the branch-free bit-plane unpack against the branchy one, the
// dropout mask as factors against dropout_keep, and sigmoid/SiLU through expf_array against the scalar
// formulas (what nova-diff, supernova, supernova2-engine and bolt-deltanet train with).
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "flashlm/kernels/expf.hpp"
#include "flashlm/kernels/ternary_bitplane.hpp"
#include "flashlm/ops/activation.hpp"
#include "flashlm/ops/dropout.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace pointwise_speed_test {

using namespace flashlm;

namespace {

bool same_bits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b) || (a != a && b != b); }

// Every 4099th float bit pattern (all exponents, both signs, NaN and inf) plus the edges of libm's
// special path.
std::vector<float> expf_inputs() {
    std::vector<float> x;
    for (uint64_t b = 0; b < (uint64_t(1) << 32); b += 4099) x.push_back(std::bit_cast<float>(uint32_t(b)));
    const float inf = std::numeric_limits<float>::infinity();
    for (float v : {0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(), 88.72283f, 88.72284f, 88.0f,
                    -87.33654f, -103.97208f, -103.97209f, -104.0f, 1e-8f, -1e-8f})
        x.push_back(v);
    return x;
}

}  // namespace

TEST_CASE("expf_array: libm's expf bits (where libm runs the same algorithm), otherwise within 1 ulp") {
    const std::vector<float> x = expf_inputs();
    std::vector<float> y(x.size());
    kernels::expf_array(x.data(), y.data(), int64_t(x.size()));
    int64_t mismatches = 0, far = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        const float r = std::exp(x[i]);
        if (!same_bits(r, y[i])) ++mismatches;
        if (std::isfinite(r) && std::abs(double(r) - double(y[i])) > std::abs(double(r)) * 2.4e-7) ++far;
    }
    CHECK(far == 0);
#if defined(__GLIBC__) && defined(__x86_64__) && defined(__FMA__)
    CHECK(mismatches == 0);
#endif
}

TEST_CASE("sigmoid_array and SiLU keep the scalar formulas' bits") {
    std::vector<float> x(1000), s(x.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i) - 500) * 0.23f;
    x[7] = 95.0f, x[8] = -95.0f;  // libm's special path
    ops::sigmoid_array(x.data(), s.data(), int64_t(x.size()));
    for (size_t i = 0; i < x.size(); ++i) REQUIRE(same_bits(s[i], ops::sigmoid_scalar(x[i])));

    Tape<float> tape;
    std::vector<float> g(x.size(), 0.0f);
    Tensor<float> xt(x.data(), g.data(), Shape{int64_t(x.size())});
    Tensor<float> y = ops::silu(tape, xt);
    for (size_t i = 0; i < x.size(); ++i) {
        REQUIRE(same_bits(y.data[i], x[i] * ops::sigmoid_scalar(x[i])));
        y.grad[i] = 0.5f + float(i % 7);
    }
    tape.run_backward();
    for (size_t i = 0; i < x.size(); ++i) {
        const float sg = ops::sigmoid_scalar(x[i]), dy = 0.5f + float(i % 7);
        // the same formula, up to where the compiler fuses multiply-adds (bench_train_step_cli --hash
        // shows the trained models' bits unchanged)
        const float ref = dy * sg * (1.0f + x[i] * (1.0f - sg));
        REQUIRE(std::abs(g[i] - ref) <= 1e-6f * std::abs(ref) + 1e-30f);
    }
}

TEST_CASE("unpack_bitplanes: branch-free, with a row scale, equals the per-element reference") {
    for (int64_t K : {1, 7, 8, 37, 64, 384}) {
        const int64_t rows = 5, KB = kernels::bitplane_bytes(K);
        std::vector<uint8_t> val(size_t(rows * KB)), sign(val.size());
        uint64_t h = 12345;
        for (size_t i = 0; i < val.size(); ++i) {
            h = ops::mix64(h);
            val[i] = uint8_t(h), sign[i] = uint8_t(h >> 8);  // signs also where val is 0: must give +0
        }
        if (K % 8) {  // the format's padding bits are zero
            const uint8_t keep = uint8_t(0xFF00u >> (K % 8));
            for (int64_t r = 0; r < rows; ++r) val[size_t(r * KB + KB - 1)] &= keep, sign[size_t(r * KB + KB - 1)] &= keep;
        }
        const std::vector<float> scale = {0.5f, 1.0f, 3.25f, 1e-8f, 7.0f};
        std::vector<float> plain(size_t(rows * K)), scaled(plain.size());
        kernels::unpack_bitplanes(val.data(), sign.data(), rows, K, plain.data());
        kernels::unpack_bitplanes(val.data(), sign.data(), rows, K, scaled.data(), scale.data());
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t k = 0; k < K; ++k) {
                const uint8_t bit = uint8_t(0x80u >> (k & 7));
                const size_t b = size_t(r * KB + k / 8);
                const float ref = (val[b] & bit) ? ((sign[b] & bit) ? -1.0f : 1.0f) : 0.0f;
                REQUIRE(same_bits(plain[size_t(r * K + k)], ref));
                REQUIRE(same_bits(scaled[size_t(r * K + k)], ref * scale[size_t(r)]));
            }
    }
}

TEST_CASE("dropout_factors equals dropout_keep element by element") {
    const uint64_t seed = 0xABCDEF, thr = ops::dropout_threshold(0.1), base = 77 * 0x100000001B3ull;
    std::vector<float> f(300);
    ops::dropout_factors(seed, base, int64_t(f.size()), thr, 1.25f, f.data());
    int64_t dropped = 0;
    for (size_t j = 0; j < f.size(); ++j) {
        const bool keep = ops::dropout_keep(seed, base + j, thr);
        REQUIRE(f[j] == (keep ? 1.25f : 0.0f));
        dropped += !keep;
    }
    CHECK(dropped > 10);  // p = 0.1 of 300: the mask is not all-keep
    CHECK(dropped < 60);
}

}  // namespace pointwise_speed_test
