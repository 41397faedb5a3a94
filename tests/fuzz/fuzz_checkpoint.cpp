// libFuzzer target: untrusted checkpoint bytes through what eval/generate/--resume do with them —
// SafeTensors::parse (header, offsets, dtypes), every tensor converted to float, the checksum, the
// checkpoint metadata (format, model, config/train_state JSON, base64 tokenizer), and the parameters
// and AdamW moments copied into a small ParamStore (shape checks). Only FormatError may escape parse
// and load; anything else (another exception, a crash, a sanitizer report, a leak) is a finding.
#include <cstdint>
#include <vector>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace flashlm;
    try {
        io::SafeTensors st = io::SafeTensors::parse(std::vector<uint8_t>(data, data + size), "fuzz.safetensors");
        for (const auto& name : st.names()) {
            const io::Entry& e = st.at(name);
            if (e.dtype == io::DType::F32 || e.dtype == io::DType::F64 || e.dtype == io::DType::F16 ||
                e.dtype == io::DType::BF16) {
                std::vector<float> v(size_t(e.numel()));  // numel <= file bytes: checked by parse
                st.copy_to(name, v.data(), v.size());
            }
        }
        try {
            io::verify_checksum(st, "fuzz.safetensors");
        } catch (const io::FormatError&) {
            // mutated tensors rarely keep their checksum; read the metadata anyway to reach that code
        }
        io::CheckpointInfo info;
        io::read_checkpoint_info(st, "fuzz.safetensors", info);
        ParamStore<float> ps;
        fuzz::declare_params(ps);
        ps.allocate();
        io::load_params(st, "fuzz.safetensors", ps);
        optim::AdamW<float> opt(ps, optim::AdamWConfig{});
        int64_t adam_step = 0;
        try {  // the trainer reads train_state the same way and reports a FormatError
            adam_step = info.train_state.value("adam_step", int64_t(0));
        } catch (const nlohmann::json::exception&) {
        }
        io::load_optimizer(st, "fuzz.safetensors", ps, opt, adam_step);
    } catch (const io::FormatError&) {
    }
    return 0;
}
