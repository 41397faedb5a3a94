#pragma once
// safetensors (the Hugging Face tensor file format): u64 LE header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then raw
// little-endian data with offsets relative to the end of the header. Files are treated as untrusted:
// every size and offset is checked before it is used, so a corrupt or hostile file ends in a
// FormatError rather than a crash or a huge allocation.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace flashlm::io {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, U16, U32, U64, BOOL };

struct FormatError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

namespace detail {
struct DTypeInfo {
    DType d;
    const char* name;
    std::size_t size;
};
inline constexpr DTypeInfo k_dtypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::U16, "U16", 2}, {DType::U32, "U32", 4}, {DType::U64, "U64", 8},
    {DType::BOOL, "BOOL", 1}};
}  // namespace detail

inline std::size_t dtype_size(DType d) { return detail::k_dtypes[static_cast<int>(d)].size; }
inline const char* dtype_name(DType d) { return detail::k_dtypes[static_cast<int>(d)].name; }
inline DType parse_dtype(const std::string& s) {
    for (const auto& i : detail::k_dtypes)
        if (s == i.name) return i.d;
    throw FormatError("unknown dtype '" + s + "'");
}

// A tensor to write; data points at numel * dtype_size bytes owned by the caller.
struct TensorRef {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const void* data;
};

struct Limits {
    std::size_t max_header_bytes = 100u << 20;
    std::size_t max_file_bytes = std::size_t(64) << 30;
};

namespace detail {
inline std::runtime_error sys_error(const std::string& path, const std::string& what) {
    return std::runtime_error(path + ": " + what + ": " + std::strerror(errno));
}
struct Fd {  // closes on every exit path
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};
inline bool write_all(int fd, const void* p, std::size_t n) {
    auto* c = static_cast<const char*>(p);
    while (n > 0) {
        ssize_t w = ::write(fd, c, std::min<std::size_t>(n, std::size_t(1) << 30));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        c += w, n -= std::size_t(w);
    }
    return true;
}
// IEEE half and bfloat16 to float; bf16 is the top half of a float, half needs re-biasing.
inline float bf16_to_float(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }
inline float f16_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) return (sign ? -1.f : 1.f) * std::ldexp(float(man), -24);  // zero and subnormals
    if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
    return std::bit_cast<float>(sign | ((exp + 112) << 23) | (man << 13));
}
}  // namespace detail

// Writes to path + ".tmp", fsyncs, renames over path and fsyncs the directory, so a crash or a full
// disk leaves either the old file or the new one, never a torn one. Invalid arguments throw
// std::invalid_argument before any file is touched.
inline void save_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
    nlohmann::json h = nlohmann::json::object();
    if (!metadata.empty()) h["__metadata__"] = metadata;
    std::vector<std::size_t> sizes;
    std::size_t off = 0;
    for (const auto& t : tensors) {
        if (t.name == "__metadata__" || h.contains(t.name))
            throw std::invalid_argument(path + ": duplicate or reserved tensor name '" + t.name + "'");
        std::size_t n = dtype_size(t.dtype);
        for (int64_t d : t.shape) {
            if (d < 0) throw std::invalid_argument(path + ": negative dimension in '" + t.name + "'");
            n *= std::size_t(d);
        }
        if (n && !t.data) throw std::invalid_argument(path + ": tensor '" + t.name + "' has no data");
        h[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + n}}};
        sizes.push_back(n);
        off += n;
    }
    std::string header = h.dump();
    header.append((8 - header.size() % 8) % 8, ' ');  // keeps the data region 8-byte aligned
    const uint64_t hlen = header.size();

    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw detail::sys_error(tmp, "cannot create");
    auto fail = [&](const char* what) {
        auto e = detail::sys_error(tmp, what);
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        return e;
    };
    bool ok = detail::write_all(fd, &hlen, 8) && detail::write_all(fd, header.data(), header.size());
    for (std::size_t i = 0; ok && i < tensors.size(); ++i) ok = detail::write_all(fd, tensors[i].data, sizes[i]);
    if (!ok) throw fail("write failed");
    if (::fsync(fd) != 0) throw fail("fsync failed");
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) throw fail("close failed");
    if (::rename(tmp.c_str(), path.c_str()) != 0) throw fail(("cannot rename to " + path).c_str());
    const auto slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) throw detail::sys_error(dir, "cannot open directory to fsync");
    rc = ::fsync(dfd);
    ::close(dfd);
    if (rc != 0) throw detail::sys_error(dir, "directory fsync failed");
}

struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    const uint8_t* data;  // inside the SafeTensors buffer; not aligned in general
    std::size_t nbytes;
    int64_t numel() const {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return n;
    }
};

