#pragma once
// LanguageModel: what the training loop, evaluation, generation, checkpoints and the CLI need from a
// variant. Variants live in examples/ and are built from nn/ layers.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/param_store.hpp"
#include "flashlm/core/rng.hpp"
#include "flashlm/train/generator.hpp"

namespace flashlm {

// Training recipe defaults of a variant (the upstream script's values).
struct Recipe {
    double lr = 4e-3, min_lr = 1e-5, weight_decay = 0.01, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, clip = 1.0;
    int64_t warmup = 500, batch = 8, accum = 1, seq = 256, vocab = 10000;
    int64_t lr_cycle = 0;        // steps per cosine restart (0: one cosine over the run)
    double lr_cycle_decay = 1.0;  // each restart's peak relative to the previous one
    std::string optimizer = "adamw";  // or "sgd" (momentum below; beta1/beta2/eps unused)
    double momentum = 0.9;
    std::string matmul = "f32";  // training GEMMs: f32 or bf16 (`flashlm train --matmul`)
    double pos_fraction = 1.0;   // share of a batch's positions the training loss is computed on (v3: 0.25)
};

template <class T>
class LanguageModel {
public:
    virtual ~LanguageModel() = default;
    virtual std::string name() const = 0;
    // Config with upstream key names (vocab_size, dim, n_blocks, ...), stored in checkpoints.
    virtual nlohmann::json config() const = 0;
    virtual int64_t vocab_size() const = 0;
    virtual int64_t max_seq_len() const = 0;
    virtual void init(Rng& rng) = 0;
    // Mean next-token cross-entropy of B sequences of length L (ids and targets are [B, L]).
    virtual Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) = 0;
    // Train-time position subsampling (v3's recipe): the next loss() computes its head and cross-entropy on
    // these rows of the flattened [B·L] positions only (ascending, distinct); later calls see every position
    // again, so evaluation never inherits a sample. Returns false, changing nothing, where the variant's loss
    // has no such form.
    virtual bool set_loss_positions(const std::vector<int32_t>& rows) { return rows.empty(); }
    // Whether set_loss_positions takes a sample (asked once, before training; leaves no sample behind).
    bool has_loss_positions() {
        const bool ok = set_loss_positions({0});
        set_loss_positions({});
        return ok;
    }
    // Logits [B, L, V].
    virtual Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) = 0;
    // Cached one-token-at-a-time inference from the current weights; null when the variant has none
    // (callers then recompute the window).
    virtual std::unique_ptr<Generator> make_generator(Quant) const { return nullptr; }
    // Training with activation recomputation per block (ops/recompute.hpp): less memory, one more forward
    // per block. Returns false when the variant does not offer it.
    virtual bool set_recompute(bool on) { return !on; }
    // Extra statistics for the training progress line since the last call (e.g. a mixture-of-experts
    // load, "experts 26/24/25/25%"); empty for none.
    virtual std::string train_stats() { return ""; }

    ParamStore<T>& params() { return params_; }
    const ParamStore<T>& params() const { return params_; }

protected:
    ParamStore<T> params_;
};

}  // namespace flashlm
