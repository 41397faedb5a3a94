#pragma once
// Shared by the fuzz targets and the seed generator: the small parameter set a fuzzed checkpoint is
// loaded into (names and shapes of real Bolt tensors, so seeds cut from a trained checkpoint match).
#include <flashlm/core/param_store.hpp>
#include <flashlm/io/checkpoint.hpp>

namespace fuzz {

inline void declare_params(flashlm::ParamStore<float>& ps) {
    ps.add("blocks.0.norm1.scale", flashlm::Shape{192});
    ps.add("blocks.0.mixer.conv.weight", flashlm::Shape{192, 1, 8});
}

}  // namespace fuzz
