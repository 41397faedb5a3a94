#pragma once
// ParamStore: every parameter of a model is a named view into one flat value buffer and one flat
// gradient buffer (llm.c's malloc_and_point_parameters). Names follow the upstream PyTorch state-dict
// keys, so checkpoints, imports and parity tests address tensors the same way PyTorch does.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "flashlm/core/storage.hpp"
#include "flashlm/core/tensor.hpp"

namespace flashlm {

// Upper bound on the elements ParamStore::allocate() may reserve on this thread (0: none). A loader of
// an untrusted checkpoint sets it (ParamLimit) to what the file holds, so a config that declares a huge
// model fails with a clear error instead of allocating it.
inline std::size_t& param_element_limit() {
    thread_local std::size_t limit = 0;
    return limit;
}
struct ParamLimit {
    std::size_t saved;
    explicit ParamLimit(std::size_t n) : saved(param_element_limit()) { param_element_limit() = n; }
    ~ParamLimit() { param_element_limit() = saved; }
    ParamLimit(const ParamLimit&) = delete;
    ParamLimit& operator=(const ParamLimit&) = delete;
};

struct ParamInfo {
    std::string name;
    Shape shape;
    std::size_t offset = 0;
    bool decay = true;  // AdamW parameter group: weight decay applies
};

template <class T>
class ParamStore {
public:
    // Registers a parameter; returns its id. Offsets are 16-element aligned so every tensor starts on a
    // cache line. Must be called before allocate().
    std::size_t add(const std::string& name, Shape shape, bool decay = true) {
        if (allocated()) throw std::logic_error("ParamStore::add after allocate: " + name);
        if (index_.count(name)) throw std::logic_error("duplicate parameter name: " + name);
        ParamInfo p{name, shape, total_, decay};
        total_ += (static_cast<std::size_t>(shape.numel()) + 15) / 16 * 16;
        index_[name] = infos_.size();
        infos_.push_back(p);
        return infos_.size() - 1;
    }
    // Another state-dict key for an existing tensor (tied weights: head.weight -> embedding.weight).
    void alias(const std::string& name, const std::string& target) { aliases_[name] = target; }

    void allocate() {
        if (param_element_limit() && total_ > param_element_limit())
            throw std::length_error("the model declares " + std::to_string(total_) + " parameter values, more than the " +
                                    std::to_string(param_element_limit()) + " its checkpoint holds");
        values_.resize(total_);
        grads_.resize(total_);
    }
    bool allocated() const { return values_.size() != 0 || (total_ == 0 && !infos_.empty()); }

    Tensor<T> get(std::size_t id) {
        auto& p = infos_.at(id);
        return Tensor<T>(values_.data() + p.offset, grads_.data() + p.offset, p.shape);
    }
    Tensor<T> get(const std::string& name) { return get(id_of(name)); }
    std::size_t id_of(const std::string& name) const {
        auto a = aliases_.find(name);
        const std::string& key = a == aliases_.end() ? name : a->second;
        auto it = index_.find(key);
        if (it == index_.end()) throw std::out_of_range("no parameter named '" + name + "'");
        return it->second;
    }
    bool contains(const std::string& name) const { return index_.count(name) || aliases_.count(name); }

    const std::vector<ParamInfo>& infos() const { return infos_; }
    const std::unordered_map<std::string, std::string>& aliases() const { return aliases_; }
    // Number of trainable scalars (without alignment padding).
    int64_t count() const {
        int64_t n = 0;
        for (auto& p : infos_) n += p.shape.numel();
        return n;
    }
    std::size_t flat_size() const { return total_; }
    T* values() { return values_.data(); }
    T* grads() { return grads_.data(); }
    const T* values() const { return values_.data(); }
    const T* grads() const { return grads_.data(); }
    void zero_grad() { grads_.zero(); }

private:
    std::vector<ParamInfo> infos_;
    std::unordered_map<std::string, std::size_t> index_;
    std::unordered_map<std::string, std::string> aliases_;
    std::size_t total_ = 0;
    Storage<T> values_, grads_;
};

}  // namespace flashlm
