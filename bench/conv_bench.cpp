// conv_bench: the conv-4 Omniglot convolutions through oneDNN, three ways per kernel and shape:
//   bare     a oneDNN primitive (format_tag::any) executing on buffers already in its preferred layout, no
//            reorders: the best oneDNN can do, and the reference every other column is compared with;
//   wrapper  backend::dnnl_backend::conv2d_* from plain NCHW / OIHW buffers (reorders, caching, all
//            included);
//   engine   the same kernel as the library's ops call it (ops::conv2d, ops::conv2d_grad_input,
//            ops::conv2d_grad_weight on Variables that require gradients, recording the graph node as
//            training does, with a fresh output tensor per call from the storage cache).
// With --layouts two more columns force the wrapper's layout (blocked, plain): the measurements behind
// Note [Conv layout] in src/backend/dnnl/conv.cpp.
//
// Each cell is the median of repeated timings taking about --seconds in all. Results on stdout: a table, or
// with --json one JSON object per row.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cxxopts.hpp>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/dnnl/bare.h"
#include "backend/dnnl/context.h"
#include "backend/dnnl/conv.h"
#include "ops/ops.h"
#include "tensor/conv_shape.h"
#include "tensor/tensor.h"

namespace {

namespace be = metafew::backend::dnnl_backend;
using be::ConvKernel;
using be::ConvLayout;
using metafew::tensor::ConvShape;

struct Options {
  int threads = 0;  // 0: leave OpenMP's default
  bool json = false;
  bool quick = false;
  bool layouts = false;
  bool verbose = false;
  double seconds = 0.3;
  std::string layers;  // comma-separated layer names to run; empty: all
};

struct Layer {
  const char* name;
  int64_t ic, oc, hw;
};

// conv-4 on 28x28 Omniglot: 3x3 kernels, stride 1, padding 1; each block halves the image (max-pool).
constexpr Layer kLayers[] = {
    {"conv1", 1, 64, 28}, {"conv2", 64, 64, 14}, {"conv3", 64, 64, 7}, {"conv4", 64, 64, 3}};
// 5: one 5-way 1-shot support set; 80: a 5-way query set (5 x 16); 2560: a meta-batch of 32 such query sets.
const std::vector<int64_t> kBatches = {5, 80, 2560};
const std::vector<int64_t> kQuickBatches = {5, 80};
constexpr ConvKernel kKernels[] = {ConvKernel::forward, ConvKernel::backward_data,
                                   ConvKernel::backward_weights};

ConvShape shape_of(const Layer& l, int64_t n) {
  ConvShape s;
  s.n = n, s.ic = l.ic, s.ih = l.hw, s.iw = l.hw, s.oc = l.oc, s.kh = 3, s.kw = 3;
  s.sh = s.sw = 1, s.ph = s.pw = 1;
  return s;
}

// ---- timing -----------------------------------------------------------------------------------------------

using Runner = std::function<void()>;

struct Timing {
  double median_s = 0;
  double min_s = 0;
  int samples = 0;
  int64_t calls_per_sample = 0;
  std::vector<double> per_call_s;  // each sample's per-call time, in the order the rounds ran
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Times all runners of one row. Each gets a warm-up call (which builds its primitives) and a short estimate
// of its per-call time, from which its calls per sample are sized so that all its samples take about
// `target_s`. The samples are then taken round-robin (runner 0, 1, ..., 0, 1, ...), so a disturbance from
// other processes hits every column alike and the ratios stay meaningful on a shared machine. Reports
// per-call medians.
std::vector<Timing> measure(const std::vector<const Runner*>& runs, double target_s) {
  constexpr int kSamples = 15;
  constexpr int64_t kMinSamples = 9;
  std::vector<Timing> out(runs.size());
  for (std::size_t c = 0; c < runs.size(); ++c) {
    const Runner& run = *runs[c];
    run();
    int64_t calls = 0;
    const auto t0 = std::chrono::steady_clock::now();
    do {
      run();
      ++calls;
    } while (seconds_since(t0) < 0.02 && calls < 1000);
    const double per_call = seconds_since(t0) / static_cast<double>(calls);
    // At least kMinSamples samples, so that the slowest cells (0.05-0.3 s a call) still get a median of
    // several rounds and enough pairs for the paired ratio (see Cell::vs_bare_paired).
    const int64_t total = std::clamp<int64_t>(static_cast<int64_t>(target_s / per_call), kMinSamples, 10'000'000);
    out[c].samples = static_cast<int>(std::min<int64_t>(total, kSamples));
    out[c].calls_per_sample = std::max<int64_t>(1, total / out[c].samples);
  }
  std::vector<std::vector<double>> per(runs.size());
  for (int i = 0; i < kSamples; ++i) {
    for (std::size_t c = 0; c < runs.size(); ++c) {
      if (i >= out[c].samples) continue;
      const auto s0 = std::chrono::steady_clock::now();
      for (int64_t k = 0; k < out[c].calls_per_sample; ++k) (*runs[c])();
      per[c].push_back(seconds_since(s0) / static_cast<double>(out[c].calls_per_sample));
    }
  }
  for (std::size_t c = 0; c < runs.size(); ++c) {
    out[c].per_call_s = per[c];
    std::vector<double> v = per[c];
    std::sort(v.begin(), v.end());
    out[c].median_s = v[v.size() / 2];
    out[c].min_s = v.front();
  }
  return out;
}

// The median over rounds of a.per_call_s[i] / b.per_call_s[i] (rounds both columns sampled).
double paired_ratio(const Timing& a, const Timing& b) {
  const std::size_t n = std::min(a.per_call_s.size(), b.per_call_s.size());
  std::vector<double> r;
  for (std::size_t i = 0; i < n; ++i) r.push_back(a.per_call_s[i] / b.per_call_s[i]);
  if (r.empty()) return 0;
  std::sort(r.begin(), r.end());
  return r.size() % 2 ? r[r.size() / 2] : 0.5 * (r[r.size() / 2 - 1] + r[r.size() / 2]);
}

// ---- buffers ----------------------------------------------------------------------------------------------

// 64-byte aligned, as the library's tensors are (tensor/storage.h): a vector load that splits a cache line
// costs two, so a plain std::vector would handicap the wrapper against oneDNN's own aligned memory.
template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(std::size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) { std::free(p); }
  bool operator==(const AlignedAllocator&) const { return true; }
};
using FloatBuffer = std::vector<float, AlignedAllocator<float>>;

// Plain NCHW / OIHW buffers of one shape, filled with uniform noise in [-1, 1).
struct PlainBuffers {
  FloatBuffer x, w, y, gy, gx, gw;
  explicit PlainBuffers(const ConvShape& s)
      : x(s.x_numel()), w(s.w_numel()), y(s.y_numel()), gy(s.y_numel()), gx(s.x_numel()), gw(s.w_numel()) {
    uint64_t state = 0x9e3779b97f4a7c15ULL;
    auto fill = [&state](FloatBuffer& v) {
      for (float& f : v) {  // xorshift64: fast enough for the 500 MB tensors of the largest shapes
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        f = static_cast<float>(static_cast<double>(state >> 11) * 0x1p-52 - 1.0);
      }
    };
    fill(x), fill(w), fill(gy);
  }
};

// ---- columns ----------------------------------------------------------------------------------------------

struct Column {
  std::string name;
  Runner run;
  std::string impl;  // what runs, for --verbose and JSON
};

// A oneDNN primitive with format_tag::any on memories in the layouts it chose, filled once from the plain
// buffers (backend/dnnl/bare.h). Nothing but the primitive runs in the timed call.
Column make_bare(ConvKernel kernel, const ConvShape& s, PlainBuffers& b) {
  be::BareConv c = be::make_bare_conv(kernel, s, b.x.data(), b.w.data(), b.gy.data());
  return {"bare", std::move(c.run), std::move(c.description)};
}

// Our backend function on the plain buffers.
Column make_wrapper(const std::string& name, ConvKernel kernel, const ConvShape& s, PlainBuffers& b,
                    ConvLayout layout) {
  Runner run;
  switch (kernel) {
    case ConvKernel::forward:
      run = [&b, s, layout] { be::conv2d_forward(b.x.data(), b.w.data(), nullptr, b.y.data(), s, layout); };
      break;
    case ConvKernel::backward_data:
      run = [&b, s, layout] { be::conv2d_backward_data(b.gy.data(), b.w.data(), b.gx.data(), s, layout); };
      break;
    case ConvKernel::backward_weights:
      run = [&b, s, layout] {
        be::conv2d_backward_weights(b.x.data(), b.gy.data(), b.gw.data(), nullptr, s, layout);
      };
      break;
  }
  std::string impl =
      std::string(be::to_string(layout == ConvLayout::automatic ? be::conv2d_layout(s, kernel) : layout)) +
      ": " + be::conv2d_describe(s, kernel, /*with_bias=*/false, layout);
  return {name, std::move(run), impl};
}

// The kernel as the engine runs it: the op on Variables that require gradients (so the graph node is built
// and dropped each call, as in training), the output a fresh tensor from the storage cache. The inputs are
// copies of the plain buffers in library tensors.
Column make_engine(ConvKernel kernel, const ConvShape& s, PlainBuffers& b) {
  namespace ops = metafew::ops;
  using metafew::autograd::Variable;
  using metafew::tensor::Tensor;
  auto tensor_of = [](const FloatBuffer& v, const metafew::tensor::Shape& shape) {
    Tensor t = Tensor::empty(shape);
    std::copy(v.begin(), v.end(), t.data<float>());
    return Variable(t, /*requires_grad=*/true);
  };
  const metafew::tensor::Shape x_shape{s.n, s.ic, s.ih, s.iw}, w_shape{s.oc, s.ic, s.kh, s.kw},
      y_shape{s.n, s.oc, s.oh(), s.ow()};
  const ops::Conv2dParams p{s.sh, s.ph};
  auto x = tensor_of(b.x, x_shape), w = tensor_of(b.w, w_shape), gy = tensor_of(b.gy, y_shape);
  Runner run;
  switch (kernel) {
    case ConvKernel::forward:
      run = [x, w, p] { ops::conv2d(x, w, p); };
      break;
    case ConvKernel::backward_data:
      run = [gy, w, x_shape, p] { ops::conv2d_grad_input(gy, w, x_shape, p); };
      break;
    case ConvKernel::backward_weights:
      run = [x, gy, w_shape, p] { ops::conv2d_grad_weight(x, gy, w_shape, p); };
      break;
  }
  return {"engine", std::move(run), "ops through the autograd engine (automatic layout)"};
}

std::vector<Column> columns_for(ConvKernel kernel, const ConvShape& s, PlainBuffers& b, const Options& opt) {
  std::vector<Column> cols;
  cols.push_back(make_bare(kernel, s, b));  // first: every other column is compared with it
  cols.push_back(make_wrapper("wrapper", kernel, s, b, ConvLayout::automatic));
  if (opt.layouts) {
    cols.push_back(make_wrapper("blocked", kernel, s, b, ConvLayout::blocked));
    cols.push_back(make_wrapper("plain", kernel, s, b, ConvLayout::plain));
    if (be::conv2d_direct_supported(s, kernel)) cols.push_back(make_wrapper("direct", kernel, s, b, ConvLayout::direct));
  }
  cols.push_back(make_engine(kernel, s, b));
  return cols;
}

// ---- output -----------------------------------------------------------------------------------------------

struct Cell {
  std::string column;
  Timing timing;
  double gflops = 0;
  double vs_bare = 0;  // bare time / this time: 1.0 = as fast as bare, 0.8 = 80% of its speed
  // The median over rounds of (bare sample / this sample) within the same round: the two samples of a round
  // ran back to back, so a slowdown of the machine that lasts longer than a round (other tenants of a shared
  // host) scales both and cancels, where the ratio of the two medians can pair a fast stretch of one column
  // with a slow stretch of the other.
  double vs_bare_paired = 0;
  std::string impl;
};

struct Row {
  const Layer* layer;
  ConvShape shape;
  ConvKernel kernel;
  std::vector<Cell> cells;
};

void print_header(const Row& r) {
  std::printf("%-6s %5s %-17s", "layer", "batch", "kernel");
  for (const Cell& c : r.cells) {
    std::printf(" | %10s %7s", (c.column + " us").c_str(), "GF/s");
    if (&c != &r.cells.front()) std::printf(" %6s %6s", "x bare", "paired");
  }
  std::printf("\n");
}

void print_row(const Row& r, bool verbose) {
  std::printf("%-6s %5lld %-17s", r.layer->name, static_cast<long long>(r.shape.n), be::to_string(r.kernel));
  for (const Cell& c : r.cells) {
    std::printf(" | %10.1f %7.1f", c.timing.median_s * 1e6, c.gflops);
    if (&c != &r.cells.front()) std::printf(" %6.2f %6.2f", c.vs_bare, c.vs_bare_paired);
  }
  std::printf("\n");
  if (verbose) {
    for (const Cell& c : r.cells) std::printf("    %-8s %s\n", c.column.c_str(), c.impl.c_str());
  }
  std::fflush(stdout);
}

// The 1-minute load average when the row finished: other processes on the machine skew timings.
double load_average() {
  double load = -1;
  if (getloadavg(&load, 1) != 1) load = -1;
  return load;
}

nlohmann::json row_json(const Row& r, int threads) {
  nlohmann::json cols = nlohmann::json::object();
  for (const Cell& c : r.cells) {
    nlohmann::json j = {{"median_us", c.timing.median_s * 1e6},
                        {"min_us", c.timing.min_s * 1e6},
                        {"gflops", c.gflops},
                        {"samples", c.timing.samples},
                        {"calls_per_sample", c.timing.calls_per_sample},
                        {"impl", c.impl}};
    if (&c != &r.cells.front()) {
      j["speed_vs_bare"] = c.vs_bare;
      j["speed_vs_bare_paired"] = c.vs_bare_paired;
    }
    cols[c.column] = std::move(j);
  }
  const ConvShape& s = r.shape;
  return {{"bench", "conv"},
          {"layer", r.layer->name},
          {"n", s.n},
          {"ic", s.ic},
          {"oc", s.oc},
          {"h", s.ih},
          {"w", s.iw},
          {"k", s.kh},
          {"stride", s.sh},
          {"pad", s.ph},
          {"kernel", be::to_string(r.kernel)},
          {"macs", s.macs()},
          {"threads", threads},
          {"load_average", load_average()},
          {"onednn_version", be::onednn_version()},
          {"onednn_isa", be::onednn_isa()},
          {"columns", std::move(cols)}};
}

int run(const Options& opt) {
  if (opt.threads > 0) omp_set_num_threads(opt.threads);
  const int threads = omp_get_max_threads();
  if (!opt.json) {
    std::printf(
        "conv_bench: oneDNN %s, isa %s, %d OpenMP thread(s), ~%.2f s per cell, no bias, load average %.2f\n",
        be::onednn_version().c_str(), be::onednn_isa().c_str(), threads, opt.seconds, load_average());
  }
  bool header_done = false;
  for (const Layer& layer : kLayers) {
    if (!opt.layers.empty() &&
        ("," + opt.layers + ",").find("," + std::string(layer.name) + ",") == std::string::npos) {
      continue;
    }
    for (int64_t n : opt.quick ? kQuickBatches : kBatches) {
      const ConvShape s = shape_of(layer, n);
      PlainBuffers buffers(s);
      for (ConvKernel kernel : kKernels) {
        Row row{&layer, s, kernel, {}};
        {
          const std::vector<Column> cols = columns_for(kernel, s, buffers, opt);
          std::vector<const Runner*> runs;
          for (const Column& col : cols) runs.push_back(&col.run);
          const std::vector<Timing> timings = measure(runs, opt.seconds);
          for (std::size_t c = 0; c < cols.size(); ++c) {
            Cell cell{cols[c].name, timings[c], 0, 0, 0, cols[c].impl};
            cell.gflops = 2.0 * static_cast<double>(s.macs()) / cell.timing.median_s * 1e-9;
            row.cells.push_back(std::move(cell));
          }
        }  // bare memories freed here
        for (Cell& c : row.cells) {
          c.vs_bare = row.cells.front().timing.median_s / c.timing.median_s;
          c.vs_bare_paired = paired_ratio(row.cells.front().timing, c.timing);
        }
        if (opt.json) {
          std::cout << row_json(row, threads).dump() << std::endl;
        } else {
          if (!header_done) print_header(row), header_done = true;
          print_row(row, opt.verbose);
        }
        be::release_thread_cache();  // the largest shapes hold ~1 GB of intermediate buffers
      }
    }
  }
  if (!opt.json) std::printf("load average at the end: %.2f\n", load_average());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  cxxopts::Options spec("conv_bench", "conv-4 Omniglot convolutions: bare oneDNN vs our wrapper");
  // clang-format off
  spec.add_options()
      ("threads", "OpenMP threads (0: runtime default)",
       cxxopts::value<int>()->default_value(std::to_string(opt.threads)))
      ("json", "one JSON object per row instead of a table")
      ("quick", "batches 5 and 80 only")
      ("layouts", "add the wrapper with forced blocked and plain layouts as columns")
      ("verbose", "print the oneDNN implementation and layouts of each column")
      ("layers", "comma-separated layers to run (conv1..conv4; default all)", cxxopts::value<std::string>())
      ("seconds", "time spent per cell", cxxopts::value<double>()->default_value(std::to_string(opt.seconds)))
      ("h,help", "show this help");
  // clang-format on
  try {
    const auto args = spec.parse(argc, argv);
    if (args.count("help")) {
      std::cout << spec.help() << std::endl;
      return 0;
    }
    opt.threads = args["threads"].as<int>();
    opt.json = args.count("json") > 0;
    opt.quick = args.count("quick") > 0;
    opt.layouts = args.count("layouts") > 0;
    opt.verbose = args.count("verbose") > 0;
    opt.seconds = args["seconds"].as<double>();
    if (args.count("layers")) opt.layers = args["layers"].as<std::string>();
    if (opt.threads < 0 || !(opt.seconds > 0))
      throw cxxopts::exceptions::exception("--threads must be >= 0 and --seconds > 0");
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
