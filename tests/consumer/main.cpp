// Builds a tiny model from library layers and takes one gradient step: proves the installed headers
// and the CMake target are self-sufficient.
#include <flashlm/flashlm.hpp>

#include <cstdio>

int main() {
    using namespace flashlm;
    ParamStore<float> ps;
    nn::Embedding<float> emb;
    nn::RMSNorm<float> norm;
    emb.declare(ps, "embedding", 16, 8);
    norm.declare(ps, "norm", 8);
    ps.allocate();
    Rng rng(1);
    emb.init(rng);
    norm.init(rng);
    Tape<float> tape;
    const int32_t ids[4] = {1, 2, 3, 4}, tgt[4] = {2, 3, 4, 5};
    Tensor<float> loss = ops::tied_head_cross_entropy(tape, norm(tape, emb(tape, ids, 4)), emb.w(), tgt);
    tape.backward(loss);
    std::printf("loss %.4f grad-norm %.4f\n", double(loss.data[0]), optim::grad_norm(ps));
    return loss.data[0] > 0 ? 0 : 1;
}
