#pragma once
// Training loop: AdamW + global-norm clipping + warm-up/cosine over a step count or a wall-clock budget,
// progress lines, periodic evaluation, atomic checkpoints, exact resume, and a clean stop on SIGINT/
// SIGTERM or on a non-finite loss.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "flashlm/data/batcher.hpp"
#include "flashlm/io/checkpoint.hpp"
#include "flashlm/kernels/gemm_bf16_api.hpp"
#include "flashlm/optim/adamw.hpp"
#include "flashlm/optim/clip.hpp"
#include "flashlm/optim/schedule.hpp"
#include "flashlm/optim/sgd.hpp"
#include "flashlm/train/evaluate.hpp"
#include "flashlm/train/model.hpp"
#include "flashlm/train/position_sample.hpp"

namespace flashlm::train {

// Set by a signal handler; the loop saves a checkpoint and returns at the next step boundary.
inline std::atomic<bool>& stop_requested() {
    static std::atomic<bool> flag{false};
    return flag;
}

struct NonFiniteError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A checkpoint could not be written (full disk, permissions, ...); the previous file is unchanged.
struct SaveError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Test hook (not a user option): FLASHLM_INJECT_NAN_AT_STEP=K[,K2...] makes the loss of an attempt at
// optimizer step K (1-based) NaN, once per listed entry ("5,5": the first two attempts at step 5), so the
// non-finite handling can be tested without breaking the model. Unset: off.
inline std::vector<int64_t> inject_nan_steps_from_env() {
    std::vector<int64_t> out;
    const char* s = std::getenv("FLASHLM_INJECT_NAN_AT_STEP");
    while (s && *s) {
        char* end = nullptr;
        const long long k = std::strtoll(s, &end, 10);
        if (end == s) break;
        if (k > 0) out.push_back(k);
        s = *end == ',' ? end + 1 : end;
    }
    return out;
}

struct TrainOptions {
    int64_t steps = 0;        // total optimizer steps (0: use the time budget)
    double budget_s = 0;      // wall-clock budget in seconds (0: use steps)
    int64_t stop_after = 0;   // stop (with a checkpoint) after this many steps of this invocation
    int64_t batch = 8, seq = 256, accum = 1;
    double lr = 4e-3, min_lr = 1e-5, weight_decay = 0.01, beta1 = 0.9, beta2 = 0.95, clip = 1.0;
    int64_t warmup = 500;
    int64_t lr_cycle = 0;          // steps per cosine restart (0: one cosine over the run)
    double lr_cycle_decay = 1.0;
    // "adamw" (default) or "sgd" (momentum, v6.1 C engine); SGD keeps its velocity in AdamW's exp_avg.
    std::string optimizer = "adamw";
    double momentum = 0.9;
    int64_t eval_every = 0;        // steps between evaluations (0: off)
    double eval_every_s = 0;       // seconds between evaluations (0: off)
    int64_t eval_windows = 200;    // validation windows per in-training evaluation
    int64_t log_every = 10;
    int64_t save_every = 0;        // steps between checkpoints (0: at evaluations and at the end)
    int64_t skip_nonfinite = 0;    // steps with a non-finite loss/gradient skipped (no update) before stopping
    uint64_t seed = 42;
    std::string checkpoint;        // path of the checkpoint to write
    std::string best_checkpoint;   // also written whenever the validation loss improves (empty: off)
    std::string metrics;           // JSON-lines log of every step and evaluation (empty: none)
    data::Sampling sampling = data::Sampling::windows;  // how training rows are drawn
    std::string matmul = "f32";    // training GEMMs: f32 | bf16 (kernels/gemm_bf16.hpp); evaluation stays f32
    double pos_fraction = 1.0;     // share of each micro-batch's positions the loss uses (train/position_sample.hpp)
};

struct TrainState {
    int64_t step = 0, tokens_seen = 0;
    double elapsed_s = 0, warmup_progress = 0;
    double best_val = 1e300;
    std::string rng;

