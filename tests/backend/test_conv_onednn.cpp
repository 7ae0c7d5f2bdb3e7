// oneDNN's convolution kernels as metafew uses them: blocked layouts and batch chunks, plan caching, OpenMP
// regions, the weights cache, and the conv op's gradients.
#include "support/conv_cases.h"

using namespace metafew::testing::conv_cases;

TEST_CASE("oneDNN conv: the conv-4 layers reorder with metafew's kernels") {
  // Every reorder between whole 16-channel blocks (Note [Blocked reorders]).
  const ConvShape conv3 = make_shape(5, 64, 7, 7, 64, 3, 1, 1), conv4 = make_shape(5, 64, 3, 3, 64, 3, 1, 1),
                  conv2 = make_shape(5, 64, 14, 14, 64, 3, 1, 1), odd = make_shape(2, 24, 3, 3, 40, 3, 1, 1);
  for (const ConvShape& s : {conv2, conv3, conv4}) {
    CAPTURE(s.to_string());
    CHECK(dnnl_backend::conv2d_describe(s, ConvKernel::forward, false, ConvLayout::blocked).find("reorders=3 (own 3)") !=
          std::string::npos);
    CHECK(dnnl_backend::conv2d_describe(s, ConvKernel::backward_data, false, ConvLayout::blocked)
              .find("reorders=3 (own 3)") != std::string::npos);
    CHECK(dnnl_backend::conv2d_describe(s, ConvKernel::backward_weights, false, ConvLayout::blocked)
              .find("reorders=3 (own 3)") != std::string::npos);
  }

  // Channel counts that are not whole blocks stay with oneDNN's reorders (which pad).
  CHECK(dnnl_backend::conv2d_describe(odd, ConvKernel::forward, false, ConvLayout::blocked).find("(own 0)") !=
        std::string::npos);
  dnnl_backend::release_thread_cache();
}

TEST_CASE("oneDNN conv: blocked forward and backward data in batch chunks match the reference") {
  // Note [Batch chunks]: image tensors of 50-125 KB give chunks of 1-3 images, with uneven remainders; one
  // shape with 24 / 40 channels reorders with oneDNN's padding reorders, one is strided.
  std::mt19937 rng(777u);
  for (const ConvShape& s : {make_shape(13, 64, 14, 14, 64, 3, 1, 1), make_shape(7, 24, 28, 28, 40, 3, 1, 1),
                             make_shape(5, 32, 30, 30, 48, 3, 2, 1), make_shape(300, 64, 3, 3, 64, 3, 1, 1)}) {
    CAPTURE(s.to_string());
    Case c(s, rng);
    check_onednn(c, ConvLayout::blocked);
    // The same buffer of weights with new values and no generation: the chunks of the second call must not
    // reuse the first call's reordered weights.
    for (float& v : c.w) v = -0.5f * v + 0.25f;
    const Case fresh(s, c.x, c.w, c.b, c.gy);
    std::vector<float> y(s.y_numel()), gx(s.x_numel());
    dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), nullptr, y.data(), s, ConvLayout::blocked);
    const Comparison ry = compare(y, fresh.y, fresh.y_abs);
    CHECK_MESSAGE(ry.bad == 0, describe(ry));
    dnnl_backend::conv2d_backward_data(c.gy.data(), c.w.data(), gx.data(), s, ConvLayout::blocked);
    const Comparison rx = compare(gx, fresh.gx, fresh.gx_abs);
    CHECK_MESSAGE(rx.bad == 0, describe(rx));
    dnnl_backend::release_thread_cache();
  }
}

