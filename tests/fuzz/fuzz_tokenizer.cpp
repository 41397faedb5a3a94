// libFuzzer target: a serialized SentencePiece model (the base64 'tokenizer' of a checkpoint, or a
// tokenizer.model) through SpTokenizer::from_serialized, then encode/decode of a fixed text and the
// piece tables. A proto that does not parse must end in the "tokenizer does not parse" runtime_error.
// libsentencepiece is Debian's uninstrumented build: coverage guides through flashlm's code only, and
// ASan sees its memory errors only through intercepted libc calls (crashes are still caught).
#include <cstdint>
#include <string>
#include <vector>

#include <flashlm/data/sp_tokenizer.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using flashlm::data::SpTokenizer;
    std::string proto(reinterpret_cast<const char*>(data), size);
    try {
        SpTokenizer t = SpTokenizer::from_serialized(proto);
        auto ids = t.encode("Once upon a time, a little \xC3\xA9l\xC3\xA8ve saw \xF0\x9F\x90\xB1 and \xFF\xFE bytes.");
        for (int32_t& id : ids) id = id < 0 || id >= t.vocab_size() ? 0 : id;
        (void)t.decode(ids);
        long bytes = 0;
        for (int b : t.piece_bytes()) bytes += b;
        (void)bytes;
        (void)t.eos_id();
    } catch (const std::runtime_error&) {
    }
    return 0;
}
