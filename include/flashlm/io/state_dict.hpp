#pragma once
// Upstream PyTorch state dicts as safetensors files. check_state_dict compares a file against a model's
// parameters (every name, shape and dtype, tied aliases) and reports all problems at once;
// load_state_dict copies a checked file in any float dtype; save_state_dict writes a model's parameters
// back under the upstream names, with every tied alias stored as well, because torch's state_dict()
// lists both keys of a tied weight and load_state_dict(strict=True) wants both.
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "flashlm/core/param_store.hpp"
#include "flashlm/io/safetensors.hpp"

namespace flashlm::io {

// name -> shape of every tensor in a file; what a variant's config inference reads.
using TensorShapes = std::map<std::string, std::vector<int64_t>>;

inline TensorShapes tensor_shapes(const SafeTensors& st) {
    TensorShapes s;
    for (const auto& n : st.names()) s[n] = st.at(n).shape;
    return s;
}

// Size of axis `axis` of tensor `name`, if the file has that tensor with that many axes.
inline std::optional<int64_t> dim_of(const TensorShapes& s, const std::string& name, std::size_t axis) {
    auto it = s.find(name);
    if (it == s.end() || axis >= it->second.size()) return std::nullopt;
    return it->second[axis];
}

// 1 + the largest i of the names "<prefix><i>.…" (e.g. prefix "blocks." counts a ModuleList); 0 if none.
inline int64_t count_indexed(const TensorShapes& s, const std::string& prefix) {
    int64_t n = 0;
    for (const auto& [name, shape] : s) {
        if (name.compare(0, prefix.size(), prefix) != 0) continue;
        std::size_t i = prefix.size(), j = i;
        while (j < name.size() && j - i < 9 && name[j] >= '0' && name[j] <= '9') ++j;
        if (j == i || j >= name.size() || name[j] != '.') continue;
        n = std::max<int64_t>(n, std::stoll(name.substr(i, j - i)) + 1);
    }
    return n;
}

inline std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

inline bool is_float_dtype(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16 || d == DType::F64; }

// Whether `name` matches `pattern`, where each '*' stands for one or more decimal digits (a ModuleList
// index): "blocks.*.decay_mask" matches "blocks.11.decay_mask".
inline bool matches_indexed(const std::string& pattern, const std::string& name) {
    std::size_t i = 0, j = 0;
    for (; i < pattern.size(); ++i) {
        if (pattern[i] != '*') {
            if (j >= name.size() || name[j] != pattern[i]) return false;
            ++j;
            continue;
        }
        const std::size_t start = j;
        while (j < name.size() && name[j] >= '0' && name[j] <= '9') ++j;
        if (j == start) return false;
    }
    return j == name.size();
}

// Everything wrong with a file as a state dict of one model, each entry a readable line. `buffers`
// lists the upstream buffers the file carries that flashlm recomputes (not a problem; not loaded).
struct StateDictProblems {
    std::vector<std::string> missing, unexpected, mismatched, non_float, untied;
    std::vector<std::string> buffers;