TEST_CASE("oneDNN conv: nChw16c arguments give the plain call's numbers without its reorders") {
  // The same primitive on the same numbers: bit for bit the NCHW call's results, whichever activations are
  // blocked (the NCHW forward and backward data run in batch chunks here, the blocked ones in one piece).
  std::mt19937 rng(4242u);
  using dnnl_backend::nchw16c_arg;
  for (const ConvShape& s : {make_shape(13, 64, 14, 14, 64, 3, 1, 1), make_shape(5, 32, 7, 7, 48, 3, 1, 1),
                             make_shape(4, 16, 9, 8, 32, 3, 2, 1)}) {
    CAPTURE(s.to_string());
    const std::vector<float> x = random_floats(rng, s.x_numel()), w = random_floats(rng, s.w_numel()),
                             b = random_floats(rng, s.oc), gy = random_floats(rng, s.y_numel());
    const int64_t ihw = s.ih * s.iw, ohw = s.oh() * s.ow();
    auto to_blocked = [](const std::vector<float>& v, int64_t n, int64_t c, int64_t hw) {
      std::vector<float> r(v.size());
      metafew::tensor::nchw_to_nchw16c(v.data(), r.data(), n, c, hw);
      return r;
    };
    auto from_blocked = [](const std::vector<float>& v, int64_t n, int64_t c, int64_t hw) {
      std::vector<float> r(v.size());
      metafew::tensor::nchw16c_to_nchw(v.data(), r.data(), n, c, hw);
      return r;
    };
    const std::vector<float> xb = to_blocked(x, s.n, s.ic, ihw), gyb = to_blocked(gy, s.n, s.oc, ohw);
    std::vector<float> y(s.y_numel()), yb(s.y_numel()), gx(s.x_numel()), gxb(s.x_numel());
    std::vector<float> gw(s.w_numel()), gwb(s.w_numel()), gw2(s.w_numel());
    dnnl_backend::conv2d_forward(x.data(), w.data(), b.data(), y.data(), s, ConvLayout::blocked);
    dnnl_backend::conv2d_forward(xb.data(), w.data(), b.data(), yb.data(), s, ConvLayout::blocked, 0,
                                 nchw16c_arg(0) | nchw16c_arg(3));
    CHECK(from_blocked(yb, s.n, s.oc, ohw) == y);
    dnnl_backend::conv2d_forward(x.data(), w.data(), b.data(), yb.data(), s, ConvLayout::blocked, 0, nchw16c_arg(3));
    CHECK(from_blocked(yb, s.n, s.oc, ohw) == y);
    dnnl_backend::conv2d_backward_data(gy.data(), w.data(), gx.data(), s, ConvLayout::blocked);
    dnnl_backend::conv2d_backward_data(gyb.data(), w.data(), gxb.data(), s, ConvLayout::blocked, 0, nchw16c_arg(0));
    CHECK(gxb == gx);
    dnnl_backend::conv2d_backward_data(gyb.data(), w.data(), gxb.data(), s, ConvLayout::blocked, 0,
                                       nchw16c_arg(0) | nchw16c_arg(2));
    CHECK(from_blocked(gxb, s.n, s.ic, ihw) == gx);
    dnnl_backend::conv2d_backward_weights(x.data(), gy.data(), gw.data(), nullptr, s, ConvLayout::blocked);
    dnnl_backend::conv2d_backward_weights(xb.data(), gyb.data(), gwb.data(), nullptr, s, ConvLayout::blocked,
                                          nchw16c_arg(0) | nchw16c_arg(1));
    CHECK(gwb == gw);
    dnnl_backend::conv2d_backward_weights(x.data(), gyb.data(), gw2.data(), nullptr, s, ConvLayout::blocked,
                                          nchw16c_arg(1));
    CHECK(gw2 == gw);
  }
  const ConvShape conv2 = make_shape(5, 64, 14, 14, 64, 3, 1, 1);
  std::vector<float> x(conv2.x_numel(), 0.5f), w(conv2.w_numel(), 0.25f), y(conv2.y_numel());
  // Refused: a blocked argument of 24 channels, a blocked argument of the direct kernel, a flag naming the
  // weights.
  const ConvShape odd = make_shape(2, 24, 5, 5, 32, 3, 1, 1), first = make_shape(2, 1, 28, 28, 64, 3, 1, 1);
  std::vector<float> big(4096 * 64, 0.0f);
  CHECK_THROWS_AS(dnnl_backend::conv2d_forward(big.data(), big.data(), nullptr, big.data() + 2048 * 64, odd,
                                               ConvLayout::blocked, 0, nchw16c_arg(0)),
                  metafew::Error);
  CHECK_NOTHROW(dnnl_backend::conv2d_forward(big.data(), big.data(), nullptr, big.data() + 2048 * 64, odd,
                                             ConvLayout::blocked, 0, nchw16c_arg(3)));
  CHECK_THROWS_AS(dnnl_backend::conv2d_forward(big.data(), w.data(), nullptr, big.data() + 2048 * 64, first,
                                               ConvLayout::automatic, 0, nchw16c_arg(3)),
                  metafew::Error);
  CHECK_THROWS_AS(dnnl_backend::conv2d_forward(x.data(), w.data(), nullptr, y.data(), conv2, ConvLayout::blocked, 0,
                                               nchw16c_arg(1)),
                  metafew::Error);
  dnnl_backend::release_thread_cache();
}

