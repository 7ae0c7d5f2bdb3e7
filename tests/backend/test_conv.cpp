// The oneDNN convolution kernels fuzzed against the naive reference, and the reference kernels checked
// against each other (adjointness) and against a hand-computed case.
#include "support/conv_cases.h"

using namespace metafew::testing::conv_cases;

TEST_CASE("conv reference: hand-computed example") {
  using metafew::tensor::conv2d_ref;
  // x = 1..9 in a 3x3 image, w = [[1, 2], [3, 4]].
  const std::vector<double> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w = {1, 2, 3, 4};
  SUBCASE("stride 1, no padding") {
    std::vector<double> y(4);
    conv2d_ref(x.data(), w.data(), y.data(), make_shape(1, 1, 3, 3, 1, 2, 1, 0));
    CHECK(y == std::vector<double>{37, 47, 67, 77});
  }
  SUBCASE("stride 2, padding 1") {
    // Padded 5x5 image, windows at rows/cols {0, 2}: the top-left one sees only x[0][0] (under w[1][1]).
    std::vector<double> y(4);
    conv2d_ref(x.data(), w.data(), y.data(), make_shape(1, 1, 3, 3, 1, 2, 2, 1));
    CHECK(y == std::vector<double>{1 * 4, 2 * 3 + 3 * 4, 4 * 2 + 7 * 4, 5 * 1 + 6 * 2 + 8 * 3 + 9 * 4});
  }
}

TEST_CASE("conv reference: the three kernels are adjoint") {
  using namespace metafew::tensor;
  std::mt19937 rng(7u);
  for (int t = 0; t < 60; ++t) {
    const ConvShape s = random_shape(rng);
    CAPTURE(s.to_string());
    const auto x = to_double(random_floats(rng, s.x_numel())), w = to_double(random_floats(rng, s.w_numel())),
               gy = to_double(random_floats(rng, s.y_numel()));
    std::vector<double> y(s.y_numel()), gx(s.x_numel()), gw(s.w_numel()), y_abs(s.y_numel());
    conv2d_ref(x.data(), w.data(), y.data(), s);
    conv2d_grad_input_ref(gy.data(), w.data(), gx.data(), s);
    conv2d_grad_weight_ref(x.data(), gy.data(), gw.data(), s);
    // Each inner product is the same sum over all (x, w, gy) triples in a different order; the sum of the
    // triples' absolute values bounds the size of every partial sum, so it is the scale for "relative".
    const auto xa = abs_of(x), wa = abs_of(w), gya = abs_of(gy);
    conv2d_ref(xa.data(), wa.data(), y_abs.data(), s);
    const double scale = dot(y_abs, gya);
    const double a = dot(y, gy), b = dot(x, gx), c = dot(w, gw);
    CHECK(std::fabs(a - b) <= 1e-12 * scale);
    CHECK(std::fabs(a - c) <= 1e-12 * scale);
  }
}

TEST_CASE("oneDNN conv: fuzz against the reference") {
  const std::vector<ConvShape> shapes = fuzz_shapes(220);
  std::mt19937 rng(12345u);
  double worst = 0, worst_direct = 0;
  int direct_shapes = 0, small_image_shapes = 0, own_reorder_shapes = 0;
  for (const ConvShape& s : shapes) {
    const Case c(s, rng);
    for (ConvLayout layout : {ConvLayout::blocked, ConvLayout::plain})
      worst = std::max(worst, check_onednn(c, layout));
    // Shapes whose blocked plans reorder with metafew's own kernels (Note [Blocked reorders]).
    const std::string plan = dnnl_backend::conv2d_describe(s, ConvKernel::backward_weights, false, ConvLayout::blocked);
    if (plan.find("(own 0)") == std::string::npos) ++own_reorder_shapes;
    if (dnnl_backend::conv2d_direct_supported(s, ConvKernel::backward_weights)) {
      worst_direct = std::max(worst_direct, check_onednn(c, ConvLayout::direct));
      ++direct_shapes;
      if (!metafew::tensor::conv_single_channel_supported(s)) ++small_image_shapes;
    }
    dnnl_backend::release_thread_cache();  // bound memory: each shape compiles its own kernels
  }
  CHECK(direct_shapes >= 30);
  CHECK(small_image_shapes >= 10);
  CHECK(own_reorder_shapes >= 20);
  MESSAGE("largest |error| / tolerance over " << shapes.size() << " shapes: " << worst << " (oneDNN), "
                                              << worst_direct << " (direct, " << direct_shapes << " shapes, "
                                              << small_image_shapes << " of them small-image)");
}

TEST_CASE("direct single-channel conv: layer-1 shapes, same bits at any thread count") {
  // Large enough that the kernels split across threads outside a region (above 2 M multiply-adds), in both
  // the max-pool network's stride 1 and MAML's stride 2 form, with an odd number of output channels.
  const ConvShape shapes[] = {make_shape(9, 1, 28, 28, 64, 3, 1, 1), make_shape(40, 1, 28, 28, 61, 3, 2, 1)};
  std::mt19937 rng(31u);
  for (const ConvShape& s : shapes) {
    CAPTURE(s.to_string());
    const Case c(s, rng);
    check_onednn(c, ConvLayout::direct);  // right (against the reference), at the default thread count
    auto run = [&](int threads) {
      const int saved = omp_get_max_threads();
      omp_set_num_threads(threads);
      std::vector<float> y(s.y_numel()), gw(s.w_numel()), gb(s.oc);
      dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), c.b.data(), y.data(), s, ConvLayout::direct);
      dnnl_backend::conv2d_backward_weights(c.x.data(), c.gy.data(), gw.data(), gb.data(), s, ConvLayout::direct);
      omp_set_num_threads(saved);
      return std::vector<std::vector<float>>{y, gw, gb};
    };
    const auto one = run(1), two = run(2), three = run(3);
    CHECK(one == two);
    CHECK(one == three);
  }
}

