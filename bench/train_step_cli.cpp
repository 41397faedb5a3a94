// One training configuration of any variant, timed in its own process so peak RSS and page faults belong
// to it alone; bench/compare_pytorch.sh runs it next to bench/torch_train_step.py, which builds the same
// model from tests/parity/ and prints the same JSON line.
//   bench_train_step_cli --model bolt --batch 16 --seq 256 --threads 2 --steps 5 --warmup 2
//   bench_train_step_cli --model cortex6 --seq 256 --print-config   # config + recipe for the PyTorch side
//   bench_train_step_cli --peak --threads 2                          # measured FP32 FMA peak, GFLOP/s
//   bench_train_step_cli --model bolt --recompute ...                # blocks recomputed in backward
//   bench_train_step_cli --model bolt --quant int8 ...               # BitLinear forward in int8
//   bench_train_step_cli --model bolt --matmul bf16 ...              # bf16 training GEMMs (kernels/gemm_bf16.hpp)
//   bench_train_step_cli --model bolt --memory-report ...            # + where the memory goes (stderr)
//   bench_train_step_cli --model bolt --unfused ...                  # Bolt/CORTEX/SUPERNOVA II/Thunderbolt blocks, nova-diff's attention and experts as the op-by-op chains
//   bench_train_step_cli --model bolt --hash ...                     # FNV-1a of loss + all gradients per step
//   bench_train_step_cli --model cortex6 --profile ...               # + backward ms per op (stderr)
//   bench_train_step_cli --model v3 --pos-fraction 1 ...             # loss on every position (v3's recipe: 0.25)
//   bench_train_step_cli --model bolt --batch 16 --seq 256 --save-init F   # initial weights + batch, then exit
// --save-init writes the weights this run starts from (state-dict names), its `ids` and `targets` and the
// config to safetensors: bench/torch_train_step.py --init F starts PyTorch from the same point, so both
// sides train the same numbers and their losses can be compared.
// Output: {"impl":"flashlm","model":..,"tok_s":..,"gflop_s":..,"peak_rss_mb":..,"minflt_per_step":..,
//          "cpu_util":..,"optimizer":..,"phase_ms":{...}}
// The optimizer is the recipe's (AdamW, or SGD with momentum for supernova2-engine); its phase is named
// after it.
// phase_ms splits the mean step: a tied head's backward GEMMs run inside "forward" (fused CE).
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "bench/fma_peak.hpp"
#include "bench/memory_report.hpp"
#include "examples/registry.hpp"
#include "flashlm/io/state_dict.hpp"

using namespace flashlm;
using clock_type = std::chrono::steady_clock;

namespace {

struct Args {
    std::string model = "bolt";
    int64_t batch = 16, seq = 256, threads = 1, steps = 5, warmup = 2;
    bool print_config = false, peak = false, recompute = false;
    bool memory_report = false, unfused = false;
    bool profile = false;  // backward ms per op (stderr): where a step's backward time goes
    bool hash = false;  // checks that a kernel change keeps every bit (stderr, one line per step)
    std::string quant = "none";  // --quant int8: BitLinear forward through the int8 kernels
    std::string matmul = "f32";
    std::string save_init;  // --save-init FILE
    double pos_fraction = -1;  // share of positions the loss uses (negative: the recipe's)
};

[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr,
                 "bench_train_step_cli: %s\nusage: bench_train_step_cli [--model NAME] [--batch N] [--seq N] "
                 "[--threads N] [--steps N] [--warmup N] [--print-config] [--peak] [--recompute] [--quant none|int8]\n"
                 "       [--matmul f32|bf16] [--pos-fraction F] [--memory-report] [--unfused] [--hash] [--profile]\n"
                 "       [--save-init FILE]\n",
                 why.c_str());
    std::exit(2);
}

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--print-config") { a.print_config = true; continue; }
        if (flag == "--peak") { a.peak = true; continue; }
        if (flag == "--recompute") { a.recompute = true; continue; }
        if (flag == "--memory-report") { a.memory_report = true; continue; }
        if (flag == "--unfused") { a.unfused = true; continue; }
        if (flag == "--hash") { a.hash = true; continue; }
        if (flag == "--profile") { a.profile = true; continue; }
        if (i + 1 >= argc) usage("missing value for " + flag);
        if (flag == "--model") { a.model = argv[++i]; continue; }
        if (flag == "--quant") {
            a.quant = argv[++i];
            if (a.quant != "none" && a.quant != "int8") usage("--quant must be none or int8");
            continue;
        }
        if (flag == "--matmul") { a.matmul = argv[++i]; continue; }
        if (flag == "--save-init") { a.save_init = argv[++i]; continue; }
        if (flag == "--pos-fraction") {
            char* end = nullptr;
            a.pos_fraction = std::strtod(argv[++i], &end);
            if (*end != '\0' || !(a.pos_fraction > 0 && a.pos_fraction <= 1)) usage("--pos-fraction must be in (0, 1]");
            continue;
        }
        int64_t* dst = flag == "--batch" ? &a.batch : flag == "--seq" ? &a.seq : flag == "--threads" ? &a.threads
                       : flag == "--steps" ? &a.steps : flag == "--warmup" ? &a.warmup : nullptr;
        if (!dst) usage("unknown flag " + flag);
        char* end = nullptr;
        *dst = std::strtoll(argv[++i], &end, 10);
        if (*end != '\0' || *dst < 0) usage("bad value for " + flag);
    }
    if (a.batch < 1 || a.seq < 1 || a.threads < 1 || a.steps < 1) usage("batch, seq, threads and steps must be >= 1");
    return a;
}