TEST_CASE("oneDNN conv: plans are cached and reused") {
  dnnl_backend::release_thread_cache();
  const ConvShape s = make_shape(2, 3, 9, 9, 4, 3, 1, 1);
  std::mt19937 rng(1u);
  const Case c(s, rng);
  std::vector<float> y1(s.y_numel()), y2(s.y_numel());
  dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), nullptr, y1.data(), s);
  CHECK(dnnl_backend::thread_cache_size() == 1);
  dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), nullptr, y2.data(), s);
  CHECK(dnnl_backend::thread_cache_size() == 1);
  CHECK(y1 == y2);
  dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), c.b.data(), y2.data(), s);
  CHECK(dnnl_backend::thread_cache_size() == 2);
  dnnl_backend::release_thread_cache();
  CHECK(dnnl_backend::thread_cache_size() == 0);
}

TEST_CASE("oneDNN conv: plans sharing a thread's buffers do not disturb each other") {
  // All plans of a thread keep their blocked tensors in the same buffers. A's channel counts are not
  // multiples of 16, so its blocked tensors carry zero padding; B fills the same buffers with NaN. A must not
  // notice.
  dnnl_backend::release_thread_cache();
  const ConvShape a = make_shape(2, 3, 12, 12, 5, 3, 1, 1), b = make_shape(2, 64, 12, 12, 64, 3, 1, 1);
  std::mt19937 rng(5u);
  const Case c(a, rng);
  auto run_a = [&] {
    std::vector<float> y(a.y_numel()), gx(a.x_numel()), gw(a.w_numel());
    dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), nullptr, y.data(), a, ConvLayout::blocked);
    dnnl_backend::conv2d_backward_data(c.gy.data(), c.w.data(), gx.data(), a, ConvLayout::blocked);
    dnnl_backend::conv2d_backward_weights(c.x.data(), c.gy.data(), gw.data(), nullptr, a,
                                          ConvLayout::blocked);
    return std::vector<std::vector<float>>{y, gx, gw};
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto run_b = [&] {  // B's buffers are larger: running it first sizes the shared buffers once for both
    std::vector<float> bx(b.x_numel(), nan), bw(b.w_numel(), nan), by(b.y_numel(), nan);
    dnnl_backend::conv2d_forward(bx.data(), bw.data(), nullptr, by.data(), b, ConvLayout::blocked);
    dnnl_backend::conv2d_backward_data(by.data(), bw.data(), bx.data(), b, ConvLayout::blocked);
    dnnl_backend::conv2d_backward_weights(bx.data(), by.data(), bw.data(), nullptr, b, ConvLayout::blocked);
  };
  run_b();
  const auto first = run_a();
  run_b();
  const auto again = run_a();
  CHECK(again == first);
  CHECK(compare(first[0], c.y, c.y_abs).bad == 0);
  CHECK(compare(first[1], c.gx, c.gx_abs).bad == 0);
  CHECK(compare(first[2], c.gw, c.gw_abs).bad == 0);
  dnnl_backend::release_thread_cache();
}

TEST_CASE("oneDNN conv: invalid shapes and null buffers are refused") {
  std::vector<float> buf(64);
  ConvShape s = make_shape(1, 1, 2, 2, 1, 3, 1, 0);  // 3x3 kernel on an unpadded 2x2 image
  REQUIRE_FALSE(s.valid());
  try {
    dnnl_backend::conv2d_forward(buf.data(), buf.data(), nullptr, buf.data(), s);
    FAIL("no exception");
  } catch (const metafew::Error& e) {
    const std::string what = e.what();
    CHECK(what.find("conv2d_forward") != std::string::npos);
    CHECK(what.find("x(1,1,2,2)") != std::string::npos);
  }
  s.ph = s.pw = 1;
  REQUIRE(s.valid());
  CHECK_THROWS_AS(dnnl_backend::conv2d_backward_data(nullptr, buf.data(), buf.data(), s), metafew::Error);
  CHECK_THROWS_AS(dnnl_backend::conv2d_backward_weights(buf.data(), buf.data(), nullptr, nullptr, s),
                  metafew::Error);
}

