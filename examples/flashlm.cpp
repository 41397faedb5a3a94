// flashlm: one command line for every FlashLM variant — train, eval, generate.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <csignal>
#include <optional>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <flashlm/flashlm.hpp>

#include "examples/cli_data.hpp"
#include "examples/registry.hpp"
#include "examples/import_export.hpp"
#if FLASHLM_WITH_MPI
#include <flashlm/train/distributed.hpp>
#endif

using namespace flashlm;
namespace fs = std::filesystem;

namespace {

// CLI11's built-in range checks print the whole double range; these say what is wrong in words.
const CLI::Validator positive(
    [](std::string& s) {
        try {
            size_t n = 0;
            double v = std::stod(s, &n);
            if (n != s.size() || !(v > 0)) return "must be a positive number, got '" + s + "'";
        } catch (const std::exception&) {
            return "must be a positive number, got '" + s + "'";
        }
        return std::string();
    },
    "POSITIVE");
const CLI::Validator non_negative(
    [](std::string& s) {
        try {
            size_t n = 0;
            double v = std::stod(s, &n);
            if (n != s.size() || !(v >= 0)) return "must be zero or a positive number, got '" + s + "'";
        } catch (const std::exception&) {
            return "must be zero or a positive number, got '" + s + "'";
        }
        return std::string();
    },
    ">=0");

int default_threads() { return int(std::max(1u, std::thread::hardware_concurrency())); }

void on_signal(int) { train::stop_requested().store(true); }

#if FLASHLM_WITH_MPI
// Set in main() when launched by mpirun: `train` then runs data-parallel across the ranks.
train::MpiSession* g_mpi = nullptr;
#endif
int world_rank() {
#if FLASHLM_WITH_MPI
    if (g_mpi) return g_mpi->rank();
#endif
    return 0;
}
int world_size() {
#if FLASHLM_WITH_MPI
    if (g_mpi) return g_mpi->size();
#endif
    return 1;
}

struct Loaded {
    io::CheckpointInfo info;
    std::unique_ptr<LanguageModel<float>> model;
    std::unique_ptr<data::Tokenizer> tok;
};

// The model a checkpoint's config declares, allocated only if the file holds at least that many values:
// the config is not covered by the checksum, and a hostile one must not make us allocate terabytes.
std::unique_ptr<LanguageModel<float>> make_checked(const examples::ModelEntry& entry, const io::SafeTensors& st,
                                                   const std::string& path, const nlohmann::json& config) {
    std::size_t held = 0;
    for (const auto& n : st.names()) held += std::size_t(st.at(n).numel()) + 16;  // + ParamStore's alignment
    ParamLimit limit(std::max<std::size_t>(held, 1));
    try {
        return entry.make(config);
    } catch (const std::length_error& e) {
        throw io::FormatError(path + ": " + e.what());
    } catch (const std::exception& e) {
        throw io::FormatError(path + ": bad model config " + config.dump() + ": " + e.what());
    }
}

Loaded load_model(const std::string& path) {
    Loaded l;
    io::SafeTensors st = io::open_checkpoint(path, l.info);
    const auto& entry = examples::find_model(l.info.model);
    l.model = make_checked(entry, st, path, l.info.config);
    io::load_params(st, path, l.model->params());
    l.tok = data::tokenizer_from_blob(l.info.tokenizer);
    if (l.tok->vocab_size() != l.model->vocab_size())
        throw io::FormatError(path + ": tokenizer has " + std::to_string(l.tok->vocab_size()) + " pieces but the model " +
                              std::to_string(l.model->vocab_size()));
    return l;
}

// ---------------------------------------------------------------------------------------------------
struct TrainArgs {
    std::string model = "bolt", data, val_data, out = "runs/bolt", resume, metrics;
    std::string tokenizer, sampling = "windows";
    double minutes = 0, hours = 0, lr = 0, eval_every_minutes = 0, lr_cycle_decay = 0, pos_fraction = 0;
    int64_t lr_cycle = -1;
    int64_t steps = 0, vocab = 0, batch = 0, seq = 0, accum = 0, warmup = -1, eval_every = 0, stop_after = 0,
            log_every = 10, eval_windows = 200, save_every = 0, skip_nonfinite = 0;
    int threads = 0;
    std::string quant = "none";  // BitLinear forward: none (float GEMM) | int8
    uint64_t seed = 42;
    bool upstream_compat = false, recompute = false;
    std::string matmul;  // empty: the recipe's
};

int cmd_train(const TrainArgs& a) {
    const auto& entry = examples::find_model(a.model);
    // Under mpirun every rank runs this; rank 0 alone prints, evaluates and writes files.
    const int rank = world_rank(), nranks = world_size();
    const bool lead = rank == 0;
    int threads = default_threads();
#if FLASHLM_WITH_MPI
    if (g_mpi) threads = g_mpi->default_threads();  // the node's cores shared by its ranks
#endif
    set_threads(a.threads > 0 ? a.threads : threads);
    Recipe rc = entry.recipe(default_threads());
    if (!a.matmul.empty()) { const kernels::MatmulScope check(kernels::parse_matmul(a.matmul)); }  // before any slow setup
    if (a.data.empty())
        throw std::invalid_argument("no training data: pass --data FILE (a UTF-8 text file, a .bin token file or a directory of shards)");
    if (a.steps <= 0 && a.minutes <= 0 && a.hours <= 0)
        throw std::invalid_argument("set the run length: --steps N, --minutes M or --hours H");
    if (a.batch > 0 && a.batch % nranks != 0)
        throw std::invalid_argument(fmt::format("--batch {} is the global batch and must be divisible by the number of "
                                                "ranks ({}); each rank computes --batch / {} sequences", a.batch, nranks, nranks));
    fs::create_directories(a.out);
    const std::string ckpt = (fs::path(a.out) / "checkpoint.safetensors").string();

    // Model config and tokenizer: from the checkpoint on --resume, else from flags + the corpus.
    io::CheckpointInfo resumed;
    std::optional<io::SafeTensors> resumed_st;
    if (!a.resume.empty()) {
        resumed_st.emplace(io::open_checkpoint(a.resume, resumed));
        if (resumed.model != a.model && a.model != "bolt")
            throw std::invalid_argument("--model " + a.model + " does not match the checkpoint's model " + resumed.model);
    }
    const auto& e = a.resume.empty() ? entry : examples::find_model(resumed.model);

    // --data / --val-data: text (tokenized into OUT/train.bin, val.bin) or tokens (a .bin file or a
    // directory of shards from `flashlm tokenize`, read in place).
    const bool train_is_tokens = data::is_token_path(a.data);
    const bool val_is_tokens = !a.val_data.empty() && data::is_token_path(a.val_data);
    std::string text, val_text;
    std::string_view train_part, val_part;
    if (!train_is_tokens) {
        text = data::read_text_file(a.data);
        train_part = text;
        if (a.val_data.empty()) {
            auto [tr, va] = data::split_train_val(text);
            train_part = tr, val_part = va;
        }
    }
    if (!a.val_data.empty() && !val_is_tokens) {
        val_text = data::read_text_file(a.val_data);
        val_part = val_text;
    }
    std::string tok_file = a.tokenizer;
    if (tok_file.empty() && a.resume.empty() && train_is_tokens) {
        tok_file = data::tokenizer_beside(a.data);
        if (tok_file.empty())
            throw std::invalid_argument("token data '" + a.data + "' has no tokenizer.model beside it: pass --tokenizer FILE "
                                        "(the tokenizer it was made with)");
    }

    std::unique_ptr<data::Tokenizer> tok;
    const int64_t want_vocab = a.vocab > 0 ? a.vocab : rc.vocab;
    if (!a.tokenizer.empty() && a.vocab > 0)
        throw std::invalid_argument("--vocab sizes a tokenizer trained on --data; --tokenizer " + a.tokenizer +
                                    " brings its own vocabulary");
    if (!a.resume.empty()) {
        tok = data::tokenizer_from_blob(resumed.tokenizer);
        if (!a.tokenizer.empty() && data::load_tokenizer(a.tokenizer)->serialized() != tok->serialized())
            throw std::invalid_argument("--tokenizer " + a.tokenizer + " is not the tokenizer of " + a.resume +
                                        " (a resumed run keeps its checkpoint's)");
    } else if (!tok_file.empty()) {
        tok = data::load_tokenizer(tok_file);
        if (lead) std::ofstream(fs::path(a.out) / tok->file_name(), std::ios::binary) << tok->serialized();
    } else if (!lead) {
        // rank 0 trains or loads the tokenizer and broadcasts it (below)
    } else {
        if (want_vocab < 260 || want_vocab > 65535) throw std::invalid_argument("--vocab must be in [260, 65535]");
        auto lines = data::split_lines(train_part);
        tok = std::make_unique<data::SpTokenizer>(data::SpTokenizer::train(lines, int(want_vocab), default_threads()));
        if (tok->vocab_size() < want_vocab)
            fmt::print("note: the corpus supports only {} tokenizer pieces, fewer than the requested vocabulary of {}; "
                       "training with {}\n", tok->vocab_size(), want_vocab, tok->vocab_size());
        std::ofstream(fs::path(a.out) / tok->file_name(), std::ios::binary) << tok->serialized();
    }
    data::TokenStream train_tokens, val_tokens;
    auto open_token_caches = [&] {
        const data::TokenCheck chk = cli::token_check(*tok);
        if (train_is_tokens) {
            train_tokens = data::TokenStream::open(a.data, chk);
            if (a.val_data.empty()) {  // hold out the last 10%, cut after an end-of-text token
                const size_t n = train_tokens.size(), cut = train_tokens.next_document_boundary(n - n / 10, tok->eos_id());
                if (cut >= n)
                    throw std::invalid_argument("cannot hold out a validation split: the token data has no end-of-text token "
                                                "in its last 10%; pass --val-data");
                val_tokens = train_tokens.slice(cut, n);
                train_tokens = train_tokens.slice(0, cut);
            }
        } else {
            const std::string cache = (fs::path(a.out) / "train.bin").string();
            data::cached_tokens(cache, a.data, a.val_data.empty() ? "train-90%" : "all", train_part, *tok);
            train_tokens = data::TokenStream::open(cache, chk);
        }
        if (val_is_tokens) {
            val_tokens = data::TokenStream::open(a.val_data, chk);
        } else if (!val_part.empty()) {
            const std::string cache = (fs::path(a.out) / "val.bin").string();
            data::cached_tokens(cache, a.val_data.empty() ? a.data : a.val_data, a.val_data.empty() ? "val-10%" : "all",
                                val_part, *tok);
            val_tokens = data::TokenStream::open(cache, chk);
        }
    };
#if FLASHLM_WITH_MPI
    if (g_mpi) {
        // Rank 0 builds the token caches first; then the other ranks of each machine take turns, so on a
        // shared --out they reuse rank 0's files and on separate disks one rank per machine writes them.
        if (a.resume.empty()) {
            std::string blob = lead ? tok->serialized() : std::string();
            g_mpi->broadcast(blob);
            if (!lead) tok = data::tokenizer_from_blob(blob);
        }
        if (lead) open_token_caches();
        g_mpi->barrier();
        g_mpi->one_at_a_time_per_node([&] {
            if (!lead) open_token_caches();
        });
    } else {
        open_token_caches();
    }
#else
    open_token_caches();
#endif

    nlohmann::json cfg = a.resume.empty() ? nlohmann::json::object() : resumed.config;
    if (a.resume.empty()) {
        cfg["vocab_size"] = tok->vocab_size();
        if (a.seq > 0) cfg["seq_len"] = a.seq;
        else if (rc.seq > 0) cfg["seq_len"] = rc.seq;
    }
    if (a.upstream_compat) cfg["upstream_compat"] = true;
    auto model = resumed_st ? make_checked(e, *resumed_st, a.resume, cfg) : e.make(cfg);
    if (a.upstream_compat && !model->config().value("upstream_compat", false))
        throw std::invalid_argument("model " + e.name + " has no --upstream-compat mode");
    const int64_t seq = a.seq > 0 ? a.seq : model->max_seq_len();
    if (seq > model->max_seq_len())
        throw std::invalid_argument(fmt::format("--seq {} exceeds the model's seq_len {}", seq, model->max_seq_len()));
    if (!model->set_recompute(a.recompute))
        throw std::invalid_argument(fmt::format("--recompute is not available for {} (bolt, bolt-large, bolt-blockwise, supernova2)", e.name));
    ops::set_int8_forward(a.quant == "int8");

    train::TrainOptions o;
    o.steps = a.steps;
    o.budget_s = a.hours > 0 ? a.hours * 3600 : a.minutes * 60;
    if (o.steps <= 0 && o.budget_s <= 0) throw std::invalid_argument("set the run length: --steps N, --minutes M or --hours H");
    o.stop_after = a.stop_after;
    o.batch = a.batch > 0 ? a.batch : rc.batch;
    if (o.batch % nranks != 0) {  // the recipe's batch, rounded up to a multiple of the rank count
        o.batch = (o.batch + nranks - 1) / nranks * nranks;
        if (lead) fmt::print("note: global batch {} (the recipe's, rounded up to a multiple of {} ranks)\n", o.batch, nranks);
    }
    o.accum = a.accum > 0 ? a.accum : rc.accum;
    o.seq = seq;
    o.lr = a.lr > 0 ? a.lr : rc.lr;
    o.min_lr = rc.min_lr;
    o.weight_decay = rc.weight_decay;
    o.beta1 = rc.beta1, o.beta2 = rc.beta2, o.clip = rc.clip;
    o.optimizer = rc.optimizer, o.momentum = rc.momentum;
    o.matmul = a.matmul.empty() ? rc.matmul : a.matmul;
    o.pos_fraction = a.pos_fraction > 0 ? a.pos_fraction : rc.pos_fraction;
    o.warmup = a.warmup >= 0 ? a.warmup : rc.warmup;
    o.lr_cycle = a.lr_cycle >= 0 ? a.lr_cycle : rc.lr_cycle;
    o.lr_cycle_decay = a.lr_cycle_decay > 0 ? a.lr_cycle_decay : rc.lr_cycle_decay;
    if (o.steps > 0 && o.warmup > o.steps / 5) {
        if (lead) fmt::print("note: warm-up of {} steps shortened to {} (a fifth of the {}-step run)\n", o.warmup, o.steps / 5, o.steps);
        o.warmup = o.steps / 5;
    }
    o.eval_every = a.eval_every;
    o.save_every = a.save_every;
    o.skip_nonfinite = a.skip_nonfinite;
    o.eval_every_s = a.eval_every_minutes * 60;
    o.eval_windows = a.eval_windows;
    o.log_every = std::max<int64_t>(1, a.log_every);
    o.seed = a.seed;
    o.checkpoint = ckpt;
    o.best_checkpoint = (fs::path(a.out) / "best.safetensors").string();
    o.metrics = a.metrics.empty() ? (fs::path(a.out) / "metrics.jsonl").string() : a.metrics;
    o.sampling = a.sampling == "documents" ? data::Sampling::documents : data::Sampling::windows;
    if (o.sampling == data::Sampling::documents) train_tokens.index_documents(tok->eos_id());

    const std::vector<int> piece_chars = data::piece_chars(*tok);
    train::Corpus corpus{&train_tokens, &val_tokens, &tok->piece_bytes(), tok->serialized(), &piece_chars};
    train::Trainer<float> trainer(*model, corpus, o);
#if FLASHLM_WITH_MPI
    std::optional<train::MpiDataParallel<float>> dp;
    if (g_mpi && nranks > 1) {
        dp.emplace(*g_mpi, model->params());
        trainer.set_data_parallel(&*dp);
    }
#endif
    if (!lead) trainer.log = [](const std::string&) {};
    if (a.resume.empty()) {
        Rng init_rng(a.seed);
        model->init(init_rng);
    } else {
        trainer.resume(*resumed_st, a.resume, resumed);
        resumed_st.reset();
    }
    if (lead) {
        fmt::print("model {} | {} parameters | vocab {} | batch {}x{} (accum {}) | {} train / {} val tokens | {}\n",
                   model->name(), model->params().count(), model->vocab_size(), o.batch, o.seq, o.accum,
                   train_tokens.size(), val_tokens.size(),
                   nranks > 1 ? fmt::format("{} ranks x {} threads, {} sequences per rank", nranks, max_threads(), o.batch / nranks)
                              : fmt::format("{} threads", max_threads()));
        if (!a.resume.empty()) fmt::print("resumed from {} at step {}\n", a.resume, trainer.state().step);
        if (a.quant == "int8") fmt::print("BitLinear forward in int8 (--quant int8): activations per token x ternary codes\n");
        if (o.pos_fraction < 1)
            fmt::print("training loss on {} of {} positions per micro-batch (--pos-fraction {:g}); evaluation on all\n",
                       train::sampled_positions(o.batch / nranks * o.seq, o.pos_fraction), o.batch / nranks * o.seq, o.pos_fraction);
        std::fflush(stdout);
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    const bool finished = trainer.run();
    if (finished && lead) trainer.run_eval();
#if FLASHLM_WITH_MPI
    if (dp && lead) {
        const auto& st = dp->stats();
        const double steps = double(std::max<int64_t>(st.steps, 1));
        fmt::print("allreduce: {:.1f} MB of gradients per step in {} buckets of {:.1f} MB | backward {:.1f} ms/step | "
                   "waiting for buckets after backward {:.1f} ms/step (rank 0)\n",
                   double(st.bytes) / 1e6, st.buckets, double(st.bucket_bytes) / 1e6, 1e3 * st.backward_s / steps,
                   1e3 * st.wait_s / steps);
    }
#endif
    if (lead) fmt::print("{} at step {}; checkpoint {}\n", finished ? "finished" : "stopped", trainer.state().step, ckpt);
    return 0;
}

// ---------------------------------------------------------------------------------------------------
struct TokArgs {
    std::string type = "bpe", data, out, gpt2_ranks;
    int64_t vocab = 0, stories = 50000;
    int threads = 0;
};

// SentencePiece BPE/unigram over the lines of --data, or upstream P4's GPT-2 + frequency remap.
int cmd_train_tokenizer(const TokArgs& a) {
    const std::string text = data::read_text_file(a.data);
    const auto lines = data::split_lines(text);
    std::unique_ptr<data::Tokenizer> tok;
    if (a.type == "gpt2-remap") {
        if (a.gpt2_ranks.empty())
            throw std::invalid_argument("--type gpt2-remap needs --gpt2-ranks FILE: a .tiktoken file or js-tiktoken's "
                                        "ranks module, npm/node_modules/js-tiktoken/dist/ranks/gpt2.js after "
                                        "scripts/install-deps.sh");
        if (a.vocab <= 4 || a.vocab > 65535) throw std::invalid_argument("--vocab must be in [5, 65535] for gpt2-remap");
        auto base = std::make_shared<data::TiktokenBpe>(data::TiktokenBpe::load(a.gpt2_ranks));
        tok = std::make_unique<data::RemapTokenizer>(data::RemapTokenizer::build(base, lines, a.vocab, size_t(a.stories)));
        // How much of the counted text the kept ids cover.
        int64_t n = 0, unk = 0;
        const auto& r = static_cast<const data::RemapTokenizer&>(*tok);
        for (size_t i = 0; i < lines.size() && i < size_t(a.stories); ++i)
            for (int32_t id : r.encode(lines[i])) ++n, unk += id == r.unk_id();
        fmt::print("gpt2-remap: {} GPT-2 ids kept of {} ({} stories counted); UNK rate {:.4f}% of {} tokens\n",
                   a.vocab - 4, base->vocab_size(), std::min(lines.size(), size_t(a.stories)),
                   n ? 100.0 * double(unk) / double(n) : 0.0, n);
    } else {
        if (a.vocab < 260 || a.vocab > 65535) throw std::invalid_argument("--vocab must be in [260, 65535]");
        tok = std::make_unique<data::SpTokenizer>(
            data::SpTokenizer::train(lines, int(a.vocab), a.threads > 0 ? a.threads : default_threads(), a.type));
    }
    std::ofstream f(a.out, std::ios::binary);
    f << tok->serialized();
    f.close();
    if (!f) throw std::runtime_error("cannot write '" + a.out + "'");
    fmt::print("{} tokenizer, vocabulary {} -> {}\n", a.type, tok->vocab_size(), a.out);
    return 0;
}

// ---------------------------------------------------------------------------------------------------
struct EvalArgs {
    std::string checkpoint, data, split = "all", quant = "none", protocol = "full";
    bool json = false;
    int64_t batch = 8, seq = 0, stories = 500;
    int threads = 0;
};

// Loss of every window through the cached generator (state reset per window), for --quant.
train::EvalResult eval_cached(Generator& g, const std::vector<uint16_t>& toks, int64_t L, const std::vector<int>& piece_bytes) {
    train::EvalResult r;
    const int64_t W = data::eval_windows(toks.size(), L), V = g.vocab_size();
    double nats = 0;
    for (int64_t w = 0; w < W; ++w) {
        g.reset();
        for (int64_t t = 0; t < L; ++t) {
            const size_t p = size_t(w * L + t);
            const float* z = g.step(toks[p]);
            const int32_t y = toks[p + 1];
            nats += double(ops::detail::row_logsumexp(z, V) - z[y]);
            r.bytes += piece_bytes[size_t(y)];
        }
    }
    r.windows = W, r.tokens = W * L;
    r.loss = nats / double(std::max<int64_t>(r.tokens, 1));
    r.ppl = std::exp(std::min(r.loss, 50.0));
    r.bpb = r.bytes ? nats / (double(r.bytes) * std::log(2.0)) : 0;
    return r;
}

int cmd_eval(const EvalArgs& a) {
    set_threads(a.threads > 0 ? a.threads : default_threads());
    Loaded l = load_model(a.checkpoint);
    const int64_t seq = a.seq > 0 ? a.seq : l.model->max_seq_len();
    if (seq > l.model->max_seq_len())
        throw std::invalid_argument(fmt::format("--seq {} exceeds the model's seq_len {}", seq, l.model->max_seq_len()));
    const std::vector<int> piece_chars = data::piece_chars(*l.tok);
    const bool token_data = data::is_token_path(a.data);
    std::string text;
    std::string_view part;
    if (!token_data) {
        text = data::read_text_file(a.data);
        part = text;
        if (a.split == "val") part = data::split_train_val(text).second;
        else if (a.split == "train") part = data::split_train_val(text).first;
    }
    if (a.protocol == "upstream") {
        if (token_data)
            throw std::invalid_argument("--protocol upstream scores stories of a text file, not token shards: pass the text");
        if (a.quant != "none") throw std::invalid_argument("--quant works with --protocol full only");
        auto u = cli::eval_upstream(*l.model, *l.tok, part, a.stories, seq, a.batch, l.tok->piece_bytes(), piece_chars);
        const auto& r = u.r;
        if (a.json) {
            std::cout << nlohmann::json{{"model", l.info.model}, {"checkpoint", a.checkpoint}, {"data", a.data},
                                        {"split", a.split}, {"protocol", "upstream"}, {"loss", r.loss}, {"ppl", r.ppl},
                                        {"bpb", r.bpb}, {"bpc", r.bpc}, {"bpc_upstream", u.bpc_upstream},
                                        {"stories", u.stories}, {"truncated", u.truncated}, {"tokens", r.tokens},
                                        {"bytes", r.bytes}, {"chars", r.chars}, {"story_chars", u.story_chars},
                                        {"chars_per_token", double(u.story_chars) / double(r.tokens)}, {"seq", seq}}
                             .dump()
                      << "\n";
        } else {
            fmt::print("{} on {} ({}), upstream eval_bpc protocol: {} stories ({} cut to {} tokens)\n", l.info.model, a.data,
                       a.split, u.stories, u.truncated, seq + 1);
            fmt::print("  loss {:.4f} nats/token | ppl {:.3f} | {:.4f} bits/byte | {:.4f} bits/char | upstream BPC {:.4f} "
                       "(whole-story characters) | {:.2f} chars/token\n",
                       r.loss, r.ppl, r.bpb, r.bpc, u.bpc_upstream, double(u.story_chars) / double(r.tokens));
        }
        return 0;
    }
    data::TokenStream stream;
    std::vector<uint16_t> toks;
    if (token_data) {
        stream = data::TokenStream::open(a.data, cli::token_check(*l.tok));
        if (a.split != "all") {  // the split training holds out: the last 10%, cut after an end-of-text token
            const size_t n = stream.size(), cut = stream.next_document_boundary(n - n / 10, l.tok->eos_id());
            stream = a.split == "val" ? stream.slice(cut, n) : stream.slice(0, cut);
        }
    } else {
        auto ids = data::encode_lines(*l.tok, part);
        if (l.tok->vocab_size() > 65536) throw std::invalid_argument("eval of text needs a vocabulary of at most 65536 pieces");
        toks.assign(ids.begin(), ids.end());
        stream = data::TokenStream::view(toks.data(), toks.size());
    }
    auto r = train::evaluate(*l.model, stream, seq, a.batch, l.tok->piece_bytes(), piece_chars);
    std::optional<train::EvalResult> rq;
    if (a.quant != "none") {
        auto g = l.model->make_generator(parse_quant(a.quant));
        if (!g) throw std::invalid_argument("model " + l.info.model + " has no cached inference path for --quant");
        if (token_data) throw std::invalid_argument("--quant evaluates text, not token shards");
        rq = eval_cached(*g, toks, seq, l.tok->piece_bytes());
    }
    if (a.json) {
        nlohmann::json j = {{"model", l.info.model}, {"checkpoint", a.checkpoint}, {"data", a.data}, {"split", a.split},
                            {"protocol", "full"}, {"loss", r.loss}, {"ppl", r.ppl}, {"bpb", r.bpb}, {"bpc", r.bpc},
                            {"windows", r.windows}, {"tokens", r.tokens}, {"bytes", r.bytes}, {"chars", r.chars}, {"seq", seq}};
        if (rq) j["quant"] = {{"mode", a.quant}, {"loss", rq->loss}, {"ppl", rq->ppl}, {"bpb", rq->bpb}, {"loss_change", rq->loss - r.loss}};
        std::cout << j.dump() << "\n";
    } else {
        fmt::print("{} on {} ({}): loss {:.4f} nats/token | ppl {:.3f} | {:.4f} bits/byte | {:.4f} bits/char | {} windows x {} tokens\n",
                   l.info.model, a.data, a.split, r.loss, r.ppl, r.bpb, r.bpc, r.windows, seq);
        if (rq)
            fmt::print("packed {} inference: loss {:.4f} | ppl {:.3f} | {:.4f} bits/byte | loss change {:+.5f} nats/token\n",
                       a.quant, rq->loss, rq->ppl, rq->bpb, rq->loss - r.loss);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------
struct GenArgs {
    std::string checkpoint, prompt = "Once upon a time", quant = "exact";
    int64_t tokens = 150, top_k = 50;
    double temperature = 0.8, top_p = 1.0, repetition_penalty = 1.0;
    uint64_t seed = 42;
    int threads = 0;
    bool no_cache = false, bench = false, early_exit = false;
};

// --early-exit: the same weights in a model whose config turns its early exits on (cortex); the exit
// confidence is measured at the sampling temperature, as upstream's generate() does.
void enable_early_exit(Loaded& l, double temperature) {
    nlohmann::json cfg = l.model->config();
    if (!cfg.contains("early_exit")) throw std::invalid_argument("model " + l.info.model + " has no early exits");
    cfg["early_exit"] = true;
    if (temperature > 0) cfg["exit_temperature"] = temperature;
    auto m = examples::find_model(l.info.model).make(cfg);
    for (const auto& info : l.model->params().infos()) {
        Tensor<float> src = l.model->params().get(info.name), dst = m->params().get(info.name);
        std::copy(src.data, src.data + src.numel(), dst.data);
    }
    l.model = std::move(m);
}

// Produces logits for the next token either from the cached generator (O(1) per token) or, with
// --no-cache, by recomputing the last seq_len tokens (the upstream loop).
struct NextLogits {
    LanguageModel<float>& model;
    Generator* gen;
    Tape<float> tape;
    const float* feed(const std::vector<int32_t>& ctx, size_t from) {
        if (gen) {
            const float* z = nullptr;
            for (size_t i = from; i < ctx.size(); ++i) z = gen->step(ctx[i]);
            return z;
        }
        NoGradGuard<float> ng(tape);
        const int64_t L = std::min<int64_t>(int64_t(ctx.size()), model.max_seq_len());
        tape.reset();
        Tensor<float> z = model.logits(tape, ctx.data() + ctx.size() - size_t(L), 1, L);
        return z.data + (L - 1) * model.vocab_size();
    }
};

double time_generation(LanguageModel<float>& model, Generator* gen, std::vector<int32_t> ctx, int64_t n, Rng rng,
                       const train::SamplingOptions& so) {
    NextLogits next{model, gen, {}};
    train::Sampler sampler;
    const float* z = next.feed(ctx, 0);
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n; ++i) {
        ctx.push_back(sampler.sample(z, model.vocab_size(), so, rng));
        z = next.feed(ctx, ctx.size() - 1);
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int cmd_generate(const GenArgs& a) {
    set_threads(a.threads > 0 ? a.threads : default_threads());
    Loaded l = load_model(a.checkpoint);
    if (a.early_exit) enable_early_exit(l, a.temperature);
    std::vector<int32_t> ctx = l.tok->encode(a.prompt);
    if (ctx.empty()) throw std::invalid_argument("--prompt encodes to no tokens");
    train::SamplingOptions so{a.temperature, a.top_k, a.top_p, a.repetition_penalty};
    const Quant quant = parse_quant(a.quant);
    std::unique_ptr<Generator> gen = a.no_cache ? nullptr : l.model->make_generator(quant);
    if (a.bench) {
        const int64_t n = std::max<int64_t>(a.tokens, 1);
        auto exact = l.model->make_generator(Quant::exact);
        auto int8 = l.model->make_generator(Quant::int8);
        if (!exact) throw std::invalid_argument("model " + l.info.model + " has no cached generation path");
        const double te = time_generation(*l.model, exact.get(), ctx, n, Rng(a.seed), so);
        const double ti = time_generation(*l.model, int8.get(), ctx, n, Rng(a.seed), so);
        const double tr = time_generation(*l.model, nullptr, ctx, n, Rng(a.seed), so);
        fmt::print("batch-1 generation, {} new tokens, {} threads, kernels {}\n", n, max_threads(), kernels::active_isa());
        fmt::print("  cached exact : {:9.1f} tok/s  {:8.3f} ms/token\n", double(n) / te, 1e3 * te / double(n));
        fmt::print("  cached int8  : {:9.1f} tok/s  {:8.3f} ms/token\n", double(n) / ti, 1e3 * ti / double(n));
        fmt::print("  recompute    : {:9.1f} tok/s  {:8.3f} ms/token (window {})\n", double(n) / tr, 1e3 * tr / double(n),
                   l.model->max_seq_len());
        fmt::print("  speed-up vs recompute: exact {:.1f}x, int8 {:.1f}x\n", tr / te, tr / ti);
        return 0;
    }
    NextLogits next{*l.model, gen.get(), {}};
    train::Sampler sampler;
    Rng rng(a.seed);
    const int64_t V = l.model->vocab_size();
    std::cout << a.prompt << std::flush;
    std::string printed = l.tok->decode(ctx);
    const float* z = next.feed(ctx, 0);
    for (int64_t i = 0; i < a.tokens; ++i) {
        const int32_t tok = sampler.sample(z, V, so, rng, &ctx);
        if (tok == l.tok->eos_id()) break;
        ctx.push_back(tok);
        // Decode the whole continuation so multi-byte characters split across tokens print correctly.
        std::string full = l.tok->decode(ctx);
        // A byte-level token can end inside a character: wait for the rest before printing.
        if (full.size() >= 3 && full.compare(full.size() - 3, 3, "\xEF\xBF\xBD") == 0 && i + 1 < a.tokens) {
            z = next.feed(ctx, ctx.size() - 1);
            continue;
        }
        if (full.size() > printed.size() && full.compare(0, printed.size(), printed) == 0)
            std::cout << full.substr(printed.size()) << std::flush;
        printed = full;
        z = next.feed(ctx, ctx.size() - 1);
    }
    std::cout << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
#if FLASHLM_WITH_MPI
    // Under mpirun `train` runs data-parallel; a plain launch never touches MPI.
    std::optional<train::MpiSession> mpi;
    if (train::launched_by_mpirun()) {
        mpi.emplace(&argc, &argv);
        g_mpi = &*mpi;
    }
#endif
    CLI::App app{"flashlm: train, evaluate and run ternary FlashLM language models on CPUs"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "flashlm 0.1.0");

    TrainArgs ta;
    auto* tr = app.add_subcommand("train", "train a model (progress line, periodic eval, resumable checkpoints)");
    std::string models;
    for (auto& e : examples::registry()) models += "\n  " + e.name + ": " + e.description;
    tr->add_option("--model", ta.model, "variant to train:" + models)->capture_default_str();
    tr->add_option("--data", ta.data, "training data: text (UTF-8, one story per line), a .bin token file or a directory of "
                                      "token shards (flashlm tokenize)");
    tr->add_option("--val-data", ta.val_data, "validation data, text or tokens (default: the last 10% of --data, cut at a "
                                              "story boundary)");
    tr->add_option("--sampling", ta.sampling, "training rows: windows (random offsets) | documents (start at a story, "
                                              "packed with the following stories across end-of-text tokens, no padding)")
        ->check(CLI::IsMember({"windows", "documents"}))->capture_default_str();
    auto* g = tr->add_option_group("length", "run length (one of)");
    g->add_option("--steps", ta.steps, "optimizer steps")->check(positive);
    g->add_option("--minutes", ta.minutes, "wall-clock budget in minutes (the LR schedule spans it)")->check(positive);
    g->add_option("--hours", ta.hours, "wall-clock budget in hours")->check(positive);
    g->require_option(0, 1);
    tr->add_option("--vocab", ta.vocab, "tokenizer vocabulary (default: the variant's, 10000 for bolt)")->check(positive);
    tr->add_option("--tokenizer", ta.tokenizer,
                   "use this tokenizer instead of training a SentencePiece BPE on --data: a tokenizer.json "
                   "(byte-level BPE), a train-tokenizer output (.model or gpt2-remap JSON), GPT-2 ranks or a checkpoint "
                   "(default for token data: the tokenizer file beside it)")
        ->check(CLI::ExistingFile);
    tr->add_option("--batch", ta.batch, "sequences per micro-batch (default: upstream recipe)")->check(positive);
    tr->add_option("--accum", ta.accum, "micro-batches per optimizer step")->check(positive);
    tr->add_option("--seq", ta.seq, "sequence length (default: the variant's)")->check(positive);
    tr->add_option("--lr", ta.lr, "peak learning rate (default: upstream recipe)")->check(positive);
    tr->add_option("--warmup", ta.warmup, "warm-up steps (default: upstream recipe)")->check(non_negative);
    tr->add_option("--lr-cycle", ta.lr_cycle,
                   "restart the cosine every N steps after warm-up, 0 = one cosine over the run (default: upstream recipe)")
        ->check(non_negative);
    tr->add_option("--lr-cycle-decay", ta.lr_cycle_decay, "each restart's peak relative to the previous one (default: recipe)")
        ->check(positive);
    tr->add_option("--threads", ta.threads, "OpenMP threads (default: all cores)")->check(positive);
    tr->add_flag("--recompute", ta.recompute,
                 "keep only block outputs and recompute each block during backward: a fraction of the activation "
                 "memory for one more forward per block");
    tr->add_option("--quant", ta.quant,
                   "BitLinear forward: none (float GEMM) | int8 (activations quantised per token to int8, absmax, times "
                   "the ternary codes in int32; backward unchanged, float straight-through)")
        ->check(CLI::IsMember({"none", "int8"}))->capture_default_str();
    tr->add_option("--matmul", ta.matmul,
                   "training GEMMs: f32 | bf16 (bf16 operands, f32 sums; needs AVX512_BF16, uses AMX-BF16 where present; "
                   "evaluation stays f32; default: the recipe's, f32)")
        ->check(CLI::IsMember({"f32", "bf16"}));
    tr->add_option("--pos-fraction", ta.pos_fraction,
                   "compute the training loss on this random share of each batch's positions, drawn anew each step "
                   "(upstream v3's speed measure; evaluation uses every position; default: the recipe's, 0.25 for v3, "
                   "1 for the rest, which compute their loss on every position only)")
        ->check(CLI::Range(0.0, 1.0, "in (0, 1]"))->check(positive);
    tr->add_option("--seed", ta.seed, "seed for init and batch sampling")->capture_default_str();
    tr->add_option("--out", ta.out, "output folder (checkpoint, tokenizer, token cache, metrics)")->capture_default_str();
    tr->add_option("--resume", ta.resume, "continue exactly from this checkpoint")->check(CLI::ExistingFile);
    tr->add_option("--eval-every", ta.eval_every, "evaluate (and checkpoint) every N steps")->check(non_negative);
    tr->add_option("--eval-every-minutes", ta.eval_every_minutes, "evaluate (and checkpoint) every M minutes")->check(non_negative);
    tr->add_option("--eval-windows", ta.eval_windows, "validation windows per in-training evaluation")->check(positive)->capture_default_str();
    tr->add_option("--log-every", ta.log_every, "steps between progress lines")->check(positive)->capture_default_str();
    tr->add_option("--save-every", ta.save_every, "also checkpoint every N steps (atomic: a crash keeps the previous file)")->check(non_negative);
    tr->add_option("--skip-nonfinite", ta.skip_nonfinite,
                   "skip up to N steps whose loss or gradient is not finite (no update, a warning naming the step); "
                   "stop with an error at the next one (default 0: stop at the first)")->check(non_negative)->capture_default_str();
    tr->add_option("--stop-after", ta.stop_after, "stop with a checkpoint after N steps of this invocation")->check(positive);
    tr->add_option("--metrics", ta.metrics, "JSON-lines file of per-step loss/lr (default OUT/metrics.jsonl)");
    tr->add_flag("--upstream-compat", ta.upstream_compat,
                 "reproduce the upstream script's arithmetic where flashlm fixes it (cortex3/cortex6: double-shifted "
                 "targets, memory scale 1/sqrt(window); cortex: double-shifted targets, clamped decayed sum, "
                 "validation loss = whole objective; thunderbolt: GroupNorm over the whole window; "
                 "supernova: whole-sequence planner mean; nova-diff: Mixture-of-Depths scaling in training only; "
                 "supernova2-engine: activation scale over the whole batch, weight gradients without it)");

    TokArgs ka;
    auto* tt = app.add_subcommand("train-tokenizer", "train a tokenizer on a text for train --tokenizer");
    tt->add_option("--type", ka.type, "bpe | unigram (SentencePiece, byte fallback) | gpt2-remap (GPT-2 ids remapped "
                                      "by frequency, upstream v4)")
        ->check(CLI::IsMember({"bpe", "unigram", "gpt2-remap"}))->capture_default_str();
    tt->add_option("--vocab", ka.vocab, "vocabulary size (gpt2-remap: 4 specials + the most frequent GPT-2 ids)")->required()->check(positive);
    tt->add_option("--data", ka.data, "training text (UTF-8, one story per line)")->required()->check(CLI::ExistingFile);
    tt->add_option("--out", ka.out, "tokenizer file to write")->required();
    tt->add_option("--gpt2-ranks", ka.gpt2_ranks, "gpt2-remap: GPT-2 merge ranks (.tiktoken, or js-tiktoken's ranks/gpt2.js)")->check(CLI::ExistingFile);
    tt->add_option("--stories", ka.stories, "gpt2-remap: count ids over the first N lines")->check(positive)->capture_default_str();
    tt->add_option("--threads", ka.threads, "SentencePiece trainer threads (default: all cores)")->check(positive);

    EvalArgs ea;
    auto* ev = app.add_subcommand("eval", "mean next-token loss, perplexity and bits per byte over every window of a text");
    ev->add_option("--checkpoint", ea.checkpoint, "checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
    ev->add_option("--data", ea.data, "text to evaluate (or, with --protocol full, a .bin token file or shard directory)")
        ->required()->check(CLI::ExistingPath);
    ev->add_option("--protocol", ea.protocol, "full: every non-overlapping seq-token window of the whole stream | upstream: "
                                              "eval_bpc.py's (stories > 50 chars among the first --stories lines, each cut to "
                                              "seq+1 tokens, batch 1)")->check(CLI::IsMember({"full", "upstream"}))->capture_default_str();
    ev->add_option("--stories", ea.stories, "lines read by --protocol upstream")->check(positive)->capture_default_str();
    ev->add_option("--split", ea.split, "all | val (last 10%, as train holds out) | train")->check(CLI::IsMember({"all", "val", "train"}))->capture_default_str();
    ev->add_option("--seq", ea.seq, "window length (default: the model's seq_len)")->check(positive);
    ev->add_option("--batch", ea.batch, "windows per forward pass")->check(positive)->capture_default_str();
    ev->add_option("--threads", ea.threads, "OpenMP threads (default: all cores)")->check(positive);
    ev->add_flag("--json", ea.json, "print one JSON object (loss, ppl, bpb, bpc, counts)");
    ev->add_option("--quant", ea.quant, "also evaluate packed inference: exact | int8 (reports the loss change)")
        ->check(CLI::IsMember({"none", "exact", "int8"}))->capture_default_str();

    cli::TokenizeArgs za;
    auto* tk = app.add_subcommand("tokenize", "encode text of any size into token shards (DIR/shard-NNNNN.bin, uint16 little-endian, "
                                              "+ .docs index + .json sidecar) that train and eval read through mmap");
    tk->add_option("--tokenizer", za.tokenizer, "SentencePiece .model (e.g. RUN/tokenizer.model) or a checkpoint")->required()->check(CLI::ExistingFile);
    tk->add_option("--data", za.data, "text files, one document per line ('-' reads stdin)")->required();
    tk->add_option("--out", za.out, "output directory")->required();
    tk->add_option("--shard-tokens", za.shard_tokens, "tokens per shard at most (a document never straddles shards)")->check(positive)->capture_default_str();
    tk->add_option("--threads", za.threads, "encoding threads (default: all cores)")->check(positive);

    cli::PlotArgs pa;
    auto* pl = app.add_subcommand("plot", "render RUN_DIR/metrics.jsonl (train loss, val loss) to a PNG with gnuplot");
    pl->add_option("run", pa.run, "run directory (or a metrics.jsonl)")->required()->check(CLI::ExistingPath);
    pl->add_option("--out", pa.out, "PNG to write (default RUN_DIR/loss.png)");
    pl->add_option("--x", pa.x, "x axis: step | tokens | time")->check(CLI::IsMember({"step", "tokens", "time"}))->capture_default_str();
    pl->add_flag("--log-y", pa.log_y, "logarithmic loss axis");

    GenArgs ga;
    auto* ge = app.add_subcommand("generate", "sample a continuation of a prompt");
    ge->add_option("--checkpoint", ga.checkpoint, "checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
    ge->add_option("--prompt", ga.prompt, "prompt text")->capture_default_str();
    ge->add_option("--tokens", ga.tokens, "new tokens at most (stops early at end of story)")->check(non_negative)->capture_default_str();
    ge->add_option("--temperature", ga.temperature, "sampling temperature (0: greedy)")->check(non_negative)->capture_default_str();
    ge->add_option("--top-k", ga.top_k, "keep the k most likely tokens (0: off)")->check(non_negative)->capture_default_str();
    ge->add_option("--top-p", ga.top_p, "nucleus sampling mass (1: off)")->check(CLI::Range(0.0, 1.0))->capture_default_str();
    ge->add_option("--seed", ga.seed, "sampling seed")->capture_default_str();
    ge->add_option("--threads", ga.threads, "OpenMP threads (default: all cores)")->check(positive);
    ge->add_option("--repetition-penalty", ga.repetition_penalty, "divide logits of tokens already in the context (1: off)")->check(positive)->capture_default_str();
    ge->add_option("--quant", ga.quant, "packed ternary inference: exact (float activations) | int8")->check(CLI::IsMember({"exact", "int8"}))->capture_default_str();
    ge->add_flag("--no-cache", ga.no_cache, "recompute the whole window every token (the upstream loop)");
    ge->add_flag("--early-exit", ga.early_exit,
                 "cortex: an exit head generates while its confidence stayed above its threshold over the whole context (upstream's rule)");
    ge->add_flag("--bench", ga.bench, "time cached exact, cached int8 and recompute generation of --tokens tokens");

    examples::ImportArgs ia;
    auto* im = app.add_subcommand("import", "make a checkpoint from an upstream PyTorch state dict (.safetensors; "
                                            "tools/convert_pytorch.py converts a .pt file)");
    im->add_option("--model", ia.model, "variant the weights belong to:" + models)->required();
    im->add_option("--from", ia.from, ".safetensors file of the state dict under upstream tensor names (F32, F16, BF16 "
                                      "or F64); the config comes from its metadata and the tensor shapes")
        ->required()->check(CLI::ExistingFile);
    im->add_option("--tokenizer", ia.tokenizer, "tokenizer the weights were trained with: SentencePiece .model, HF "
                                                "tokenizer.json, tiktoken ranks or flashlm's remap JSON (required: a "
                                                "checkpoint embeds its tokenizer; flashlm train writes one into OUT)")
        ->required()->check(CLI::ExistingFile);
    im->add_option("--out", ia.out, "checkpoint to write (.safetensors)")->required();
    im->add_option("--config", ia.config, "JSON object of config keys the shapes do not determine, e.g. "
                                          "'{\"seq_len\": 512}'; overrides the file's and the inferred values");
    im->add_option("--seed", ia.seed, "seed stored as the training state's RNG (train --resume fine-tunes from step 0)")
        ->capture_default_str();

    examples::ExportArgs xa;
    auto* ex = app.add_subcommand("export", "write a checkpoint's weights as a PyTorch state dict (.safetensors, "
                                            "upstream tensor names, tied weights under both names)");
    ex->add_option("--checkpoint", xa.checkpoint, "checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
    ex->add_option("--out", xa.out, "state-dict file to write (.safetensors, F32)")->required();
    ex->add_option("--tokenizer-out", xa.tokenizer_out, "also write the checkpoint's tokenizer (as the checkpoint embeds it: "
                                                      "SentencePiece .model, tokenizer.json, …)");

    const int rank = world_rank(), nranks = world_size();
    // In a multi-rank job an error on any rank ends every rank (no one waits in a collective forever).
    auto fail = [&](int code) {
#if FLASHLM_WITH_MPI
        if (nranks > 1) std::cerr.flush(), g_mpi->abort(code);
#endif
        return code;
    };
    // CLI11 reports a mistyped subcommand as "A subcommand is required"; name it instead.
    bool known = false;
    for (CLI::App* s : app.get_subcommands([](CLI::App*) { return true; })) known = known || s->check_name(argv[argc > 1 ? 1 : 0]);
    if (argc > 1 && argv[1][0] != '-' && !known) {
        std::cerr << "error: unknown subcommand '" << argv[1] << "' (train, train-tokenizer, eval, generate, import, export, tokenize, plot; --help lists them)\n";
        return 109;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (rank != 0) return e.get_exit_code() == 0 ? 0 : fail(e.get_exit_code());
        const int code = app.exit(e);
        return code == 0 ? 0 : fail(code);
    }
    try {
        if (tr->parsed()) return cmd_train(ta);
        if (rank != 0) return 0;  // eval and generate are single-process: rank 0 runs them
        if (ev->parsed()) return cmd_eval(ea);
        if (tt->parsed()) return cmd_train_tokenizer(ka);
        if (ge->parsed()) return cmd_generate(ga);
        if (im->parsed()) return examples::cmd_import(ia);
        if (ex->parsed()) return examples::cmd_export(xa);
        if (tk->parsed()) return cli::cmd_tokenize(za);
        if (pl->parsed()) return cli::cmd_plot(pa);
    } catch (const train::NonFiniteError& e) {
        if (rank == 0) std::cerr << "error: " << e.what() << "\n";
        return fail(3);
    } catch (const std::invalid_argument& e) {  // usage errors: the same on every rank, so rank 0 says it
        if (rank == 0) std::cerr << "error: " << e.what() << "\n";
        return fail(1);
    } catch (const std::exception& e) {
        std::cerr << (nranks > 1 ? fmt::format("error (rank {}): ", rank) : std::string("error: ")) << e.what() << "\n";
        return fail(1);
    }
    return 1;
}
