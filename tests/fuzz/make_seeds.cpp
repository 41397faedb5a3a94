// Writes the fuzz seed corpora from a real training run (flashlm train --out RUN): small checkpoints
// cut from RUN/checkpoint.safetensors (real tensor values and metadata, the fuzz ParamStore's tensors,
// a small tokenizer so the header stays a few KB, a valid checksum), the real and a small tokenizer,
// and slices of RUN/train.bin. Usage: make_seeds RUN DATA_TEXT OUT_DIR
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <flashlm/data/text.hpp>

#include "fuzz_common.hpp"

namespace fs = std::filesystem;
using namespace flashlm;

namespace {
std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}
void put(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }
}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::cerr << "usage: make_seeds RUN DATA_TEXT OUT_DIR\n";
        return 2;
    }
    const fs::path run = argv[1], out = argv[3];
    for (auto d : {"checkpoint", "tokenizer", "token_file"}) fs::create_directories(out / d);

    // Tokenizers: the run's real one, and a small identity-normalised BPE (no 200 KB charsmap).
    const std::string real_tok = slurp(run / "tokenizer.model");
    put(out / "tokenizer" / "real.model", real_tok);
    std::string text = data::read_text_file(argv[2]);
    std::string small_tok;
    {
        struct It : sentencepiece::SentenceIterator {
            std::vector<std::string_view> l;
            size_t i = 0;
            std::string cur;
            bool done() const override { return i >= l.size(); }
            void Next() override {
                if (++i < l.size()) cur = std::string(l[i]);
            }
            const std::string& value() const override { return cur; }
            sentencepiece::util::Status status() const override { return {}; }
        } it;
        it.l = data::split_lines(text);
        if (!it.l.empty()) it.cur = std::string(it.l[0]);
        auto st = sentencepiece::SentencePieceTrainer::Train(
            "--model_type=bpe --vocab_size=400 --byte_fallback=true --character_coverage=0.99 --hard_vocab_limit=false "
            "--normalization_rule_name=identity --minloglevel=2 --num_threads=1",
            &it, &small_tok);
        if (!st.ok()) {
            std::cerr << "make_seeds: tokenizer training failed: " << st.ToString() << "\n";
            return 1;
        }
    }
    put(out / "tokenizer" / "small.model", small_tok);

    // Checkpoints: the fuzz ParamStore filled from the real checkpoint, with moments and metadata.
    io::CheckpointInfo info;
    io::SafeTensors st = io::open_checkpoint((run / "checkpoint.safetensors").string(), info);
    ParamStore<float> ps;
    fuzz::declare_params(ps);
    ps.allocate();
    io::load_params(st, "real", ps);
    optim::AdamW<float> opt(ps, optim::AdamWConfig{});
    io::load_optimizer(st, "real", ps, opt, info.train_state.value("adam_step", int64_t(0)));
    info.tokenizer = small_tok;
    io::save_checkpoint((out / "checkpoint" / "with_adam.safetensors").string(), ps, &opt, info);
    io::save_checkpoint((out / "checkpoint" / "params_only.safetensors").string(), ps, static_cast<const optim::AdamW<float>*>(nullptr), info);
    info.tokenizer.clear();
    io::save_checkpoint((out / "checkpoint" / "no_tokenizer.safetensors").string(), ps, &opt, info);

    // Token files: 2 bytes of vocabulary then slices of the real cache.
    const std::string bin = slurp(run / "train.bin");
    std::string v(2, '\0');
    const uint16_t V = uint16_t(info.config.value("vocab_size", 0));
    v[0] = char(V & 0xff), v[1] = char(V >> 8);
    put(out / "token_file" / "head64", v + bin.substr(0, 128));
    put(out / "token_file" / "head512", v + bin.substr(0, 1024));
    put(out / "token_file" / "unchecked", std::string(2, '\0') + bin.substr(0, 256));
    std::cout << "seeds in " << out << ": " << real_tok.size() << "-byte real tokenizer, " << small_tok.size()
              << "-byte small tokenizer, checkpoints of " << fs::file_size(out / "checkpoint" / "with_adam.safetensors")
              << " bytes\n";
    return 0;
}