    nlohmann::json to_json() const {
        return {{"step", step}, {"tokens_seen", tokens_seen}, {"elapsed_s", elapsed_s},
                {"warmup_progress", warmup_progress}, {"rng", rng}, {"best_val_loss", best_val}};
    }
    static TrainState from_json(const nlohmann::json& j) {
        TrainState s;
        s.step = j.at("step").get<int64_t>();
        s.tokens_seen = j.at("tokens_seen").get<int64_t>();
        s.elapsed_s = j.at("elapsed_s").get<double>();
        s.warmup_progress = j.value("warmup_progress", 0.0);
        s.rng = j.at("rng").get<std::string>();
        s.best_val = j.value("best_val_loss", 1e300);
        return s;
    }
};

struct Corpus {
    const data::TokenStream* train = nullptr;  // with index_documents() done for Sampling::documents
    const data::TokenStream* val = nullptr;
    const std::vector<int>* piece_bytes = nullptr;
    std::string tokenizer;  // serialized tokenizer, embedded in checkpoints
    const std::vector<int>* piece_chars = nullptr;  // for bits per character (null: not reported)
};

// Synchronous data parallelism across processes (train/distributed.hpp implements it over MPI). Every
// rank holds the whole model and draws the same global batch; rank r computes rows [r B/N, (r+1) B/N).
// Without one (the default) the trainer is a single process and makes none of these calls.
template <class T>
struct DataParallel {
    virtual ~DataParallel() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    // Gradient averaging over ranks. The trainer calls begin(tape) before the backward pass that
    // completes a step's gradients, node_done(i) as the tape finishes node i (Tape::backward's hook) and
    // finish() after it; on return the flat gradient buffer holds the mean over ranks.
    virtual void begin(const Tape<T>& tape) = 0;
    virtual void node_done(std::size_t node) = 0;
    virtual void finish() = 0;
    // Element-wise sum / max over ranks of a few doubles, in place.
    virtual void sum(double* v, int n) = 0;
    virtual void max(double* v, int n) = 0;
    // Rank 0's values everywhere.
    virtual void broadcast(T* v, std::size_t n) = 0;
};

inline std::string format_duration(double s) {
    if (!std::isfinite(s) || s < 0) s = 0;
    const long t = long(s + 0.5);
    return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{}:{:02}", t / 60, t % 60);
}

template <class T>
class Trainer {
public:
    Trainer(LanguageModel<T>& model, const Corpus& corpus, TrainOptions opt)
        : model_(model),
          corpus_(corpus),
          opt_(std::move(opt)),
          adam_(model.params(), optim::AdamWConfig{opt_.beta1, opt_.beta2, 1e-8, opt_.weight_decay}),
          sgd_(model.params(), adam_.exp_avg(), optim::SgdConfig{opt_.momentum, opt_.weight_decay}),
          rng_(opt_.seed) {
        if (opt_.steps <= 0 && opt_.budget_s <= 0) throw std::invalid_argument("set --steps, --minutes or --hours");
        if (opt_.optimizer != "adamw" && opt_.optimizer != "sgd")
            throw std::invalid_argument("unknown optimizer '" + opt_.optimizer + "' (adamw or sgd)");
        { const kernels::MatmulScope check(kernels::parse_matmul(opt_.matmul)); }  // fails here without the CPU support
        if (opt_.pos_fraction != 1.0) {
            sampled_positions(1, opt_.pos_fraction);  // throws outside (0, 1]
            if (!model_.has_loss_positions())
                throw std::invalid_argument("--pos-fraction: " + model_.name() + " computes its loss on every position only");
        }
        sched_.peak = opt_.lr;
        sched_.floor = opt_.min_lr;
        sched_.warmup_steps = opt_.warmup;
        sched_.cycle_steps = opt_.lr_cycle;
        sched_.cycle_decay = opt_.lr_cycle_decay;
        if (opt_.steps > 0) sched_.warmup_progress = std::min(1.0, double(opt_.warmup) / double(opt_.steps));
        state_.rng = rng_.state();
        inject_nan_ = inject_nan_steps_from_env();
    }