namespace detail {
// The one dtype to_vector<T> accepts for each element type (F16/BF16 only through copy_to).
template <class T>
constexpr DType dtype_of() {
    using std::is_same_v;
    if constexpr (is_same_v<T, double>) return DType::F64;
    else if constexpr (is_same_v<T, float>) return DType::F32;
    else if constexpr (is_same_v<T, int64_t>) return DType::I64;
    else if constexpr (is_same_v<T, int32_t>) return DType::I32;
    else if constexpr (is_same_v<T, int16_t>) return DType::I16;
    else if constexpr (is_same_v<T, int8_t>) return DType::I8;
    else if constexpr (is_same_v<T, uint64_t>) return DType::U64;
    else if constexpr (is_same_v<T, uint32_t>) return DType::U32;
    else if constexpr (is_same_v<T, uint16_t>) return DType::U16;
    else if constexpr (is_same_v<T, uint8_t>) return DType::U8;
    else static_assert(sizeof(T) == 0, "to_vector: no safetensors dtype for this element type");
}
}  // namespace detail

// A parsed file held in memory. Entries point into the owned buffer, so the object is move-only.
class SafeTensors {
public:
    SafeTensors(SafeTensors&&) = default;
    SafeTensors& operator=(SafeTensors&&) = default;
    SafeTensors(const SafeTensors&) = delete;
    SafeTensors& operator=(const SafeTensors&) = delete;

    // I/O errors (missing file, not a regular file) are std::runtime_error; content errors FormatError.
    static SafeTensors load(const std::string& path, const Limits& lim = {}) {
        detail::Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
        if (f.fd < 0) throw detail::sys_error(path, "cannot open");
        struct stat st {};
        if (::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode)) throw std::runtime_error(path + ": not a regular file");
        // The size comes from the file system, so this allocation is bounded by a file that exists.
        const auto size = static_cast<std::size_t>(st.st_size);
        if (size > lim.max_file_bytes)
            throw FormatError(path + ": file is " + std::to_string(size) + " bytes, over the limit of " +
                              std::to_string(lim.max_file_bytes));
        std::vector<uint8_t> bytes(size);
        for (std::size_t got = 0; got < size;) {
            ssize_t r = ::read(f.fd, bytes.data() + got, size - got);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) throw detail::sys_error(path, "read failed");
            if (r == 0) throw std::runtime_error(path + ": file shrank while reading");
            got += std::size_t(r);
        }
        return parse(std::move(bytes), path, lim);
    }

    static SafeTensors parse(std::vector<uint8_t> bytes, const std::string& origin = "<memory>", const Limits& lim = {}) {
        SafeTensors s;
        s.origin_ = origin;
        s.bytes_ = std::move(bytes);
        s.index(lim);
        return s;
    }

    const std::map<std::string, std::string>& metadata() const { return meta_; }
    bool contains(const std::string& name) const { return entries_.count(name) != 0; }
    const Entry& at(const std::string& name) const {
        auto it = entries_.find(name);
        if (it == entries_.end()) throw FormatError("no tensor '" + name + "' in " + origin_);
        return it->second;
    }
    std::vector<std::string> names() const { return order_; }

    template <class T>
    std::vector<T> to_vector(const std::string& name) const {
        const Entry& e = at(name);
        if (e.dtype != detail::dtype_of<T>())
            throw FormatError(origin_ + ": tensor '" + name + "' is " + dtype_name(e.dtype) + ", not " +
                              dtype_name(detail::dtype_of<T>()));
        std::vector<T> v(e.nbytes / sizeof(T));
        if (e.nbytes) std::memcpy(v.data(), e.data, e.nbytes);
        return v;
    }
    void copy_to(const std::string& name, float* dst, std::size_t n) const { convert(name, dst, n); }
    void copy_to(const std::string& name, double* dst, std::size_t n) const { convert(name, dst, n); }

