// Longer than 600 lines on purpose: this is the whole oneDNN convolution module, with its Notes (the measured
// rules for layouts, threads, the weights cache and batch chunks) beside the code they govern, and plan and
// per-thread types that no other file may see (blocked layouts never leave this module, conv.h).
#include "backend/dnnl/conv.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <tuple>
#include <functional>
#include <initializer_list>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <sstream>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/dnnl/context.h"
#include "core/error.h"
#include "tensor/blocked_layout.h"
#include "tensor/conv_single_channel.h"
#include "tensor/conv_small_image.h"
#include "tensor/serial_scope.h"

namespace metafew::backend::dnnl_backend {

// Note [Conv layout]
// User buffers are plain (NCHW / OIHW). A kernel can compute in oneDNN's preferred layout (format_tag::any:
// nChw16c / OIhw16i16o and friends here) with reorders at the boundary, or with nchw / oihw forced, where
// oneDNN 2.6 uses its GEMM (im2col) kernels and needs no reorders. bench/conv_bench --layouts measures both
// end to end on the conv-4 Omniglot shapes at batch 5, 80 and 2560 (bench/results/conv.md; 2-core AMD EPYC,
// avx512_core_bf16):
//  - 64 input channels (layers 2-4): blocked wins every kernel at every batch, by 1.3-5.0x: the JIT direct
//    kernels outrun GEMM by far more than the reorders cost.
//  - 1 input channel (layer 1), forward: the blocked kernel writes a 16-channel-blocked output that must then
//    be reordered, a second pass over the largest tensor of the network; GEMM writes NCHW directly: as fast
//    at batch 5 on two threads, 1.3-2.2x faster everywhere else.
//  - 1 input channel, backward data: oneDNN pads the 1-channel gradient to nChw16c, 16x the work; GEMM is
//    4.4-7.6x faster, and 3.6-7x faster than even the bare blocked primitive.
//  - 1 input channel, backward weights: blocked wins, by 1.0-4.3x.
// Beyond the benchmark (one thread, batch 5, 28x28 and 84x84 images): backward data is 1.7-1.8x faster with
// GEMM at 3 and 4 input channels and within noise at 8; the forward pass is as fast or faster blocked from 3
// channels.
// Rule (conv2d_layout): forward plain iff ic == 1; backward data plain iff ic < 8; backward weights blocked.
// Except: with one input channel and a 3x3 kernel, forward and backward weights run metafew's direct kernels
// (Note [Single-channel convolution] in tensor/conv_single_channel.cpp), faster than either oneDNN path and
// than the bare blocked primitive (bench/results/conv.md). And backward weights on images of at most 16
// pixels runs metafew's direct kernel (Note [Small-image weight gradient] in tensor/conv_small_image.cpp):
// on conv-4's last layer (3x3 pixels) it runs at about the bare primitive's speed at small and medium batches,
// where the blocked path loses a quarter to its reorders (figures in bench/results/conv.md).
// Nothing is timed at run time: the choice depends on the shape only, so results are reproducible.

// Note [Conv threads]
// Every oneDNN primitive here is built for, and runs on, one thread (Note [oneDNN inside a parallel region]):
// oneDNN's own threading splits reductions (backward weights over the batch) by the thread count, and metafew
// promises the same numbers at any thread count (Note [Deterministic oneDNN] in tensor/serial_scope.h). A
// call outside a parallel region with more than one OpenMP thread instead splits the work itself, into pieces
// chosen from the shape alone, and runs the pieces on the threads:
//  - forward and backward data: batch chunks (Note [Batch chunks]); images are independent.
//  - backward weights, direct algorithm: groups of 16 output channels, each the whole batch's gradient of
//    its rows of the weights. oneDNN 2.6.3's direct kernels sum every weight's gradient in the same order
//    whatever the number of output channels, so the groups give the unsplit call's weight gradient bit for
//    bit, and its bias gradient on conv-4's shapes (at 640 channels on 4x4 pixels the unsplit kernel sums
//    the bias in another order; "oneDNN conv: split backward weights equal the unsplit primitive bit for
//    bit" in tests/backend/test_conv_threads.cpp), and on one thread they cost nothing: 64->64 at
//    32x32 and batch 80 took 35.5 ms unsplit and 35.9 ms in two groups; 640->640 at 4x4 took 92 ms unsplit
//    and 52 ms in groups, the kernel keeping a group's partial sums in cache.
//  - backward weights, Winograd: batch chunks (Note [Winograd convolution]) whose partial gradients are
//    summed in chunk order.
// Since the pieces depend on the shape only and each runs the same one-thread primitive, a result is the
// same whichever thread computes which piece and however many threads there are. Convolutions of fewer than
// kOneThreadMacs multiply-adds are not split over threads: the 64->64 3x3 layer on 3x3 pixels at batch 5
// (1.7 M multiply-adds) took 22-30 us end to end on one thread and 35-57 us on two.

// Note [oneDNN inside a parallel region]
// With the OpenMP runtime oneDNN runs a primitive on the calling thread alone when it executes inside an
// active parallel region, but its kernels size their work split at creation from omp_get_max_threads(), which
// inside a region still reports the team size. A primitive created there for 2 threads and run on one hangs
// in oneDNN 2.6.3 (seen in the "inside an OpenMP parallel region" test: one thread spinning inside
// dnnl::impl::parallel for a partner that never comes). So every plan is a one-thread plan (Note [Conv
// threads]): while it is created and executed the calling thread's nthreads ICV is set to 1
// (OneThreadScope), so its primitives are built exactly as in a one-thread program, inside a region or not:
// a task gives the same numbers, bit for bit, whatever the outer thread count is.

// Note [Weights cache]
// A kernel computing in the blocked layout reorders the plain OIHW weights on every call. For the small
// layers that costs as much as the convolution (64->64 3x3 weights are 147 KB; at 3x3 pixels and batch 5 the
// reorder takes ~9 us beside ~22 us of convolution), and the same weights come back again and again: the
// meta-parameters are used by every task of a meta-batch, forward on the support set and on the query set.
// So each thread keeps the last kWeightsCacheEntries reordered weights it made, keyed by (plan, storage
// generation of w), and a call with a known key binds the kept copy and skips the reorder. A generation
// changes whenever the storage's contents may change in place (Note [Storage generation]), so a hit always
// reads what a reorder would have produced. Weights larger than kWeightsCacheMaxBytes are not kept.

// Note [Winograd convolution]
// ConvAlgorithm::winograd asks for oneDNN's Winograd kernels (F(4x4, 3x3), jit_wino_4x3 on avx512_core): a
// 3x3 convolution computed on 6x6 input tiles with 2.25-4x fewer multiplications. On ResNet-12's layers
// (one thread, batch 80, bare primitives) they ran 1.6-2.5x faster than the direct kernels in every kernel
// (e.g. 160->160 at 16x16: forward 443 vs 201 GFLOP/s-equivalent, backward data 445 vs 205, backward weights
// 275 vs 204; 640->640 at 4x4: 485 / 482 / 460 vs 204 / 242 / 153). The price is rounding: the tile
// transforms add and subtract scaled inputs, so a result's error is about four times the direct kernel's
// (relative RMS 6.6e-7 against 1.5e-7 on a 64->64 layer of ReLU inputs against the f64 reference). It is
// used where the shape allows it (3x3, stride 1, padding 1, whole 16-channel blocks, and oneDNN creates the
// primitive for it on this CPU: winograd_for), direct elsewhere; the choice depends on the shape and the CPU
// only. Forward and backward data in batch chunks give the unchunked numbers on most shapes but not all
// (640 channels at 4x4 differ), which does not matter: the chunks depend on the shape alone. Backward weights
// splits the batch into winograd_weight_chunks pieces and sums their gradients in order.
// Every execution transforms the weights again (36 floats for each 3x3 filter) and streams them through one
// product per 6x6 tile position, so a call needs enough 4x4 output tiles to pay for that. Measured on bare
// primitives (one thread, GFLOP/s-equivalent, forward / backward data / backward weights): 640->640 at 4x4
// pixels (one tile an image) ran at 38 / 66 / 61 at batch 16 and 155 / 130 / 178 at batch 64; 320->320 at
// 8x8 (4 tiles) 151 / 128 / 233 at 16 images and 231 / 174 / 240 at 64; 160->160 at 16x16 (16 tiles) 188 /
// 264 / 203 already at 16. So chunks hold at least kWinogradChunkTiles tiles and kWinogradChunkImages images
// (winograd_chunks): on ResNet-12 at 32x32, the last two blocks run unchunked at a batch of 64-80. The old
// rule (4 chunks of at least 16 images, whatever the tiles) made ResNet-12 pretraining at 32x32 1.5x
// slower at 1 thread (bench/results/speed.md).

// Note [Batch chunks]
// A blocked convolution reorders its activations into per-thread slots, runs the primitive on them and
// reorders the result back (Note [Conv layout]). When the tensors are larger than L2 (2 MB a core on the
// Intel Xeon VM), every one of those passes goes to L3 or memory: at conv-4's 64->64 layer on 14x14 pixels
// and batch 80 (4 MB per tensor) the two reorders took ~630 + ~840 us inside the engine against ~280 + ~290
// us when their data was cached, beside a ~7,700 us convolution. The JIT kernels' speed per image is the same
// from batch 5 to batch 2560 (bench/results/conv.md: e.g. 78-82 us per image at 14x14), so forward and
// backward data, where images are independent, run in chunks of at most kChunkBytes per image tensor: the
// reordered chunk is still in L2 when the primitive reads it, and the primitive's output when it is reordered
// back. Each image's result is computed by the same kernel as without chunks; chunk sizes depend on the shape
// only, so results are reproducible. When both activations are already in nChw16c there is nothing to
// reorder and the chunks only serve the threads (Note [Conv threads]): at most kMaxPieces of them. The
// weights are reordered once per call, on the calling thread, for every chunk (prepare_weights; from the
// Note [Weights cache] when the call has a generation). Backward weights sums over the batch: see Note [Conv
// threads] for how it is split.

namespace {

namespace dn = ::dnnl;
using tag = dn::memory::format_tag;
using md = dn::memory::desc;
using tensor::ConvShape;

constexpr std::size_t kAlignment = 64;

// A grow-only, 64-byte aligned byte buffer. reserve() may move the data (callers re-read data()).
class AlignedBuffer {
 public:
  void* reserve(std::size_t bytes) {
    if (bytes > capacity_) {
      const std::size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
      data_.reset();  // free first: the old contents are never needed
      void* p = std::aligned_alloc(kAlignment, rounded);
      MF_CHECK(p != nullptr, "oneDNN conv: cannot allocate ", rounded, " bytes of intermediate memory");
      data_.reset(p);
      capacity_ = rounded;
    }
    return data_.get();
  }
  void* data() const { return data_.get(); }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> data_;
  std::size_t capacity_ = 0;
};

// Slots of per-thread memory a plan binds its internal (primitive-layout) memories to. Plans run one at a
// time on a thread and need nothing from a previous call, so all plans of a thread share these buffers.
constexpr int kTensorSlots = 3;             // at most three reordered tensors per kernel
constexpr int kScratchSlot = kTensorSlots;  // the scratchpad of whichever primitive runs
constexpr int kSlots = kTensorSlots + 1;
constexpr int kUserPointers = 4;  // e.g. forward: x, w, bias, y
// Largest image tensor of one chunk of a blocked forward / backward-data call (Note [Batch chunks]).
constexpr int64_t kChunkBytes = int64_t{192} << 10;
// Convolutions with fewer multiply-adds run on the calling thread alone (Note [Conv threads]).
constexpr int64_t kOneThreadMacs = int64_t{1} << 21;  // ~2.1 M
// At most this many pieces of a call split over threads, where nothing else bounds their number.
constexpr int64_t kMaxPieces = 16;
// Backward weights is split (Note [Conv threads]) from this many multiply-adds on: direct kernels into groups
// of kGroupChannels output channels, Winograd ones into batch chunks (each a partial gradient of the weights'
// size).
constexpr int64_t kSplitWeightsMacs = int64_t{1} << 26;  // ~67 M
constexpr int64_t kGroupChannels = 16;
// Winograd calls (all three kernels): batch chunks of at least kWinogradChunkImages images and
// kWinogradChunkTiles 4x4 output tiles, at most kWinogradPieces of them (Note [Winograd convolution]).
constexpr int64_t kWinogradChunkImages = 16;
constexpr int64_t kWinogradChunkTiles = 256;
constexpr int64_t kWinogradPieces = 4;
// Note [Weights cache].
constexpr int kWeightsCacheEntries = 16;
constexpr std::size_t kWeightsCacheMaxBytes = std::size_t{4} << 20;

// A reorder metafew runs itself (Note [Blocked reorders] in tensor/blocked_layout.cpp) instead of a oneDNN
// reorder primitive: between plain nchw / oihw and nChw16c / OIhw16i16o / OIhw16o16i with whole blocks.
struct OwnReorder {
  enum class Kind { none, activations, weights } kind = Kind::none;
  bool to_blocked = false;
  int64_t dims[3] = {0, 0, 0};  // (n, c, h * w) or (o, i, kh * kw)
  tensor::WeightsBlocking blocking = tensor::WeightsBlocking::i16o16;
  dnnl_memory_t from = nullptr, to = nullptr;  // owned by the Plan
};

struct Step {
  dn::primitive primitive;            // null for an own reorder
  std::vector<dnnl_exec_arg_t> args;  // raw handles of memories owned by the Plan
  OwnReorder own;
};

// Everything one kernel call executes: reorders of the inputs, the convolution, reorders of the outputs.
struct Plan {
  std::vector<Step> steps;
  int weights_step = -1;      // index in steps of the weights reorder, or -1 (Note [Weights cache])
  dn::memory weights_memory;  // the primitive-layout weights that step writes (when weights_step >= 0)
  std::vector<std::pair<int, dn::memory>> user;  // (user pointer index, memory in the user's plain layout)
  std::vector<std::pair<int, dn::memory>> internal;  // (slot, memory in the primitive's layout or scratchpad)
  std::array<std::size_t, kSlots> slot_bytes{};
  std::string description;
};

struct PlanKey {
  ConvShape shape;
  ConvKernel kernel;
  bool bias;
  ConvLayout layout;  // resolved, never automatic
  unsigned nchw16c;   // user arguments in nChw16c (nchw16c_arg)
  bool operator==(const PlanKey&) const = default;
};

struct PlanKeyHash {
  std::size_t operator()(const PlanKey& k) const {
    std::size_t h = 0;
    auto mix = [&h](int64_t v) {
      h ^= std::hash<int64_t>{}(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    };
    const ConvShape& s = k.shape;
    for (int64_t v : {s.n, s.ic, s.ih, s.iw, s.oc, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw}) mix(v);
    mix(static_cast<int64_t>(s.algorithm));
    mix(static_cast<int64_t>(k.kernel));
    mix(k.bias);
    mix(static_cast<int64_t>(k.layout));
    mix(k.nchw16c);
    return h;
  }
};

struct WeightsEntry {
  const Plan* plan = nullptr;
  uint64_t generation = 0;  // 0: empty
  uint64_t last_use = 0;
  AlignedBuffer buffer;
};

struct ThreadState {
  std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash> plans;
  std::array<AlignedBuffer, kSlots> slots;
  // Buffers of a call split into pieces (Note [Conv threads]): the weights reordered once for all of a
  // call's chunks, the input reordered once for all output-channel groups, a group's slice of the output
  // gradient, and partial weight gradients.
  AlignedBuffer call_weights, call_input, group_gradient, partials;
  std::array<WeightsEntry, kWeightsCacheEntries> weights;
  uint64_t clock = 0;
  std::size_t weights_hits = 0;
};

ThreadState& thread_state() {
  thread_local ThreadState state;
  return state;
}

// Names the layouts that occur here; anything else prints as "blocked".
std::string layout_name(const md& d, bool weights) {
  static constexpr std::pair<tag, const char*> kAct[] = {
      {tag::nchw, "nchw"},     {tag::nhwc, "nhwc"},     {tag::nChw16c, "nChw16c"},
      {tag::nChw8c, "nChw8c"}, {tag::nChw4c, "nChw4c"}, {tag::NChw16n16c, "NChw16n16c"}};
  static constexpr std::pair<tag, const char*> kWei[] = {{tag::oihw, "oihw"},
                                                         {tag::hwio, "hwio"},
                                                         {tag::ohwi, "ohwi"},
                                                         {tag::OIhw16i16o, "OIhw16i16o"},
                                                         {tag::OIhw16o16i, "OIhw16o16i"},
                                                         {tag::Ohwi16o, "Ohwi16o"},
                                                         {tag::Oihw16o, "Oihw16o"},
                                                         {tag::OIhw8i8o, "OIhw8i8o"},
                                                         {tag::IOhw16o16i, "IOhw16o16i"},
                                                         {tag::IOhw16i16o, "IOhw16i16o"}};
  const dn::memory::dims dims = d.dims();
  if (dims.size() == 1) return "x";
  if (dims.size() != 4) return "blocked";
  auto find = [&](const auto& table) -> const char* {
    for (const auto& [t, name] : table) {
      if (md(dims, dn::memory::data_type::f32, t) == d) return name;
    }
    return "blocked";
  };
  return weights ? find(kWei) : find(kAct);
}

dn::primitive_attr user_scratchpad_attr() {
  dn::primitive_attr attr;
  attr.set_scratchpad_mode(dn::scratchpad_mode::user);
  return attr;
}

// Assembles a Plan around one primitive: each argument is bound either directly to the user's buffer (when
// the primitive's layout is the plain one) or to a slot buffer with a cached reorder at the boundary.
class PlanBuilder {
 public:
  explicit PlanBuilder(const dn::engine& engine) : engine_(engine), plan_(std::make_unique<Plan>()) {}

