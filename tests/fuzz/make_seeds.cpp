// Writes the fuzz seed corpora from a real training run (flashlm train --out RUN): small checkpoints
// cut from RUN/checkpoint.safetensors (real tensor values and metadata, the fuzz ParamStore's tensors,
// a small tokenizer so the header stays a few KB, a valid checksum); tokenizers of every kind
// tokenizer_from_blob reads (the real and a small SentencePiece model, the tokenizer.json fixture,
// tiktoken ranks as a .tiktoken file, a js-tiktoken module and flashlm's JSON, remaps over the
// tokenizer.json and over SentencePiece); slices of RUN/train.bin, and shards (.bin + sidecar JSON +
// .docs index) written by data::ShardWriter as `flashlm tokenize` writes them, in fuzz_token_file's
// input layouts. Usage: make_seeds RUN DATA_TEXT TOKENIZER_JSON OUT_DIR
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <flashlm/data/load_tokenizer.hpp>
#include <flashlm/data/shard_writer.hpp>
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
    if (argc != 5) {
        std::cerr << "usage: make_seeds RUN DATA_TEXT TOKENIZER_JSON OUT_DIR\n";
        return 2;
    }
    const fs::path run = argv[1], out = argv[4];
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

    // The other kinds: the tokenizer.json fixture; tiktoken ranks (every byte + 200 pairs) as a .tiktoken
    // file, as js-tiktoken's module and as flashlm's serialized JSON; remaps over the tokenizer.json
    // (base embedded as JSON) and over the small SentencePiece model (base64).
    const std::string hf_json = slurp(argv[3]);
    put(out / "tokenizer" / "hf.json", hf_json);
    std::string ranks;
    for (int r = 0; r < 456; ++r) {
        std::string b = r < 256 ? std::string(1, char(r)) : std::string{char('a' + (r - 256) % 26), char('a' + (r - 256) / 26)};
        ranks += io::base64_encode(b) + " " + std::to_string(r) + "\n";
    }
    put(out / "tokenizer" / "ranks.tiktoken", ranks);
    const auto tik = data::tokenizer_from_blob(ranks);
    put(out / "tokenizer" / "tiktoken.json", tik->serialized());
    put(out / "tokenizer" / "ranks.js", "export default " + tik->serialized() + ";\n");
    std::vector<std::string_view> stories;
    for (auto l : data::split_lines(text))
        if (stories.size() < 200) stories.push_back(l);
    std::shared_ptr<const data::Tokenizer> hf = data::tokenizer_from_blob(hf_json);
    put(out / "tokenizer" / "remap_hf.json", data::RemapTokenizer::build(hf, stories, 300).serialized());
    std::shared_ptr<const data::Tokenizer> sp = data::tokenizer_from_blob(small_tok);
    put(out / "tokenizer" / "remap_sp.json", data::RemapTokenizer::build(sp, stories, 200).serialized());

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

    // Token files (fuzz_token_file's layout): a selector byte, 2 bytes of vocabulary, then slices of
    // the real cache ...
    const std::string bin = slurp(run / "train.bin");
    std::string v(2, '\0');
    const uint16_t V = uint16_t(info.config.value("vocab_size", 0));
    v[0] = char(V & 0xff), v[1] = char(V >> 8);
    put(out / "token_file" / "head64", '\0' + v + bin.substr(0, 128));
    put(out / "token_file" / "head512", '\0' + v + bin.substr(0, 1024));
    put(out / "token_file" / "unchecked", std::string(3, '\0') + bin.substr(0, 256));
    // ... and shards as `flashlm tokenize` writes them: 300 tokens of the cache cut into documents after
    // each end-of-text id, through ShardWriter, packed with the sidecar and index lengths.
    const int32_t run_eos = data::tokenizer_from_blob(real_tok)->eos_id();
    const fs::path sd = out / "shard_tmp";
    fs::create_directories(sd);
    {
        data::ShardWriter w(sd.string(), V, 1 << 20,
                            {{"tokenizer_fnv1a", 1234567890123ULL}, {"vocab_size", V}, {"eos_id", run_eos}, {"sources", {"seed"}}});
        std::vector<int32_t> doc;
        for (size_t i = 0; i + 1 < bin.size() && i < 600; i += 2) {
            doc.push_back(int32_t(uint8_t(bin[i])) | int32_t(uint8_t(bin[i + 1])) << 8);
            if (doc.back() == run_eos) w.add_document(doc.data(), doc.size()), doc.clear();
        }
        w.add_document(doc.data(), doc.size());
        w.finish();
    }
    const std::string sbin = slurp(sd / "shard-00000.bin"), sside = slurp(sd / "shard-00000.bin.json"),
                      sdocs = slurp(sd / "shard-00000.docs");
    fs::remove_all(sd);
    auto shard_seed = [&](const std::string& name, bool check_hash, const std::string& side, const std::string& docs) {
        std::string h(7, '\0');
        h[0] = char(1 | (check_hash ? 2 : 0) | (run_eos >= 0 && run_eos < 64 ? run_eos : 0) << 2);
        h[1] = v[0], h[2] = v[1];
        h[3] = char(side.size() & 0xff), h[4] = char(side.size() >> 8);
        h[5] = char(docs.size() & 0xff), h[6] = char(docs.size() >> 8);
        put(out / "token_file" / name, h + side + docs + sbin);
    };
    shard_seed("shard", true, sside, sdocs);
    shard_seed("shard_unchecked_hash", false, sside, sdocs);
    shard_seed("shard_no_index", false, "{\"dtype\": \"uint16\", \"tokens\": " + std::to_string(sbin.size() / 2) + "}", "");
    shard_seed("shard_no_sidecar", false, "", "");
    std::cout << "seeds in " << out << ": " << real_tok.size() << "-byte real tokenizer, " << small_tok.size()
              << "-byte small tokenizer, checkpoints of " << fs::file_size(out / "checkpoint" / "with_adam.safetensors")
              << " bytes\n";
    return 0;
}
