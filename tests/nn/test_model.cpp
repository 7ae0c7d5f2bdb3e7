// Batch-norm modes of the conv-4 model (Note [Batch norm in meta-learning]).
#include <doctest/doctest.h>

#include <cstring>

#include "nn/model.h"
#include "support/gradcheck.h"
#include "tensor/kernels.h"

namespace metafew::testing {
namespace {

nn::ModelConfig tiny(nn::BnMode bn) {
  nn::ModelConfig c;
  c.height = c.width = 16;
  c.filters = 4;
  c.outputs = 3;
  c.bn = bn;
  return c;
}

std::vector<double> row(const Variable& f, int64_t r) {
  std::vector<double> v = f.data().to_vector();
  const int64_t d = f.shape()[1];
  return std::vector<double>(v.begin() + r * d, v.begin() + (r + 1) * d);
}

TEST_CASE("nn: bn nontransductive forwards each query in one batch with the support set") {
  std::mt19937 rng(8);
  const Tensor xs = random_tensor({3, 1, 16, 16}, rng, 0, 1, DType::f32);
  const Tensor xq = random_tensor({4, 1, 16, 16}, rng, 0, 1, DType::f32);
  nn::Model nt(tiny(nn::BnMode::nontransductive)), tr(tiny(nn::BnMode::transductive));
  core::Rng init(2);
  const std::vector<Variable> p = nt.init(init);
  autograd::NoGradGuard ng;
  auto [fs, fq] = nt.embed_pair(p, Variable(xs), Variable(xq));
  REQUIRE(fq.shape() == Shape{4, nt.feature_dim()});
  // The support features are the support set's own; query q's are row 3 of embed(support + query q).
  CHECK(fs.data().to_vector() == tr.embed(p, Variable(xs)).data().to_vector());
  for (int64_t q = 0; q < 4; ++q) {
    CAPTURE(q);
    Tensor idx = Tensor::from_indices({0, 1, 2, static_cast<int32_t>(3 + q)}, {4});
    Tensor both = tensor::index_select(tensor::concat({xs, xq}, 0), 0, idx);
    CHECK(row(fq, q) == row(tr.embed(p, Variable(both)), 3));
  }
  // Each query is classified on its own: changing another query leaves it unchanged, unlike transductive.
  Tensor xq2 = xq.clone();
  for (int64_t j = 0; j < 256; ++j) xq2.data<float>()[256 + j] = 1.0f;  // query 1
  CHECK(row(nt.embed_pair(p, Variable(xs), Variable(xq2)).second, 0) == row(fq, 0));
  CHECK(row(tr.embed_pair(p, Variable(xs), Variable(xq2)).second, 0) !=
        row(tr.embed_pair(p, Variable(xs), Variable(xq)).second, 0));
}

TEST_CASE("nn: bn modes parse, and anything else is refused naming the accepted values") {
  CHECK(nn::parse_bn_mode("transductive") == nn::BnMode::transductive);
  CHECK(nn::parse_bn_mode("support") == nn::BnMode::support);
  CHECK(nn::parse_bn_mode("nontransductive") == nn::BnMode::nontransductive);
  CHECK_THROWS_WITH(nn::parse_bn_mode("batch"),
                    doctest::Contains("transductive, support or nontransductive, got 'batch'"));
}

}  // namespace
}  // namespace metafew::testing
