// Allreduce bandwidth for flashlm's gradient buffers: run under mpirun, e.g.
//   mpirun -np 2 build/bin/bench_allreduce [MB ...]   (default: the bolt and bolt-large flat buffers)
// Per size: one blocking MPI_Allreduce of the whole buffer, and the trainer's scheme (4 MB buckets, all
// started with MPI_Iallreduce, then MPI_Waitall). Reports the median time, the algorithm bandwidth
// (bytes / time) and the bus bandwidth (2 (N-1)/N bytes / time, what a ring moves per link).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    std::vector<double> mbs;
    for (int i = 1; i < argc; ++i) mbs.push_back(std::atof(argv[i]));
    if (mbs.empty()) mbs = {4.364736 * 4, 16.847232 * 4};  // bolt, bolt-large: params x 4 bytes
    const int reps = 15;
    if (rank == 0) std::printf("%d ranks | size MB | blocking ms  algbw GB/s  busbw GB/s | 4MB buckets ms  algbw GB/s\n", size);
    for (double mb : mbs) {
        const size_t n = size_t(mb * 1e6 / 4);
        std::vector<float> buf(n, 1.0f);
        auto median = [&](auto&& f) {
            std::vector<double> t;
            for (int r = 0; r < reps; ++r) {
                MPI_Barrier(MPI_COMM_WORLD);
                const double t0 = now();
                f();
                double dt = now() - t0;
                MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
                t.push_back(dt);
            }
            std::sort(t.begin(), t.end());
            return t[t.size() / 2];
        };
        const double tb = median([&] { MPI_Allreduce(MPI_IN_PLACE, buf.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); });
        const size_t per = size_t(4 << 20) / 4;
        std::vector<MPI_Request> req((n + per - 1) / per);
        const double tk = median([&] {
            for (size_t b = 0, i = 0; b < n; b += per, ++i)
                MPI_Iallreduce(MPI_IN_PLACE, buf.data() + b, int(std::min(per, n - b)), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req[i]);
            MPI_Waitall(int(req.size()), req.data(), MPI_STATUSES_IGNORE);
        });
        const double bytes = double(n) * 4, ring = 2.0 * (size - 1) / size;
        if (rank == 0)
            std::printf("%d ranks | %7.1f | %11.2f  %10.2f  %10.2f | %14.2f  %10.2f\n", size, bytes / 1e6, 1e3 * tb,
                        bytes / tb / 1e9, ring * bytes / tb / 1e9, 1e3 * tk, bytes / tk / 1e9);
    }
    MPI_Finalize();
    return 0;
}
