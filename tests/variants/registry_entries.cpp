// The registry entries (examples/registry.hpp) of the variants whose own files test the models alone:
// recipes, make() from a config and import's config inference. One translation unit includes the registry,
// which instantiates every model, so the per-variant files stay cheap to compile.
#include <doctest/doctest.h>

#include <vector>

#include "examples/registry.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace registry_entries_test {

using namespace flashlm;

TEST_CASE("nova registry entry: upstream recipe, make() from a config") {
    const auto& e = examples::find_model("nova");
    const Recipe rc = e.recipe(2);
    CHECK(rc.lr == doctest::Approx(5e-4));
    CHECK(rc.warmup == 100);
    CHECK(rc.batch * rc.accum * rc.seq == 4096);
    CHECK(e.make(nlohmann::json{{"vocab_size", 4096}})->params().count() == 4987392);
}

TEST_CASE("nova-diff registry entry: upstream recipe, make() from a config") {
    const auto& e = examples::find_model("nova-diff");
    const Recipe rc = e.recipe(2);
    CHECK(rc.lr == doctest::Approx(3e-3));
    CHECK(rc.weight_decay == doctest::Approx(0.05));
    CHECK(rc.warmup == 100);
    CHECK(rc.batch == 4);
    CHECK(rc.accum == 32);
    CHECK(rc.seq == 256);
    CHECK(rc.vocab == 5120);
    CHECK(e.make(nlohmann::json{{"vocab_size", 5120}})->params().count() == 36869760);
}

TEST_CASE("flashlm import infers the supernova2-engine config (depth from the suffixed layer names) from the shapes") {
    // d_ffn 48 and d_model 40: K = 40/48 bits is ragged for the 64-bit words; 3 layers.
    examples::Supernova2EngineConfig c;
    c.vocab_size = 97, c.d_model = 40, c.d_ffn = 48, c.n_layers = 3, c.seq_len = 32;
    examples::Supernova2Engine<float> m("supernova2-engine", c);
    io::TensorShapes s;
    for (const auto& p : m.params().infos())
        s[p.name] = std::vector<int64_t>(p.shape.dims.begin(), p.shape.dims.begin() + p.shape.rank);
    const auto& entry = examples::find_model("supernova2-engine");
    REQUIRE(entry.infer_config);
    const nlohmann::json j = entry.infer_config(s);
    CHECK(j == nlohmann::json{{"vocab_size", 97}, {"d_model", 40}, {"d_ffn", 48}, {"n_layers", 3}});
    nlohmann::json cfg = j;
    cfg["seq_len"] = 32;
    CHECK(entry.make(cfg)->config() == m.config());
    // A file without layer 1's tensors but with layer 2's still asks for 3 layers (the import then names
    // the missing tensors) rather than loading a shallower model.
    s.erase("gamma_1"), s.erase("W_up_1"), s.erase("W_down_1");
    CHECK(entry.infer_config(s)["n_layers"] == 3);
}

}  // namespace registry_entries_test