  void input(int arg, int user_index, const md& user_md, const md& prim_md) {
    bind(arg, user_index, user_md, prim_md, /*is_input=*/true);
  }
  void output(int arg, int user_index, const md& user_md, const md& prim_md) {
    bind(arg, user_index, user_md, prim_md, /*is_input=*/false);
  }

  std::unique_ptr<Plan> finish(const dn::primitive& primitive, const md& scratchpad_md, const char* impl) {
    add_scratchpad(main_args_, scratchpad_md);
    Plan& p = *plan_;
    p.steps = std::move(pre_);
    Step main;
    main.primitive = primitive;
    main.args = std::move(main_args_);
    p.steps.push_back(std::move(main));
    for (Step& s : post_) p.steps.push_back(std::move(s));
    std::ostringstream os;
    os << impl << description_.str() << " reorders=" << reorders_ << " (own " << own_reorders_ << ")";
    p.description = os.str();
    return std::move(plan_);
  }

 private:
  static const char* arg_name(int arg) {
    switch (arg) {
      case DNNL_ARG_SRC:
        return "src";
      case DNNL_ARG_WEIGHTS:
        return "wei";
      case DNNL_ARG_BIAS:
        return "bia";
      case DNNL_ARG_DST:
        return "dst";
      case DNNL_ARG_DIFF_SRC:
        return "diff_src";
      case DNNL_ARG_DIFF_WEIGHTS:
        return "diff_wei";
      case DNNL_ARG_DIFF_BIAS:
        return "diff_bia";
      case DNNL_ARG_DIFF_DST:
        return "diff_dst";
      default:
        return "arg";
    }
  }

