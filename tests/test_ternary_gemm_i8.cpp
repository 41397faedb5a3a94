// The int8 training forward (`train --quant int8`): the ternary × int8 GEMM (every path against integer
// arithmetic, bit for bit), its packing, and the BitLinear ops with the switch on — the forward within
// the activation quantisation error of the float forward, the STE gradients identical to the float path's.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/test_random.hpp"
#include "flashlm/kernels/ternary_gemm_i8.hpp"
#include "flashlm/ops/bitlinear.hpp"
#include "flashlm/ops/bitlinear_blockwise.hpp"
#include "flashlm/ops/bitlinear_median.hpp"
#include "flashlm/ops/bitlinear_q1p.hpp"
#include "flashlm/ops/bitlinear_rows.hpp"
#include "flashlm/ops/bitlinear_threshold.hpp"

using namespace flashlm;

namespace {

// Leaves the process-wide switch off whatever a test does.
struct Int8Forward {
    explicit Int8Forward(bool on) { ops::set_int8_forward(on); }
    ~Int8Forward() { ops::set_int8_forward(false); }
};

// y through the int8 GEMM, on the current ISA.
std::vector<float> gemm_i8(const std::vector<float>& x, const std::vector<float>& wq, int64_t M, int64_t N, int64_t K) {
    kernels::TernaryI8Weights w;
    kernels::Int8Activations a;
    kernels::pack_ternary_i8(wq.data(), N, K, w);
    kernels::quantize_activations_u8(x.data(), M, K, a);
    std::vector<float> y(size_t(M * N), NAN);
    kernels::ternary_gemm_i8(w, a, y.data());
    return y;
}

}  // namespace

TEST_CASE("ternary_gemm_i8: integer reference on the scalar path, every SIMD path bit for bit") {
    struct S {
        int64_t M, N, K;
    };
    // Ragged K (1, 3, 65, 1000), ragged N (tile and 64-row panel tails), token tails of the 4-token
    // register blocks (AVX-512, AVX2), and shapes that take the OpenMP path (several 96-token chunks).
    const S shapes[] = {{1, 1, 1}, {5, 7, 3}, {6, 16, 4}, {13, 33, 65}, {7, 100, 1000}, {200, 192, 192}, {97, 323, 130}};
    unsigned seed = 10;
    for (const S& s : shapes) {
        CAPTURE(s.M);
        CAPTURE(s.N);
        CAPTURE(s.K);
        const auto w = test::randn(s.N * s.K, ++seed, 0.05f), x = test::randn(s.M * s.K, ++seed);
        std::vector<float> wq(w.size()), alpha(size_t(s.N));
        ops::quantize_absmean_rows(w.data(), wq.data(), s.N, s.K, alpha.data());  // per-row scales
        // Reference: the inference int8 family's activation codes, the integer dot product, the rescale.
        std::vector<int8_t> xq(x.size());
        std::vector<float> xs(size_t(s.M)), ref(size_t(s.M * s.N));
        kernels::quantize_activations_int8(x.data(), s.M, s.K, xq.data(), xs.data());
        for (int64_t m = 0; m < s.M; ++m)
            for (int64_t r = 0; r < s.N; ++r) {
                int32_t dot = 0;
                for (int64_t k = 0; k < s.K; ++k) {
                    const float v = wq[size_t(r * s.K + k)];
                    dot += int32_t(xq[size_t(m * s.K + k)]) * (v > 0 ? 1 : (v < 0 ? -1 : 0));
                }
                ref[size_t(m * s.N + r)] = float(dot) * alpha[size_t(r)] * (1.0f / xs[size_t(m)]);
            }
        for (const auto& isa : kernels::available_isas()) {
            CAPTURE(isa);
            REQUIRE(kernels::set_isa(isa));
            const auto y = gemm_i8(x, wq, s.M, s.N, s.K);
            CHECK(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)) == 0);
        }
    }
    CHECK(kernels::set_isa("auto"));
}

