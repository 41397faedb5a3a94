#pragma once
// Cached generation interface: a model freezes its weights once (ternary layers quantised and packed)
// into a Generator that consumes one token at a time, keeping whatever state the architecture needs
// (conv rolling buffers, recurrent states, KV caches), so a token costs O(1) in the context length and
// allocates nothing.
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace flashlm {

// exact: packed ternary × float activations (adds/subs only; same numbers as training up to summation
// order). int8: activations quantised per token to int8 (absmax), ternary × int8 in int32.
enum class Quant { exact, int8 };

inline Quant parse_quant(const std::string& s) {
    if (s == "exact") return Quant::exact;
    if (s == "int8") return Quant::int8;
    throw std::invalid_argument("unknown --quant '" + s + "' (exact or int8)");
}

class Generator {
public:
    virtual ~Generator() = default;
    // Forgets the context.
    virtual void reset() = 0;
    // Feeds one token; returns the logits [vocab] for the next one (valid until the next call).
    virtual const float* step(int32_t token) = 0;
    virtual int64_t vocab_size() const = 0;
};

}  // namespace flashlm
