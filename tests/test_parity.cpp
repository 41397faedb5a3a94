// Parity of flashlm's models with a PyTorch reference (tests/parity/run_parity.py): flashlm writes
// its initial weights and a batch to safetensors, PyTorch computes logits, loss and gradients from
// them, and the two sets of numbers must agree to float32 round-off.
#include <doctest/doctest.h>

#include "examples/bolt.hpp"
#include "examples/cortex.hpp"
#include "tests/parity_harness.hpp"

using namespace flashlm;
using flashlm::parity::check_parity;

TEST_CASE("bolt matches PyTorch: tiny config") {
    examples::BoltConfig c{300, 32, 2, 4, 48, 16};
    examples::Bolt<float> model("bolt", c);
    check_parity("bolt", model, "bolt-tiny", 2, 16, 1234);
}

TEST_CASE("bolt matches PyTorch: small config") {
    examples::BoltConfig c = examples::BoltConfig::small();
    c.seq_len = 64;
    examples::Bolt<float> model("bolt", c);
    check_parity("bolt", model, "bolt-small", 2, 64, 42);
}

namespace {
examples::CortexConfig cortex_tiny(bool memory) {
    examples::CortexConfig c = memory ? examples::CortexConfig::cortex6() : examples::CortexConfig::cortex3();
    c.vocab_size = 300, c.d_model = 32, c.n_layers = 2, c.d_ff = 48, c.kernel_size = 5, c.seq_len = 16;
    if (memory) c.d_mem = 8;
    return c;
}
}  // namespace

TEST_CASE("cortex3 matches PyTorch: tiny config") {
    examples::Cortex<float> model("cortex3", cortex_tiny(false));
    check_parity("cortex3", model, "cortex3-tiny", 2, 16, 1234);
}

TEST_CASE("cortex3 matches PyTorch: real config, seq 64") {
    examples::CortexConfig c = examples::CortexConfig::cortex3();
    c.seq_len = 64;
    examples::Cortex<float> model("cortex3", c);
    check_parity("cortex3", model, "cortex3-real", 2, 64, 42);
}

TEST_CASE("cortex6 matches PyTorch: tiny config") {
    examples::Cortex<float> model("cortex6", cortex_tiny(true));
    check_parity("cortex6", model, "cortex6-tiny", 2, 16, 1234);
}

TEST_CASE("cortex6 matches PyTorch: real config, seq 64") {
    examples::CortexConfig c = examples::CortexConfig::cortex6();
    c.seq_len = 64;
    examples::Cortex<float> model("cortex6", c);
    check_parity("cortex6", model, "cortex6-real", 2, 64, 42);
}

TEST_CASE("cortex6 upstream_compat matches PyTorch: double-shifted loss, 1/sqrt(T) read over a short window") {
    // L = 12 < seq_len = 16, so the window scale 1/√12 differs from the default 1/√16.
    examples::CortexConfig c = cortex_tiny(true);
    c.upstream_compat = true;
    examples::Cortex<float> model("cortex6", c);
    check_parity("cortex6", model, "cortex6-compat", 2, 12, 77);
}
