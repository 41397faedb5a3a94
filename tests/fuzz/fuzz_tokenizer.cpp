// libFuzzer target: the tokenizer readers, through data::tokenizer_from_blob, the function that reads
// a --tokenizer file and the tokenizer a checkpoint embeds. It tells the kinds apart by content, so the
// seeds pick the reader: a serialized SentencePiece model (SpTokenizer), a `tokenizers` tokenizer.json
// (HfTokenizer), tiktoken ranks as a .tiktoken file, a js-tiktoken module or flashlm's "tiktoken/1" JSON
// (TiktokenBpe), and flashlm's "remap/1" JSON over a base of any kind (RemapTokenizer). Each tokenizer
// that loads encodes and decodes a fixed text, its ids are checked against its vocabulary, and its
// serialized form must load again. A blob that does not parse must end in a std::runtime_error.
// libsentencepiece is Debian's uninstrumented build: coverage guides through flashlm's code only, and
// ASan sees its memory errors only through intercepted libc calls (crashes are still caught).
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <flashlm/data/load_tokenizer.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace flashlm::data;
    const std::string blob(reinterpret_cast<const char*>(data), size);
    try {
        auto t = tokenizer_from_blob(blob, "fuzzed tokenizer");
        std::vector<int32_t> ids;
        try {
            ids = t->encode("Once upon a time, a little \xC3\xA9l\xC3\xA8ve saw \xF0\x9F\x90\xB1 and \xFF\xFE bytes.\n  x");
        } catch (const std::runtime_error&) {
            // tiktoken ranks without a token for some byte of the text fail as tiktoken would
        }
        const int32_t V = t->vocab_size();
        if (V <= 0 || t->eos_id() >= V || int32_t(t->piece_bytes().size()) != V) std::abort();
        for (int32_t id : ids)
            if (id < 0 || id >= V) std::abort();
        for (int32_t i = 0; i < V && i < 512; ++i) ids.push_back(i);
        (void)t->decode(ids);
        // What a checkpoint embeds must load again as the same tokenizer.
        std::unique_ptr<Tokenizer> again;
        try {
            again = tokenizer_from_blob(t->serialized(), "re-serialized tokenizer");
        } catch (const std::exception&) {
            std::abort();
        }
        if (again->kind() != t->kind() || again->vocab_size() != V || again->eos_id() != t->eos_id()) std::abort();
    } catch (const std::runtime_error&) {
    }
    return 0;
}
