// Same seed, same result, at any thread count: task-parallel meta-batches, op-level parallelism when tasks are
// fewer than threads (convolutions split over threads included), and evaluation.
#include <doctest/doctest.h>
#include <omp.h>

#include <cstring>

#include "meta/registry.h"
#include "meta/trainer.h"
#include "support/gradcheck.h"

namespace metafew::testing {
namespace {

std::vector<meta::Task> glyph_like_tasks(int n, uint64_t seed, int64_t channels = 1, int64_t size = 28,
                                         int64_t queries = 5) {
  std::vector<meta::Task> tasks;
  core::Rng rng(seed);
  for (int t = 0; t < n; ++t) {
    meta::Task k;
    k.ways = 5;
    k.seed = static_cast<uint64_t>(t);
    k.support_x = Tensor::empty({5, channels, size, size});
    k.query_x = Tensor::empty({5 * queries, channels, size, size});
    for (Tensor* x : {&k.support_x, &k.query_x}) {
      float* p = x->data<float>();
      for (int64_t i = 0; i < x->numel(); ++i) p[i] = static_cast<float>(rng.uniform());
    }
    std::vector<int32_t> ys, yq;
    for (int c = 0; c < 5; ++c) {
      ys.push_back(c);
      for (int q = 0; q < queries; ++q) yq.push_back(c);
    }
    k.support_y = Tensor::from_indices(ys, {5});
    k.query_y = Tensor::from_indices(yq, {5 * queries});
    tasks.push_back(k);
  }
  return tasks;
}

// The mean meta-gradient of `tasks` for a model `mc` (its head sized for `algo`) at `threads`.
std::vector<Tensor> meta_grad(nn::ModelConfig mc, const std::string& algo, int inner_steps, uint64_t init_seed,
                              const std::vector<meta::Task>& tasks, int threads) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  mc.outputs = meta::find_algorithm(algo).uses_head ? 5 : 0;
  meta::AlgoConfig ac;
  ac.algo = algo;
  ac.inner_steps = inner_steps;
  core::Rng init(init_seed);
  auto a = meta::make_algorithm(nn::Model(mc), ac, init);
  std::vector<Tensor> mean;
  meta::mean_meta_gradient(*a, tasks, mean);
  omp_set_num_threads(before);
  return mean;
}

std::vector<Tensor> meta_grad_with_threads(const std::string& algo, int threads, int tasks) {
  nn::ModelConfig mc;
  mc.filters = 32;
  return meta_grad(mc, algo, 2, 3, glyph_like_tasks(tasks, 9), threads);
}

bool bit_identical(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].shape() != b[i].shape() ||
        std::memcmp(a[i].raw_data(), b[i].raw_data(), static_cast<size_t>(a[i].numel()) * 4) != 0)
      return false;
  return true;
}

TEST_CASE("determinism: meta-gradients are bit-identical with 1 and 2 threads") {
  // 4 tasks: one task per thread. 1 task: parallelism inside the ops instead.
  for (int tasks : {4, 1}) {
    for (const char* algo : {"maml", "protonet"}) {
      CAPTURE(tasks);
      CAPTURE(std::string(algo));
      CHECK(bit_identical(meta_grad_with_threads(algo, 1, tasks), meta_grad_with_threads(algo, 2, tasks)));
    }
  }
}

// A small ResNet-12 on 3-channel 16x16 images with Winograd convolutions (the backbone's default), 7 queries
// per class: large enough for the convolutions to be split over the threads (Note [Conv threads]).
nn::ModelConfig small_resnet12() {
  nn::ModelConfig mc;
  mc.arch = "resnet12";
  mc.in_channels = 3;
  mc.height = mc.width = 16;
  mc.widths = {16, 32, 32, 48};
  mc.conv_algorithm = tensor::ConvAlgorithm::winograd;
  return mc;
}

std::vector<Tensor> resnet_meta_grad_with_threads(const std::string& algo, int threads, int tasks) {
  return meta_grad(small_resnet12(), algo, 1, 5, glyph_like_tasks(tasks, 11, 3, 16, 7), threads);
}

TEST_CASE("determinism: ResNet-12 meta-gradients are bit-identical with 1, 2 and 3 threads") {
  for (int tasks : {1, 2}) {
    for (const char* algo : {"protonet", "maml"}) {
      CAPTURE(tasks);
      CAPTURE(std::string(algo));
      const std::vector<Tensor> one = resnet_meta_grad_with_threads(algo, 1, tasks);
      CHECK(bit_identical(one, resnet_meta_grad_with_threads(algo, 2, tasks)));
      CHECK(bit_identical(one, resnet_meta_grad_with_threads(algo, 3, tasks)));
    }
  }
}

// Note [Training noise]: RFS's dropout and DropBlock draw their masks from each task's seed, so a meta-batch
// is the same at any thread count (tasks on threads or ops split over them), and the masks change it.
TEST_CASE("determinism: ResNet-12 with dropout and DropBlock is bit-identical with 1 and 2 threads") {
  nn::ModelConfig mc = small_resnet12();
  const std::vector<meta::Task> tasks = glyph_like_tasks(2, 11, 3, 16, 7);
  const std::vector<Tensor> plain = meta_grad(mc, "maml", 1, 5, tasks, 2);
  mc.drop_rate = 0.1;
  mc.dropblock_size = 2;
  for (const char* algo : {"protonet", "maml"}) {
    CAPTURE(std::string(algo));
    const std::vector<Tensor> one = meta_grad(mc, algo, 1, 5, tasks, 1);
    CHECK(bit_identical(one, meta_grad(mc, algo, 1, 5, tasks, 2)));
  }
  CHECK_FALSE(bit_identical(plain, meta_grad(mc, "maml", 1, 5, tasks, 2)));
}

// Two Reptile meta-steps (4 tasks, inner Adam state carried): parameters and carried state at `threads`.
std::vector<Tensor> reptile_carry_with_threads(int threads) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  nn::ModelConfig mc;
  mc.filters = 8;
  meta::AlgoConfig ac;
  ac.algo = "reptile";
  ac.inner_steps = 3;
  ac.inner_batch = 3;
  ac.inner_lr = 1e-3;
  ac.carry_inner_state = true;
  core::Rng init(3);
  auto a = meta::make_algorithm(nn::Model(mc), ac, init);
  optim::Sgd outer(1.0);
  for (uint64_t step = 0; step < 2; ++step) meta::meta_step(*a, glyph_like_tasks(4, 9 + step), outer);
  omp_set_num_threads(before);
  std::vector<Tensor> out;
  for (const auto& p : a->parameters()) out.push_back(p.data());
  for (size_t i = 0; i + 1 < a->state().size(); ++i) out.push_back(a->state()[i]);  // f32 moments
  REQUIRE(a->state().back().data<int32_t>()[0] == 6);
  return out;
}

TEST_CASE("determinism: Reptile's carried inner state is bit-identical with 1 and 2 threads") {
  CHECK(bit_identical(reptile_carry_with_threads(1), reptile_carry_with_threads(2)));
}

}  // namespace
}  // namespace metafew::testing
