#include <doctest/doctest.h>

#include "examples/bolt.hpp"

using namespace flashlm;

TEST_CASE("bolt parameter counts match VARIANTS.md") {
    examples::Bolt<float> small("bolt", examples::BoltConfig::small());
    CHECK(small.params().count() == 4364736);
    examples::Bolt<float> large("bolt-large", examples::BoltConfig::large());
    CHECK(large.params().count() == 16847232);
}