    // Restores parameters, optimizer moments, RNG and counters from an opened checkpoint.
    void resume(const io::SafeTensors& st, const std::string& path, const io::CheckpointInfo& info) {
        io::load_params(st, path, model_.params());
        int64_t adam_step = 0;
        try {
            state_ = TrainState::from_json(info.train_state);
            adam_step = info.train_state.value("adam_step", state_.step);
            rng_.set_state(state_.rng);
        } catch (const std::exception& e) {
            throw io::FormatError(path + ": malformed train_state: " + std::string(e.what()));
        }
        io::load_optimizer(st, path, model_.params(), adam_, adam_step);
        if (opt_.steps <= 0) sched_.warmup_progress = state_.warmup_progress;
    }

    std::function<void(const std::string&)> log = [](const std::string& s) { std::fputs((s + "\n").c_str(), stdout), std::fflush(stdout); };
    std::function<void(const TrainState&, const EvalResult&)> on_eval;

    // Runs data-parallel with dp (must outlive run()); --batch is then the global batch.
    void set_data_parallel(DataParallel<T>* dp) {
        if (dp && opt_.batch % dp->size() != 0)
            throw std::invalid_argument(fmt::format("--batch {} is the global batch and must be divisible by the {} ranks",
                                                    opt_.batch, dp->size()));
        dp_ = dp && dp->size() > 1 ? dp : nullptr;
        lead_ = !dp || dp->rank() == 0;
    }
    bool lead() const { return lead_; }

    const TrainState& state() const { return state_; }
    optim::AdamW<T>& optimizer() { return adam_; }

