// `flashlm import` / `flashlm export` below the CLI: the state-dict check (io/state_dict.hpp), float
// dtype conversion, config inference and the import of every registered model from its own export.
// The round trip through PyTorch itself is tests/cli/test_import_export.sh.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <filesystem>
#include <string>
#include <vector>

#include "examples/import_export.hpp"

using namespace flashlm;
namespace fs = std::filesystem;

namespace {

struct TmpDir {
    fs::path dir = fs::temp_directory_path() / ("flashlm_import_" + std::to_string(::getpid()));
    TmpDir() { fs::create_directories(dir); }
    ~TmpDir() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    std::string operator/(const std::string& f) const { return (dir / f).string(); }
};

// A two-tensor model with a tied alias, like the head of every FlashLM variant.
struct Tiny {
    ParamStore<float> p;
    Tiny() {
        p.add("emb.weight", Shape({2, 3}));
        p.add("norm.scale", Shape({3}));
        p.alias("head.weight", "emb.weight");
        p.allocate();
    }
};

std::vector<float> seq(std::size_t n, float from) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = from + float(i);
    return v;
}

std::vector<float> logits_of(LanguageModel<float>& m, const std::vector<int32_t>& ids, int64_t B, int64_t L) {
    Tape<float> tape;
    NoGradGuard<float> ng(tape);
    Tensor<float> z = m.logits(tape, ids.data(), B, L);
    return std::vector<float>(z.data, z.data + z.numel());
}

}  // namespace

TEST_CASE("state dict check: a matching file loads, every problem is listed") {
    TmpDir tmp;
    Tiny t;
    const auto e = seq(6, 1), s = seq(3, 10), bad = seq(6, 100);
    const std::string ok = tmp / "ok.safetensors";
    io::save_safetensors(ok, {{"emb.weight", io::DType::F32, {2, 3}, e.data()},
                              {"norm.scale", io::DType::F32, {3}, s.data()},
                              {"head.weight", io::DType::F32, {2, 3}, e.data()}});
    auto st = io::SafeTensors::load(ok);
    CHECK(io::check_state_dict(st, t.p).empty());
    io::load_state_dict(st, ok, t.p);
    CHECK(std::vector<float>(t.p.values(), t.p.values() + 3) == std::vector<float>{1, 2, 3});
    CHECK(t.p.get("norm.scale").data[2] == 12);

    // The tied weight stored only under its alias still loads.
    const std::string alias_only = tmp / "alias.safetensors";
    io::save_safetensors(alias_only, {{"head.weight", io::DType::F32, {2, 3}, bad.data()},
                                      {"norm.scale", io::DType::F32, {3}, s.data()}});
    auto sa = io::SafeTensors::load(alias_only);
    CHECK(io::check_state_dict(sa, t.p).empty());
    io::load_state_dict(sa, alias_only, t.p);
    CHECK(t.p.get("emb.weight").data[5] == 105);

    // Missing, unexpected, mis-shaped, integer and untied, all in one report.
    const std::vector<int32_t> ints{1, 2, 3};
    const std::string wrong = tmp / "wrong.safetensors";
    io::save_safetensors(wrong, {{"emb.weight", io::DType::F32, {3, 2}, e.data()},
                                 {"head.weight", io::DType::F32, {2, 3}, bad.data()},
                                 {"extra.bias", io::DType::F32, {3}, s.data()},
                                 {"norm.scale", io::DType::I32, {3}, ints.data()}});
    auto sw = io::SafeTensors::load(wrong);
    auto pr = io::check_state_dict(sw, t.p);
    CHECK(pr.missing.empty());
    REQUIRE(pr.mismatched.size() == 1);
    CHECK(pr.mismatched[0] == "emb.weight: file [3, 2], model [2, 3]");
    REQUIRE(pr.unexpected.size() == 1);
    CHECK(pr.unexpected[0] == "extra.bias [3]");
    REQUIRE(pr.non_float.size() == 1);
    CHECK(pr.non_float[0] == "norm.scale: I32 (F32, F16, BF16 or F64 expected)");
    CHECK(pr.untied.empty());  // not compared while emb.weight's own shape is wrong
    CHECK_THROWS_WITH_AS(io::load_state_dict(sw, wrong, t.p), doctest::Contains("3 problems"), io::FormatError);

    const std::string untied = tmp / "untied.safetensors";
    io::save_safetensors(untied, {{"emb.weight", io::DType::F32, {2, 3}, e.data()},
                                  {"head.weight", io::DType::F32, {2, 3}, bad.data()}});
    auto su = io::SafeTensors::load(untied);
    pr = io::check_state_dict(su, t.p);
    REQUIRE(pr.missing.size() == 1);
    CHECK(pr.missing[0] == "norm.scale [3]");
    REQUIRE(pr.untied.size() == 1);
    CHECK(pr.untied[0].find("head.weight differs from emb.weight") == 0);
    CHECK(pr.describe().find("missing tensors (1):\n    norm.scale [3]") != std::string::npos);
}