TEST_CASE("oneDNN conv: inside an OpenMP parallel region") {
  // Each thread runs its own shapes (one thread the conv-4 layers, the other odd shapes), so the two threads
  // build and run different primitives at the same time. Results are kept and checked after the region.
  const std::vector<std::vector<ConvShape>> per_thread = {
      {make_shape(5, 1, 28, 28, 64, 3, 1, 1), make_shape(5, 64, 14, 14, 64, 3, 1, 1),
       make_shape(5, 64, 7, 7, 64, 3, 1, 1), make_shape(5, 64, 3, 3, 64, 3, 1, 1)},
      {make_shape(3, 3, 13, 11, 16, 3, 2, 1), make_shape(1, 17, 5, 5, 4, 1, 1, 0),
       make_shape(2, 64, 8, 8, 64, 3, 2, 0), make_shape(4, 16, 30, 30, 3, 3, 1, 1)}};
  std::vector<Case> cases;
  std::mt19937 rng(99u);
  for (const auto& shapes : per_thread) {
    for (const ConvShape& s : shapes) cases.emplace_back(s, rng);
  }
  const std::size_t per = per_thread[0].size();

  struct Result {
    std::vector<float> y, gx, gw;
  };
  auto run_all = [](const Case& c) {
    Result r{std::vector<float>(c.s.y_numel()), std::vector<float>(c.s.x_numel()),
             std::vector<float>(c.s.w_numel())};
    dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), nullptr, r.y.data(), c.s);
    dnnl_backend::conv2d_backward_data(c.gy.data(), c.w.data(), r.gx.data(), c.s);
    dnnl_backend::conv2d_backward_weights(c.x.data(), c.gy.data(), r.gw.data(), nullptr, c.s);
    return r;
  };

  // Serial results: outside any region, with oneDNN using all OpenMP threads, and with one thread.
  std::vector<Result> serial, single;
  for (const Case& c : cases) serial.push_back(run_all(c));
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(1);
  for (const Case& c : cases) single.push_back(run_all(c));
  omp_set_num_threads(saved_threads);

  std::vector<Result> inside(cases.size());
  std::vector<std::exception_ptr> errors(2);
  int team = 0;
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num();
#pragma omp single
    team = omp_get_num_threads();
    try {
      for (int rep = 0; rep < 2; ++rep) {  // the second round runs on cached plans
        for (std::size_t i = 0; i < per; ++i) inside[t * per + i] = run_all(cases[t * per + i]);
      }
    } catch (...) {
      errors[t] = std::current_exception();
    }
  }
  WARN_MESSAGE(team == 2, "the OpenMP runtime gave " << team << " threads instead of 2");
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }

  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    CAPTURE(c.s.to_string());
    // Inside a region oneDNN runs single-threaded, exactly like the one-thread program: all kernels agree bit
    // for bit. The forward pass has no reduction split across threads, so it also equals the multi-thread
    // run.
    CHECK(inside[i].y == single[i].y);
    CHECK(inside[i].gx == single[i].gx);
    CHECK(inside[i].gw == single[i].gw);
    CHECK(inside[i].y == serial[i].y);
    // And the results are right, not merely repeatable.
    CHECK_MESSAGE(compare(inside[i].y, c.y, c.y_abs).bad == 0, describe(compare(inside[i].y, c.y, c.y_abs)));
    CHECK_MESSAGE(compare(inside[i].gx, c.gx, c.gx_abs).bad == 0,
                  describe(compare(inside[i].gx, c.gx, c.gx_abs)));
    CHECK_MESSAGE(compare(inside[i].gw, c.gw, c.gw_abs).bad == 0,
                  describe(compare(inside[i].gw, c.gw, c.gw_abs)));
    CHECK_MESSAGE(compare(serial[i].gw, c.gw, c.gw_abs).bad == 0,
                  describe(compare(serial[i].gw, c.gw, c.gw_abs)));
  }
}

