#pragma once
// Shared by the PyTorch parity tests (tests/test_parity.cpp and tests/variants/*.cpp): flashlm writes its
// initial weights and a batch to safetensors, tests/parity/run_parity.py runs the PyTorch definition on
// them, and logits, loss and every gradient must agree to float32 round-off.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/rng.hpp"
#include "flashlm/io/safetensors.hpp"
#include "flashlm/io/state_dict.hpp"

namespace flashlm::parity {

inline const char* const k_python = "/usr/bin/python3";

struct Scratch {
    std::filesystem::path dir;
    explicit Scratch(const std::string& tag)
        : dir(std::filesystem::temp_directory_path() / ("flashlm_parity_" + tag + "_" + std::to_string(::getpid()))) {
        std::filesystem::create_directories(dir);
    }
    ~Scratch() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};

inline double l2(const float* a, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(a[i]) * a[i];
    return std::sqrt(s);
}

inline void require_torch() {
    // Checked once per process: importing torch costs ~1 CPU-s, and a test binary runs dozens of checks.
    static const bool available =
        std::system((std::string(k_python) + " -c 'import torch, numpy' > /dev/null 2>&1").c_str()) == 0;
    if (!available)
        FAIL(k_python << " cannot import torch and numpy; run scripts/install-deps.sh "
                         "(Debian: python3-torch python3-numpy)");
}

// Runs flashlm and PyTorch on the same weights and batch and compares logits, loss and every gradient.
// null_grads: parameters whose exact gradient is zero (e.g. a key bias the softmax cancels), where both
// sides hold only rounding noise: each side's norm must stay below 1e-5 of the largest gradient norm
// instead of matching relatively. positions: the loss on these rows of the flattened [B·L] positions only
// (train-time position subsampling, LanguageModel::set_loss_positions); empty: every position.
template <class Model>
void check_parity(const std::string& model_kind, Model& model, const std::string& tag, int64_t B, int64_t L,
                  uint64_t seed, const std::vector<std::string>& null_grads = {},
                  const std::vector<int32_t>& positions = {}) {
    require_torch();
    Rng rng(seed);
    model.init(rng);
    const int64_t V = model.vocab_size();
    std::vector<int32_t> ids(B * L), targets(B * L);
    for (auto& t : ids) t = int32_t(rng.below(uint64_t(V)));
    for (auto& t : targets) t = int32_t(rng.below(uint64_t(V)));

    Scratch tmp(tag);
    const std::string in = (tmp.dir / "in.safetensors").string(), out = (tmp.dir / "out.safetensors").string();
    auto& ps = model.params();
    // the parameters as `flashlm export` writes them (tied aliases included), plus the batch
    std::vector<io::TensorRef> batch{{"ids", io::DType::I32, {B, L}, ids.data()},
                                     {"targets", io::DType::I32, {B, L}, targets.data()}};
    if (!positions.empty()) batch.push_back({"positions", io::DType::I32, {int64_t(positions.size())}, positions.data()});
    io::save_state_dict(in, ps, {{"config", model.config().dump()}}, batch);

    const std::string cmd = std::string(k_python) + " " FLASHLM_SOURCE_DIR "/tests/parity/run_parity.py --model " +
                            model_kind + " --in '" + in + "' --out '" + out + "'";
    REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "reference failed: " << cmd);
    io::SafeTensors ref = io::SafeTensors::load(out);

    // Logits.
    Tape<float> tape;
    Tensor<float> logits = model.logits(tape, ids.data(), B, L);
    std::vector<float> ref_logits(B * L * V);
    ref.copy_to("logits", ref_logits.data(), ref_logits.size());
    double max_diff = 0, max_logit = 0;
    for (int64_t i = 0; i < logits.numel(); ++i) {
        max_diff = std::max(max_diff, double(std::abs(logits.data[i] - ref_logits[i])));
        max_logit = std::max(max_logit, double(std::abs(ref_logits[i])));
    }
    tape.reset();

    // Loss and gradients.
    ps.zero_grad();
    if (!positions.empty()) REQUIRE(model.set_loss_positions(positions));
    Tensor<float> loss = model.loss(tape, ids.data(), targets.data(), B, L);
    tape.backward(loss);
    const double ref_loss = ref.to_vector<float>("loss").at(0);
    const double loss_rel = std::abs(double(loss.data[0]) - ref_loss) / std::abs(ref_loss);

    double worst_grad = 0, largest_grad = 0;
    std::string worst_name;
    for (auto& info : ps.infos()) largest_grad = std::max(largest_grad, l2(ps.get(info.name).grad, ps.get(info.name).numel()));
    for (auto& info : ps.infos()) {
        Tensor<float> p = ps.get(info.name);
        if (std::find(null_grads.begin(), null_grads.end(), info.name) != null_grads.end()) {
            std::vector<float> g(p.numel());
            ref.copy_to("grad." + info.name, g.data(), g.size());
            CHECK_MESSAGE(l2(p.grad, p.numel()) <= 1e-5 * largest_grad, info.name << ": gradient should be zero");
            CHECK_MESSAGE(l2(g.data(), p.numel()) <= 1e-5 * largest_grad, info.name << ": reference gradient should be zero");
            continue;
        }
        std::vector<float> g(p.numel());
        ref.copy_to("grad." + info.name, g.data(), g.size());
        std::vector<float> d(g.size());
        for (std::size_t i = 0; i < g.size(); ++i) d[i] = p.grad[i] - g[i];
        const double rel = l2(d.data(), p.numel()) / std::max(l2(g.data(), p.numel()), 1e-30);
        CHECK_MESSAGE(rel <= 1e-3, info.name << ": gradient relative L2 error " << rel);
        if (rel >= worst_grad) worst_grad = rel, worst_name = info.name;
    }
    // The reference's tied alias must carry the same (summed) gradient as the tensor it aliases.
    for (auto& [alias, target] : ps.aliases())
        CHECK(ref.to_vector<float>("grad." + alias) == ref.to_vector<float>("grad." + target));

    // Activation gradients planned by lifetime (the default) against a buffer of their own per
    // activation (set_retain_grads): the parameter gradients must be the same bits.
    {
        const std::vector<float> planned(ps.grads(), ps.grads() + ps.flat_size());
        REQUIRE(tape.grad_peak() > 0);
        CHECK(tape.grad_peak() <= tape.grad_unplanned());
        Tape<float> kept;
        kept.set_retain_grads(true);
        ps.zero_grad();
        if (!positions.empty()) REQUIRE(model.set_loss_positions(positions));
        kept.backward(model.loss(kept, ids.data(), targets.data(), B, L));
        CHECK_MESSAGE(std::memcmp(planned.data(), ps.grads(), planned.size() * sizeof(float)) == 0,
                      tag << ": planned and retained activation gradients give different parameter gradients");
        MESSAGE(tag << ": activation gradients planned " << tape.grad_peak() << " of " << tape.grad_unplanned()
                    << " elements");
    }

    MESSAGE(tag << ": max |logit diff| " << max_diff << " (max |logit| " << max_logit << "), loss flashlm "
                << loss.data[0] << " torch " << ref_loss << " rel diff " << loss_rel << ", worst grad rel L2 "
                << worst_grad << " (" << worst_name << ")");
    CHECK(max_diff <= 1e-4);
    CHECK(loss_rel <= 1e-5);
}


}  // namespace flashlm::parity