    // Runs until the step count or time budget is reached. Returns true when it finished, false when it
    // stopped early (signal or --stop-after); either way the checkpoint is current.
    bool run() {
        using clock = std::chrono::steady_clock;
        const auto t_start = clock::now();
        const double elapsed0 = state_.elapsed_s;
        auto elapsed = [&] { return elapsed0 + std::chrono::duration<double>(clock::now() - t_start).count(); };
        // Data-parallel ranks act on one clock and one stop request (the latest of them), so they agree on
        // when to stop, on the time-based LR schedule and on when to evaluate.
        auto agreed = [&](double t, bool* stop = nullptr) {
            if (!dp_) return t;
            double v[2] = {t, stop && *stop ? 1.0 : 0.0};
            dp_->max(v, 2);
            if (stop) *stop = v[1] > 0;
            return v[0];
        };
        auto progress = [&](double now) {
            if (opt_.steps > 0) return double(state_.step) / double(opt_.steps);
            return now / opt_.budget_s;
        };
        std::ofstream& metrics = metrics_out();
        if (dp_) {  // identical replicas from the start
            dp_->broadcast(model_.params().values(), model_.params().flat_size());
            dp_->broadcast(adam_.exp_avg().data(), model_.params().flat_size());
            dp_->broadcast(adam_.exp_avg_sq().data(), model_.params().flat_size());
        }
        const int64_t rows = dp_ ? opt_.batch / dp_->size() : opt_.batch, row0 = dp_ ? rows * dp_->rank() : 0;
        const kernels::MatmulScope matmul(kernels::parse_matmul(opt_.matmul));

        Tape<T> tape;
        data::Batch batch;
        const int64_t start_step = state_.step;
        double last_log_t = elapsed(), last_eval_t = agreed(elapsed());
        int64_t last_log_tokens = state_.tokens_seen;
        bool finished = false;
        while (true) {
            const double step_t0 = elapsed();
            bool stop = stop_requested().load();
            const double now0 = agreed(elapsed(), &stop);
            if (opt_.steps > 0 ? state_.step >= opt_.steps : now0 >= opt_.budget_s) {
                finished = true;
                break;
            }
            if (stop || (opt_.stop_after > 0 && state_.step - start_step >= opt_.stop_after)) break;

            if (opt_.steps <= 0 && state_.step == sched_.warmup_steps) sched_.warmup_progress = progress(now0);
            const double lr = sched_.at(state_.step, progress(now0));
            model_.params().zero_grad();
            double loss_sum = 0;
            for (int64_t a = 0; a < opt_.accum; ++a) {
                data::sample_batch_rows(*corpus_.train, opt_.batch, opt_.seq, row0, row0 + rows, rng_, batch, opt_.sampling);
                if (opt_.pos_fraction != 1.0) {
                    // One draw from the shared stream on every rank keeps the ranks' streams (and a resumed
                    // run's) in step; each rank then samples among its own rows.
                    Rng pick(rng_.next_u64() + uint64_t(row0));
                    sample_positions(pick, rows * opt_.seq, opt_.pos_fraction, positions_, positions_scratch_);
                    model_.set_loss_positions(positions_);
                }
                tape.reset();
                Tensor<T> loss = model_.loss(tape, batch.ids.data(), batch.targets.data(), rows, opt_.seq);
                loss_sum += double(loss.data[0]);
                if (dp_ && a + 1 == opt_.accum) {  // the step's last backward: reduce buckets as they finish
                    dp_->begin(tape);
                    tape.backward(loss, [&](std::size_t i) { dp_->node_done(i); });
                    dp_->finish();
                } else {
                    tape.backward(loss);
                }
            }
            if (dp_) {
                dp_->sum(&loss_sum, 1);
                loss_sum /= double(dp_->size());
            }
            double loss = loss_sum / double(opt_.accum);
            if (auto it = std::find(inject_nan_.begin(), inject_nan_.end(), state_.step + 1); it != inject_nan_.end()) {
                loss = std::nan("");  // test hook: each listed entry fires once
                inject_nan_.erase(it);
            }
            if (opt_.accum > 1) scale_grads(T(1.0 / double(opt_.accum)));
            const double gnorm = optim::clip_grad_norm(model_.params(), opt_.clip);
            if (!std::isfinite(loss) || !std::isfinite(gnorm)) {
                const std::string what = fmt::format("non-finite {} at step {} (loss {}, grad norm {})",
                                                     std::isfinite(loss) ? "gradient" : "loss", state_.step + 1, loss, gnorm);
                if (skipped_ >= opt_.skip_nonfinite)
                    throw NonFiniteError(fmt::format("{}; stopping{}. The last checkpoint ({}) is intact.", what,
                                                     opt_.skip_nonfinite > 0
                                                         ? fmt::format(" after skipping {} such step(s) (--skip-nonfinite {})",
                                                                       skipped_, opt_.skip_nonfinite)
                                                         : "",
                                                     opt_.checkpoint.empty() ? "none written" : opt_.checkpoint));
                ++skipped_;
                log(fmt::format("warning: {}; skipped without an update ({} of {} allowed by --skip-nonfinite)", what,
                                skipped_, opt_.skip_nonfinite));
                continue;  // the batch is consumed (RNG advanced); the step is retried on the next batch
            }
            if (opt_.optimizer == "sgd") {
                sgd_.step(lr);
                adam_.set_steps(adam_.steps() + 1);  // the checkpoint's adam_step keeps counting updates
            } else {
                adam_.step(lr);
            }
            state_.step += 1;
            state_.tokens_seen += opt_.batch * opt_.seq * opt_.accum;
            state_.elapsed_s = elapsed();
            if (metrics.is_open())
                metrics << fmt::format("{{\"step\":{},\"tokens\":{},\"loss\":{:.9g},\"lr\":{:.9g},\"grad_norm\":{:.9g},"
                                       "\"tok_s\":{:.1f},\"wall_s\":{:.3f}}}\n",
                                       state_.step, state_.tokens_seen, loss, lr, gnorm,
                                       double(opt_.batch * opt_.seq * opt_.accum) / std::max(state_.elapsed_s - step_t0, 1e-9),
                                       state_.elapsed_s);

            const double now = elapsed();
            if (lead_ && (state_.step % opt_.log_every == 0 || state_.step == 1)) {
                const double tps = double(state_.tokens_seen - last_log_tokens) / std::max(now - last_log_t, 1e-9);
                const double eta = opt_.steps > 0 ? (now - elapsed0) / double(state_.step - start_step) * double(opt_.steps - state_.step)
                                                  : opt_.budget_s - now;
                const std::string extra = model_.train_stats();
                log(fmt::format("step {:>6}{} | loss {:.4f} | lr {:.2e} | {:>7.0f} tok/s | elapsed {} | ETA {}{}", state_.step,
                                opt_.steps > 0 ? fmt::format("/{}", opt_.steps) : "", loss, lr, tps, format_duration(now),
                                format_duration(eta), extra.empty() ? "" : " | " + extra));
                last_log_t = now;
                last_log_tokens = state_.tokens_seen;
            }
            const bool eval_due = (opt_.eval_every > 0 && state_.step % opt_.eval_every == 0) ||
                                  (opt_.eval_every_s > 0 && agreed(now) - last_eval_t >= opt_.eval_every_s);
            if (eval_due) {  // rank 0 evaluates and writes; the others wait at the next collective
                if (lead_) run_eval(), save(), metrics.flush();
                last_eval_t = agreed(elapsed());
            } else if (opt_.save_every > 0 && state_.step % opt_.save_every == 0) {
                if (lead_) save(), metrics.flush();  // the metrics on disk reach the checkpoint's step
            }
        }
        state_.elapsed_s = elapsed();
        if (lead_) save();
        return finished;
    }

