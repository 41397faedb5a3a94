// flashlm CLI: the data and evaluation commands — `tokenize` (text → token shards), `plot` (metrics.jsonl →
// PNG through gnuplot) and upstream eval_bpc.py's evaluation protocol for `eval --protocol upstream`.
#pragma once
#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <flashlm/data/piece_chars.hpp>
#include <flashlm/data/sp_tokenizer.hpp>
#include <flashlm/data/token_stream.hpp>
#include <flashlm/data/tokenize.hpp>
#include <flashlm/io/checkpoint.hpp>
#include <flashlm/train/evaluate.hpp>
#include <flashlm/train/model.hpp>
#include <flashlm/train/trainer.hpp>

namespace flashlm::cli {

namespace fs = std::filesystem;

// A SentencePiece .model file, or the tokenizer embedded in a flashlm checkpoint (.safetensors).
inline data::SpTokenizer load_tokenizer_file(const std::string& path) {
    if (!fs::exists(path)) throw std::runtime_error("cannot open tokenizer file '" + path + "': No such file or directory");
    if (fs::path(path).extension() == ".safetensors") {
        io::CheckpointInfo info;
        io::open_checkpoint(path, info);
        return data::SpTokenizer::from_serialized(info.tokenizer);
    }
    return data::SpTokenizer::load(path);
}

inline uint64_t tokenizer_hash(const data::Tokenizer& tok) {
    return io::fnv1a(tok.serialized().data(), tok.serialized().size());
}

inline data::TokenCheck token_check(const data::Tokenizer& tok) {
    return data::TokenCheck{tok.vocab_size(), tokenizer_hash(tok), true};
}

// ---------------------------------------------------------------------------------------------------
struct TokenizeArgs {
    std::string tokenizer, out;
    std::vector<std::string> data;
    int64_t shard_tokens = 100'000'000;
    int threads = 0;
};

inline std::string human_count(double v) {
    if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
    if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
    if (v >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
    return fmt::format("{:.0f}", v);
}

inline int cmd_tokenize(const TokenizeArgs& a) {
    if (a.threads > 0) set_threads(a.threads);
    data::SpTokenizer tok = load_tokenizer_file(a.tokenizer);
    if (fs::exists(a.out) && !fs::is_directory(a.out))
        throw std::invalid_argument("--out '" + a.out + "' exists and is not a directory");
    if (fs::is_directory(a.out))
        for (const auto& e : fs::directory_iterator(a.out))
            if (e.path().extension() == ".bin")
                throw std::invalid_argument("output directory '" + a.out + "' already holds token shards (" +
                                            e.path().filename().string() + "); remove them or choose another --out");
    fs::create_directories(a.out);
    nlohmann::json sources = nlohmann::json::array();
    for (const auto& d : a.data) sources.push_back(d == "-" ? std::string("-") : fs::absolute(d).string());
    const nlohmann::json meta = {{"tokenizer_fnv1a", tokenizer_hash(tok)}, {"vocab_size", tok.vocab_size()},
                                 {"eos_id", tok.eos_id()}, {"sources", sources}};
    data::ShardWriter w(a.out, tok.vocab_size(), uint64_t(a.shard_tokens), meta);
    const bool tty = ::isatty(2);
    double last = -1;
    auto progress = [&](const data::TokenizeProgress& p, bool done) {
        if (!done && p.seconds - last < (tty ? 0.5 : 10.0)) return;
        last = p.seconds;
        const double rate = double(p.bytes) / std::max(p.seconds, 1e-9);
        std::string line = fmt::format("tokenize: {:.1f} MB", double(p.bytes) / 1e6);
        if (p.total_bytes > 0)
            line += fmt::format(" / {:.1f} MB ({:.0f}%)", double(p.total_bytes) / 1e6, 100.0 * double(p.bytes) / double(p.total_bytes));
        line += fmt::format(" | {:.2f} MB/s | {} tokens | {} docs", rate / 1e6, human_count(double(p.tokens)), human_count(double(p.documents)));
        if (p.total_bytes > 0 && !done)
            line += " | ETA " + train::format_duration(double(p.total_bytes - std::min(p.bytes, p.total_bytes)) / std::max(rate, 1.0));
        if (done) line += " | " + train::format_duration(p.seconds);
        std::fputs(tty ? ("\r" + line + "   ").c_str() : (line + "\n").c_str(), stderr);
        if (tty && done) std::fputs("\n", stderr);
        std::fflush(stderr);
    };
    data::tokenize_texts(tok, a.data, w, progress);
    const size_t shards = w.finish();
    if (shards == 0) throw std::runtime_error("no text to tokenize: every input is empty or blank");
    std::ofstream(fs::path(a.out) / "tokenizer.model", std::ios::binary) << tok.serialized();
    fmt::print("{} tokens ({}), {} documents in {} shard(s) in {}; tokenizer.model beside them\n", w.tokens(),
               data::token_dtype_name(w.width()), w.documents(), shards, a.out);
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// Upstream eval_bpc.py (VARIANTS.md §12.1): the first `items` lines of the text are stories; each is
// stripped and kept if longer than 50 characters, tokenized without end-of-text, cut to its first L + 1
// tokens and scored with batch 1 (its first token is context only). Upstream divides the summed loss by
// the characters of the whole story even when it was cut (bpc_upstream); bpb and bpc here count the
// text of the scored targets, as the full-window protocol does.
struct UpstreamEval {
    train::EvalResult r;
    int64_t stories = 0, truncated = 0, story_chars = 0;
    double bpc_upstream = 0;
};

inline std::string_view strip_ascii(std::string_view s) {
    const char* ws = " \t\r\n\f\v";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

inline UpstreamEval eval_upstream(LanguageModel<float>& model, const data::Tokenizer& tok, std::string_view text,
                                  int64_t items, int64_t L, int64_t batch, const std::vector<int>& piece_bytes,
                                  const std::vector<int>& piece_chars) {
    UpstreamEval u;
    // Stories of equal token count are scored together (most are cut to L + 1): the sum of per-story
    // losses is the same as upstream's one-at-a-time loop.
    std::map<size_t, std::vector<int32_t>> by_len;  // token count -> stories' ids, concatenated
    int64_t seen = 0;
    for (std::string_view line : data::split_lines(text)) {
        if (seen++ >= items) break;
        const std::string_view story = strip_ascii(line);
        if (data::utf8_chars(story) <= 50) continue;
        std::vector<int32_t> ids = tok.encode(story);
        if (ids.size() < 2) continue;
        if (int64_t(ids.size()) > L + 1) {
            ids.resize(size_t(L + 1));
            ++u.truncated;
        }
        for (size_t t = 1; t < ids.size(); ++t) {
            u.r.bytes += piece_bytes[size_t(ids[t])];
            u.r.chars += piece_chars[size_t(ids[t])];
        }
        u.r.tokens += int64_t(ids.size()) - 1;
        u.story_chars += data::utf8_chars(story);
        ++u.stories;
        auto& v = by_len[ids.size()];
        v.insert(v.end(), ids.begin(), ids.end());
    }
    if (u.stories == 0)
        throw std::runtime_error("no story to score: the upstream protocol keeps lines longer than 50 characters among the first " +
                                 std::to_string(items));
    Tape<float> tape;
    NoGradGuard<float> ng(tape);
    std::vector<int32_t> x, y;
    double nats = 0;
    for (const auto& [len, all] : by_len) {
        const int64_t n = int64_t(len) - 1, count = int64_t(all.size() / len);
        for (int64_t s0 = 0; s0 < count; s0 += batch) {
            const int64_t b = std::min(batch, count - s0);
            x.clear(), y.clear();
            for (int64_t s = s0; s < s0 + b; ++s) {
                const int32_t* p = all.data() + size_t(s) * len;
                x.insert(x.end(), p, p + n);
                y.insert(y.end(), p + 1, p + 1 + n);
            }
            tape.reset();
            Tensor<float> loss = model.loss(tape, x.data(), y.data(), b, n);
            nats += double(loss.data[0]) * double(b * n);
        }
    }
    u.r.windows = u.stories;
    train::finish_eval(u.r, nats);
    u.bpc_upstream = nats / (double(u.story_chars) * std::log(2.0));
    return u;
}

// ---------------------------------------------------------------------------------------------------
struct PlotArgs {
    std::string run, out, x = "step";
    bool log_y = false;
};

inline std::string find_on_path(const std::string& exe) {
    const char* path = std::getenv("PATH");
    std::string_view rest = path ? path : "";
    while (!rest.empty()) {
        const size_t c = rest.find(':');
        const std::string dir(rest.substr(0, c));
        const fs::path p = fs::path(dir.empty() ? "." : dir) / exe;
        if (::access(p.c_str(), X_OK) == 0) return p.string();
        if (c == std::string_view::npos) break;
        rest.remove_prefix(c + 1);
    }
    return {};
}

// Loss and validation-loss curves of a run directory's metrics.jsonl as a PNG. A resumed run appends to
// the file; a step logged twice (a resume from an earlier checkpoint) keeps its latest value.
inline int cmd_plot(const PlotArgs& a) {
    const fs::path metrics = fs::is_directory(a.run) ? fs::path(a.run) / "metrics.jsonl" : fs::path(a.run);
    if (!fs::exists(metrics)) throw std::runtime_error("no metrics file '" + metrics.string() + "' (flashlm train writes RUN_DIR/metrics.jsonl)");
    const std::string gnuplot = find_on_path("gnuplot");
    if (gnuplot.empty())
        throw std::runtime_error("gnuplot not found on PATH: install it (Debian: apt-get install gnuplot-nox; scripts/install-deps.sh does)");
    const std::string xkey = a.x == "tokens" ? "tokens" : a.x == "time" ? "wall_s" : "step";
    std::map<int64_t, std::pair<double, double>> train, val;  // step -> (x, y)
    std::ifstream in(metrics);
    std::string line;
    int64_t lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(line);
            const int64_t step = j.at("step").get<int64_t>();
            double x = j.contains(xkey) ? j.at(xkey).get<double>() : double(step);
            if (xkey == "wall_s") x /= 60.0;
            if (j.contains("loss")) train[step] = {x, j.at("loss").get<double>()};
            if (j.contains("val_loss")) val[step] = {x, j.at("val_loss").get<double>()};
        } catch (const std::exception& e) {
            throw std::runtime_error(fmt::format("{}:{}: not a metrics line ({})", metrics.string(), lineno, e.what()));
        }
    }
    if (train.empty() && val.empty()) throw std::runtime_error("'" + metrics.string() + "' holds no losses to plot");
    const fs::path out = a.out.empty() ? metrics.parent_path() / "loss.png" : fs::path(a.out);
    const fs::path tmp = fs::temp_directory_path() / fmt::format("flashlm-plot-{}", ::getpid());
    fs::create_directories(tmp);
    struct Cleanup {
        fs::path p;
        ~Cleanup() {
            std::error_code ec;
            fs::remove_all(p, ec);
        }
    } cleanup{tmp};
    {
        std::ofstream t(tmp / "train.dat"), v(tmp / "val.dat");
        // Training loss is noisy: a trailing mean over ~2% of the steps goes on top of the raw curve.
        const size_t win = std::max<size_t>(1, train.size() / 50);
        std::vector<double> ys;
        for (const auto& [s, xy] : train) {
            ys.push_back(xy.second);
            double m = 0;
            const size_t k = std::min(win, ys.size());
            for (size_t i = ys.size() - k; i < ys.size(); ++i) m += ys[i];
            t << fmt::format("{} {} {}\n", xy.first, xy.second, m / double(k));
        }
        for (const auto& [s, xy] : val) v << fmt::format("{} {}\n", xy.first, xy.second);
    }
    const std::string xlabel = xkey == "tokens" ? "tokens seen" : xkey == "wall_s" ? "wall time (minutes)" : "optimizer step";
    std::string plot;
    if (!train.empty() && train.size() >= 100)
        plot += fmt::format("'{0}' using 1:2 with lines lc rgb '#b0c4de' title 'train loss', "
                            "'{0}' using 1:3 with lines lw 2 lc rgb '#1f77b4' title 'train loss (trailing mean)'",
                            (tmp / "train.dat").string());
    else if (!train.empty())
        plot += fmt::format("'{}' using 1:2 with lines lw 2 lc rgb '#1f77b4' title 'train loss'", (tmp / "train.dat").string());
    if (!val.empty())
        plot += fmt::format("{}'{}' using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#d62728' title 'val loss'",
                            plot.empty() ? "" : ", ", (tmp / "val.dat").string());
    {
        std::ofstream g(tmp / "plot.gp");
        g << "set terminal pngcairo size 960,560 font ',11'\n"
          << "set output '" << out.string() << "'\n"
          << "set title '" << metrics.parent_path().filename().string() << "' noenhanced\n"
          << "set xlabel '" << xlabel << "'\nset ylabel 'loss (nats/token)'\nset grid\nset key top right\n"
          << (a.log_y ? "set logscale y\n" : "") << "plot " << plot << "\n";
    }
    std::error_code ec;
    fs::remove(out, ec);
    const std::string cmd = fmt::format("'{}' '{}' 2>'{}'", gnuplot, (tmp / "plot.gp").string(), (tmp / "err").string());
    if (std::system(cmd.c_str()) != 0 || !fs::exists(out)) {
        std::ifstream e(tmp / "err");
        std::string msg((std::istreambuf_iterator<char>(e)), std::istreambuf_iterator<char>());
        throw std::runtime_error("gnuplot failed: " + msg);
    }
    fmt::print("{} training and {} validation points -> {}\n", train.size(), val.size(), out.string());
    return 0;
}

}  // namespace flashlm::cli
