// ResNet-12 (src/nn/resnet12.cpp): its parameters and cost, derivatives of first and second order, the
// batch-norm modes, and the inputs it refuses.
#include <doctest/doctest.h>

#include <algorithm>

#include "nn/model.h"
#include "nn/noise.h"
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

// Note [Training noise]: the masks of RFS's dropout and DropBlock.
TEST_CASE("nn: dropout and DropBlock masks drop what they should and scale the rest") {
  const tensor::Shape shape{8, 16, 10, 10};
  const Tensor d = nn::dropout_mask(shape, 0.25, 3);
  int64_t zeros = 0;
  for (int64_t k = 0; k < d.numel(); ++k) {
    const float v = d.data<float>()[k];
    CHECK((v == 0.0f || v == static_cast<float>(1.0 / 0.75)));
    zeros += v == 0.0f;
  }
  CHECK(static_cast<double>(zeros) / static_cast<double>(d.numel()) == doctest::Approx(0.25).epsilon(0.08));

  const Tensor b = nn::dropblock_mask(shape, 0.1, 5, 3);
  const float* p = b.data<float>();
  int64_t dropped = 0;
  float kept_value = -1;
  for (int64_t q = 0; q < 8 * 16; ++q)
    for (int64_t y = 0; y < 10; ++y)
      for (int64_t x = 0; x < 10; ++x) {
        const float v = p[q * 100 + y * 10 + x];
        if (v != 0.0f) {
          if (kept_value < 0) kept_value = v;
          CHECK(v == kept_value);  // one scale for every kept element
          continue;
        }
        ++dropped;
        // A dropped element lies in a 5x5 square of dropped elements inside the plane.
        bool in_square = false;
        for (int64_t i = std::max<int64_t>(0, y - 4); i <= std::min<int64_t>(y, 5) && !in_square; ++i)
          for (int64_t j = std::max<int64_t>(0, x - 4); j <= std::min<int64_t>(x, 5) && !in_square; ++j) {
            bool all = true;
            for (int64_t u = i; u < i + 5; ++u)
              for (int64_t w = j; w < j + 5; ++w) all = all && p[q * 100 + u * 10 + w] == 0.0f;
            in_square = all;
          }
        CHECK(in_square);
      }
  const double fraction = static_cast<double>(dropped) / static_cast<double>(b.numel());
  CHECK(fraction > 0.04);  // overlapping squares drop a little less than the rate
  CHECK(fraction < 0.12);
  CHECK(kept_value == doctest::Approx(static_cast<double>(b.numel()) / static_cast<double>(b.numel() - dropped)));
  // A map smaller than the block: the block is cut to it, so a plane goes whole, with probability the rate.
  const Tensor small = nn::dropblock_mask({200, 10, 3, 3}, 0.2, 5, 4);
  int64_t whole = 0;
  for (int64_t q = 0; q < 2000; ++q) {
    const float* m = small.data<float>() + q * 9;
    const bool gone = std::all_of(m, m + 9, [](float v) { return v == 0.0f; });
    CHECK((gone || std::none_of(m, m + 9, [](float v) { return v == 0.0f; })));
    whole += gone;
  }
  CHECK(static_cast<double>(whole) / 2000.0 == doctest::Approx(0.2).epsilon(0.15));
  // The key decides.
  CHECK(nn::dropblock_mask(shape, 0.1, 5, 3).to_vector() == b.to_vector());
  CHECK(nn::dropblock_mask(shape, 0.1, 5, 5).to_vector() != b.to_vector());
}

TEST_CASE("nn: ResNet-12 draws training noise only inside a NoiseScope, a new mask each pass") {
  nn::ModelConfig c = small_resnet(3, 16, {4, 8, 8}, 0);
  nn::ModelConfig noisy = c;
  noisy.drop_rate = 0.2;
  noisy.dropblock_size = 2;
  nn::Model plain(c), m(noisy);
  core::Rng init(2);
  const std::vector<Variable> p = m.init(init);
  std::mt19937 rng(8);
  const Variable x(random_tensor({6, 3, 16, 16}, rng, 0, 1, DType::f32));
  autograd::NoGradGuard ng;
  const std::vector<double> clean = plain.embed(p, x).data().to_vector();
  CHECK(m.embed(p, x).data().to_vector() == clean);  // no scope: no noise (validation, eval, adapt, predict)
  std::vector<double> first, second, again;
  {
    nn::NoiseScope scope(7);
    first = m.embed(p, x).data().to_vector();
    second = m.embed(p, x).data().to_vector();
  }
  {
    nn::NoiseScope scope(7);
    again = m.embed(p, x).data().to_vector();
  }
  CHECK(first != clean);
  CHECK(second != first);  // the next pass draws the next masks
  CHECK(again == first);   // the same key, the same masks
  CHECK(m.embed(p, x).data().to_vector() == clean);  // the scope has closed
}

TEST_CASE("nn: ResNet-12 with dropout and DropBlock passes gradcheck and gradgradcheck (f64)") {
  nn::ModelConfig c = small_resnet(2, 12, {2, 3, 3}, 0);
  c.drop_rate = 0.3;
  c.dropblock_size = 2;
  nn::Model m(c);
  core::Rng init(3);
  std::mt19937 rng(4);
  std::vector<Tensor> xs;
  xs.push_back(random_tensor({3, 2, 12, 12}, rng));
  for (const Variable& v : m.init(init)) xs.push_back(random_tensor(v.shape(), rng, -1, 1));
  // Every evaluation in its own scope of the same key: the same masks each time, as one training pass sees them.
  auto f = [&](const std::vector<Variable>& v) {
    nn::NoiseScope scope(11);
    return m.embed(std::vector<Variable>(v.begin() + 1, v.end()), v[0]);
  };
  CHECK(gradcheck("resnet12 noise", f, xs) == 0);
  CHECK(gradgradcheck("resnet12 noise", f, xs) == 0);
  // The masks are in effect: without the scope the features differ.
  std::vector<Variable> vars;
  for (const Tensor& t : xs) vars.emplace_back(t);
  autograd::NoGradGuard ng;
  const std::vector<double> noisy = f(vars).data().to_vector();
  CHECK(m.embed(std::vector<Variable>(vars.begin() + 1, vars.end()), vars[0]).data().to_vector() != noisy);
}

}  // namespace
}  // namespace metafew::testing