    EvalResult run_eval() {
        static const std::vector<int> no_chars;
        const kernels::MatmulScope f32(kernels::Matmul::f32);
        EvalResult r = evaluate(model_, *corpus_.val, opt_.seq, opt_.batch, *corpus_.piece_bytes,
                                corpus_.piece_chars ? *corpus_.piece_chars : no_chars, opt_.eval_windows);
        log(fmt::format("eval  step {:>6} | val loss {:.4f} | ppl {:.2f} | bpb {:.4f} | {} windows | elapsed {}", state_.step,
                        r.loss, r.ppl, r.bpb, r.windows, format_duration(state_.elapsed_s)));
        if (std::ofstream& m = metrics_out(); m.is_open())
            m << fmt::format("{{\"step\":{},\"tokens\":{},\"val_loss\":{:.9g},\"val_ppl\":{:.9g},\"val_bpb\":{:.9g},"
                             "\"val_bpc\":{:.9g},\"wall_s\":{:.3f}}}\n",
                             state_.step, state_.tokens_seen, r.loss, r.ppl, r.bpb, r.bpc, state_.elapsed_s)
              << std::flush;
        if (on_eval) on_eval(state_, r);
        if (r.loss < state_.best_val) {
            state_.best_val = r.loss;
            if (!opt_.best_checkpoint.empty()) save(opt_.best_checkpoint);
        }
        return r;
    }

    int64_t skipped_steps() const { return skipped_; }

    void save() { save(opt_.checkpoint); }
    // Throws SaveError naming the file; save_safetensors guarantees the previous file is unchanged.
    void save(const std::string& path) {
        if (path.empty()) return;
        state_.rng = rng_.state();
        io::CheckpointInfo info{model_.name(), model_.config(), corpus_.tokenizer, state_.to_json()};
        info.train_state["warmup_progress"] = sched_.warmup_progress;
        try {
            io::save_checkpoint(path, model_.params(), &adam_, info);
        } catch (const std::exception& e) {
            throw SaveError(fmt::format("cannot save checkpoint at step {}: {}; the previous {} (if any) is unchanged",
                                        state_.step, e.what(), path));
        }
    }

private:
    // The metrics file, opened for appending on first use (rank 0 only); a closed stream when off.
    std::ofstream& metrics_out() {
        if (!metrics_.is_open() && !opt_.metrics.empty() && lead_) metrics_.open(opt_.metrics, std::ios::app);
        return metrics_;
    }

    void scale_grads(T s) {
        T* g = model_.params().grads();
        for (size_t i = 0; i < model_.params().flat_size(); ++i) g[i] *= s;
    }

    LanguageModel<T>& model_;
    Corpus corpus_;
    TrainOptions opt_;
    optim::AdamW<T> adam_;
    optim::SgdMomentum<T> sgd_;
    optim::WarmupCosine sched_;
    Rng rng_;
    TrainState state_;
    int64_t skipped_ = 0;          // non-finite steps skipped so far in this invocation
    std::vector<int64_t> inject_nan_;  // FLASHLM_INJECT_NAN_AT_STEP test hook
    std::vector<int32_t> positions_, positions_scratch_;  // --pos-fraction's sample of a micro-batch
    DataParallel<T>* dp_ = nullptr;
    bool lead_ = true;
    std::ofstream metrics_;
};

}  // namespace flashlm::train