double seconds(clock_type::time_point a, clock_type::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Training FLOPs per token, the convention: 6 × the weights used in matrix products (forward 2,
// backward 4), counting the head once; a lookup-only embedding is not a product. Depthwise conv weights
// ([C, 1, k] or [C, k]) and per-channel weights of rank 2 count the same way (each weight meets each
// token once). Plus the memory term where the model has one: CORTEX-VI's decayed memory
// (config d_mem) computes, per layer and sequence of L tokens, two [L, L, d_mem] products forward and
// four backward, as PyTorch's masked form does: 12 · L · d_mem per token. Attention's T-dependent
// score products and other recurrences are left out, so for those variants this is a floor. A top-k
// mixture of experts (config top_k_experts: SUPERNOVA II's top-2, nova-diff's top-1) runs k of its
// n_experts on a token, so its routed experts' weights count k/n times (all of them under dense_experts;
// a shared expert always counts).
// A tied head computed on a sampled share of the positions (--pos-fraction) counts that share of its weights.
double train_flops_per_token(const ParamStore<float>& ps, const nlohmann::json& config, int64_t seq, double head_share) {
    double expert_share = 1;
    if (config.contains("top_k_experts") && config.contains("n_experts") && !config.value("dense_experts", false))
        expert_share = config["top_k_experts"].get<double>() / config["n_experts"].get<double>();
    bool untied_head = false;
    for (const auto& p : ps.infos())
        if (p.name.find("head") != std::string::npos && p.name.find("exit") == std::string::npos) untied_head = true;
    double weights = 0;
    for (const auto& p : ps.infos()) {
        const bool depthwise = p.shape.rank == 3 && p.shape.dims[1] == 1 && p.name.find("conv") != std::string::npos;
        if (p.shape.rank != 2 && !depthwise) continue;
        const bool lookup = p.name.find("emb") != std::string::npos || p.name.find("pos") == 0;
        if (lookup && untied_head) continue;
        weights += double(p.shape.numel()) * (p.name.find(".experts.") != std::string::npos ? expert_share : 1.0) *
                   (lookup ? head_share : 1.0);
    }
    double memory = 0;
    if (config.contains("d_mem") && config.contains("n_layers"))
        memory = 12.0 * double(seq) * config["d_mem"].get<double>() * config["n_layers"].get<double>();
    return 6.0 * weights + memory;
}

double measure_peak_gflops(int threads) {
    constexpr int64_t iters = 1 << 22;
    float sink[256] = {};
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {  // best of three: a shared core loses time slices, never gains them
        const auto t0 = clock_type::now();
#pragma omp parallel num_threads(threads)
        sink[omp_get_thread_num() & 255] += bench::fma_chains(iters);
        const double s = seconds(t0, clock_type::now());
        best = std::max(best, double(iters) * bench::k_acc * bench::k_lanes * 2.0 * threads / s * 1e-9);
    }
    volatile float keep = sink[0];
    (void)keep;
    return best;
}

}  // namespace

int main(int argc, char** argv) try {
    const Args a = parse(argc, argv);
    omp_set_num_threads(int(a.threads));
    Eigen::setNbThreads(int(a.threads));
    if (a.peak) {
        std::printf("{\"impl\": \"peak\", \"threads\": %lld, \"gflop_s\": %.1f}\n", (long long)a.threads,
                    measure_peak_gflops(int(a.threads)));
        return 0;
    }

    const double rss_before_model = bench::resident_mib();
    const auto& entry = examples::find_model(a.model);
    const Recipe rc = entry.recipe(int(a.threads));
    nlohmann::json cfg = {{"vocab_size", rc.vocab}, {"seq_len", std::max(a.seq, rc.seq)}};
    auto model = entry.make(cfg);
    if (a.seq > model->max_seq_len()) usage("--seq exceeds the model's seq_len");
    Rng rng(42);
    model->init(rng);
    if (!model->set_recompute(a.recompute)) usage("--recompute is not available for " + a.model);
    if (a.unfused) {
        if (auto* bolt = dynamic_cast<examples::Bolt<float>*>(model.get()))
            bolt->set_unfused(true);
        else if (auto* cortex = dynamic_cast<examples::Cortex<float>*>(model.get()))
            cortex->set_unfused(true);
        else if (auto* sn2 = dynamic_cast<examples::Supernova2<float>*>(model.get()))
            sn2->set_unfused(true);
        else if (auto* tb = dynamic_cast<examples::Thunderbolt<float>*>(model.get()))
            tb->set_unfused(true);
        else if (auto* nd = dynamic_cast<examples::NovaDiff<float>*>(model.get()))
            nd->set_unfused(true);
        else
            usage("--unfused is only for the Bolt, CORTEX, SUPERNOVA II, Thunderbolt and nova-diff families");
    }
    ops::set_int8_forward(a.quant == "int8");
    kernels::set_matmul(kernels::parse_matmul(a.matmul));
    const double pos_fraction = a.pos_fraction > 0 ? a.pos_fraction : rc.pos_fraction;
    if (pos_fraction != 1.0 && !model->has_loss_positions())
        usage("--pos-fraction: " + a.model + " computes its loss on every position only");
    nlohmann::json recipe = {{"lr", rc.lr}, {"beta1", rc.beta1}, {"beta2", rc.beta2}, {"eps", rc.eps},
                             {"weight_decay", rc.weight_decay}, {"clip", rc.clip}};
    if (rc.optimizer != "adamw") recipe["optimizer"] = rc.optimizer, recipe["momentum"] = rc.momentum;
    if (pos_fraction != 1.0) recipe["pos_fraction"] = pos_fraction;
    if (a.print_config) {
        std::printf("%s\n", nlohmann::json{{"model", a.model}, {"config", model->config()}, {"recipe", recipe}}.dump().c_str());
        return 0;
    }
    // The recipe's optimizer, as train::Trainer builds it (SGD keeps its velocity in AdamW's exp_avg).
    if (rc.optimizer != "adamw" && rc.optimizer != "sgd") usage("unknown optimizer '" + rc.optimizer + "' in the recipe");
    optim::AdamW<float> adam(model->params(), optim::AdamWConfig{rc.beta1, rc.beta2, rc.eps, rc.weight_decay});
    optim::SgdMomentum<float> sgd(model->params(), adam.exp_avg(), optim::SgdConfig{rc.momentum, rc.weight_decay});
    const bool use_sgd = rc.optimizer == "sgd";
    Tape<float> tape;

    const int64_t V = model->vocab_size();
    const size_t n = size_t(a.batch * a.seq);
    std::vector<int32_t> ids(n), targets(n), positions, positions_scratch;
    Rng position_rng(11);
    std::mt19937 gen(7);
    std::uniform_int_distribution<int32_t> tok(0, int32_t(V) - 1);
    for (auto& t : ids) t = tok(gen);
    for (auto& t : targets) t = tok(gen);
    if (!a.save_init.empty()) {  // the parameters as `flashlm export` writes them, plus the batch
        io::save_state_dict(a.save_init, model->params(), {{"config", model->config().dump()}, {"model", a.model}},
                            {{"ids", io::DType::I32, {a.batch, a.seq}, ids.data()},
                             {"targets", io::DType::I32, {a.batch, a.seq}, targets.data()}});
        return 0;
    }

    // Same order as train::Trainer::run: zero_grad, reset, loss, backward, clip, optimizer step.
    double phase[5] = {};
    std::map<std::string, double> backward_ms;  // --profile
    float loss_value = 0;
    auto step = [&](bool timed) {
        const auto t0 = clock_type::now();
        model->params().zero_grad();
        tape.reset();
        if (pos_fraction != 1.0) {  // as train::Trainer draws them: a new sample every step
            train::sample_positions(position_rng, int64_t(n), pos_fraction, positions, positions_scratch);
            model->set_loss_positions(positions);
        }
        const auto t1 = clock_type::now();
        Tensor<float> loss = model->loss(tape, ids.data(), targets.data(), a.batch, a.seq);
        const auto t2 = clock_type::now();
        if (a.profile && timed) {
            auto last = clock_type::now();
            tape.backward(loss, [&](std::size_t i) {
                const auto now = clock_type::now();
                backward_ms[bench::op_name(tape.nodes()[i].backward)] += 1e3 * seconds(last, now);
                last = now;
            });
        } else {
            tape.backward(loss);
        }
        const auto t3 = clock_type::now();
        if (a.hash) {
            uint64_t h = 1469598103934665603ull;
            auto mix = [&h](const void* p, size_t bytes) {
                for (size_t i = 0; i < bytes; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
            };
            mix(loss.data, sizeof(float));
            mix(model->params().grads(), model->params().flat_size() * sizeof(float));
            std::fprintf(stderr, "hash loss=%.7f grads=%016llx\n", double(loss.data[0]), (unsigned long long)h);
        }
        optim::clip_grad_norm(model->params(), rc.clip);
        const auto t4 = clock_type::now();
        if (use_sgd)
            sgd.step(rc.lr);
        else
            adam.step(rc.lr);
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
    if (a.memory_report) bench::print_memory_report(tape, model->params(), rss_before_model);
    if (a.profile) {
        std::fprintf(stderr, "backward ms per step by op (--profile):\n");
        for (const auto& [name, total] : backward_ms) std::fprintf(stderr, "  %-30s %8.2f\n", name.c_str(), total / double(a.steps));
    }

    const double steps = double(a.steps), ms = 1e3 / steps;
    const double tok_s = double(n) * steps / elapsed;
    // CPU seconds the process got per wall second: near the thread count on an idle machine, lower when
    // other work shares the cores (then tok_s understates what the code can do).
    auto cpu_s = [](const rusage& r) {
        return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + 1e-6 * double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
    };
    const double cpu_util = (cpu_s(r1) - cpu_s(r0)) / elapsed;
    std::printf("{\"impl\": \"flashlm\", \"model\": \"%s%s%s%s\", \"batch\": %lld, \"seq\": %lld, \"threads\": %lld, "
                "\"steps\": %lld, \"tok_s\": %.1f, \"gflop_s\": %.1f, \"step_ms\": %.2f, \"peak_rss_mb\": %.1f, "
                "\"minflt_per_step\": %.1f, \"cpu_util\": %.2f, \"loss\": %.5f, \"pos_fraction\": %g, \"optimizer\": \"%s\", "
                "\"phase_ms\": {\"zero_grad\": %.2f, \"forward\": %.2f, \"backward\": %.2f, \"clip\": %.2f, \"%s\": %.2f}}\n",
                a.model.c_str(), (std::string(a.recompute ? "+recompute" : "") + (a.quant == "int8" ? "+int8" : "") + (a.unfused ? "+unfused" : "")).c_str(),
                a.matmul == "bf16" ? "+bf16" : "", pos_fraction == 1.0 && rc.pos_fraction != 1.0 ? "+allpos" : "", (long long)a.batch, (long long)a.seq, (long long)a.threads, (long long)a.steps, tok_s,
                tok_s * train_flops_per_token(model->params(), model->config(), a.seq, pos_fraction) * 1e-9, elapsed * ms,
                double(r1.ru_maxrss) / 1024.0, double(r1.ru_minflt - r0.ru_minflt) / steps, cpu_util, double(loss_value), pos_fraction,
                rc.optimizer.c_str(), phase[0] * ms,
                phase[1] * ms, phase[2] * ms, phase[3] * ms, rc.optimizer.c_str(), phase[4] * ms);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_step_cli: %s\n", e.what());
    return 1;
}