  void bind(int arg, int user_index, const md& user_md, const md& prim_md, bool is_input) {
    const bool weights = arg == DNNL_ARG_WEIGHTS || arg == DNNL_ARG_DIFF_WEIGHTS;
    description_ << " " << arg_name(arg) << "=" << layout_name(prim_md, weights);
    dn::memory user_mem(user_md, engine_, DNNL_MEMORY_NONE);
    plan_->user.emplace_back(user_index, user_mem);
    if (user_md == prim_md) {
      main_args_.push_back({arg, user_mem.get()});
      return;
    }
    MF_CHECK(next_slot_ < kTensorSlots, "oneDNN conv: more than ", kTensorSlots, " reordered arguments");
    const int slot = next_slot_++;
    dn::memory prim_mem(prim_md, engine_, DNNL_MEMORY_NONE);
    plan_->internal.emplace_back(slot, prim_mem);
    plan_->slot_bytes[slot] = prim_md.get_size();
    main_args_.push_back({arg, prim_mem.get()});

    if (arg == DNNL_ARG_WEIGHTS && is_input) {
      plan_->weights_step = static_cast<int>(pre_.size());  // pre_ steps come first in Plan::steps
      plan_->weights_memory = prim_mem;
    }
    const md& from = is_input ? user_md : prim_md;
    const md& to = is_input ? prim_md : user_md;
    if (OwnReorder own = own_reorder(user_md, prim_md, weights); own.kind != OwnReorder::Kind::none) {
      own.to_blocked = is_input;
      own.from = (is_input ? user_mem : prim_mem).get();
      own.to = (is_input ? prim_mem : user_mem).get();
      Step step;
      step.own = own;
      (is_input ? pre_ : post_).push_back(std::move(step));
      ++reorders_;
      ++own_reorders_;
      return;
    }
    dn::reorder::primitive_desc rpd(engine_, from, engine_, to, user_scratchpad_attr());
    Step step;
    step.primitive = dn::reorder(rpd);
    step.args = {{DNNL_ARG_FROM, (is_input ? user_mem : prim_mem).get()},
                 {DNNL_ARG_TO, (is_input ? prim_mem : user_mem).get()}};
    add_scratchpad(step.args, rpd.scratchpad_desc());
    (is_input ? pre_ : post_).push_back(std::move(step));
    ++reorders_;
  }