TEST_CASE("quantize_activations_u8: halves round to even, the clamp, and a NaN or infinity carried to the row") {
    // Row 0: max |x| = 127, so s = 1 and the codes are the rounded values themselves (+128).
    // Row 1 holds a NaN, row 2 an infinity: their scales come out NaN, so their outputs do; row 3 is
    // untouched by its neighbours. 21 columns: one vector of 16 and a tail.
    const int64_t K = 21;
    std::vector<float> x(size_t(4 * K), 0.25f);
    const float row0[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, -126.5f, 127.0f, -127.0f, 3.49f};
    std::copy(std::begin(row0), std::end(row0), x.begin());
    x[size_t(K + 17)] = NAN;
    x[size_t(2 * K + 3)] = -INFINITY;
    x[size_t(3 * K + 20)] = -2.0f;
    kernels::Int8Activations a;
    kernels::quantize_activations_u8(x.data(), 4, K, a);
    REQUIRE(a.ld == 24);
    const int expect0[] = {0, 2, 2, 0, -2, -2, 126, -126, 127, -127, 3};
    for (int c = 0; c < 11; ++c) {
        CAPTURE(c);
        CHECK(int(a.q[size_t(c)]) - 128 == expect0[c]);
    }
    CHECK(int(a.q[11]) - 128 == 0);        // 0.25 rounds to 0
    CHECK(int(a.q[21]) == 128);            // padding past K
    CHECK(a.inv[0] == 1.0f);
    CHECK(std::isnan(a.inv[1]));
    CHECK(std::isnan(a.inv[2]));
    CHECK(a.inv[3] == doctest::Approx(2.0f / 127.0f));
    CHECK(int(a.q[size_t(3 * a.ld + 20)]) - 128 == -127);
    CHECK(int(a.q[size_t(3 * a.ld)]) - 128 == 16);  // 0.25 · 127 / 2 = 15.875
    // Through the GEMM: the NaN and infinity rows are NaN in every output, the others finite.
    const int64_t N = 3;
    std::vector<float> wq(size_t(N * K), 0.0f);
    for (int64_t r = 0; r < N; ++r) wq[size_t(r * K + r)] = 0.5f;
    const auto y = gemm_i8(x, wq, 4, N, K);
    for (int64_t r = 0; r < N; ++r) {
        CAPTURE(r);
        CHECK(std::isfinite(y[size_t(r)]));
        CHECK(std::isnan(y[size_t(N + r)]));
        CHECK(std::isnan(y[size_t(2 * N + r)]));
        CHECK(std::isfinite(y[size_t(3 * N + r)]));
    }
}

TEST_CASE("pack_ternary_i8: codes in the VNNI tiles, row sums, and a blockwise W̃ refused") {
    const int64_t N = 18, K = 6;  // two tiles, the second partial; K padded to 8
    std::vector<float> wq(size_t(N * K), 0.0f);
    for (int64_t r = 0; r < N; ++r)
        for (int64_t k = 0; k < K; ++k) wq[size_t(r * K + k)] = float((r + k) % 3 - 1) * 0.25f * float(r + 1);
    kernels::TernaryI8Weights p;
    kernels::pack_ternary_i8(wq.data(), N, K, p);
    REQUIRE(p.cols_padded == 8);
    REQUIRE(p.w.size() == size_t(2 * 2 * 64));
    for (int64_t r = 0; r < N; ++r) {
        int32_t sum = 0;
        for (int64_t k = 0; k < p.cols_padded; ++k) {
            const int8_t c = p.w[size_t(((r / 16 * p.groups() + k / 4) * 16 + r % 16) * 4 + k % 4)];
            const int8_t want = k < K ? int8_t((r + k) % 3 - 1) : int8_t(0);
            CHECK(c == want);
            sum += c;
        }
        CHECK(p.row_sums[size_t(r)] == sum);
        CHECK(p.scale[size_t(r)] == 0.25f * float(r + 1));
    }
    for (int64_t r = N; r < 32; ++r) CHECK(p.scale[size_t(r)] == 0.0f);
    wq[1] = 2 * wq[1] + 1.0f;  // row 0 now holds two magnitudes
    CHECK_THROWS_AS(kernels::pack_ternary_i8(wq.data(), N, K, p), std::invalid_argument);
}

namespace {

using BitLinearFn = std::function<Tensor<float>(Tape<float>&, const Tensor<float>&, const Tensor<float>&)>;

struct Run {
    std::vector<float> y, dx, dW;
};

// One BitLinear forward and a backward seeded with a fixed dy (so the gradients do not depend on y).
Run run_op(const BitLinearFn& op, const std::vector<float>& x0, const std::vector<float>& w0, const std::vector<float>& dy,
           int64_t M, int64_t N, int64_t K) {
    std::vector<float> x = x0, w = w0, dx(x.size(), 0.0f), dW(w.size(), 0.0f);
    Tape<float> tape;
    tape.set_retain_grads(true);  // output gradients are seeded by hand
    const Tensor<float> X(x.data(), dx.data(), Shape{M, K}), W(w.data(), dW.data(), Shape{N, K});
    const Tensor<float> y = op(tape, X, W);
    REQUIRE(y.grad);
    std::copy(dy.begin(), dy.end(), y.grad);
    tape.run_backward();
    return {std::vector<float>(y.data, y.data + M * N), dx, dW};
}

}  // namespace

