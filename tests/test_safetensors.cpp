#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "flashlm/io/safetensors.hpp"

using namespace flashlm::io;

namespace {

// One scratch directory per test process, removed at exit.
struct ScratchDir {
    std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("flashlm_st_" + std::to_string(::getpid()));
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
} g_scratch;

std::string temp_path(const std::string& leaf) {
    std::filesystem::create_directories(g_scratch.dir);
    return (g_scratch.dir / leaf).string();
}

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A valid two-tensor file to corrupt: a F32 [2,3] then an I32 [4].
std::vector<uint8_t> sample_bytes() {
    const std::string path = temp_path("sample.safetensors");
    float f[6] = {1, 2, 3, 4, 5, 6};
    int32_t i[4] = {7, 8, 9, 10};
    save_safetensors(path, {{"a", DType::F32, {2, 3}, f}, {"b", DType::I32, {4}, i}}, {{"k", "v"}});
    return read_bytes(path);
}

std::vector<uint8_t> with_header(const std::string& json, std::size_t data_bytes) {
    std::vector<uint8_t> b(8 + json.size() + data_bytes, 0);
    const uint64_t n = json.size();
    std::memcpy(b.data(), &n, 8);
    std::memcpy(b.data() + 8, json.data(), json.size());
    return b;
}

void expect_format_error(std::vector<uint8_t> bytes, const char* what) {
    INFO(what);
    CHECK_THROWS_AS(SafeTensors::parse(std::move(bytes), "bad.safetensors"), FormatError);
}

}  // namespace

TEST_CASE("safetensors round-trips several dtypes and metadata") {
    const std::string path = temp_path("rt.safetensors");
    std::vector<double> d = {1.5, -2.25, 1e300};
    std::vector<float> f = {0.5f, -1.0f, 3.25f, 7.0f};
    std::vector<int64_t> i64 = {-1, int64_t(1) << 40};
    std::vector<int32_t> i32 = {3, -4, 5, -6, 7, -8};
    std::vector<uint16_t> u16 = {0, 65535};
    std::vector<uint8_t> u8 = {1, 2, 3};
    // F16 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal); BF16 1.0, -3.0.
    std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x7bff, 0x0001}, bf16 = {0x3f80, 0xc040};
    save_safetensors(path,
                     {{"f64", DType::F64, {3}, d.data()},
                      {"f32", DType::F32, {2, 2}, f.data()},
                      {"i64", DType::I64, {2}, i64.data()},
                      {"i32", DType::I32, {2, 1, 3}, i32.data()},
                      {"empty", DType::F32, {0, 5}, nullptr},
                      {"u16", DType::U16, {2}, u16.data()},
                      {"u8", DType::U8, {3}, u8.data()},
                      {"half", DType::F16, {4}, f16.data()},
                      {"bf", DType::BF16, {2}, bf16.data()}},
                     {{"config", R"({"dim": 4})"}, {"note", "ünïcode"}});
    CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
    SafeTensors st = SafeTensors::load(path);
    CHECK(st.metadata().at("config") == R"({"dim": 4})");
    CHECK(st.metadata().at("note") == "ünïcode");
    CHECK(st.names() == std::vector<std::string>{"f64", "f32", "i64", "i32", "empty", "u16", "u8", "half", "bf"});
    CHECK(st.to_vector<double>("f64") == d);
    CHECK(st.to_vector<float>("f32") == f);
    CHECK(st.to_vector<int64_t>("i64") == i64);
    CHECK(st.to_vector<int32_t>("i32") == i32);
    CHECK(st.to_vector<uint16_t>("u16") == u16);
    CHECK(st.to_vector<uint8_t>("u8") == u8);
    CHECK(st.at("i32").shape == std::vector<int64_t>{2, 1, 3});
    CHECK(st.at("empty").numel() == 0);
    CHECK(st.to_vector<float>("empty").empty());
    float h[4];
    st.copy_to("half", h, 4);
    CHECK(h[0] == 1.0f);
    CHECK(h[1] == -2.0f);
    CHECK(h[2] == 65504.0f);
    CHECK(h[3] == std::ldexp(1.0f, -24));
    double b[2];
    st.copy_to("bf", b, 2);
    CHECK(b[0] == 1.0);
    CHECK(b[1] == -3.0);
    float back[3];
    st.copy_to("f64", back, 3);
    CHECK(back[1] == -2.25f);
    CHECK_THROWS_AS(st.to_vector<float>("i32"), FormatError);
    CHECK_THROWS_AS(st.copy_to("i32", back, 6), FormatError);
    CHECK_THROWS_AS(st.copy_to("f64", back, 2), FormatError);
    CHECK_THROWS_WITH_AS(st.at("nope"), doctest::Contains("no tensor 'nope'"), FormatError);
    CHECK_FALSE(st.contains("nope"));
    CHECK(st.contains("bf"));
}