  // The own reorder between the plain user layout and the primitive's, when there is one for the pair.
  static OwnReorder own_reorder(const md& user_md, const md& prim_md, bool weights) {
    OwnReorder own;
    const dn::memory::dims d = user_md.dims();
    if (d.size() != 4 || user_md.data_type() != dn::memory::data_type::f32) return own;
    const bool whole_blocks = d[1] % 16 == 0 && (!weights || d[0] % 16 == 0);
    if (!whole_blocks) return own;
    const md plain(d, dn::memory::data_type::f32, weights ? tag::oihw : tag::nchw);
    if (user_md != plain) return own;
    auto is = [&](tag t) { return prim_md == md(d, dn::memory::data_type::f32, t); };
    if (!weights && is(tag::nChw16c)) {
      own.kind = OwnReorder::Kind::activations;
    } else if (weights && (is(tag::OIhw16i16o) || is(tag::OIhw16o16i))) {
      own.kind = OwnReorder::Kind::weights;
      own.blocking = is(tag::OIhw16i16o) ? tensor::WeightsBlocking::i16o16 : tensor::WeightsBlocking::o16i16;
    } else {
      return own;
    }
    own.dims[0] = d[0];
    own.dims[1] = d[1];
    own.dims[2] = d[2] * d[3];
    return own;
  }

  void add_scratchpad(std::vector<dnnl_exec_arg_t>& args, const md& scratchpad_md) {
    const std::size_t bytes = scratchpad_md.get_size();
    if (bytes == 0) return;
    dn::memory mem(scratchpad_md, engine_, DNNL_MEMORY_NONE);
    plan_->internal.emplace_back(kScratchSlot, mem);
    plan_->slot_bytes[kScratchSlot] = std::max(plan_->slot_bytes[kScratchSlot], bytes);
    args.push_back({DNNL_ARG_SCRATCHPAD, mem.get()});
  }