private:
    SafeTensors() = default;

    void check(bool ok, const std::string& what) const {
        if (!ok) throw FormatError(origin_ + ": " + what);
    }
    static bool as_size(const nlohmann::json& j, uint64_t max, uint64_t& out) {
        if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0)) return false;
        out = j.get<uint64_t>();
        return out <= max;
    }

    void index(const Limits& lim) {
        const std::size_t size = bytes_.size();
        check(size <= lim.max_file_bytes, "file is " + std::to_string(size) + " bytes, over the limit");
        check(size >= 8, "truncated: file has " + std::to_string(size) + " bytes, less than the 8-byte header length");
        uint64_t hlen = 0;
        std::memcpy(&hlen, bytes_.data(), 8);
        check(hlen <= size - 8, "truncated: header says " + std::to_string(hlen) + " bytes but file has " +
                                    std::to_string(size));
        check(hlen <= lim.max_header_bytes, "header of " + std::to_string(hlen) + " bytes is over the limit of " +
                                                std::to_string(lim.max_header_bytes));
        const auto* hb = bytes_.data() + 8;
        nlohmann::json h = nlohmann::json::parse(hb, hb + hlen, nullptr, false);
        check(!h.is_discarded(), "header is not valid JSON");
        check(h.is_object(), "header is not a JSON object");
        const uint8_t* data = hb + hlen;
        const uint64_t data_size = size - 8 - hlen;
        std::vector<std::pair<uint64_t, std::string>> spans;  // begin, name
        for (auto& [name, v] : h.items()) {
            const std::string where = "tensor '" + name + "': ";
            if (name == "__metadata__") {
                check(v.is_object(), "__metadata__ is not an object");
                for (auto& [k, mv] : v.items()) {
                    check(mv.is_string(), "__metadata__ value for '" + k + "' is not a string");
                    meta_[k] = mv.get<std::string>();
                }
                continue;
            }
            check(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
                  where + "entry needs dtype, shape and data_offsets");
            check(v["dtype"].is_string(), where + "dtype is not a string");
            Entry e{};
            try {
                e.dtype = parse_dtype(v["dtype"].get<std::string>());
            } catch (const FormatError& err) {
                check(false, where + err.what());
            }
            check(v["shape"].is_array(), where + "shape is not an array");
            uint64_t numel = 1;
            for (auto& d : v["shape"]) {
                uint64_t n = 0;
                // Every partial product must fit int64_t so that Entry::numel() cannot overflow either.
                constexpr auto k_max = uint64_t(std::numeric_limits<int64_t>::max());
                check(as_size(d, k_max, n), where + "shape entries must be non-negative integers");
                check(n == 0 || numel <= k_max / n, where + "element count overflows");
                numel *= n;
                e.shape.push_back(int64_t(n));
            }
            const auto& o = v["data_offsets"];
            uint64_t b = 0, end = 0;
            // A well-formed pair that ends past the data usually means a file cut short; say so.
            const bool past_end = o.is_array() && o.size() == 2 && o[1].is_number_unsigned() &&
                                  o[1].get<uint64_t>() > data_size;
            check(o.is_array() && o.size() == 2 && as_size(o[0], data_size, b) && as_size(o[1], data_size, end) &&
                      b <= end,
                  where + "data_offsets must be [begin, end] within the " + std::to_string(data_size) +
                      "-byte data region" + (past_end ? " (the file is truncated or damaged)" : ""));
            // Dividing first keeps numel * size from overflowing.
            const std::size_t es = dtype_size(e.dtype);
            check((end - b) % es == 0 && numel == (end - b) / es,
                  where + std::string(dtype_name(e.dtype)) + " shape " + v["shape"].dump() + " does not match the " +
                      std::to_string(end - b) + " bytes of data_offsets");
            e.data = data + b;
            e.nbytes = std::size_t(end - b);
            entries_[name] = std::move(e);
            spans.emplace_back(b, name);
        }
        std::sort(spans.begin(), spans.end());
        for (std::size_t i = 1; i < spans.size(); ++i) {
            const Entry& prev = entries_.at(spans[i - 1].second);
            check(spans[i - 1].first + prev.nbytes <= spans[i].first,
                  "tensors '" + spans[i - 1].second + "' and '" + spans[i].second + "' overlap");
        }
        for (auto& sp : spans) order_.push_back(sp.second);
    }

    template <class D>
    void convert(const std::string& name, D* dst, std::size_t n) const {
        const Entry& e = at(name);
        check(uint64_t(e.numel()) == n, "tensor '" + name + "' has " + std::to_string(e.numel()) +
                                            " elements, expected " + std::to_string(n));
        auto each = [&](auto tag, auto conv) {
            using S = decltype(tag);
            for (std::size_t i = 0; i < n; ++i) {
                S s;
                std::memcpy(&s, e.data + i * sizeof(S), sizeof(S));
                dst[i] = D(conv(s));
            }
        };
        auto id = [](auto x) { return x; };
        switch (e.dtype) {
            case DType::F32: each(float{}, id); break;
            case DType::F64: each(double{}, id); break;
            case DType::F16: each(uint16_t{}, detail::f16_to_float); break;
            case DType::BF16: each(uint16_t{}, detail::bf16_to_float); break;
            default: check(false, "tensor '" + name + "' is " + dtype_name(e.dtype) + ", not a floating-point dtype");
        }
    }

    std::string origin_;
    std::vector<uint8_t> bytes_;
    std::map<std::string, Entry> entries_;
    std::vector<std::string> order_;
    std::map<std::string, std::string> meta_;
};

}  // namespace flashlm::io