TEST_CASE("state dict load converts F16, BF16 and F64 exactly") {
    TmpDir tmp;
    Tiny t;
    // 1.5, -2, 0.099975586 (f16 0x2E66), 65504 (f16 max), 2^-24 (smallest f16 subnormal), -0
    const std::vector<uint16_t> h{0x3E00, 0xC000, 0x2E66, 0x7BFF, 0x0001, 0x8000};
    const std::vector<uint16_t> b{0x3FC0, 0xC000, 0x4049};  // bf16 1.5, -2, 3.140625
    const std::vector<double> d{0.1, 0.2, 0.3};
    const std::string path = tmp / "mixed.safetensors";
    io::save_safetensors(path, {{"emb.weight", io::DType::F16, {2, 3}, h.data()},
                                {"norm.scale", io::DType::BF16, {3}, b.data()},
                                {"head.weight", io::DType::F16, {2, 3}, h.data()}});
    auto st = io::SafeTensors::load(path);
    io::load_state_dict(st, path, t.p);
    const float* w = t.p.get("emb.weight").data;
    CHECK(w[0] == 1.5f);
    CHECK(w[1] == -2.0f);
    CHECK(w[2] == 0.0999755859375f);
    CHECK(w[3] == 65504.0f);
    CHECK(w[4] == std::ldexp(1.0f, -24));
    CHECK((w[5] == 0.0f && std::signbit(w[5])));
    const float* n = t.p.get("norm.scale").data;
    CHECK(n[0] == 1.5f);
    CHECK(n[2] == 3.140625f);

    const std::string p64 = tmp / "f64.safetensors";
    io::save_safetensors(p64, {{"emb.weight", io::DType::F16, {2, 3}, h.data()},
                               {"norm.scale", io::DType::F64, {3}, d.data()}});
    auto s64 = io::SafeTensors::load(p64);
    io::load_state_dict(s64, p64, t.p);
    CHECK(t.p.get("norm.scale").data[1] == 0.2f);
}

TEST_CASE("export then import reproduces every registered model, config included") {
    TmpDir tmp;
    const nlohmann::json cfg = {{"vocab_size", 300}, {"seq_len", 16}};
    const int64_t B = 2, L = 8;
    for (const auto& entry : examples::registry()) {
        CAPTURE(entry.name);
        auto model = entry.make(cfg);
        Rng rng(11);
        model->init(rng);
        std::vector<int32_t> ids(B * L);
        for (auto& i : ids) i = int32_t(rng.below(300));
        const auto want = logits_of(*model, ids, B, L);

        // With the config in the metadata, as `flashlm export` writes it.
        const std::string with = tmp / (entry.name + ".safetensors");
        io::save_state_dict(with, model->params(), {{"config", model->config().dump()}});
        auto st = io::SafeTensors::load(with);
        CHECK(st.names().size() == model->params().infos().size() + model->params().aliases().size());
        auto imported = examples::import_state_dict(entry, st, with);
        CHECK(imported->config() == model->config());
        CHECK(logits_of(*imported, ids, B, L) == want);  // bit for bit

        // A bare state dict: the shapes give the config, --config the rest.
        const std::string bare = tmp / (entry.name + "-bare.safetensors");
        io::save_state_dict(bare, model->params());
        auto sb = io::SafeTensors::load(bare);
        if (!entry.infer_config) {
            MESSAGE(entry.name << " has no infer_config: a bare state dict needs --config");
            continue;
        }
        auto inferred = examples::import_state_dict(entry, sb, bare, {{"seq_len", 16}});
        CHECK(inferred->config() == model->config());
        CHECK(logits_of(*inferred, ids, B, L) == want);
    }
}

