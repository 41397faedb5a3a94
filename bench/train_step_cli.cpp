// One Bolt-small training configuration, timed in its own process so peak RSS and page faults belong to
// it alone; bench/compare_pytorch.sh runs it next to bench/torch_train_step.py, which prints the same
// JSON line.
//   bench_train_step_cli --batch 16 --seq 256 --threads 2 --steps 5 --warmup 2
// Output: {"impl":"flashlm",...,"tok_s":..,"peak_rss_mb":..,"minflt_per_step":..,"cpu_util":..,"phase_ms":{...}}
// phase_ms splits the mean step: the tied head's backward GEMMs run inside "forward" (fused CE).
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "examples/bolt.hpp"

using namespace flashlm;
using clock_type = std::chrono::steady_clock;

namespace {

struct Args {
    int64_t batch = 16, seq = 256, threads = 1, steps = 5, warmup = 2;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "bench_train_step_cli: %s\nusage: bench_train_step_cli [--batch N] [--seq N] [--threads N] "
                         "[--steps N] [--warmup N]\n", why);
    std::exit(2);
}

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        int64_t* dst = flag == "--batch" ? &a.batch : flag == "--seq" ? &a.seq : flag == "--threads" ? &a.threads
                       : flag == "--steps" ? &a.steps : flag == "--warmup" ? &a.warmup : nullptr;
        if (!dst) usage(("unknown flag " + flag).c_str());
        if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
        char* end = nullptr;
        *dst = std::strtoll(argv[++i], &end, 10);
        if (*end != '\0' || *dst < 0) usage(("bad value for " + flag).c_str());
    }
    if (a.batch < 1 || a.seq < 1 || a.threads < 1 || a.steps < 1) usage("batch, seq, threads and steps must be >= 1");
    return a;
}

double seconds(clock_type::time_point a, clock_type::time_point b) { return std::chrono::duration<double>(b - a).count(); }

}  // namespace

int main(int argc, char** argv) {
    const Args a = parse(argc, argv);
    omp_set_num_threads(int(a.threads));
    Eigen::setNbThreads(int(a.threads));

    examples::BoltConfig cfg = examples::BoltConfig::small();
    cfg.seq_len = std::max(cfg.seq_len, a.seq);
    examples::Bolt<float> model("bolt", cfg);
    Rng rng(42);
    model.init(rng);
    optim::AdamW<float> adam(model.params(), optim::AdamWConfig{0.9, 0.95, 1e-8, 0.01});
    Tape<float> tape;

    const size_t n = size_t(a.batch * a.seq);
    std::vector<int32_t> ids(n), targets(n);
    std::mt19937 gen(7);
    std::uniform_int_distribution<int32_t> tok(0, int32_t(cfg.vocab_size) - 1);
    for (auto& t : ids) t = tok(gen);
    for (auto& t : targets) t = tok(gen);

    // Same order as train::Trainer::run: zero_grad, reset, loss, backward, clip, AdamW.
    double phase[5] = {};
    float loss_value = 0;
    auto step = [&](bool timed) {
        const auto t0 = clock_type::now();
        model.params().zero_grad();
        tape.reset();
        const auto t1 = clock_type::now();
        Tensor<float> loss = model.loss(tape, ids.data(), targets.data(), a.batch, a.seq);
        const auto t2 = clock_type::now();
        tape.backward(loss);
        const auto t3 = clock_type::now();
        optim::clip_grad_norm(model.params(), 1.0);
        const auto t4 = clock_type::now();
        adam.step(4e-3);
        const auto t5 = clock_type::now();
        loss_value = loss.data[0];
        if (timed) {
            phase[0] += seconds(t0, t1), phase[1] += seconds(t1, t2), phase[2] += seconds(t2, t3);
            phase[3] += seconds(t3, t4), phase[4] += seconds(t4, t5);
        }
    };
    for (int64_t i = 0; i < a.warmup; ++i) step(false);

    rusage r0{}, r1{};
    getrusage(RUSAGE_SELF, &r0);
    const auto start = clock_type::now();
    for (int64_t i = 0; i < a.steps; ++i) step(true);
    const double elapsed = seconds(start, clock_type::now());
    getrusage(RUSAGE_SELF, &r1);

    const double steps = double(a.steps), ms = 1e3 / steps;
    // CPU seconds the process got per wall second: near the thread count on an idle machine, lower when
    // other work shares the cores (then tok_s understates what the code can do).
    auto cpu_s = [](const rusage& r) {
        return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + 1e-6 * double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
    };
    const double cpu_util = (cpu_s(r1) - cpu_s(r0)) / elapsed;
    std::printf("{\"impl\": \"flashlm\", \"batch\": %lld, \"seq\": %lld, \"threads\": %lld, \"steps\": %lld, "
                "\"tok_s\": %.1f, \"step_ms\": %.2f, \"peak_rss_mb\": %.1f, \"minflt_per_step\": %.1f, \"cpu_util\": %.2f, "
                "\"loss\": %.5f, "
                "\"phase_ms\": {\"zero_grad\": %.2f, \"forward\": %.2f, \"backward\": %.2f, \"clip\": %.2f, \"adamw\": %.2f}}\n",
                (long long)a.batch, (long long)a.seq, (long long)a.threads, (long long)a.steps,
                double(n) * steps / elapsed, elapsed * ms, double(r1.ru_maxrss) / 1024.0,
                double(r1.ru_minflt - r0.ru_minflt) / steps, cpu_util, double(loss_value), phase[0] * ms, phase[1] * ms,
                phase[2] * ms, phase[3] * ms, phase[4] * ms);
    return 0;
}