    std::size_t count() const {
        return missing.size() + unexpected.size() + mismatched.size() + non_float.size() + untied.size();
    }
    bool empty() const { return count() == 0; }
    // One message listing every kind of problem (at most `cap` entries of each, then a count).
    std::string describe(std::size_t cap = 12) const {
        std::string r;
        auto list = [&](const char* what, const std::vector<std::string>& v) {
            if (v.empty()) return;
            r += "\n  " + std::string(what) + " (" + std::to_string(v.size()) + "):";
            for (std::size_t i = 0; i < v.size() && i < cap; ++i) r += "\n    " + v[i];
            if (v.size() > cap) r += "\n    … and " + std::to_string(v.size() - cap) + " more";
        };
        list("missing tensors", missing);
        list("unexpected tensors", unexpected);
        list("shape mismatches", mismatched);
        list("not a floating-point dtype", non_float);
        list("tied weights that differ", untied);
        return r;
    }
};

namespace detail {
inline std::vector<int64_t> dims(const ParamInfo& p) {
    return std::vector<int64_t>(p.shape.dims.begin(), p.shape.dims.begin() + p.shape.rank);
}
inline std::vector<std::pair<std::string, std::string>> sorted_aliases(
    const std::unordered_map<std::string, std::string>& a) {
    std::vector<std::pair<std::string, std::string>> v(a.begin(), a.end());
    std::sort(v.begin(), v.end());
    return v;
}
// Which file tensor holds parameter p: its own name, else a tied alias of it (a file may store a tied
// weight under either key).
template <class T>
const std::string* source_of(const SafeTensors& st, const ParamStore<T>& params, const std::string& name) {
    if (st.contains(name)) return &name;
    for (const auto& [alias, target] : params.aliases())
        if (target == name && st.contains(alias)) return &alias;
    return nullptr;
}
}  // namespace detail

// upstream_buffers: name patterns (matches_indexed) of tensors upstream stores as module buffers and
// flashlm computes itself, such as CORTEX-VI's decay mask; they are skipped rather than unexpected.
template <class T>
StateDictProblems check_state_dict(const SafeTensors& st, const ParamStore<T>& params,
                                   const std::vector<std::string>& upstream_buffers = {}) {
    StateDictProblems pr;
    auto check_entry = [&](const std::string& key, const std::vector<int64_t>& want) {
        const Entry& e = st.at(key);
        if (!is_float_dtype(e.dtype))
            pr.non_float.push_back(key + ": " + dtype_name(e.dtype) + " (F32, F16, BF16 or F64 expected)");
        if (e.shape != want) pr.mismatched.push_back(key + ": file " + shape_str(e.shape) + ", model " + shape_str(want));
        return is_float_dtype(e.dtype) && e.shape == want;
    };
    for (const auto& p : params.infos()) {
        const std::string* src = detail::source_of(st, params, p.name);
        if (!src) pr.missing.push_back(p.name + " " + shape_str(detail::dims(p)));
        else check_entry(*src, detail::dims(p));
    }
    for (const auto& [alias, target] : detail::sorted_aliases(params.aliases())) {
        if (!st.contains(alias) || !st.contains(target)) continue;
        const auto want = detail::dims(params.infos().at(params.id_of(target)));
        if (!check_entry(alias, want) || st.at(target).shape != want || !is_float_dtype(st.at(target).dtype)) continue;
        // flashlm holds one tensor for both names, so the file's two copies must agree.
        const std::size_t n = std::size_t(st.at(target).numel());
        std::vector<double> a(n), b(n);
        st.copy_to(alias, a.data(), n);
        st.copy_to(target, b.data(), n);
        if (a != b) pr.untied.push_back(alias + " differs from " + target + " (flashlm ties them: one tensor for both)");
    }
    for (const auto& n : st.names()) {
        if (params.contains(n)) continue;
        const bool buffer = std::any_of(upstream_buffers.begin(), upstream_buffers.end(),
                                        [&](const std::string& p) { return matches_indexed(p, n); });
        (buffer ? pr.buffers : pr.unexpected).push_back(n + " " + shape_str(st.at(n).shape));
    }
    return pr;
}

// Checks, then copies every parameter (converting F16/BF16/F64 to T). Throws FormatError naming path
// and listing every problem.
template <class T>
void load_state_dict(const SafeTensors& st, const std::string& path, ParamStore<T>& params,
                     const std::vector<std::string>& upstream_buffers = {}) {
    const StateDictProblems pr = check_state_dict(st, params, upstream_buffers);
    if (!pr.empty())
        throw FormatError(path + ": the tensors do not match the model (" + std::to_string(pr.count()) + " problem" +
                          (pr.count() == 1 ? "" : "s") + "):" + pr.describe());
    for (const auto& p : params.infos())
        st.copy_to(*detail::source_of(st, params, p.name), params.values() + p.offset, std::size_t(p.shape.numel()));
}

// Writes every parameter under its name and every tied alias under its own name (same values), in
// declaration order, as F32 (T = float) or F64 (T = double), then `extra` (upstream's buffers).
template <class T>
void save_state_dict(const std::string& path, const ParamStore<T>& params,
                     const std::map<std::string, std::string>& metadata = {}, const std::vector<TensorRef>& extra = {}) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8);
    const DType dt = sizeof(T) == 4 ? DType::F32 : DType::F64;
    std::vector<TensorRef> refs;
    for (const auto& p : params.infos()) {
        refs.push_back(TensorRef{p.name, dt, detail::dims(p), params.values() + p.offset});
        for (const auto& [alias, target] : detail::sorted_aliases(params.aliases()))
            if (target == p.name) refs.push_back(TensorRef{alias, dt, detail::dims(p), params.values() + p.offset});
    }
    refs.insert(refs.end(), extra.begin(), extra.end());
    save_safetensors(path, refs, metadata);
}

}  // namespace flashlm::io