TEST_CASE("import names the model the tensors fit and refuses flashlm checkpoints") {
    TmpDir tmp;
    const auto& bolt = examples::find_model("bolt");
    auto model = bolt.make({{"vocab_size", 300}, {"dim", 32}, {"n_blocks", 2}, {"glu_hidden", 48}});
    const std::string path = tmp / "bolt.safetensors";
    io::save_state_dict(path, model->params());
    auto st = io::SafeTensors::load(path);
    CHECK_THROWS_WITH_AS(examples::import_state_dict(examples::find_model("cortex3"), st, path),
                         doctest::Contains("the tensors fit --model bolt, bolt-large"), io::FormatError);
    CHECK_THROWS_WITH_AS(examples::import_state_dict(examples::find_model("cortex3"), st, path),
                         doctest::Contains("missing tensors (18)"), io::FormatError);
    // A config the shapes contradict is reported tensor by tensor, not as an allocation failure.
    CHECK_THROWS_WITH_AS(examples::import_state_dict(bolt, st, path, {{"glu_hidden", 64}}),
                         doctest::Contains("blocks.0.ffn.W_gate.weight: file [48, 32], model [64, 32]"), io::FormatError);

    optim::AdamW<float> opt(model->params(), {});
    const std::string ck = tmp / "ck.safetensors";
    io::save_checkpoint(ck, model->params(), &opt, io::CheckpointInfo{"bolt", model->config(), "", {}});
    auto sc = io::SafeTensors::load(ck);
    CHECK_THROWS_WITH_AS(examples::import_state_dict(bolt, sc, ck), doctest::Contains("already a flashlm checkpoint"),
                         std::invalid_argument);
}