TEST_CASE("int8 training forward: within the activation rounding of the float forward, float STE gradients") {
    const int64_t M = 150, N = 70, K = 200;
    const auto x = test::randn(M * K, 1), w = test::randn(N * K, 2, 0.05f), dy = test::randn(M * N, 3);
    const std::pair<const char*, BitLinearFn> quantizers[] = {
        {"Q1 absmean", [](auto& t, auto& a, auto& b) { return ops::bitlinear(t, a, b); }},
        {"Q1' absmean", [](auto& t, auto& a, auto& b) { return ops::bitlinear_q1p(t, a, b); }},
        {"Q2 rows", [](auto& t, auto& a, auto& b) { return ops::bitlinear_rows(t, a, b); }},
        {"Q0 threshold", [](auto& t, auto& a, auto& b) { return ops::bitlinear_threshold(t, a, b); }},
        {"Q3 median", [](auto& t, auto& a, auto& b) { return ops::bitlinear_median(t, a, b); }},
    };
    for (const auto& [label, op] : quantizers) {
        const std::string name = label;
        CAPTURE(name);
        const Run f = run_op(op, x, w, dy, M, N, K);
        Run q;
        {
            Int8Forward on(true);
            q = run_op(op, x, w, dy, M, N, K);
        }
        // W̃ itself: the float forward of the identity matrix is W̃ᵀ exactly.
        std::vector<float> eye(size_t(K * K), 0.0f);
        for (int64_t k = 0; k < K; ++k) eye[size_t(k * K + k)] = 1.0f;
        const std::vector<float> wqt = run_op(op, eye, w, std::vector<float>(size_t(K * N), 0.0f), K, N, K).y;
        // Rounding x to a multiple of 1/s moves each term by at most |W̃_rk| / (2s), s = 127 / max|x_m|:
        // |Δy| ≤ Σ_k |W̃_rk| · max|x_m| / 254, plus float round-off (relative to Σ_k |W̃_rk x_k|).
        // Uniform rounding errors of variance (1/s)²/12 predict the mean squared error.
        double worst = 0, mean_err = 0, sq_err = 0, sq_pred = 0;
        for (int64_t m = 0; m < M; ++m) {
            float amax = 0;
            for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::abs(x[size_t(m * K + k)]));
            for (int64_t r = 0; r < N; ++r) {
                double l1 = 0, l2 = 0, mag = 0;
                for (int64_t k = 0; k < K; ++k) {
                    const double v = std::abs(double(wqt[size_t(k * N + r)]));
                    l1 += v;
                    l2 += v * v;
                    mag += v * std::abs(double(x[size_t(m * K + k)]));
                }
                const double err = std::abs(double(q.y[size_t(m * N + r)]) - double(f.y[size_t(m * N + r)]));
                worst = std::max(worst, err / (l1 * amax / 254.0 + 1e-5 * mag + 1e-30));
                mean_err += err;
                sq_err += err * err;
                sq_pred += l2 * double(amax) * double(amax) / (127.0 * 127.0 * 12.0);
            }
        }
        CHECK(worst <= 1.0);
        CHECK(sq_err / sq_pred == doctest::Approx(1.0).epsilon(0.25));
        MESSAGE(name << ": largest error " << worst << " of the bound, mean |Δy| " << mean_err / double(M * N)
                     << ", mean square " << sq_err / sq_pred << " of the predicted");
        // The backward never sees the int8 values: dx uses the float W̃, dW the float x.
        CHECK(q.dx == f.dx);
        CHECK(q.dW == f.dW);
    }
}

TEST_CASE("int8 training forward: the blockwise quantizer (several scales per row) keeps the float forward") {
    const int64_t M = 20, N = 8, K = 300;  // 2400 weights: ten Q5 blocks, straddling rows
    const auto x = test::randn(M * K, 4), w = test::randn(N * K, 5, 0.05f), dy = test::randn(M * N, 6);
    const BitLinearFn op = [](auto& t, auto& a, auto& b) { return ops::bitlinear_blockwise(t, a, b); };
    const Run f = run_op(op, x, w, dy, M, N, K);
    Int8Forward on(true);
    const Run q = run_op(op, x, w, dy, M, N, K);
    CHECK(q.y == f.y);
    CHECK(q.dW == f.dW);
}
