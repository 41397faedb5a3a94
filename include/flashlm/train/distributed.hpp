#pragma once
// Multi-process synchronous data parallelism over MPI (OpenMPI). Not part of flashlm.hpp: the core
// stays MPI-free, and the CLI includes this header only when built with FLASHLM_WITH_MPI.
//
//   MpiSession        MPI_Init_thread/MPI_Finalize, world and node (shared-memory) ranks, small helpers.
//   MpiDataParallel   train::DataParallel over MPI: the flat gradient buffer is cut into fixed-size
//                     buckets (4 MB by default); each is summed with a non-blocking MPI_Iallreduce as
//                     soon as backward has run the last node that writes into it, so reduction of the
//                     last layers overlaps backward of the earlier ones, and buckets overlap each other.
//
// Environment knobs (read by MpiDataParallel): FLASHLM_MPI_BUCKET_MB (bucket size, default 4),
// FLASHLM_MPI_OVERLAP=0 (no buckets: one blocking MPI_Allreduce of the whole buffer after backward).
#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "flashlm/core/parallel.hpp"
#include "flashlm/core/param_store.hpp"
#include "flashlm/train/trainer.hpp"

namespace flashlm::train {

// True when this process was started by mpirun/mpiexec (OpenMPI, PMIx or MPICH's Hydra): only then does
// the CLI initialise MPI, so a plain launch of an MPI build stays a single process with no MPI calls.
inline bool launched_by_mpirun() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
        if (std::getenv(v)) return true;
    return false;
}

inline void mpi_check(int rc, const char* what) {
    if (rc != MPI_SUCCESS) {
        char msg[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(rc, msg, &len);
        throw std::runtime_error(std::string(what) + ": " + std::string(msg, size_t(len)));
    }
}

class MpiSession {
public:
    MpiSession(int* argc, char*** argv) {
        int provided = 0;
        // Only the main thread calls MPI (OpenMP workers never do).
        mpi_check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
        MPI_Comm_dup(MPI_COMM_WORLD, &world_);
        MPI_Comm_rank(world_, &rank_);
        MPI_Comm_size(world_, &size_);
        MPI_Comm_split_type(world_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_);
        MPI_Comm_rank(node_, &local_rank_);
        MPI_Comm_size(node_, &local_size_);
    }
    ~MpiSession() {
        MPI_Comm_free(&node_);
        MPI_Comm_free(&world_);
        MPI_Finalize();
    }
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;

    int rank() const { return rank_; }
    int size() const { return size_; }
    int local_rank() const { return local_rank_; }
    int local_size() const { return local_size_; }
    MPI_Comm world() const { return world_; }
    MPI_Comm node() const { return node_; }

    // Threads per rank by default: this machine's cores shared by the ranks on it, and no more than the
    // CPUs this process may run on (mpirun binds to cores by default for up to 2 ranks).
    int default_threads() const {
        const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
        int per_rank = std::max(1, cores / std::max(1, local_size_));
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0) per_rank = std::min(per_rank, std::max(1, CPU_COUNT(&set)));
        return per_rank;
    }
    void barrier() const { MPI_Barrier(world_); }
    void barrier_node() const { MPI_Barrier(node_); }
    // Rank 0's string everywhere.
    void broadcast(std::string& s) const {
        unsigned long long n = s.size();
        MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, world_);
        s.resize(size_t(n));
        for (size_t o = 0; o < n; o += size_t(1) << 30)
            MPI_Bcast(s.data() + o, int(std::min<size_t>(n - o, size_t(1) << 30)), MPI_CHAR, 0, world_);
    }
    // Runs f on each node's ranks one at a time in local-rank order (e.g. building a file cache that
    // ranks on the same node would otherwise write concurrently); every rank must call it.
    template <class F>
    void one_at_a_time_per_node(F&& f) const {
        for (int turn = 0; turn < local_size_; ++turn) {
            if (turn == local_rank_) f();
            MPI_Barrier(node_);
        }
    }
    [[noreturn]] void abort(int code) const {
        MPI_Abort(MPI_COMM_WORLD, code);
        std::exit(code);
    }

private:
    MPI_Comm world_ = MPI_COMM_NULL, node_ = MPI_COMM_NULL;
    int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

template <class T>
inline MPI_Datatype mpi_type();
template <>
inline MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <>
inline MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }

// Time spent on gradient reduction, summed over steps (rank-local).
struct AllreduceStats {
    int64_t steps = 0;
    double wait_s = 0;     // finish(): blocked waiting for buckets after backward (the exposed part)
    double backward_s = 0; // begin() .. backward done (includes bucket launches and progress polls)
    size_t buckets = 0, bucket_bytes = 0, bytes = 0;
};