TEST_CASE("upstream buffers (CORTEX-VI's decay masks) are skipped on import, not unexpected") {
    CHECK(io::matches_indexed("blocks.*.decay_mask", "blocks.11.decay_mask"));
    CHECK_FALSE(io::matches_indexed("blocks.*.decay_mask", "blocks..decay_mask"));
    CHECK_FALSE(io::matches_indexed("blocks.*.decay_mask", "blocks.x.decay_mask"));
    CHECK_FALSE(io::matches_indexed("blocks.*.decay_mask", "blocks.1.decay_mask2"));

    TmpDir tmp;
    const auto& c6 = examples::find_model("cortex6");
    auto model = c6.make({{"vocab_size", 300}, {"d_model", 32}, {"n_layers", 2}, {"d_ff", 48}, {"seq_len", 16}});
    Rng rng(5);
    model->init(rng);
    std::vector<io::TensorRef> refs;
    auto& ps = model->params();
    for (const auto& p : ps.infos())
        refs.push_back({p.name, io::DType::F32, std::vector<int64_t>(p.shape.dims.begin(), p.shape.dims.begin() + p.shape.rank),
                        ps.values() + p.offset});
    // Upstream's masks as `flashlm export` writes them: mask[i][j] = 0.99^(j−i) for i <= j, else 0.
    const auto bufs = c6.buffer_values(model->config());
    REQUIRE(bufs.size() == 2);
    const std::vector<float>& mask = *bufs[0].values;
    CHECK(mask[0 * 16 + 3] == doctest::Approx(0.99 * 0.99 * 0.99));
    CHECK(mask[3 * 16 + 0] == 0.0f);
    CHECK(mask[5 * 16 + 5] == 1.0f);
    for (const auto& r : examples::buffer_refs(bufs)) refs.push_back(r);
    const std::string path = tmp / "c6.safetensors";
    io::save_safetensors(path, refs, {{"config", model->config().dump()}});
    auto st = io::SafeTensors::load(path);

    std::vector<std::string> skipped;
    auto imported = examples::import_state_dict(c6, st, path, nlohmann::json::object(), &skipped);
    CHECK(skipped == std::vector<std::string>{"blocks.0.decay_mask [16, 16]", "blocks.1.decay_mask [16, 16]"});
    std::vector<int32_t> ids{1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(logits_of(*imported, ids, 1, 8) == logits_of(*model, ids, 1, 8));
    // cortex3 has no memory: to it the masks (and the memory weights) are unexpected.
    CHECK_THROWS_WITH_AS(examples::import_state_dict(examples::find_model("cortex3"), st, path),
                         doctest::Contains("blocks.0.decay_mask [16, 16]"), io::FormatError);
    // The seq_len comes from the mask when the config does not say it.
    nlohmann::json cfg = model->config();
    cfg.erase("seq_len");
    const std::string bare = tmp / "c6-bare.safetensors";
    io::save_safetensors(bare, refs, {{"config", cfg.dump()}});
    CHECK(examples::import_state_dict(c6, io::SafeTensors::load(bare), bare)->config().value("seq_len", 0) == 16);
    // BF16 copies (rounded) pass; masks of another decay or length are another model.
    std::vector<uint16_t> half(mask.size());
    for (std::size_t i = 0; i < mask.size(); ++i) half[i] = uint16_t((std::bit_cast<uint32_t>(mask[i]) + 0x8000u) >> 16);
    refs.back() = {"blocks.1.decay_mask", io::DType::BF16, {16, 16}, half.data()};
    io::save_safetensors(path, refs, {{"config", model->config().dump()}});
    CHECK_NOTHROW(examples::import_state_dict(c6, io::SafeTensors::load(path), path));
    const std::vector<float> wrong(16 * 16, 0.5f);
    refs.back() = {"blocks.1.decay_mask", io::DType::F32, {16, 16}, wrong.data()};
    io::save_safetensors(path, refs, {{"config", model->config().dump()}});
    CHECK_THROWS_WITH_AS(examples::import_state_dict(c6, io::SafeTensors::load(path), path),
                         doctest::Contains("blocks.1.decay_mask: element 0 is 0.5, computed 1"), io::FormatError);
    refs.back() = {"blocks.1.decay_mask", io::DType::F32, {8, 8}, mask.data()};
    io::save_safetensors(path, refs, {{"config", model->config().dump()}});
    CHECK_THROWS_WITH_AS(examples::import_state_dict(c6, io::SafeTensors::load(path), path),
                         doctest::Contains("blocks.1.decay_mask: file [8, 8], computed [16, 16]"), io::FormatError);
}

TEST_CASE("every upstream buffer a model exports is one its import skips") {
    for (const auto& e : examples::registry()) {
        if (!e.buffer_values) continue;
        auto m = e.make(nlohmann::json::object());
        const auto bufs = e.buffer_values(m->config());
        CHECK_MESSAGE(!bufs.empty(), e.name);
        for (const auto& b : bufs) {
            const bool skipped = std::any_of(e.upstream_buffers.begin(), e.upstream_buffers.end(),
                                             [&](const std::string& p) { return io::matches_indexed(p, b.name); });
            CHECK_MESSAGE(skipped, (e.name + ": " + b.name));
            CHECK_MESSAGE(!m->params().contains(b.name), (e.name + ": " + b.name));
        }
    }
}
