// Algorithm checks that catch the classic mistakes: a "second-order" MAML that is first order, Meta-SGD
// rates without gradient, metric heads with wrong signs or normalisation.
#include <doctest/doctest.h>

#include <cmath>

#include "meta/algorithm.h"
#include "meta/registry.h"
#include "support/gradcheck.h"

namespace metafew::testing {
namespace {

using meta::Task;

// Converts an algorithm's parameters to f64 leaves (the engine runs the reference kernels in f64).
void to_f64(meta::Algorithm& a) {
  for (auto& p : a.parameters()) p = Variable(p.data().to(DType::f64), true);
}

// Central differences of F(params) = query loss after `steps` inner steps (evaluated by predict()).
std::vector<std::vector<double>> numeric_meta_gradient(meta::Algorithm& a, const Task& t, int64_t steps) {
  std::vector<Tensor> values;
  for (auto& p : a.parameters()) values.push_back(p.data().clone());
  return numeric_gradient(
      [&](std::vector<Tensor>& ts) {
        for (size_t i = 0; i < ts.size(); ++i) a.parameters()[i] = Variable(ts[i], true);
        Tensor out = a.predict(t, steps);
        autograd::NoGradGuard ng;
        return meta::Algorithm::task_loss(Variable(out), t.query_y, t.regression()).item();
      },
      values);
}

Task image_task(std::mt19937& rng, int64_t ways, int64_t shots, int64_t queries, int64_t side) {
  Task t;
  t.ways = ways;
  t.support_x = random_tensor({ways * shots, 1, side, side}, rng);
  t.query_x = random_tensor({ways * queries, 1, side, side}, rng);
  std::vector<int32_t> ys, yq;
  for (int64_t c = 0; c < ways; ++c) {
    for (int64_t k = 0; k < shots; ++k) ys.push_back(static_cast<int32_t>(c));
    for (int64_t k = 0; k < queries; ++k) yq.push_back(static_cast<int32_t>(c));
  }
  t.support_y = Tensor::from_indices(ys, {ways * shots});
  t.query_y = Tensor::from_indices(yq, {ways * queries});
  return t;
}

nn::ModelConfig tiny_conv(int64_t outputs) {
  nn::ModelConfig c;
  c.arch = "conv4";
  c.height = c.width = 16;
  c.filters = 3;
  c.outputs = outputs;
  return c;
}

std::vector<Variable> as_vars(const std::vector<Tensor>& ts) {
  std::vector<Variable> v;
  for (const auto& t : ts) v.emplace_back(t);
  return v;
}

// MAML with 2 inner steps of 0.3 on a 2-way 2-shot task: its meta-gradient against central differences.
void check_maml_meta_gradient(const nn::ModelConfig& model, unsigned seed, const char* what, bool inner_bn = true) {
  std::mt19937 rng(seed);
  meta::AlgoConfig cfg;
  cfg.algo = "maml";
  cfg.inner_bn = inner_bn;
  cfg.inner_steps = 2;
  cfg.inner_lr = 0.3;
  core::Rng init(5);
  auto algo = meta::make_algorithm(nn::Model(model), cfg, init);
  to_f64(*algo);
  Task t = image_task(rng, 2, 2, 3, 16);
  std::vector<Tensor> g;
  algo->meta_gradient(t, g);
  auto numeric = numeric_meta_gradient(*algo, t, 2);
  CHECK(compare(what, as_vars(g), numeric) == 0);
}

TEST_CASE("meta: MAML with 2 inner steps, meta-gradient equals central differences (tiny conv-4, f64)") {
  check_maml_meta_gradient(tiny_conv(2), 17, "MAML 2 steps");
}

TEST_CASE("meta: MAML with 2 inner steps through a small ResNet-12, meta-gradient equals central differences") {
  nn::ModelConfig m = tiny_conv(2);
  m.arch = "resnet12";
  m.widths = {2, 3};
  check_maml_meta_gradient(m, 41, "MAML 2 steps, ResNet-12");
}

TEST_CASE("meta: every algorithm meta-trains and predicts through ResNet-12") {
  std::mt19937 rng(43);
  Task t = image_task(rng, 3, 2, 2, 16);
  t.support_x = t.support_x.to(DType::f32);
  t.query_x = t.query_x.to(DType::f32);
  for (const meta::AlgorithmEntry& entry : meta::algorithms()) {
    const std::string name = entry.name;
    CAPTURE(name);
    nn::ModelConfig m = tiny_conv(entry.uses_head ? 3 : 0);
    m.arch = "resnet12";
    m.widths = {4, 4, 4};
    meta::AlgoConfig cfg;
    cfg.algo = entry.name;
    cfg.inner_steps = 2;
    cfg.inner_lr = 0.1;
    cfg.inner_batch = 3;
    cfg.pretrain_classes = 3;  // pretrain: the task's query set as a batch labelled over 3 classes
    core::Rng init(7);
    auto algo = meta::make_algorithm(nn::Model(m), cfg, init);
    std::vector<Tensor> g;
    const meta::TaskOutput out = algo->meta_gradient(t, g);
    CHECK(std::isfinite(out.loss));
    REQUIRE(g.size() == algo->parameters().size());
    double norm = 0;
    for (const Tensor& gi : g)
      for (double v : gi.to_vector()) norm += v * v;
    CHECK(std::isfinite(norm));
    CHECK(norm > 0);
    const Tensor logits = algo->predict(t, 2);
    CHECK(logits.shape() == Shape{t.query_x.shape()[0], 3});
  }
}

TEST_CASE("meta: MAML without batch-norm scales (bn_scale=false), meta-gradient equals central differences") {
  nn::ModelConfig m = tiny_conv(2);
  m.bn_scale = false;
  m.features = nn::ModelConfig::Features::mean;
  REQUIRE(nn::Model(m).specs().size() == 4 * 3 + 2);
  check_maml_meta_gradient(m, 29, "MAML 2 steps, no bn scale");
}

TEST_CASE("meta: MAML with batch norm outside the inner loop (inner_bn=false), meta-gradient equals central "
          "differences") {
  check_maml_meta_gradient(tiny_conv(2), 31, "MAML 2 steps, bn outside the inner loop", /*inner_bn=*/false);
}

TEST_CASE("meta: inner_bn=false adapts convolutions and head but leaves every batch-norm parameter as it was") {
  std::mt19937 rng(37);
  Task t = image_task(rng, 3, 1, 2, 16);
  for (bool inner_bn : {true, false}) {
    CAPTURE(inner_bn);
    meta::AlgoConfig cfg;
    cfg.algo = "maml";
    cfg.inner_lr = 0.3;
    cfg.inner_bn = inner_bn;
    core::Rng init(5);
    auto algo = meta::make_algorithm(nn::Model(tiny_conv(3)), cfg, init);
    to_f64(*algo);
    const meta::Adapted a = algo->adapt(t, 3);
    const auto& names = algo->parameter_names();
    REQUIRE(a.weights.size() == names.size());
    int bn_changed = 0, others_changed = 0;
    for (size_t i = 0; i < names.size(); ++i) {
      const bool changed = a.weights[i].to_vector() != algo->parameters()[i].data().to_vector();
      if (names[i].find(".bn.") != std::string::npos)
        bn_changed += changed;
      else
        others_changed += changed;
    }
    // Every convolution weight and the head move (the conv biases too: their gradient is only rounding, as batch
    // norm removes a constant, so they are not counted); the 8 batch-norm tensors move only with inner_bn.
    CHECK(others_changed >= 6);
    CHECK(bn_changed == (inner_bn ? 8 : 0));
  }
}

TEST_CASE("meta: Meta-SGD, gradients with respect to the learned inner rates match finite differences") {
  std::mt19937 rng(23);
  meta::AlgoConfig cfg;
  cfg.algo = "metasgd";
  cfg.inner_steps = 1;
  cfg.inner_lr = 0.2;
  core::Rng init(9);
  auto algo = meta::make_algorithm(nn::Model(tiny_conv(2)), cfg, init);
  to_f64(*algo);
  Task t = image_task(rng, 2, 1, 2, 16);
  std::vector<Tensor> g;
  algo->meta_gradient(t, g);
  const size_t n = algo->model().specs().size();
  REQUIRE(g.size() == 2 * n);
  auto numeric = numeric_meta_gradient(*algo, t, 1);
  CHECK(compare("Meta-SGD", as_vars(g), numeric) == 0);
  // The rates do receive a gradient (a Meta-SGD that detached them would leave these at zero).
  double rate_grad = 0;
  for (size_t i = n; i < 2 * n; ++i) rate_grad = std::max(rate_grad, tensor::max_abs(g[i]));
  CHECK(rate_grad > 1e-4);
}

// Linear regression y = W x + b with MSE: a quadratic with a closed form for MAML and first-order MAML.
TEST_CASE("meta: MAML and first-order MAML on a quadratic toy match their closed forms") {
  const int64_t d = 3, n = 6, k = 2;  // features, examples, inner steps
  const double alpha = 0.1;
  std::mt19937 rng(31);
  Task t;
  t.ways = 0;
  t.support_x = random_tensor({n, d}, rng);
  t.support_y = random_tensor({n, 1}, rng);
  t.query_x = random_tensor({n, d}, rng);
  t.query_y = random_tensor({n, 1}, rng);
  nn::ModelConfig mc;
  mc.arch = "mlp";
  mc.hidden = {};
  mc.in_features = d;
  mc.outputs = 1;

  std::vector<std::vector<double>> results;
  std::vector<double> theta0;
  for (const char* name : {"maml", "fomaml"}) {
    meta::AlgoConfig cfg;
    cfg.algo = name;
    cfg.inner_steps = k;
    cfg.inner_lr = alpha;
    core::Rng init(77);
    auto algo = meta::make_algorithm(nn::Model(mc), cfg, init);
    to_f64(*algo);
    std::vector<Tensor> g;
    algo->meta_gradient(t, g);
    std::vector<double> flat = g[0].to_vector();
    flat.push_back(g[1].to_vector()[0]);
    results.push_back(flat);
    theta0 = algo->parameters()[0].data().to_vector();
    theta0.push_back(algo->parameters()[1].data().to_vector()[0]);
  }

  // theta = [W, b]; X~ = [X, 1]; L(theta) = |X~ theta - y|^2 / n; grad = H theta - c, H = 2/n X~^T X~, c = 2/n X~^T y.
  const int64_t m = d + 1;
  auto design = [&](const Tensor& x, const Tensor& y, std::vector<double>& h, std::vector<double>& c) {
    auto xv = x.to_vector(), yv = y.to_vector();
    h.assign(m * m, 0.0);
    c.assign(m, 0.0);
    for (int64_t r = 0; r < n; ++r) {
      std::vector<double> row(xv.begin() + r * d, xv.begin() + (r + 1) * d);
      row.push_back(1.0);
      for (int64_t i = 0; i < m; ++i) {
        c[i] += 2.0 / n * row[i] * yv[r];
        for (int64_t j = 0; j < m; ++j) h[i * m + j] += 2.0 / n * row[i] * row[j];
      }
    }
  };
  std::vector<double> hs, cs, hq, cq;
  design(t.support_x, t.support_y, hs, cs);
  design(t.query_x, t.query_y, hq, cq);
  auto matvec = [&](const std::vector<double>& a, const std::vector<double>& v) {
    std::vector<double> r(m, 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < m; ++j) r[i] += a[i * m + j] * v[j];
    return r;
  };
  // Inner steps: theta <- theta - alpha (Hs theta - cs).
  std::vector<double> th = theta0;
  for (int64_t s = 0; s < k; ++s) {
    auto gs = matvec(hs, th);
    for (int64_t i = 0; i < m; ++i) th[i] -= alpha * (gs[i] - cs[i]);
  }
  auto gq = matvec(hq, th);
  for (int64_t i = 0; i < m; ++i) gq[i] -= cq[i];
  // MAML: (I - alpha Hs)^k gq (the matrix is symmetric); first order: gq itself.
  std::vector<double> maml = gq;
  for (int64_t s = 0; s < k; ++s) {
    auto hv = matvec(hs, maml);
    for (int64_t i = 0; i < m; ++i) maml[i] -= alpha * hv[i];
  }
  for (int64_t i = 0; i < m; ++i) {
    CHECK(results[0][i] == doctest::Approx(maml[i]).epsilon(1e-10));
    CHECK(results[1][i] == doctest::Approx(gq[i]).epsilon(1e-10));
    // The second-order term is present and of the expected size.
    CHECK(results[0][i] - results[1][i] == doctest::Approx(maml[i] - gq[i]).epsilon(1e-8));
  }
  double term = 0;
  for (int64_t i = 0; i < m; ++i) term = std::max(term, std::abs(maml[i] - gq[i]));
  CHECK(term > 1e-3);
}

// 2-way 1-shot with 2-D features: s0 = (1, 0), s1 = (0, 1), one query q = (2, 0) of class 0.
struct HandCase {
  Variable s = Variable(Tensor::from_vector({1, 0, 0, 1}, {2, 2}, DType::f64), true);
  Variable q = Variable(Tensor::from_vector({2, 0}, {1, 2}, DType::f64), true);
  Tensor ys = Tensor::from_indices({0, 1}, {2});
  Tensor yq = Tensor::from_indices({0}, {1});
};
const double kSigma1 = std::exp(-4.0) / (1.0 + std::exp(-4.0));  // softmax weight of the wrong class

void check_vec(const Variable& v, std::vector<double> expect) {
  auto got = v.data().to_vector();
  REQUIRE(got.size() == expect.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(expect[i]).epsilon(1e-7));
}

TEST_CASE("meta: ProtoNets loss and gradients on a hand-computed 2-way 1-shot case") {
  // d0 = |q - p0|^2 = 1, d1 = 5: loss = log(1 + e^-4); dL/dq = 2 s1 (p1 - p0); dL/dp0 = -2 s1 (q - p0);
  // dL/dp1 = 2 s1 (q - p1), with s1 = e^-4 / (1 + e^-4).
  HandCase h;
  Variable loss = ops::cross_entropy(meta::protonet_logits(h.s, h.ys, h.q, 2), h.yq);
  CHECK(loss.item() == doctest::Approx(std::log1p(std::exp(-4.0))).epsilon(1e-12));
  auto g = autograd::grad({loss}, {h.q, h.s});
  check_vec(g[0], {-2 * kSigma1, 2 * kSigma1});
  check_vec(g[1], {-2 * kSigma1, 0, 4 * kSigma1, -2 * kSigma1});
}

TEST_CASE("meta: Matching Networks loss and gradients on a hand-computed 2-way 1-shot case") {
  // cos(q, s0) = 1, cos(q, s1) = 0: attention (e, 1) / (e + 1); loss = -log(e / (e + 1)).
  // dL/dq = a1 * dcos(q, s1)/dq = a1 * s1 / (|q||s1|) = (0, a1 / 2), a1 = 1 / (e + 1).
  HandCase h;
  Variable loss = ops::cross_entropy(meta::matching_log_probs(h.s, h.ys, h.q, 2), h.yq);
  const double e = std::exp(1.0);
  CHECK(loss.item() == doctest::Approx(-std::log(e / (e + 1))).epsilon(1e-7));
  auto g = autograd::grad({loss}, {h.q});
  check_vec(g[0], {0.0, 0.5 / (e + 1)});
}

TEST_CASE("meta: Matching Networks with supnorm attention on a hand-computed 2-way 1-shot case") {
  // Similarities q . s_j / |s_j| = (2, 0): attention (e^2, 1) / (e^2 + 1); loss = log(1 + e^-2).
  // With a1 = 1 / (e^2 + 1): dL/dq = (a0 - 1) s0/|s0| + a1 s1/|s1| = (-a1, a1);
  // dL/ds_j = dL/dsim_j (q - (q . u_j) u_j) / |s_j| (u_j = s_j/|s_j|): 0 for s0 (q is along it), a1 (2, 0)
  // for s1. (cosine attention gives similarities (1, 0) on the same case, see the test above.)
  HandCase h;
  Variable loss =
      ops::cross_entropy(meta::matching_log_probs(h.s, h.ys, h.q, 2, meta::MatchingAttention::supnorm), h.yq);
  const double a1 = 1 / (std::exp(2.0) + 1);
  CHECK(loss.item() == doctest::Approx(std::log1p(std::exp(-2.0))).epsilon(1e-7));
  auto g = autograd::grad({loss}, {h.q, h.s});
  check_vec(g[0], {-a1, a1});
  check_vec(g[1], {0, 0, 2 * a1, 0});
}

TEST_CASE("meta: Matching Networks supnorm attention passes gradcheck and gradgradcheck") {
  std::mt19937 rng(17);
  const Tensor ys = Tensor::from_indices({0, 1, 2, 0, 1, 2}, {6});
  auto f = [&](const std::vector<Variable>& v) {
    return meta::matching_log_probs(v[0], ys, v[1], 3, meta::MatchingAttention::supnorm);
  };
  const std::vector<Tensor> xs{random_tensor({6, 4}, rng), random_tensor({5, 4}, rng)};
  CHECK(gradcheck("matching supnorm", f, xs) == 0);
  CHECK(gradgradcheck("matching supnorm", f, xs) == 0);
}

TEST_CASE("meta: the matching attention names parse, and anything else is refused naming both") {
  CHECK(meta::parse_matching_attention("cosine") == meta::MatchingAttention::cosine);
  CHECK(meta::parse_matching_attention("supnorm") == meta::MatchingAttention::supnorm);
  CHECK_THROWS_WITH(meta::parse_matching_attention("dot"), doctest::Contains("cosine or supnorm, got 'dot'"));
}

TEST_CASE("meta: ParamNet head, loss and gradients on a hand-computed 2-way 1-shot case") {
  // A = 2I, s = (-1, 0) gives logits 2 p.q - |p|^2 = (3, -1): the ProtoNet loss log(1 + e^-4).
  // dL/dA = sum_c dL/dlogit_c q p_c^T = s1 q (p1 - p0)^T; dL/ds = sum_c dL/dlogit_c (|p_c|^2, 1) = 0.
  HandCase h;
  Variable a(Tensor::from_vector({2, 0, 0, 2}, {2, 2}, DType::f64), true);
  Variable s(Tensor::from_vector({-1, 0}, {2}, DType::f64), true);
  auto [w, b] = meta::paramnet_head(meta::class_prototypes(h.s, h.ys, 2), a, s);
  check_vec(w, {2, 0, 0, 2});
  check_vec(b, {-1, -1});
  Variable loss = ops::cross_entropy(nn::Model::head(w, b, h.q), h.yq);
  CHECK(loss.item() == doctest::Approx(std::log1p(std::exp(-4.0))).epsilon(1e-12));
  auto g = autograd::grad({loss}, {a, s});
  check_vec(g[0], {-2 * kSigma1, 2 * kSigma1, 0, 0});
  check_vec(g[1], {0, 0});
}

TEST_CASE("meta: ProtoNets with cosine prototypes (Meta-Baseline): scale x cosine, gradients by central differences") {
  std::mt19937 rng(11);
  meta::AlgoConfig cfg;
  cfg.algo = "protonet";
  cfg.cosine_prototypes = true;
  core::Rng init(5);
  auto algo = meta::make_algorithm(nn::Model(tiny_conv(0)), cfg, init);
  REQUIRE(algo->parameter_names().back() == "protonet.scale");
  CHECK(algo->parameters().back().data().to_vector() == std::vector<double>{10.0});
  to_f64(*algo);
  Task t = image_task(rng, 2, 2, 3, 16);
  // Logits by hand from the model's features: 10 * cos(q, mean of the class's support features).
  {
    autograd::NoGradGuard ng;
    const std::vector<Variable>& p = algo->parameters();
    const std::vector<double> fs = algo->model().embed(p, Variable(t.support_x)).data().to_vector();
    const Tensor got = algo->predict(t, 0);
    const std::vector<double> fq = algo->model().embed(p, Variable(t.query_x)).data().to_vector();
    const int64_t d = algo->model().feature_dim();
    const std::vector<double> logits = got.to_vector();
    for (int64_t i = 0; i < 6; ++i)
      for (int64_t c = 0; c < 2; ++c) {
        double dot = 0, qq = 0, pp = 0;
        for (int64_t j = 0; j < d; ++j) {
          const double proto = 0.5 * (fs[(2 * c) * d + j] + fs[(2 * c + 1) * d + j]);
          dot += fq[i * d + j] * proto;
          qq += fq[i * d + j] * fq[i * d + j];
          pp += proto * proto;
        }
        CHECK(logits[i * 2 + c] == doctest::Approx(10 * dot / std::sqrt(qq * pp)).epsilon(1e-6));
      }
  }
  // The meta-gradient, the scale's included, against central differences of the query loss.
  std::vector<Tensor> g;
  algo->meta_gradient(t, g);
  CHECK(compare("cosine protonet", as_vars(g), numeric_meta_gradient(*algo, t, 0)) == 0);
  CHECK(std::abs(g.back().to_vector()[0]) > 0);
}

TEST_CASE("meta: pretraining's centroid head on L2-normalised features, by hand") {
  // Support: class 0 = (3, 0) and (0, 2) -> unit vectors (1, 0), (0, 1), centroid (0.5, 0.5); class 1 =
  // (0, -5) -> (0, -1). Query (4, 4) -> (r, r) with r = 1/sqrt(2): squared distances 2 (r - 0.5)^2 to
  // class 0 and r^2 + (r + 1)^2 to class 1.
  const double r = 1.0 / std::sqrt(2.0);
  const std::vector<double> support{3, 0, 0, 2, 0, -5};
  // Built element by element: GCC 12 at -O3 -march=native (AVX-512) gave this test's queries{4, 4, 0, 0}
  // as 4, 4, 4, 4 (the same declaration compiled alone was right); not understood yet.
  std::vector<double> queries(4, 0.0);
  queries[0] = queries[1] = 4;
  Variable s(Tensor::from_vector(support, {3, 2}, DType::f64));
  Variable q(Tensor::from_vector(queries, {2, 2}, DType::f64));
  Tensor ys = Tensor::from_indices({0, 0, 1}, {3});
  const std::vector<double> got = meta::centroid_logits(s, ys, q, 2).data().to_vector();
  REQUIRE(got.size() == 4);
  const double d0 = 2 * (r - 0.5) * (r - 0.5), d1 = r * r + (r + 1) * (r + 1);
  CHECK(got[0] == doctest::Approx(-d0).epsilon(1e-12));
  CHECK(got[1] == doctest::Approx(-d1).epsilon(1e-12));
  // A zero feature row (every ReLU off) stays zero: its logits are minus the centroids' squared norms.
  CHECK(got[2] == doctest::Approx(-0.5).epsilon(1e-12));
  CHECK(got[3] == doctest::Approx(-1.0).epsilon(1e-12));
  // Scaling a feature vector changes nothing (that is the normalisation).
  Variable q3(Tensor::from_vector({0.4, 0.4}, {1, 2}, DType::f64));
  CHECK(meta::centroid_logits(s, ys, q3, 2).data().to_vector()[0] == doctest::Approx(-d0).epsilon(1e-12));
}

}  // namespace
}  // namespace metafew::testing
