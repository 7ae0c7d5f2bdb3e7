// ResNet-12 (src/nn/resnet12.cpp): its parameters and cost, derivatives of first and second order, the
// batch-norm modes, and the inputs it refuses.
#include <doctest/doctest.h>

#include "nn/model.h"
#include "support/gradcheck.h"

namespace metafew::testing {
namespace {

nn::ModelConfig small_resnet(int64_t channels, int64_t side, std::vector<int64_t> widths, int64_t outputs) {
  nn::ModelConfig c;
  c.arch = "resnet12";
  c.in_channels = channels;
  c.height = c.width = side;
  c.widths = std::move(widths);
  c.outputs = outputs;
  return c;
}

TEST_CASE("nn: ResNet-12 has MetaOptNet / RFS's parameters, features and multiply-adds") {
  nn::Model m(small_resnet(3, 84, {64, 160, 320, 640}, 5));
  REQUIRE(m.specs().size() == 4 * 12 + 2);
  CHECK(m.head_begin() == 48);
  CHECK(m.feature_dim() == 640);
  CHECK(m.specs()[0].name == "block1.conv1.weight");
  CHECK(m.specs()[0].shape == Shape{64, 3, 3, 3});
  CHECK(m.specs()[9].name == "block1.shortcut.conv.weight");
  CHECK(m.specs()[9].shape == Shape{64, 3, 1, 1});
  CHECK(m.specs()[15].shape == Shape{160, 160, 3, 3});  // block2.conv2
  CHECK(m.specs()[1].role == nn::ParamSpec::Role::bn_scale);
  CHECK(m.specs()[2].role == nn::ParamSpec::Role::bn_shift);
  // Per block at input side s: s^2 * out * (9 in + 18 out + in); blocks at 84, 42, 21, 10 pixels a side; the
  // head 640 x 5. The PyTorch reference counts the same (peers/torch_meta.py, macs_per_image).
  double want = 0;
  int64_t in = 3, s = 84;
  for (int64_t out : {64, 160, 320, 640}) {
    want += static_cast<double>(s * s * out * (9 * in + 18 * out + in));
    in = out;
    s /= 2;
  }
  CHECK(m.forward_macs(2) == doctest::Approx(2 * (want + 640 * 5)).epsilon(1e-12));
  // 32x32 leaves 2x2 pixels for the mean; the features do not depend on the image size.
  CHECK(nn::Model(small_resnet(3, 32, {64, 160, 320, 640}, 0)).feature_dim() == 640);
}

TEST_CASE("nn: ResNet-12 passes gradcheck and gradgradcheck in its input and every parameter (f64)") {
  for (nn::BnMode mode : {nn::BnMode::transductive, nn::BnMode::support}) {
    CAPTURE(static_cast<int>(mode));
    nn::ModelConfig c = small_resnet(2, 6, {2, 3}, 0);
    c.bn = mode;
    nn::Model m(c);
    core::Rng init(3);
    std::mt19937 rng(4);
    std::vector<Tensor> xs;
    xs.push_back(random_tensor({3, 2, 6, 6}, rng));  // the support batch
    xs.push_back(random_tensor({2, 2, 6, 6}, rng));  // the query batch
    for (const Variable& p : m.init(init)) xs.push_back(random_tensor(p.shape(), rng, -1, 1));
    // The query features (normalised with the support set's statistics in support mode).
    auto f = [&](const std::vector<Variable>& v) {
      const std::vector<Variable> params(v.begin() + 2, v.end());
      return m.embed_pair(params, v[0], v[1]).second;
    };
    CHECK(gradcheck("resnet12", f, xs) == 0);
    CHECK(gradgradcheck("resnet12", f, xs) == 0);
  }
}

TEST_CASE("nn: ResNet-12 under bn support and nontransductive classifies each query on its own") {
  std::mt19937 rng(8);
  const Tensor xs = random_tensor({3, 3, 12, 12}, rng, 0, 1, DType::f32);
  const Tensor xq = random_tensor({4, 3, 12, 12}, rng, 0, 1, DType::f32);
  for (nn::BnMode mode : {nn::BnMode::support, nn::BnMode::nontransductive}) {
    CAPTURE(static_cast<int>(mode));
    nn::ModelConfig c = small_resnet(3, 12, {4, 8, 8}, 3);
    c.bn = mode;
    nn::Model m(c);
    core::Rng init(2);
    const std::vector<Variable> p = m.init(init);
    autograd::NoGradGuard ng;
    const std::vector<double> all = m.embed_pair(p, Variable(xs), Variable(xq)).second.data().to_vector();
    const int64_t d = m.feature_dim();
    for (int64_t q = 0; q < 4; ++q) {
      const std::vector<double> alone =
          m.embed_pair(p, Variable(xs), Variable(tensor::slice(xq, 0, q, q + 1))).second.data().to_vector();
      for (int64_t j = 0; j < d; ++j) CHECK(alone[static_cast<size_t>(j)] == doctest::Approx(all[static_cast<size_t>(q * d + j)]).epsilon(1e-5));
    }
  }
}

TEST_CASE("nn: ResNet-12 refuses images too small for its pools and inputs of another channel count") {
  CHECK_THROWS_WITH_AS(nn::Model(small_resnet(3, 8, {64, 160, 320, 640}, 5)),
                       doctest::Contains("resnet12: input 8x8 is too small for 4 2x2 pools (block 4 gets 1x1)"),
                       Error);
  nn::Model m(small_resnet(3, 16, {4, 4}, 5));
  core::Rng init(1);
  const std::vector<Variable> p = m.init(init);
  std::mt19937 rng(2);
  CHECK_THROWS_WITH_AS(m.forward(p, Variable(random_tensor({2, 1, 16, 16}, rng, 0, 1, DType::f32))),
                       doctest::Contains("resnet12: expected input (N, 3, 16, 16), got [2, 1, 16, 16]"), Error);
  CHECK_THROWS_WITH_AS(nn::parse_widths("64,,160"), doctest::Contains("--widths must be 1 to 8 comma-separated"),
                       Error);
  CHECK_THROWS_WITH_AS(nn::parse_widths("64,5000"), doctest::Contains("from 1 to 4096"), Error);
  CHECK(nn::parse_widths("64,160,320,640") == std::vector<int64_t>{64, 160, 320, 640});
}

}  // namespace
}  // namespace metafew::testing