  const dn::engine& engine_;
  std::unique_ptr<Plan> plan_;
  std::vector<Step> pre_, post_;
  std::vector<dnnl_exec_arg_t> main_args_;
  std::ostringstream description_;
  int next_slot_ = 0;
  int reorders_ = 0;
  int own_reorders_ = 0;  // of reorders_, run by metafew (Note [Blocked reorders])
};

// Whether `kernel` of `s` runs oneDNN's Winograd kernel (Note [Winograd convolution]): asked for, a shape its
// kernels take, and oneDNN creates the primitive (with the forward one as its hint) on this CPU. The answer
// depends on the shape and the CPU only; each thread keeps the answers it found.
bool winograd_for(const ConvShape& s, ConvKernel kernel) {
  if (s.algorithm != tensor::ConvAlgorithm::winograd || s.kh != 3 || s.kw != 3 || s.sh != 1 || s.sw != 1 ||
      s.ph != 1 || s.pw != 1 || s.ic % 16 != 0 || s.oc % 16 != 0)
    return false;
  struct Key {
    ConvShape shape;
    ConvKernel kernel;
    bool operator==(const Key&) const = default;
  };
  thread_local std::vector<std::pair<Key, bool>> known;
  const Key key{s, kernel};
  for (const auto& [k, ok] : known)
    if (k == key) return ok;
  bool ok = true;
  try {
    const OneThreadScope one_thread(true);
    using dt = dn::memory::data_type;
    const dn::engine& engine = cpu_engine();
    const md x({s.n, s.ic, s.ih, s.iw}, dt::f32, tag::any), w({s.oc, s.ic, 3, 3}, dt::f32, tag::any),
        y({s.n, s.oc, s.oh(), s.ow()}, dt::f32, tag::any);
    const auto algo = dn::algorithm::convolution_winograd;
    const dn::memory::dims strides{1, 1}, padding{1, 1};
    const dn::primitive_attr attr = user_scratchpad_attr();
    const dn::convolution_forward::primitive_desc fwd(
        {dn::prop_kind::forward_training, algo, x, w, y, strides, padding, padding}, attr, engine);
    if (kernel == ConvKernel::backward_data) {
      dn::convolution_backward_data::primitive_desc({algo, x, w, y, strides, padding, padding}, attr, engine, fwd);
    } else if (kernel == ConvKernel::backward_weights) {
      dn::convolution_backward_weights::primitive_desc({algo, x, w, y, strides, padding, padding}, attr, engine,
                                                       fwd);
    }
  } catch (const dn::error&) {
    ok = false;
  }
  known.emplace_back(key, ok);
  return ok;
}

// Positions of the activation arguments (x and y, or gx and gy) in a kernel's argument list (nchw16c_arg):
// forward x = 0, y = 3; backward data gx = 2, gy = 0; backward weights x = 0, gy = 1.
std::pair<int, int> activation_args(ConvKernel kernel) {
  switch (kernel) {
    case ConvKernel::forward:
      return {0, 3};
    case ConvKernel::backward_data:
      return {2, 0};
    case ConvKernel::backward_weights:
      return {0, 1};
  }
  return {0, 1};
}

std::unique_ptr<Plan> build_plan(const PlanKey& key) {
  const ConvShape& s = key.shape;
  const dn::engine& engine = cpu_engine();
  using dt = dn::memory::data_type;
  const dn::memory::dims x_dims{s.n, s.ic, s.ih, s.iw}, w_dims{s.oc, s.ic, s.kh, s.kw},
      y_dims{s.n, s.oc, s.oh(), s.ow()}, strides{s.sh, s.sw}, padding{s.ph, s.pw};
  const auto [x_arg, y_arg] = activation_args(key.kernel);
  auto user_tag = [&](int arg) { return key.nchw16c & nchw16c_arg(arg) ? tag::nChw16c : tag::nchw; };
  const md x_user(x_dims, dt::f32, user_tag(x_arg)), w_user(w_dims, dt::f32, tag::oihw),
      y_user(y_dims, dt::f32, user_tag(y_arg)), b_user({s.oc}, dt::f32, tag::x);
  const bool plain = key.layout == ConvLayout::plain;
  const md x_q(x_dims, dt::f32, plain ? tag::nchw : tag::any),
      w_q(w_dims, dt::f32, plain ? tag::oihw : tag::any), y_q(y_dims, dt::f32, plain ? tag::nchw : tag::any);
  const dn::primitive_attr attr = user_scratchpad_attr();
  const auto algo = winograd_for(s, key.kernel) ? dn::algorithm::convolution_winograd : dn::algorithm::convolution_direct;
  const auto prop = dn::prop_kind::forward_training;

  // The forward primitive descriptor; also the hint the backward descriptors take, so they agree on layouts.
  auto forward_pd = [&](bool with_bias) {
    const auto d =
        with_bias
            ? dn::convolution_forward::desc(prop, algo, x_q, w_q, b_user, y_q, strides, padding, padding)
            : dn::convolution_forward::desc(prop, algo, x_q, w_q, y_q, strides, padding, padding);
    return dn::convolution_forward::primitive_desc(d, attr, engine);
  };

  PlanBuilder b(engine);
  switch (key.kernel) {
    case ConvKernel::forward: {
      const auto pd = forward_pd(key.bias);
      b.input(DNNL_ARG_SRC, 0, x_user, pd.src_desc());
      b.input(DNNL_ARG_WEIGHTS, 1, w_user, pd.weights_desc());
      if (key.bias) b.input(DNNL_ARG_BIAS, 2, b_user, pd.bias_desc());
      b.output(DNNL_ARG_DST, 3, y_user, pd.dst_desc());
      return b.finish(dn::convolution_forward(pd), pd.scratchpad_desc(), pd.impl_info_str());
    }
    case ConvKernel::backward_data: {
      const auto hint = forward_pd(false);
      const dn::convolution_backward_data::desc d(algo, x_q, w_q, y_q, strides, padding, padding);
      const dn::convolution_backward_data::primitive_desc pd(d, attr, engine, hint);
      b.input(DNNL_ARG_DIFF_DST, 0, y_user, pd.diff_dst_desc());
      b.input(DNNL_ARG_WEIGHTS, 1, w_user, pd.weights_desc());
      b.output(DNNL_ARG_DIFF_SRC, 2, x_user, pd.diff_src_desc());
      return b.finish(dn::convolution_backward_data(pd), pd.scratchpad_desc(), pd.impl_info_str());
    }
    case ConvKernel::backward_weights: {
      const auto hint = forward_pd(key.bias);
      const auto d =
          key.bias
              ? dn::convolution_backward_weights::desc(algo, x_q, w_q, b_user, y_q, strides, padding, padding)
              : dn::convolution_backward_weights::desc(algo, x_q, w_q, y_q, strides, padding, padding);
      const dn::convolution_backward_weights::primitive_desc pd(d, attr, engine, hint);
      b.input(DNNL_ARG_SRC, 0, x_user, pd.src_desc());
      b.input(DNNL_ARG_DIFF_DST, 1, y_user, pd.diff_dst_desc());
      b.output(DNNL_ARG_DIFF_WEIGHTS, 2, w_user, pd.diff_weights_desc());
      if (key.bias) b.output(DNNL_ARG_DIFF_BIAS, 3, b_user, pd.diff_bias_desc());
      return b.finish(dn::convolution_backward_weights(pd), pd.scratchpad_desc(), pd.impl_info_str());
    }
  }
  MF_CHECK(false, "oneDNN conv: unknown kernel ", static_cast<int>(key.kernel));
  return nullptr;
}

}  // namespace

bool conv2d_direct_supported(const ConvShape& s, ConvKernel kernel) {
  switch (kernel) {
    case ConvKernel::forward:
      return tensor::conv_single_channel_supported(s);
    case ConvKernel::backward_weights:
      return tensor::conv_single_channel_supported(s) || tensor::conv_small_image_supported(s);
    case ConvKernel::backward_data:
      return false;
  }
  return false;
}

namespace {

PlanKey make_key(const char* op, const ConvShape& s, ConvKernel kernel, bool bias, ConvLayout layout,
                 unsigned nchw16c = 0) {
  MF_CHECK(s.valid(), op, ": invalid convolution shape ", s.to_string(),
           "; expected positive sizes and strides, non-negative padding and a kernel no larger than the "
           "padded input");
  const ConvLayout resolved = layout == ConvLayout::automatic ? conv2d_layout(s, kernel) : layout;
  MF_CHECK(resolved != ConvLayout::direct || conv2d_direct_supported(s, kernel), op,
           ": the direct layout takes only one-input-channel 3x3 forward and backward-weights kernels and "
           "small-image (at most 16 pixels per plane) backward-weights kernels, not ",
           to_string(kernel), " for ", s.to_string());
  if (nchw16c != 0) {
    MF_CHECK(resolved != ConvLayout::direct, op, ": blocked (nChw16c) arguments need a oneDNN layout, but ",
             to_string(kernel), " of ", s.to_string(), " runs the direct kernel");
    const auto [x_arg, y_arg] = activation_args(kernel);
    MF_CHECK((nchw16c & ~(nchw16c_arg(x_arg) | nchw16c_arg(y_arg))) == 0, op, ": nChw16c flags ", nchw16c,
             " name arguments that are not activations of ", to_string(kernel));
    MF_CHECK(!(nchw16c & nchw16c_arg(x_arg)) || s.ic % 16 == 0, op, ": a blocked input needs a multiple of 16 "
             "channels, got ", s.ic, " (", s.to_string(), ")");
    MF_CHECK(!(nchw16c & nchw16c_arg(y_arg)) || s.oc % 16 == 0, op, ": a blocked output needs a multiple of 16 "
             "channels, got ", s.oc, " (", s.to_string(), ")");
  }
  return PlanKey{s, kernel, bias, resolved, nchw16c};
}

Plan& find_or_build(const char* op, const PlanKey& key) {
  ThreadState& ts = thread_state();
  auto it = ts.plans.find(key);
  if (it != ts.plans.end()) return *it->second;
  std::unique_ptr<Plan> plan;
  try {
    const OneThreadScope one_thread(true);  // Note [Conv threads]
    plan = build_plan(key);
  } catch (const dn::error& e) {
    throw Error(detail::concat(op, ": oneDNN could not create a ", to_string(key.layout),
                               "-layout primitive for ", key.shape.to_string(), ": ", e.what(), " (status ",
                               static_cast<int>(e.status), ")"));
  }
  return *ts.plans.emplace(key, std::move(plan)).first->second;
}

// The cached weights of (plan, generation), or a slot to reorder them into (Note [Weights cache]). Returns
// the buffer to bind and whether it already holds the weights.
std::pair<void*, bool> weights_buffer(ThreadState& ts, const Plan& plan, uint64_t generation, std::size_t bytes) {
  WeightsEntry* victim = &ts.weights[0];
  for (WeightsEntry& e : ts.weights) {
    if (e.generation == generation && e.plan == &plan) {
      e.last_use = ++ts.clock;
      ++ts.weights_hits;
      return {e.buffer.data(), true};
    }
    if (e.last_use < victim->last_use) victim = &e;
  }
  victim->plan = &plan;
  victim->generation = generation;
  victim->last_use = ++ts.clock;
  return {victim->buffer.reserve(bytes), false};
}

void run_own_reorder(const char* op, const OwnReorder& r) {
  void* from = nullptr;
  void* to = nullptr;
  MF_CHECK(dnnl_memory_get_data_handle(r.from, &from) == dnnl_success &&
               dnnl_memory_get_data_handle(r.to, &to) == dnnl_success,
           op, ": cannot read the buffers of a reorder");
  const auto* src = static_cast<const float*>(from);
  auto* dst = static_cast<float*>(to);
  const auto [a, b, c] = r.dims;
  if (r.kind == OwnReorder::Kind::activations) {
    r.to_blocked ? tensor::nchw_to_nchw16c(src, dst, a, b, c) : tensor::nchw16c_to_nchw(src, dst, a, b, c);
  } else {
    r.to_blocked ? tensor::oihw_to_blocked(src, dst, a, b, c, r.blocking)
                 : tensor::blocked_to_oihw(src, dst, a, b, c, r.blocking);
  }
}

// Binds the user's buffers and the thread's slots to the plan's memories.
void bind_buffers(const char* op, ThreadState& ts, Plan& plan, const std::array<const void*, kUserPointers>& pointers) {
  try {
    // oneDNN reads, never writes, the input buffers: casting const away only satisfies its handle type.
    for (auto& [index, mem] : plan.user) mem.set_data_handle(const_cast<void*>(pointers[index]));
    for (int slot = 0; slot < kSlots; ++slot) ts.slots[slot].reserve(plan.slot_bytes[slot]);
    for (auto& [slot, mem] : plan.internal) {
      void* p = ts.slots[slot].data();
      if (mem.get_data_handle() != p) mem.set_data_handle(p);
    }
  } catch (const dn::error& e) {
    throw Error(detail::concat(op, ": binding buffers failed: ", e.what()));
  }
}

void run_step(const char* op, const Plan& plan, const Step& step, dnnl_stream_t stream) {
  if (step.own.kind != OwnReorder::Kind::none) {
    run_own_reorder(op, step.own);
    return;
  }
  // The C API takes the cached argument arrays as they are; the C++ execute() would rebuild a map per call.
  const dnnl_status_t st = dnnl_primitive_execute(step.primitive.get(), stream, static_cast<int>(step.args.size()),
                                                  step.args.data());
  MF_CHECK(st == dnnl_success, op, ": oneDNN execution failed with status ", static_cast<int>(st), " (",
           plan.description, ")");
}

void wait(const char* op, dnnl_stream_t stream) {
  const dnnl_status_t st = dnnl_stream_wait(stream);
  MF_CHECK(st == dnnl_success, op, ": oneDNN stream wait failed with status ", static_cast<int>(st));
}

// Runs the plan on the calling thread. ready_weights: the weights already in the primitive's layout (a split
// call's, prepare_weights), or null to reorder them here (or find them in the weights cache).
void execute(const char* op, Plan& plan, const std::array<const void*, kUserPointers>& pointers,
             uint64_t w_generation, const void* ready_weights = nullptr) {
  ThreadState& ts = thread_state();
  bind_buffers(op, ts, plan, pointers);
  int skip_step = -1;
  if (plan.weights_step >= 0) {
    try {
      const std::size_t bytes = plan.weights_memory.get_desc().get_size();
      if (ready_weights != nullptr) {
        plan.weights_memory.set_data_handle(const_cast<void*>(ready_weights));
        skip_step = plan.weights_step;
      } else if (w_generation != 0 && bytes <= kWeightsCacheMaxBytes) {
        const auto [buffer, cached] = weights_buffer(ts, plan, w_generation, bytes);
        plan.weights_memory.set_data_handle(buffer);
        if (cached) skip_step = plan.weights_step;
      }
    } catch (const dn::error& e) {
      throw Error(detail::concat(op, ": binding the weights failed: ", e.what()));
    }
  }
  const dnnl_stream_t stream = thread_stream().get();
  const OneThreadScope one_thread(true);  // Note [Conv threads]
  for (std::size_t i = 0; i < plan.steps.size(); ++i) {
    if (static_cast<int>(i) != skip_step) run_step(op, plan, plan.steps[i], stream);
  }
  wait(op, stream);
}

// The weights of a call split into pieces, in the layout of `plan`'s primitive, made once on the calling
// thread for every piece (from the weights cache when the call has a generation and they are small enough).
// Null when the plan reads the user's weights as they are.
const void* prepare_weights(const char* op, Plan& plan, const std::array<const void*, kUserPointers>& pointers,
                            uint64_t w_generation) {
  if (plan.weights_step < 0) return nullptr;
  ThreadState& ts = thread_state();
  bind_buffers(op, ts, plan, pointers);
  void* buffer = nullptr;
  bool cached = false;
  try {
    const std::size_t bytes = plan.weights_memory.get_desc().get_size();
    if (w_generation != 0 && bytes <= kWeightsCacheMaxBytes) {
      std::tie(buffer, cached) = weights_buffer(ts, plan, w_generation, bytes);
    } else {
      buffer = ts.call_weights.reserve(bytes);
    }
    plan.weights_memory.set_data_handle(buffer);
  } catch (const dn::error& e) {
    throw Error(detail::concat(op, ": binding the weights failed: ", e.what()));
  }
  if (!cached) {
    const dnnl_stream_t stream = thread_stream().get();
    const OneThreadScope one_thread(true);
    run_step(op, plan, plan.steps[plan.weights_step], stream);
    wait(op, stream);
  }
  return buffer;
}

void run_direct(const char* op, const ConvShape& s, ConvKernel kernel,
                const std::array<const void*, kUserPointers>& p) {
  auto in = [&](int i) { return static_cast<const float*>(p[i]); };
  auto out = [&](int i) { return static_cast<float*>(const_cast<void*>(p[i])); };
  switch (kernel) {
    case ConvKernel::forward:
      tensor::conv2d_single_channel(in(0), in(1), in(2), out(3), s);
      return;
    case ConvKernel::backward_weights:
      if (tensor::conv_single_channel_supported(s)) {
        tensor::conv2d_grad_weight_single_channel(in(0), in(1), out(2), out(3), s);
      } else {
        tensor::conv2d_grad_weight_small_image(in(0), in(1), out(2), out(3), s);
      }
      return;
    case ConvKernel::backward_data:
      break;
  }
  MF_CHECK(false, op, ": the direct layout has no ", to_string(kernel), " kernel");
}

// Calls fn(i) for i in [0, n): over the threads of a new parallel region when `threads`, else in order. The
// first exception thrown is rethrown once every piece has run.
template <class Fn>
void for_pieces(int64_t n, bool threads, Fn&& fn) {
  if (!threads || n < 2) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) {
    try {
      fn(i);
    } catch (...) {
#pragma omp critical(metafew_conv_pieces)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// Batch chunks of a Winograd call (Note [Winograd convolution]): as many as kWinogradPieces whose images
// hold at least kWinogradChunkTiles output tiles and kWinogradChunkImages images each, at least 1.
int64_t winograd_chunks(const ConvShape& s) {
  const int64_t tiles = ((s.oh() + 3) / 4) * ((s.ow() + 3) / 4);
  const int64_t least = std::max(kWinogradChunkImages, (kWinogradChunkTiles + tiles - 1) / tiles);
  return std::clamp<int64_t>(s.n / least, 1, kWinogradPieces);
}

// Batch chunks of a blocked forward or backward-data call (Note [Batch chunks]), from the shape and the
// blocked arguments only: Winograd's rule (winograd_chunks); else chunks small enough for L2 when there are
// reorders, otherwise kMaxPieces. An image takes c * h * w floats in nChw16c as in nchw (c a multiple of 16
// there). At most s.n.
int64_t batch_chunks(const ConvShape& s, ConvKernel kernel, unsigned nchw16c) {
  if (winograd_for(s, kernel)) return winograd_chunks(s);
  const int64_t x_image = s.ic * s.ih * s.iw, y_image = s.oc * s.oh() * s.ow();
  const auto [x_arg, y_arg] = activation_args(kernel);
  const unsigned both = nchw16c_arg(x_arg) | nchw16c_arg(y_arg);
  const int64_t per_chunk =
      (nchw16c & both) == both
          ? (s.n + kMaxPieces - 1) / kMaxPieces
          : std::max<int64_t>(1, kChunkBytes / (static_cast<int64_t>(sizeof(float)) * std::max(x_image, y_image)));
  return (s.n + per_chunk - 1) / per_chunk;
}

// Forward (x -> y) or backward data (gy -> gx) in `chunks` batch chunks, on the threads when `threads`.
void run_batch_chunks(const char* op, const ConvShape& s, ConvKernel kernel, bool bias,
                      const std::array<const void*, kUserPointers>& pointers, uint64_t w_generation,
                      unsigned nchw16c, int64_t chunks, bool threads) {
  const int64_t base = s.n / chunks, extra = s.n % chunks;  // the first `extra` chunks take one image more
  const int64_t x_image = s.ic * s.ih * s.iw, y_image = s.oc * s.oh() * s.ow();
  const int in = 0, out = kernel == ConvKernel::forward ? 3 : 2;
  const int64_t in_image = kernel == ConvKernel::forward ? x_image : y_image;
  const int64_t out_image = kernel == ConvKernel::forward ? y_image : x_image;
  auto chunk_key = [&](int64_t c) {
    ConvShape cs = s;
    cs.n = base + (c < extra ? 1 : 0);
    return PlanKey{cs, kernel, bias, ConvLayout::blocked, nchw16c};
  };
  Plan& first = find_or_build(op, chunk_key(0));
  const void* ready = prepare_weights(op, first, pointers, w_generation);
  const md ready_md = ready != nullptr ? first.weights_memory.get_desc() : md();
  for_pieces(chunks, threads, [&](int64_t c) {
    const int64_t n0 = c * base + std::min(c, extra);
    std::array<const void*, kUserPointers> p = pointers;
    p[in] = static_cast<const float*>(pointers[in]) + n0 * in_image;
    p[out] = static_cast<const float*>(pointers[out]) + n0 * out_image;
    Plan& plan = find_or_build(op, chunk_key(c));
    const bool same_layout = ready != nullptr && plan.weights_step >= 0 && plan.weights_memory.get_desc() == ready_md;
    execute(op, plan, p, w_generation, same_layout ? ready : nullptr);
  });
}

// Output-channel groups of a direct backward-weights call (Note [Conv threads]): 1 (no split) unless the
// shape is large and in whole 16-channel blocks.
int64_t weight_groups(const ConvShape& s) {
  const bool split = s.oc % kGroupChannels == 0 && s.ic % 16 == 0 && s.oc >= 2 * kGroupChannels &&
                     s.macs() >= kSplitWeightsMacs;
  return split ? s.oc / kGroupChannels : 1;
}

// Backward weights in groups of kGroupChannels output channels: x is reordered to nChw16c once, each group
// gathers its channels of gy and computes its rows of gw (and of gbias).
void run_weight_groups(const char* op, const ConvShape& s, bool bias,
                       const std::array<const void*, kUserPointers>& pointers, unsigned nchw16c, bool threads) {
  const int64_t groups = s.oc / kGroupChannels, ihw = s.ih * s.iw, ohw = s.oh() * s.ow();
  const float* x = static_cast<const float*>(pointers[0]);
  const float* gy = static_cast<const float*>(pointers[1]);
  if (!(nchw16c & nchw16c_arg(0))) {
    auto* xb = static_cast<float*>(thread_state().call_input.reserve(sizeof(float) * s.x_numel()));
    const int64_t pieces = std::min<int64_t>(s.n, kMaxPieces), per = (s.n + pieces - 1) / pieces;
    for_pieces(pieces, threads, [&](int64_t i) {
      const int64_t n0 = std::min(s.n, i * per), n1 = std::min(s.n, n0 + per);
      if (n1 > n0) tensor::nchw_to_nchw16c(x + n0 * s.ic * ihw, xb + n0 * s.ic * ihw, n1 - n0, s.ic, ihw);
    });
    x = xb;
  }
  const bool gy_blocked = nchw16c & nchw16c_arg(1);
  ConvShape gs = s;
  gs.oc = kGroupChannels;
  const PlanKey key{gs, ConvKernel::backward_weights, bias, ConvLayout::blocked, nchw16c_arg(0) | nchw16c_arg(1)};
  const int64_t w_rows = s.ic * s.kh * s.kw;
  for_pieces(groups, threads, [&](int64_t g) {
    const int64_t o0 = g * kGroupChannels, slice = kGroupChannels * ohw;
    auto* gyg = static_cast<float*>(thread_state().group_gradient.reserve(sizeof(float) * s.n * slice));
    for (int64_t n = 0; n < s.n; ++n) {
      const float* from = gy + (n * s.oc + o0) * ohw;  // the same offset in nchw and in nChw16c
      if (gy_blocked) {
        std::copy(from, from + slice, gyg + n * slice);
      } else {
        tensor::nchw_to_nchw16c(from, gyg + n * slice, 1, kGroupChannels, ohw);
      }
    }
    float* gbias = static_cast<float*>(const_cast<void*>(pointers[3]));
    const std::array<const void*, kUserPointers> p{x, gyg, static_cast<const float*>(pointers[2]) + o0 * w_rows,
                                                   bias ? gbias + o0 : nullptr};
    execute(op, find_or_build(op, key), p, 0);
  });
}

// Batch chunks of a Winograd backward-weights call (Note [Winograd convolution]): 1 (no split) for small
// calls, else winograd_chunks.
int64_t winograd_weight_chunks(const ConvShape& s) { return s.macs() < kSplitWeightsMacs ? 1 : winograd_chunks(s); }

// Winograd backward weights in batch chunks: chunk 0 writes gw (and gbias), the others partial gradients,
// added to it in chunk order.
void run_weight_chunks(const char* op, const ConvShape& s, bool bias,
                       const std::array<const void*, kUserPointers>& pointers, unsigned nchw16c, int64_t chunks,
                       bool threads) {
  const int64_t base = s.n / chunks, extra = s.n % chunks;
  const int64_t x_image = s.ic * s.ih * s.iw, y_image = s.oc * s.oh() * s.ow();
  const int64_t part = s.w_numel() + (bias ? s.oc : 0);
  auto* partials = static_cast<float*>(thread_state().partials.reserve(sizeof(float) * part * (chunks - 1)));
  float* gw = static_cast<float*>(const_cast<void*>(pointers[2]));
  float* gb = static_cast<float*>(const_cast<void*>(pointers[3]));
  for_pieces(chunks, threads, [&](int64_t c) {
    ConvShape cs = s;
    cs.n = base + (c < extra ? 1 : 0);
    const int64_t n0 = c * base + std::min(c, extra);
    float* w_out = c == 0 ? gw : partials + (c - 1) * part;
    float* b_out = !bias ? nullptr : c == 0 ? gb : w_out + s.w_numel();
    const std::array<const void*, kUserPointers> p{static_cast<const float*>(pointers[0]) + n0 * x_image,
                                                   static_cast<const float*>(pointers[1]) + n0 * y_image, w_out,
                                                   b_out};
    execute(op, find_or_build(op, PlanKey{cs, ConvKernel::backward_weights, bias, ConvLayout::blocked, nchw16c}),
            p, 0);
  });
  const int64_t pieces = threads ? kMaxPieces : 1, per = (part + pieces - 1) / pieces;
  for_pieces(pieces, threads, [&](int64_t i) {
    for (int64_t j = i * per; j < std::min(part, (i + 1) * per); ++j) {
      float* to = j < s.w_numel() ? gw + j : gb + (j - s.w_numel());
      float sum = *to;
      for (int64_t c = 1; c < chunks; ++c) sum += partials[(c - 1) * part + j];
      *to = sum;
    }
  });
}

void run(const char* op, const ConvShape& s, ConvKernel kernel, bool bias, ConvLayout layout,
         const std::array<const void*, kUserPointers>& pointers, int required, uint64_t w_generation = 0,
         unsigned nchw16c = 0) {
  const PlanKey key = make_key(op, s, kernel, bias, layout, nchw16c);
  for (int i = 0; i < kUserPointers; ++i) {
    const bool needed = (required >> i) & 1;
    MF_CHECK(!needed || pointers[i] != nullptr, op, ": buffer argument ", i, " is null for ", s.to_string());
  }
  if (key.layout == ConvLayout::direct) {
    const tensor::SerialScope serial;  // metafew's own kernels, on one thread as ever
    run_direct(op, s, kernel, pointers);
    return;
  }
  // Note [Conv threads]: pieces from the shape; threads only decide who runs them.
  const bool threads = !omp_in_parallel() && omp_get_max_threads() > 1 && s.macs() >= kOneThreadMacs;
  if (key.layout == ConvLayout::blocked) {
    if (kernel == ConvKernel::backward_weights) {
      if (winograd_for(s, kernel)) {
        if (const int64_t chunks = winograd_weight_chunks(s); chunks > 1) {
          run_weight_chunks(op, s, bias, pointers, nchw16c, chunks, threads);
          return;
        }
      } else if (weight_groups(s) > 1) {
        run_weight_groups(op, s, bias, pointers, nchw16c, threads);
        return;
      }
    } else if (const int64_t chunks = batch_chunks(s, kernel, nchw16c); chunks > 1) {
      run_batch_chunks(op, s, kernel, bias, pointers, w_generation, nchw16c, chunks, threads);
      return;
    }
  }
  execute(op, find_or_build(op, key), pointers, w_generation);
}

constexpr int bits(std::initializer_list<int> indices) {
  int m = 0;
  for (int i : indices) m |= 1 << i;
  return m;
}

}  // namespace

bool conv2d_winograd(const ConvShape& s, ConvKernel kernel) { return winograd_for(s, kernel); }

int64_t conv2d_winograd_chunks(const ConvShape& s, ConvKernel kernel) {
  return kernel == ConvKernel::backward_weights ? winograd_weight_chunks(s) : winograd_chunks(s);
}

// Note [Conv layout] states the rule and the measurements behind it.
ConvLayout conv2d_layout(const ConvShape& s, ConvKernel kernel) {
  if (winograd_for(s, kernel)) return ConvLayout::blocked;  // Note [Winograd convolution]
  const bool direct = tensor::conv_single_channel_supported(s);
  switch (kernel) {
    case ConvKernel::forward:
      return direct ? ConvLayout::direct : s.ic == 1 ? ConvLayout::plain : ConvLayout::blocked;
    case ConvKernel::backward_data:
      return s.ic < 8 ? ConvLayout::plain : ConvLayout::blocked;
    case ConvKernel::backward_weights:
      return direct || tensor::conv_small_image_supported(s) ? ConvLayout::direct : ConvLayout::blocked;
  }
  return ConvLayout::blocked;
}

void conv2d_forward(const float* x, const float* w, const float* bias, float* y, const ConvShape& s,
                    ConvLayout layout, uint64_t w_generation, unsigned nchw16c) {
  const bool with_bias = bias != nullptr;
  run("conv2d_forward (oneDNN)", s, ConvKernel::forward, with_bias, layout, {x, w, bias, y},
      with_bias ? bits({0, 1, 2, 3}) : bits({0, 1, 3}), w_generation, nchw16c);
}

void conv2d_backward_data(const float* gy, const float* w, float* gx, const ConvShape& s, ConvLayout layout,
                          uint64_t w_generation, unsigned nchw16c) {
  run("conv2d_backward_data (oneDNN)", s, ConvKernel::backward_data, false, layout, {gy, w, gx, nullptr},
      bits({0, 1, 2}), w_generation, nchw16c);
}

void conv2d_backward_weights(const float* x, const float* gy, float* gw, float* gbias, const ConvShape& s,
                             ConvLayout layout, unsigned nchw16c) {
  const bool with_bias = gbias != nullptr;
  run("conv2d_backward_weights (oneDNN)", s, ConvKernel::backward_weights, with_bias, layout,
      {x, gy, gw, gbias}, with_bias ? bits({0, 1, 2, 3}) : bits({0, 1, 2}), 0, nchw16c);
}

std::string conv2d_describe(const ConvShape& s, ConvKernel kernel, bool with_bias, ConvLayout layout) {
  const PlanKey key = make_key("conv2d_describe", s, kernel, with_bias, layout);
  if (key.layout == ConvLayout::direct) {
    return tensor::conv_single_channel_supported(s) ? "direct:single_channel src=nchw wei=oihw dst=nchw reorders=0"
                                                    : "direct:small_image src=nchw wei=oihw dst=nchw reorders=0";
  }
  return find_or_build("conv2d_describe", key).description;
}

void release_thread_cache() {
  ThreadState& ts = thread_state();
  ts.plans.clear();
  ts.slots = {};
  ts.weights = {};
  ts.weights_hits = 0;
}

std::size_t thread_weights_cache_hits() { return thread_state().weights_hits; }

std::size_t thread_cache_size() {
  return thread_state().plans.size();
}

const char* to_string(ConvKernel kernel) {
  switch (kernel) {
    case ConvKernel::forward:
      return "forward";
    case ConvKernel::backward_data:
      return "backward_data";
    case ConvKernel::backward_weights:
      return "backward_weights";
  }
  return "unknown";
}

const char* to_string(ConvLayout layout) {
  switch (layout) {
    case ConvLayout::automatic:
      return "automatic";
    case ConvLayout::blocked:
      return "blocked";
    case ConvLayout::plain:
      return "plain";
    case ConvLayout::direct:
      return "direct";
  }
  return "unknown";
}

}  // namespace metafew::backend::dnnl_backend
