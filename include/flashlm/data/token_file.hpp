#pragma once
// Flat little-endian uint16 token files (the upstream .bin format), written atomically and read with
// mmap so a corpus larger than memory costs only page cache.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace flashlm::data {

inline void write_token_file(const std::string& path, const std::vector<int32_t>& ids) {
    std::vector<uint16_t> buf(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] > 65535)
            throw std::runtime_error("token id " + std::to_string(ids[i]) + " does not fit a uint16 token file");
        buf[i] = uint16_t(ids[i]);
    }
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write '" + tmp + "': " + std::strerror(errno));
    const bool ok = std::fwrite(buf.data(), 2, buf.size(), f) == buf.size() && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
    const int err = errno;
    std::fclose(f);
    if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw std::runtime_error("cannot write '" + path + "': " + std::strerror(ok ? errno : err));
    }
}

class TokenFile {
public:
    TokenFile() = default;
    // Opens and validates: even size, non-empty, every id below `vocab` (when vocab > 0).
    explicit TokenFile(const std::string& path, int64_t vocab = 0) {
        int fd = ::open(path.c_str(), O_RDONLY);
        if (fd < 0) throw std::runtime_error("cannot open token file '" + path + "': " + std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            ::close(fd);
            throw std::runtime_error("cannot stat '" + path + "'");
        }
        if (st.st_size == 0 || st.st_size % 2 != 0) {
            ::close(fd);
            throw std::runtime_error("token file '" + path + "' has " + std::to_string(st.st_size) +
                                     " bytes; expected a non-zero even size (uint16 tokens)");
        }
        bytes_ = size_t(st.st_size);
        void* p = ::mmap(nullptr, bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
        ::close(fd);
        if (p == MAP_FAILED) throw std::runtime_error("cannot mmap '" + path + "': " + std::strerror(errno));
        data_ = static_cast<const uint16_t*>(p);
        if (vocab > 0)
            for (size_t i = 0; i < size(); ++i)
                if (data_[i] >= vocab) {
                    std::string msg = "token file '" + path + "': token " + std::to_string(data_[i]) + " at position " +
                                      std::to_string(i) + " is outside the vocabulary of " + std::to_string(vocab);
                    release();
                    throw std::runtime_error(msg);
                }
    }
    ~TokenFile() { release(); }
    TokenFile(const TokenFile&) = delete;
    TokenFile& operator=(const TokenFile&) = delete;
    TokenFile(TokenFile&& o) noexcept : data_(o.data_), bytes_(o.bytes_) { o.data_ = nullptr, o.bytes_ = 0; }
    TokenFile& operator=(TokenFile&& o) noexcept {
        if (this != &o) {
            release();
            data_ = o.data_, bytes_ = o.bytes_;
            o.data_ = nullptr, o.bytes_ = 0;
        }
        return *this;
    }
    size_t size() const { return bytes_ / 2; }
    const uint16_t* data() const { return data_; }
    uint16_t operator[](size_t i) const { return data_[i]; }

private:
    void release() {
        if (data_) ::munmap(const_cast<uint16_t*>(data_), bytes_);
        data_ = nullptr;
        bytes_ = 0;
    }
    const uint16_t* data_ = nullptr;
    size_t bytes_ = 0;
};

}  // namespace flashlm::data
