// The vectorised rewrites of session 6's variant speed work must keep every bit of what they replace:
// kernels::expf_array against libm's expf, the branch-free bit-plane unpack against the branchy one, the
// dropout mask as factors against dropout_keep, and sigmoid/SiLU through expf_array against the scalar
// formulas (what nova-diff, supernova, supernova2-engine and bolt-deltanet train with). GELU/GeGLU through
// xsimd's erf and exp (nova) are not bit-identical to libm: they are checked against the exact erf form.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "flashlm/kernels/expf.hpp"
#include "flashlm/kernels/ternary_bitplane.hpp"
#include "flashlm/ops/activation.hpp"
#include "flashlm/ops/dropout.hpp"
#include "flashlm/ops/gelu.hpp"

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
    tape.set_retain_grads(true);  // output gradients are seeded by hand
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

TEST_CASE("GELU and GeGLU (xsimd erf/exp) match the exact erf form, forward and backward, at every column") {
    // 2·F = 2·300 columns: full batches and a ragged tail in every row; x spans [-9, 9], past where
    // 1 + erf underflows to 0. The error bound is the float formula's own: Φ = ½(1 + erf) loses the
    // relative accuracy of erf ≈ −1 (libm's float erf as much), so an absolute 3e-7 on Φ plus 1e-6 relative.
    const int64_t M = 4, F = 300;
    std::vector<float> h(size_t(M * 2 * F)), gh(h.size(), 0.0f);
    for (size_t i = 0; i < h.size(); ++i) h[i] = float(int(i % 601) - 300) * 0.03f + 0.001f * float(i / 601);
    auto gelu_ref = [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); };
    auto grad_ref = [](double x) {
        return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
    };
    Tape<float> tape;
    tape.set_retain_grads(true);  // output gradients are seeded by hand
    Tensor<float> ht(h.data(), gh.data(), Shape{M, 2 * F});
    Tensor<float> y = ops::geglu(tape, ht);
    // error / (1e-6 |ref| + 3e-7 |scale|): at most 1 within the bound
    auto score = [](double got, double ref, double scale) { return std::abs(got - ref) / (1e-6 * std::abs(ref) + 3e-7 * std::abs(scale) + 1e-30); };
    double worst_y = 0, worst_g = 0, worst_libm = 0;
    for (int64_t r = 0; r < M; ++r)
        for (int64_t c = 0; c < F; ++c) {
            const double a = h[size_t(r * 2 * F + c)], b = h[size_t(r * 2 * F + F + c)];
            worst_y = std::max(worst_y, score(y.data[r * F + c], gelu_ref(a) * b, a * b));
            worst_libm = std::max(worst_libm, score(ops::gelu_scalar(float(a)) * float(b), gelu_ref(a) * b, a * b));
            y.grad[r * F + c] = 1.0f;
        }
    tape.run_backward();
    for (int64_t r = 0; r < M; ++r)
        for (int64_t c = 0; c < F; ++c) {
            const double a = h[size_t(r * 2 * F + c)], b = h[size_t(r * 2 * F + F + c)];
            worst_g = std::max(worst_g, score(gh[size_t(r * 2 * F + c)], grad_ref(a) * b, b));
            worst_g = std::max(worst_g, score(gh[size_t(r * 2 * F + F + c)], gelu_ref(a), a));
        }
    MESSAGE("geglu worst error in units of the bound: forward " << worst_y << " (libm's float erf: " << worst_libm
            << "), backward " << worst_g);
    CHECK(worst_y <= 1.0);
    CHECK(worst_g <= 1.0);

    // gelu alone, and a value gives the same result in a full batch and in the ragged tail.
    std::vector<float> x(37, 0.7f), gx(x.size(), 0.0f);
    x[3] = -2.5f, x[36] = -2.5f;
    Tape<float> t2;
    Tensor<float> yt = ops::gelu(t2, Tensor<float>(x.data(), gx.data(), Shape{int64_t(x.size())}));
    CHECK(yt.data[0] == yt.data[35]);
    CHECK(yt.data[3] == yt.data[36]);
    CHECK(score(yt.data[3], gelu_ref(-2.5), 2.5) <= 1.0);
    CHECK(score(yt.data[0], gelu_ref(0.7), 0.7) <= 1.0);
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

TEST_CASE("the dropout op keeps dropout_keep's mask and values, forward and backward, across its chunks") {
    // 1,000 elements: several 256-element chunks, a ragged one, split over the threads.
    const uint64_t seed = 99;
    const double p = 0.2;
    const float s = float(1 / (1 - p));
    std::vector<float> x(1000), gx(x.size(), 0.5f);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.01f * float(i) + 0.5f;  // positive: a dropped one is +0
    Tape<float> tape;
    tape.set_retain_grads(true);  // output gradients are seeded by hand
    Tensor<float> y = ops::dropout(tape, Tensor<float>(x.data(), gx.data(), Shape{int64_t(x.size())}), p, seed);
    const uint64_t thr = ops::dropout_threshold(p);
    for (size_t i = 0; i < x.size(); ++i) {
        REQUIRE(same_bits(y.data[i], ops::dropout_keep(seed, i, thr) ? x[i] * s : 0.0f));
        y.grad[i] = float(i % 5) - 1.5f;
    }
    tape.run_backward();
    for (size_t i = 0; i < x.size(); ++i)
        REQUIRE(same_bits(gx[i], ops::dropout_keep(seed, i, thr) ? 0.5f + y.grad[i] * s : 0.5f));
}

}  // namespace pointwise_speed_test
