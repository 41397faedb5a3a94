#pragma once
// Batches of (inputs, targets) windows over a token stream: random windows for training (seeded, so a
// run is reproducible and resumable from the RNG state), non-overlapping windows for evaluation.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "flashlm/core/rng.hpp"
#include "flashlm/data/token_stream.hpp"

namespace flashlm::data {

struct Batch {
    std::vector<int32_t> ids, targets;
    std::vector<int32_t> scratch;  // one row of L + 1 tokens while copying from a stream
    int64_t B = 0, L = 0;
    void resize(int64_t b, int64_t l) {
        B = b, L = l;
        ids.resize(size_t(b * l));
        targets.resize(size_t(b * l));
    }
};

// Rows [b0, b1) of the B random windows of length L (+1 for the shifted target) from tokens[0, n): the
// RNG advances by all B windows, so data-parallel ranks that share a seed draw the same global batch and
// each keeps its own slice (out holds b1 - b0 rows).
inline void sample_batch_rows(const uint16_t* tokens, size_t n, int64_t B, int64_t L, int64_t b0, int64_t b1, Rng& rng,
                              Batch& out) {
    if (n < size_t(L) + 1)
        throw std::runtime_error("training data has " + std::to_string(n) + " tokens, fewer than --seq + 1 = " +
                                 std::to_string(L + 1));
    out.resize(b1 - b0, L);
    for (int64_t b = 0; b < B; ++b) {
        const size_t s = size_t(rng.below(n - size_t(L)));
        if (b < b0 || b >= b1) continue;
        const int64_t r = b - b0;
        for (int64_t t = 0; t < L; ++t) {
            out.ids[r * L + t] = tokens[s + t];
            out.targets[r * L + t] = tokens[s + t + 1];
        }
    }
}

// Fills B random windows of length L (+1 for the shifted target) from tokens[0, n).
inline void sample_batch(const uint16_t* tokens, size_t n, int64_t B, int64_t L, Rng& rng, Batch& out) {
    sample_batch_rows(tokens, n, B, L, 0, B, rng, out);
}

// Number of evaluation windows: inputs ids[iL, (i+1)L), targets shifted by one, i < (n-1)/L.
inline int64_t eval_windows(size_t n, int64_t L) { return n < 2 ? 0 : int64_t((n - 1) / size_t(L)); }

// Windows [w0, w0 + count) into out (count rows).
inline void eval_batch(const uint16_t* tokens, int64_t w0, int64_t count, int64_t L, Batch& out) {
    out.resize(count, L);
    for (int64_t b = 0; b < count; ++b)
        for (int64_t t = 0; t < L; ++t) {
            const size_t p = size_t((w0 + b) * L + t);
            out.ids[b * L + t] = tokens[p];
            out.targets[b * L + t] = tokens[p + 1];
        }
}

// How training rows are drawn from a token stream. windows: each row starts at a uniformly random token.
// documents: each row starts at a random document start and runs on through the documents after it,
// separated by their end-of-text token (sequence packing: no padding, no row starts mid-story).
enum class Sampling { windows, documents };

// The same draws as the pointer version above (one RNG draw per row of the global batch) over a stream
// of shards; with Sampling::documents the stream must have index_documents() done.
inline void sample_batch_rows(const TokenStream& s, int64_t B, int64_t L, int64_t b0, int64_t b1, Rng& rng, Batch& out,
                              Sampling mode = Sampling::windows) {
    const size_t n = s.size();
    if (n < size_t(L) + 1)
        throw std::runtime_error("training data has " + std::to_string(n) + " tokens, fewer than --seq + 1 = " +
                                 std::to_string(L + 1));
    size_t starts = 0;
    if (mode == Sampling::documents) {
        if (!s.documents_indexed()) throw std::logic_error("sample_batch_rows: documents not indexed");
        starts = s.documents_starting_by(n - size_t(L) - 1);  // documents with L + 1 tokens after their start
        if (starts == 0) throw std::runtime_error("training data has no document start with --seq + 1 tokens after it");
    }
    out.resize(b1 - b0, L);
    std::vector<int32_t>& row = out.scratch;
    row.resize(size_t(L) + 1);
    for (int64_t b = 0; b < B; ++b) {
        const size_t p = mode == Sampling::windows ? size_t(rng.below(n - size_t(L))) : s.document_start(size_t(rng.below(starts)));
        if (b < b0 || b >= b1) continue;
        const int64_t r = b - b0;
        s.copy(p, size_t(L) + 1, row.data());
        std::copy(row.begin(), row.end() - 1, out.ids.begin() + r * L);
        std::copy(row.begin() + 1, row.end(), out.targets.begin() + r * L);
    }
}

// Evaluation windows [w0, w0 + count) of a stream into out.
inline void eval_batch(const TokenStream& s, int64_t w0, int64_t count, int64_t L, Batch& out) {
    out.resize(count, L);
    std::vector<int32_t>& row = out.scratch;
    row.resize(size_t(L) + 1);
    for (int64_t b = 0; b < count; ++b) {
        s.copy(size_t((w0 + b) * L), size_t(L) + 1, row.data());
        std::copy(row.begin(), row.end() - 1, out.ids.begin() + b * L);
        std::copy(row.begin() + 1, row.end(), out.targets.begin() + b * L);
    }
}

}  // namespace flashlm::data