TEST_CASE("safetensors save replaces atomically and reports failures") {
    const std::string path = temp_path("atomic.safetensors");
    float one = 1, two = 2;
    save_safetensors(path, {{"x", DType::F32, {1}, &one}});
    save_safetensors(path, {{"x", DType::F32, {1}, &two}});
    CHECK(SafeTensors::load(path).to_vector<float>("x")[0] == 2.0f);
    CHECK_THROWS_AS(save_safetensors("/nonexistent-dir/x.safetensors", {{"x", DType::F32, {1}, &one}}),
                    std::runtime_error);
    if (std::filesystem::exists("/dev/full")) {
        // ENOSPC on write: the error names the file; nothing is left behind.
        std::vector<float> big(1 << 16, 1.0f);
        const std::string full = temp_path("full.safetensors");
        save_safetensors(full, {{"x", DType::F32, {1}, &one}});
        std::filesystem::remove(full + ".tmp");
        std::filesystem::create_symlink("/dev/full", full + ".tmp");
        CHECK_THROWS_WITH_AS(save_safetensors(full, {{"x", DType::F32, {int64_t(big.size())}, big.data()}}),
                             doctest::Contains("full.safetensors.tmp"), std::runtime_error);
        CHECK(SafeTensors::load(full).to_vector<float>("x") == std::vector<float>{1.0f});  // old file intact
        CHECK_FALSE(std::filesystem::is_symlink(full + ".tmp"));
    }
    CHECK_THROWS_AS(SafeTensors::load(temp_path("missing.safetensors")), std::runtime_error);
}

TEST_CASE("safetensors rejects malformed files with FormatError") {
    const std::vector<uint8_t> good = sample_bytes();
    REQUIRE_NOTHROW(SafeTensors::parse(good));
    uint64_t hlen = 0;
    std::memcpy(&hlen, good.data(), 8);

    expect_format_error({}, "zero-length file");
    expect_format_error({1, 2, 3}, "shorter than the length prefix");
    expect_format_error(std::vector<uint8_t>(good.begin(), good.begin() + 8 + hlen / 2), "truncated header");
    expect_format_error(std::vector<uint8_t>(good.begin(), good.end() - 8), "truncated data");
    expect_format_error(std::vector<uint8_t>(good.begin(), good.end() - 1), "one byte short");
    {
        auto b = good;
        const uint64_t huge = ~uint64_t(0) - 3;
        std::memcpy(b.data(), &huge, 8);
        expect_format_error(b, "header length near 2^64");
    }
    {
        Limits lim;
        lim.max_header_bytes = 16;
        CHECK_THROWS_WITH_AS(SafeTensors::parse(good, "x", lim), doctest::Contains("over the limit"), FormatError);
    }
    {
        auto b = good;
        b[8] ^= 0x04;  // '{' -> '\x7f'
        expect_format_error(b, "bit flip in the header");
    }
    CHECK_THROWS_WITH_AS(SafeTensors::parse(with_header("[1, 2]", 0), "ck.safetensors"),
                         doctest::Contains("ck.safetensors: header is not a JSON object"), FormatError);
    expect_format_error(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})", 12), "size mismatch");
    expect_format_error(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 8), "offset past end");
    expect_format_error(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "end before begin");
    expect_format_error(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8), "negative offset");
    expect_format_error(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), "one offset");
    expect_format_error(with_header(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "negative dim");
    expect_format_error(with_header(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8), "float dim");
    expect_format_error(with_header(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,0]}})", 8),
                        "element count overflow");
    expect_format_error(with_header(R"({"a":{"dtype":"F32","shape":[2147483648,2147483648,2,0],"data_offsets":[0,0]}})", 0),
                        "partial element count over int64");
    expect_format_error(with_header(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype");
    expect_format_error(with_header(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8), "missing dtype");
    expect_format_error(with_header(R"({"a":5})", 8), "entry not an object");
    expect_format_error(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                    12),
                        "overlapping tensors");
    expect_format_error(with_header(R"({"__metadata__":{"k":1}})", 0), "non-string metadata");
    expect_format_error(with_header(R"({"__metadata__":[]})", 0), "metadata not an object");
    CHECK_THROWS_WITH_AS(
        SafeTensors::parse(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4), "ck.safetensors"),
        doctest::Contains("ck.safetensors: tensor 'a'"), FormatError);

    // Random corruption anywhere in the header may parse or fail, but must only ever fail with FormatError.
    std::mt19937 rng(7);
    for (int k = 0; k < 3000; ++k) {
        auto b = good;
        const int flips = 1 + int(rng() % 3);
        for (int f = 0; f < flips; ++f) b[rng() % (8 + hlen)] ^= uint8_t(1u << (rng() % 8));
        if (rng() % 4 == 0) b.resize(rng() % b.size());
        try {
            SafeTensors st = SafeTensors::parse(std::move(b));
            for (auto& n : st.names()) (void)st.at(n).numel();
        } catch (const FormatError&) {
        }
    }
}

TEST_CASE("safetensors: a header declaring a huge tensor in a small file is rejected before allocating") {
    // Parsing allocates nothing sized by the header: the file bytes are already in memory and entries
    // point into them; a declared size beyond the data region is a FormatError, never an allocation.
    expect_format_error(with_header(R"({"w":{"dtype":"F32","shape":[1000000000000],"data_offsets":[0,4000000000000]}})", 64),
                        "4 TB tensor in a 64-byte data region");
    expect_format_error(with_header(R"({"w":{"dtype":"F32","shape":[1000000000000],"data_offsets":[0,64]}})", 64),
                        "shape larger than its 64 bytes");
    expect_format_error(with_header(R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,64]}})", 64),
                        "element count overflow");
    const std::string path = temp_path("huge_header.safetensors");
    {
        auto b = with_header(R"({"w":{"dtype":"F32","shape":[1000000000000],"data_offsets":[0,4000000000000]}})", 64);
        std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    }
    CHECK_THROWS_WITH_AS(SafeTensors::load(path), doctest::Contains("within the 64-byte data region"), FormatError);
}