TEST_CASE("oneDNN conv: reordered weights are reused per generation and never stale") {
  dnnl_backend::release_thread_cache();
  const ConvShape s = make_shape(5, 64, 3, 3, 64, 3, 1, 1);  // conv-4's last layer: blocked, weights reordered
  REQUIRE(dnnl_backend::conv2d_layout(s, dnnl_backend::ConvKernel::forward) == ConvLayout::blocked);
  std::mt19937 rng(17u);
  const Case a(s, rng), b(s, rng);
  std::vector<float> w = a.w, y1(s.y_numel()), y2(s.y_numel()), gx(s.x_numel());
  dnnl_backend::conv2d_forward(a.x.data(), w.data(), nullptr, y1.data(), s, ConvLayout::automatic, 41);
  CHECK(dnnl_backend::thread_weights_cache_hits() == 0);
  dnnl_backend::conv2d_forward(a.x.data(), w.data(), nullptr, y2.data(), s, ConvLayout::automatic, 41);
  CHECK(dnnl_backend::thread_weights_cache_hits() == 1);
  CHECK(y1 == y2);
  CHECK(compare(y2, a.y, a.y_abs).bad == 0);
  // Backward data uses another weights layout: its own entry, then a hit.
  dnnl_backend::conv2d_backward_data(a.gy.data(), w.data(), gx.data(), s, ConvLayout::automatic, 41);
  dnnl_backend::conv2d_backward_data(a.gy.data(), w.data(), gx.data(), s, ConvLayout::automatic, 41);
  CHECK(dnnl_backend::thread_weights_cache_hits() == 2);
  CHECK(compare(gx, a.gx, a.gx_abs).bad == 0);
  // New contents in the same buffer under a new generation: reordered again, results follow the new weights.
  w = b.w;
  dnnl_backend::conv2d_forward(a.x.data(), w.data(), nullptr, y1.data(), s, ConvLayout::automatic, 42);
  CHECK(dnnl_backend::thread_weights_cache_hits() == 2);
  std::vector<double> want(s.y_numel()), want_abs(s.y_numel());
  const auto xd = to_double(a.x), wd = to_double(b.w);
  metafew::tensor::conv2d_ref(xd.data(), wd.data(), want.data(), s);
  metafew::tensor::conv2d_ref(abs_of(xd).data(), abs_of(wd).data(), want_abs.data(), s);
  CHECK(compare(y1, want, want_abs).bad == 0);
  // Generation 0 means unknown: never cached.
  dnnl_backend::conv2d_forward(a.x.data(), w.data(), nullptr, y1.data(), s, ConvLayout::automatic, 0);
  dnnl_backend::conv2d_forward(a.x.data(), w.data(), nullptr, y1.data(), s, ConvLayout::automatic, 0);
  CHECK(dnnl_backend::thread_weights_cache_hits() == 2);
  dnnl_backend::release_thread_cache();
}

TEST_CASE("conv op: an in-place update of the weights is seen by the next convolution") {
  // The optimiser's path: Variable::mutable_data() gives the storage a new generation (Note [Storage
  // generation]), so the backend's reordered copy of the old weights is not reused.
  namespace ops = metafew::ops;
  using metafew::autograd::Variable;
  using metafew::tensor::Tensor;
  dnnl_backend::release_thread_cache();
  const ConvShape s = make_shape(5, 64, 3, 3, 64, 3, 1, 1);
  std::mt19937 rng(23u);
  const Case a(s, rng), b(s, rng);
  auto tensor_of = [](const std::vector<float>& v, const metafew::tensor::Shape& shape) {
    Tensor t = Tensor::empty(shape);
    std::copy(v.begin(), v.end(), t.data<float>());
    return t;
  };
  const Variable x(tensor_of(a.x, {s.n, s.ic, s.ih, s.iw}));
  Variable w(tensor_of(a.w, {s.oc, s.ic, s.kh, s.kw}), true);
  const ops::Conv2dParams p{1, 1};
  const std::vector<double> y_a = ops::conv2d(x, w, p).data().to_vector();
  CHECK(ops::conv2d(x, w, p).data().to_vector() == y_a);
  CHECK(dnnl_backend::thread_weights_cache_hits() == 1);
  float* raw = w.mutable_data().data<float>();
  std::copy(b.w.begin(), b.w.end(), raw);
  const std::vector<double> y_b = ops::conv2d(x, w, p).data().to_vector();
  CHECK(dnnl_backend::thread_weights_cache_hits() == 1);
  std::vector<double> want(s.y_numel()), want_abs(s.y_numel());
  const auto xd = to_double(a.x), wd = to_double(b.w);
  metafew::tensor::conv2d_ref(xd.data(), wd.data(), want.data(), s);
  metafew::tensor::conv2d_ref(abs_of(xd).data(), abs_of(wd).data(), want_abs.data(), s);
  CHECK(compare(std::vector<float>(y_b.begin(), y_b.end()), want, want_abs).bad == 0);
  dnnl_backend::release_thread_cache();
}

