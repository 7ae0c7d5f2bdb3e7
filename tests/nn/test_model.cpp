// Batch-norm modes of the conv-4 model (Note [Batch norm in meta-learning]).
#include <doctest/doctest.h>

#include <cmath>
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

TEST_CASE("nn: features=mean gives the last block's output averaged over its pixels (cbfinn/maml's Omniglot head)") {
  nn::ModelConfig flat = tiny(nn::BnMode::transductive), mean = flat;
  flat.max_pool = mean.max_pool = false;  // 16 -> 8 -> 4 -> 2 -> 1 with stride 2: use 28 for a 2x2 last block
  flat.height = flat.width = mean.height = mean.width = 28;
  mean.features = nn::ModelConfig::Features::mean;
  nn::Model mf(flat), mm(mean);
  REQUIRE(mf.feature_dim() == 4 * 2 * 2);
  REQUIRE(mm.feature_dim() == 4);
  core::Rng init(3);
  const std::vector<Variable> p = mf.init(init);  // the body's parameters are the same for both
  std::mt19937 rng(5);
  const Tensor x = random_tensor({3, 1, 28, 28}, rng, 0, 1, DType::f32);
  autograd::NoGradGuard ng;
  const std::vector<double> f = mf.embed(p, Variable(x)).data().to_vector();
  const std::vector<double> m = mm.embed(p, Variable(x)).data().to_vector();
  REQUIRE(m.size() == 3 * 4);
  for (int64_t n = 0; n < 3; ++n) {
    for (int64_t c = 0; c < 4; ++c) {
      const double* px = &f[static_cast<size_t>(n * 16 + c * 4)];
      CHECK(m[static_cast<size_t>(n * 4 + c)] == doctest::Approx((px[0] + px[1] + px[2] + px[3]) / 4).epsilon(1e-6));
    }
  }
}

TEST_CASE("nn: head_init=normal draws the head from N(0, 1); lecun stays within sqrt(3 / inputs)") {
  nn::ModelConfig c = tiny(nn::BnMode::transductive);
  c.filters = 16;
  c.outputs = 40;  // head 40 x (16 * 1 * 1) = 640 weights
  nn::Model lecun(c);
  c.head_init = nn::ModelConfig::HeadInit::normal;
  nn::Model normal(c);
  core::Rng a(4), b(4);
  const std::vector<double> wl = lecun.init(a)[lecun.specs().size() - 2].data().to_vector();
  const std::vector<double> wn = normal.init(b)[normal.specs().size() - 2].data().to_vector();
  REQUIRE(wl.size() == wn.size());
  const double bound = std::sqrt(3.0 / static_cast<double>(lecun.feature_dim()));
  double sum = 0, sq = 0, beyond = 0;
  for (size_t i = 0; i < wn.size(); ++i) {
    CHECK(std::abs(wl[i]) <= bound);
    sum += wn[i];
    sq += wn[i] * wn[i];
    beyond += std::abs(wn[i]) > bound ? 1 : 0;
  }
  const double n = static_cast<double>(wn.size()), mean = sum / n, var = sq / n - mean * mean;
  // 640 draws: the sample mean's standard error is 0.04 and the variance's ~0.056.
  CHECK(std::abs(mean) < 0.2);
  CHECK(var > 0.75);
  CHECK(var < 1.25);
  CHECK(beyond > n / 2);  // N(0, 1) exceeds the LeCun bound (0.43 here) two times in three
}

TEST_CASE("nn: bn_scale=false has no batch-norm scales and computes the model with unit scales, in every bn mode") {
  for (nn::BnMode mode : {nn::BnMode::transductive, nn::BnMode::support, nn::BnMode::nontransductive}) {
    CAPTURE(static_cast<int>(mode));
    nn::ModelConfig with = tiny(mode), without = with;
    without.bn_scale = false;
    nn::Model a(with), b(without);
    REQUIRE(a.specs().size() == 4 * 4 + 2);
    REQUIRE(b.specs().size() == 4 * 3 + 2);
    CHECK(b.head_begin() == 12);
    for (const auto& s : b.specs()) CHECK_FALSE(s.name.ends_with("bn.weight"));
    core::Rng init(6);
    const std::vector<Variable> pa = a.init(init);  // scales initialised to 1
    // b's parameters: a's without the scales, in the same order.
    std::vector<Variable> pb;
    for (size_t i = 0; i < pa.size(); ++i)
      if (!a.specs()[i].name.ends_with("bn.weight")) pb.push_back(pa[i]);
    REQUIRE(pb.size() == b.specs().size());
    for (size_t i = 0; i < pb.size(); ++i) CHECK(pb[i].shape() == b.specs()[i].shape);
    std::mt19937 rng(9);
    const Tensor xs = random_tensor({3, 1, 16, 16}, rng, 0, 1, DType::f32);
    const Tensor xq = random_tensor({4, 1, 16, 16}, rng, 0, 1, DType::f32);
    autograd::NoGradGuard ng;
    auto [fa_s, fa_q] = a.embed_pair(pa, Variable(xs), Variable(xq));
    auto [fb_s, fb_q] = b.embed_pair(pb, Variable(xs), Variable(xq));
    CHECK(fa_s.data().to_vector() == fb_s.data().to_vector());
    CHECK(fa_q.data().to_vector() == fb_q.data().to_vector());
    CHECK(a.forward(pa, Variable(xq)).data().to_vector() == b.forward(pb, Variable(xq)).data().to_vector());
    // A learned scale other than 1 changes a's output; b has nothing to change.
    std::vector<Variable> scaled = pa;
    scaled[2] = Variable(tensor::Tensor::full({4}, 2.0, DType::f32), true);
    CHECK(a.forward(scaled, Variable(xq)).data().to_vector() != b.forward(pb, Variable(xq)).data().to_vector());
  }
}