TEST_CASE("direct single-channel conv: shapes it does not take are refused") {
  std::vector<float> buf(4096);
  const ConvShape two_channels = make_shape(1, 2, 8, 8, 4, 3, 1, 1), five = make_shape(1, 1, 8, 8, 4, 5, 1, 2);
  for (const ConvShape& s : {two_channels, five}) {
    CHECK(dnnl_backend::conv2d_layout(s, dnnl_backend::ConvKernel::forward) != ConvLayout::direct);
    CHECK_THROWS_WITH_AS(
        dnnl_backend::conv2d_forward(buf.data(), buf.data(), nullptr, buf.data(), s, ConvLayout::direct),
        doctest::Contains("direct layout"), metafew::Error);
  }
  const ConvShape layer1 = make_shape(1, 1, 8, 8, 4, 3, 1, 1);
  CHECK(dnnl_backend::conv2d_layout(layer1, dnnl_backend::ConvKernel::forward) == ConvLayout::direct);
  CHECK(dnnl_backend::conv2d_layout(layer1, dnnl_backend::ConvKernel::backward_weights) == ConvLayout::direct);
  CHECK_THROWS_WITH_AS(dnnl_backend::conv2d_backward_data(buf.data(), buf.data(), buf.data(), layer1,
                                                          ConvLayout::direct),
                       doctest::Contains("direct layout"), metafew::Error);
}

TEST_CASE("direct small-image weight gradient: both unfoldings, same bits at any thread count") {
  // conv-4's last layer at meta-batch sizes (whole-vector unfolding; large enough to split across threads
  // outside a region), odd channel counts, stride 2, a 2x2 image, and a 1x1 kernel on a 4x4 image (the
  // per-channel unfolding).
  const ConvShape shapes[] = {make_shape(80, 64, 3, 3, 64, 3, 1, 1), make_shape(23, 37, 3, 3, 45, 3, 1, 1),
                              make_shape(30, 20, 3, 3, 70, 3, 2, 1), make_shape(9, 64, 2, 2, 33, 3, 1, 1),
                              make_shape(200, 48, 4, 4, 40, 1, 1, 0), make_shape(5, 64, 3, 3, 64, 3, 1, 1)};
  std::mt19937 rng(37u);
  for (const ConvShape& s : shapes) {
    CAPTURE(s.to_string());
    REQUIRE(dnnl_backend::conv2d_direct_supported(s, ConvKernel::backward_weights));
    CHECK(dnnl_backend::conv2d_describe(s, ConvKernel::backward_weights, true, ConvLayout::direct) ==
          "direct:small_image src=nchw wei=oihw dst=nchw reorders=0");
    const Case c(s, rng);
    check_onednn(c, ConvLayout::direct);  // right (against the reference), at the default thread count
    auto run = [&](int threads) {
      const int saved = omp_get_max_threads();
      omp_set_num_threads(threads);
      std::vector<float> gw(s.w_numel()), gb(s.oc);
      dnnl_backend::conv2d_backward_weights(c.x.data(), c.gy.data(), gw.data(), gb.data(), s, ConvLayout::direct);
      omp_set_num_threads(saved);
      return std::vector<std::vector<float>>{gw, gb};
    };
    const auto one = run(1), two = run(2), three = run(3);
    CHECK(one == two);
    CHECK(one == three);
  }
}

TEST_CASE("direct small-image weight gradient: shapes it does not take are refused") {
  std::vector<float> buf(1 << 16);
  const ConvShape small = make_shape(2, 64, 3, 3, 64, 3, 1, 1), large = make_shape(2, 8, 5, 5, 8, 3, 1, 1),
                  wide = make_shape(2, 8, 4, 4, 8, 5, 1, 2);
  CHECK(dnnl_backend::conv2d_direct_supported(small, ConvKernel::backward_weights));
  CHECK_FALSE(dnnl_backend::conv2d_direct_supported(small, ConvKernel::forward));
  CHECK_THROWS_WITH_AS(
      dnnl_backend::conv2d_forward(buf.data(), buf.data(), nullptr, buf.data(), small, ConvLayout::direct),
      doctest::Contains("direct layout"), metafew::Error);
  for (const ConvShape& s : {large, wide}) {  // 25 pixels per plane; 25 taps
    CAPTURE(s.to_string());
    CHECK(dnnl_backend::conv2d_layout(s, ConvKernel::backward_weights) == ConvLayout::blocked);
    CHECK_THROWS_WITH_AS(dnnl_backend::conv2d_backward_weights(buf.data(), buf.data(), buf.data(), nullptr, s,
                                                               ConvLayout::direct),
                         doctest::Contains("direct layout"), metafew::Error);
  }
}