template <class T>
class MpiDataParallel final : public DataParallel<T> {
public:
    MpiDataParallel(const MpiSession& s, ParamStore<T>& params, size_t bucket_bytes = 0, int overlap = -1)
        : s_(s), params_(params) {
        if (bucket_bytes == 0) {
            const char* e = std::getenv("FLASHLM_MPI_BUCKET_MB");
            bucket_bytes = size_t((e ? std::max(0.01, std::atof(e)) : 4.0) * 1048576.0);
        }
        if (overlap < 0) {
            const char* e = std::getenv("FLASHLM_MPI_OVERLAP");
            overlap = e ? std::atoi(e) != 0 : 1;
        }
        overlap_ = overlap != 0;
        const size_t n = params.flat_size(), per = std::max<size_t>(16, bucket_bytes / sizeof(T) / 16 * 16);
        for (size_t b = 0; b < n; b += per) buckets_.push_back({b, std::min(n, b + per)});
        reqs_.assign(buckets_.size(), MPI_REQUEST_NULL);
        last_.assign(buckets_.size(), 0);
        stats_.buckets = buckets_.size();
        stats_.bucket_bytes = per * sizeof(T);
        stats_.bytes = n * sizeof(T);
        MPI_Comm_dup(s.world(), &comm_);
    }
    ~MpiDataParallel() override { MPI_Comm_free(&comm_); }

    int rank() const override { return s_.rank(); }
    int size() const override { return s_.size(); }
    const AllreduceStats& stats() const { return stats_; }

    // Plans when each bucket is complete: the smallest recording index among the nodes whose inputs
    // point into it (backward runs nodes in reverse, so that node is the bucket's last writer). The
    // plan depends only on the model's graph, so every rank launches buckets in the same order, as MPI
    // requires of collectives.
    void begin(const Tape<T>& tape) override {
        t_begin_ = now();
        std::fill(last_.begin(), last_.end(), 0);
        if (overlap_) {
            std::fill(last_.begin(), last_.end(), tape.size());
            const T* g0 = params_.grads();
            const size_t n = params_.flat_size(), per = buckets_.empty() ? 1 : buckets_[0].end - buckets_[0].begin;
            const auto& nodes = tape.nodes();
            for (size_t i = 0; i < nodes.size(); ++i)
                for (const Tensor<T>& t : nodes[i].in) {
                    if (!t.grad || t.grad < g0 || t.grad >= g0 + n) continue;
                    const size_t a = size_t(t.grad - g0), e = std::min(n, a + size_t(t.numel()));
                    for (size_t b = a / per; b * per < e; ++b) last_[b] = std::min(last_[b], i);
                }
            for (auto& l : last_)  // a bucket no node writes (padding only) goes at the end
                if (l == tape.size()) l = 0;
        }
        order_.resize(buckets_.size());
        for (size_t b = 0; b < order_.size(); ++b) order_[b] = b;
        // Latest-ready last; ties (e.g. everything when not overlapping) from the end of the buffer.
        std::stable_sort(order_.begin(), order_.end(), [&](size_t x, size_t y) {
            return last_[x] != last_[y] ? last_[x] > last_[y] : x > y;
        });
        next_ = 0;
    }

    void node_done(std::size_t node) override {
        if (!overlap_) return;
        bool launched = false;
        while (next_ < order_.size() && last_[order_[next_]] >= node) launch(order_[next_++]), launched = true;
        if (!launched && next_ > 0) poll();
    }

    void finish() override {
        const double t0 = now();
        stats_.backward_s += t0 - t_begin_;
        if (overlap_) {
            while (next_ < order_.size()) launch(order_[next_++]);
            mpi_check(MPI_Waitall(int(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE), "gradient allreduce");
        } else {
            const size_t n = params_.flat_size();
            for (size_t o = 0; o < n; o += size_t(1) << 28)
                mpi_check(MPI_Allreduce(MPI_IN_PLACE, params_.grads() + o, int(std::min(n - o, size_t(1) << 28)), mpi_type<T>(),
                                        MPI_SUM, comm_),
                          "gradient allreduce");
        }
        const double t1 = now();
        stats_.wait_s += t1 - t0;
        stats_.steps += 1;
        const T inv = T(1.0 / double(s_.size()));
        T* g = params_.grads();
        const int64_t n = int64_t(params_.flat_size());
        parallel_for(n, n, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) g[i] *= inv;
        });
    }

    void sum(double* v, int n) override {
        mpi_check(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
    }
    void max(double* v, int n) override {
        mpi_check(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, comm_), "MPI_Allreduce");
    }
    void broadcast(T* v, std::size_t n) override {
        for (size_t o = 0; o < n; o += size_t(1) << 28)
            mpi_check(MPI_Bcast(v + o, int(std::min(n - o, size_t(1) << 28)), mpi_type<T>(), 0, comm_), "MPI_Bcast");
    }

private:
    struct Bucket {
        size_t begin, end;
    };
    static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
    void launch(size_t b) {
        mpi_check(MPI_Iallreduce(MPI_IN_PLACE, params_.grads() + buckets_[b].begin, int(buckets_[b].end - buckets_[b].begin),
                                 mpi_type<T>(), MPI_SUM, comm_, &reqs_[b]),
                  "MPI_Iallreduce");
        poll();
    }
    // Open MPI advances non-blocking collectives only inside MPI calls; backward pokes it between nodes.
    void poll() {
        int done = 0;
        MPI_Testall(int(reqs_.size()), reqs_.data(), &done, MPI_STATUSES_IGNORE);
    }

    const MpiSession& s_;
    ParamStore<T>& params_;
    MPI_Comm comm_ = MPI_COMM_NULL;
    std::vector<Bucket> buckets_;
    std::vector<MPI_Request> reqs_;
    std::vector<size_t> last_, order_;
    size_t next_ = 0;
    bool overlap_ = true;
    double t_begin_ = 0;
    AllreduceStats stats_;
};

}  // namespace flashlm::train