TEST_CASE("nn: features and head_init parse, and anything else is refused naming the accepted values") {
  CHECK(nn::parse_features("flatten") == nn::ModelConfig::Features::flatten);
  CHECK(nn::parse_features("mean") == nn::ModelConfig::Features::mean);
  CHECK_THROWS_WITH(nn::parse_features("avg"), doctest::Contains("flatten or mean, got 'avg'"));
  CHECK(nn::parse_head_init("lecun") == nn::ModelConfig::HeadInit::lecun);
  CHECK(nn::parse_head_init("normal") == nn::ModelConfig::HeadInit::normal);
  CHECK_THROWS_WITH(nn::parse_head_init("xavier"), doctest::Contains("lecun or normal, got 'xavier'"));
}

}  // namespace
}  // namespace metafew::testing

namespace metafew::testing {
namespace {

// x with each channel c mapped to (x - mean[c]) / sd[c], computed here by hand.
Tensor normalised_by_hand(const Tensor& x, const std::vector<float>& mean, const std::vector<float>& sd) {
  Tensor y = x.clone();
  const Shape& s = x.shape();
  float* p = y.data<float>();
  for (int64_t i = 0; i < s[0]; ++i)
    for (int64_t c = 0; c < s[1]; ++c)
      for (int64_t k = 0; k < s[2] * s[3]; ++k) {
        float& v = p[((i * s[1] + c) * s[2] * s[3]) + k];
        v = (v - mean[static_cast<size_t>(c)]) / sd[static_cast<size_t>(c)];
      }
  return y;
}

// Note [Input normalisation]: the model with input_mean / input_std gives, in every batch-norm mode and with
// every image backbone, exactly what the same model without them gives on inputs normalised by hand.
TEST_CASE("nn: input normalisation is (x - mean) / std per channel before the backbone, in every bn mode") {
  const std::vector<float> mean{0.2f, 0.5f, 0.7f}, sd{0.25f, 0.5f, 2.0f};
  for (const char* arch : {"conv4", "resnet12"})
    for (nn::BnMode bn : {nn::BnMode::transductive, nn::BnMode::support, nn::BnMode::nontransductive}) {
      nn::ModelConfig plain = tiny(bn);
      plain.arch = arch;
      plain.in_channels = 3;
      plain.widths = {4, 6};
      nn::ModelConfig with = plain;
      with.input_mean = mean;
      with.input_std = sd;
      nn::Model a(plain), b(with);
      core::Rng init(5);
      const std::vector<Variable> p = a.init(init);
      std::mt19937 rng(9);
      const Tensor xs = random_tensor({3, 3, 16, 16}, rng, 0, 1, DType::f32);
      const Tensor xq = random_tensor({4, 3, 16, 16}, rng, 0, 1, DType::f32);
      const Tensor xs_n = normalised_by_hand(xs, mean, sd), xq_n = normalised_by_hand(xq, mean, sd);
      autograd::NoGradGuard ng;
      CHECK(b.embed(p, Variable(xs)).data().to_vector() == a.embed(p, Variable(xs_n)).data().to_vector());
      auto [fs, fq] = b.embed_pair(p, Variable(xs), Variable(xq));
      auto [gs, gq] = a.embed_pair(p, Variable(xs_n), Variable(xq_n));
      CHECK(fs.data().to_vector() == gs.data().to_vector());
      CHECK(fq.data().to_vector() == gq.data().to_vector());
      CHECK(b.forward(p, Variable(xq)).data().to_vector() == a.forward(p, Variable(xq_n)).data().to_vector());
      // And it is not the identity: without it the same inputs give other features.
      CHECK(b.embed(p, Variable(xs)).data().to_vector() != a.embed(p, Variable(xs)).data().to_vector());
      // An input of another channel count is refused by name before the backbone sees it.
      const Tensor grey = random_tensor({2, 1, 16, 16}, rng, 0, 1, DType::f32);
      CHECK_THROWS_WITH_AS(b.embed(p, Variable(grey)), doctest::Contains("input normalisation has 3 channel values"),
                           Error);
    }
}

}  // namespace
}  // namespace metafew::testing