TEST_CASE("conv op: f32 weight and bias gradients from one pass, and their derivatives") {
  using metafew::tensor::conv2d_grad_input_ref, metafew::tensor::conv2d_grad_weight_ref, metafew::tensor::conv2d_ref;
  // Note [Conv bias gradient] (ops/conv.cpp): with a bias, conv2d's backward takes gw and gb from one
  // backward-weights pass. Both must equal the separate computations, and both nodes must differentiate.
  namespace ops = metafew::ops;
  using metafew::autograd::Variable;
  using metafew::tensor::Tensor;
  for (const ConvShape& s : {make_shape(3, 1, 10, 10, 8, 3, 1, 1), make_shape(2, 16, 6, 6, 16, 3, 1, 1)}) {
    CAPTURE(s.to_string());
    std::mt19937 rng(29u);
    auto rand = [&](const metafew::tensor::Shape& shape) {
      int64_t count = 1;
      for (int64_t d : shape) count *= d;
      const auto v = random_floats(rng, count);
      Tensor t = Tensor::empty(shape);
      std::copy(v.begin(), v.end(), t.data<float>());
      return t;
    };
    const metafew::tensor::Shape yshape{s.n, s.oc, s.oh(), s.ow()};
    Variable x(rand({s.n, s.ic, s.ih, s.iw}), true), w(rand({s.oc, s.ic, 3, 3}), true), b(rand({s.oc}), true);
    Variable r(rand(yshape), true);
    const ops::Conv2dParams p{1, 1};
    Variable loss = ops::sum(ops::mul(ops::conv2d(x, w, b, p), r));
    auto g = metafew::autograd::grad({loss}, {w, b}, {}, {.create_graph = true});
    // gb = sum of r over (n, h, w), summed here in double.
    const std::vector<double> rv = r.data().to_vector(), gb = g[1].data().to_vector();
    const int64_t plane = s.oh() * s.ow();
    for (int64_t o = 0; o < s.oc; ++o) {
      double want = 0, mag = 0;
      for (int64_t n = 0; n < s.n; ++n)
        for (int64_t k = 0; k < plane; ++k) {
          const double e = rv[(n * s.oc + o) * plane + k];
          want += e, mag += std::fabs(e);
        }
      CHECK(std::fabs(gb[o] - want) <= kTolFactor * kUnitRoundoff * mag);
    }
    // Every other result against its f64 reference, within Note [Conv fuzz tolerance]'s bound (16 u times the
    // sum of |products| of that output).
    Variable u(rand({s.oc})), v(rand({s.oc, s.ic, 3, 3}));
    auto h = metafew::autograd::grad({ops::add(ops::sum(ops::mul(g[1], u)), ops::sum(ops::mul(g[0], v)))}, {r, x});
    const std::vector<double> xd = x.data().to_vector(), vd = v.data().to_vector(), uv = u.data().to_vector();
    std::vector<double> gw_ref(s.w_numel()), gw_abs(s.w_numel()), cv(s.y_numel()), cv_abs(s.y_numel()),
        gx(s.x_numel()), gx_abs(s.x_numel());
    conv2d_grad_weight_ref(xd.data(), rv.data(), gw_ref.data(), s);
    conv2d_grad_weight_ref(abs_of(xd).data(), abs_of(rv).data(), gw_abs.data(), s);
    conv2d_ref(xd.data(), vd.data(), cv.data(), s);  // d/dr sum(gw * v) = conv2d(x, v); plus u[o] from gb
    conv2d_ref(abs_of(xd).data(), abs_of(vd).data(), cv_abs.data(), s);
    conv2d_grad_input_ref(rv.data(), vd.data(), gx.data(), s);  // d/dx sum(gw * v) = conv2d_grad_input(r, v)
    conv2d_grad_input_ref(abs_of(rv).data(), abs_of(vd).data(), gx_abs.data(), s);
    for (int64_t i = 0; i < s.y_numel(); ++i) {
      const int64_t o = i / plane % s.oc;
      cv[i] += uv[o], cv_abs[i] += std::fabs(uv[o]);
    }
    auto as_float = [](const Variable& t) {
      const std::vector<double> d = t.data().to_vector();
      return std::vector<float>(d.begin(), d.end());
    };
    CHECK_MESSAGE(compare(as_float(g[0]), gw_ref, gw_abs).bad == 0, describe(compare(as_float(g[0]), gw_ref, gw_abs)));
    CHECK_MESSAGE(compare(as_float(h[0]), cv, cv_abs).bad == 0, describe(compare(as_float(h[0]), cv, cv_abs)));
    CHECK_MESSAGE(compare(as_float(h[1]), gx, gx_abs).bad == 0, describe(compare(as_float(h[1]), gx, gx_abs)));
  }
}
