#pragma once
// Evaluation over every non-overlapping window of L tokens (inputs ids[iL, (i+1)L), targets shifted by
// one, i < (N-1)/L): mean next-token loss in nats, perplexity, and bits per byte / per character of the
// target text (docs/evaluation.md: only the last two compare across tokenizers).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "flashlm/data/batcher.hpp"
#include "flashlm/train/model.hpp"

namespace flashlm::train {

struct EvalResult {
    double loss = 0, ppl = 0, bpb = 0, bpc = 0;
    int64_t windows = 0, tokens = 0, bytes = 0, chars = 0;
};

// Fills ppl, bpb and bpc from the summed loss and the counts.
inline void finish_eval(EvalResult& r, double nats) {
    r.loss = r.tokens > 0 ? nats / double(r.tokens) : 0;
    r.ppl = std::exp(std::min(r.loss, 50.0));
    r.bpb = r.bytes > 0 ? nats / (double(r.bytes) * std::log(2.0)) : 0;
    r.bpc = r.chars > 0 ? nats / (double(r.chars) * std::log(2.0)) : 0;
}

// max_windows < 0 evaluates all windows; otherwise the first max_windows (in-training checks).
// piece_bytes / piece_chars: UTF-8 bytes / characters each token stands for (piece_chars may be empty:
// bpc is then 0).
template <class T>
EvalResult evaluate(LanguageModel<T>& model, const data::TokenStream& tokens, int64_t L, int64_t batch,
                    const std::vector<int>& piece_bytes, const std::vector<int>& piece_chars, int64_t max_windows = -1) {
    EvalResult r;
    int64_t W = data::eval_windows(tokens.size(), L);
    if (max_windows >= 0 && W > max_windows) W = max_windows;
    if (W == 0) throw std::runtime_error("evaluation data has fewer than seq + 1 = " + std::to_string(L + 1) + " tokens");
    Tape<T> tape;
    NoGradGuard<T> ng(tape);
    data::Batch b;
    double nats = 0;
    for (int64_t w0 = 0; w0 < W; w0 += batch) {
        const int64_t cnt = std::min(batch, W - w0);
        data::eval_batch(tokens, w0, cnt, L, b);
        tape.reset();
        Tensor<T> loss = model.loss(tape, b.ids.data(), b.targets.data(), cnt, L);
        nats += double(loss.data[0]) * double(cnt * L);
        for (int32_t t : b.targets) {
            r.bytes += t < int32_t(piece_bytes.size()) ? piece_bytes[size_t(t)] : 1;
            if (!piece_chars.empty()) r.chars += t < int32_t(piece_chars.size()) ? piece_chars[size_t(t)] : 1;
        }
    }
    r.windows = W;
    r.tokens = W * L;
    finish_eval(r, nats);
    return r;
}

template <class T>
EvalResult evaluate(LanguageModel<T>& model, const uint16_t* tokens, size_t n, int64_t L, int64_t batch,
                    const std::vector<int>& piece_bytes, int64_t max_windows = -1) {
    return evaluate(model, data::TokenStream::view(tokens, n), L, batch, piece_bytes, {}, max_windows);
}

}  // namespace flashlm::train
