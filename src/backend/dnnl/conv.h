#pragma once
// f32 2-D convolution through oneDNN: the three kernels of the convolution triple (ARCHITECTURE.md, decision
// 2), each one oneDNN primitive.
//
// Buffers: x, y, gy, gx contiguous NCHW; w, gw contiguous OIHW; bias, gbias contiguous (oc); sizes from `s`
// (conv_shape.h). Blocked layouts never leave this module: when oneDNN computes in a blocked layout the data
// is reordered at the boundary (Note [Conv layout] in conv.cpp says when that happens).
//
// Threading (ARCHITECTURE.md, decision 3): every thread keeps its own primitives, reorders, intermediate
// buffers and scratchpad, created on first use of a (shape, kernel, bias, layout, blocked arguments) and reused
// afterwards, so steady-state calls allocate no buffers. Every primitive runs on one thread. Called inside an
// OpenMP parallel region a kernel runs on the calling thread only; outside one, a large call is cut into
// pieces chosen from its shape alone and the pieces run on omp_get_max_threads() threads (Note [Conv threads]
// in conv.cpp). The kernels are safe to call concurrently from different threads on different outputs.
// Results depend only on the inputs, never on the thread count or on timing.
//
// Errors: a shape with !s.valid(), a null pointer, or a oneDNN failure throws metafew::Error naming the
//         kernel
// and the shape.
#include <cstddef>
#include <cstdint>
#include <string>

#include "tensor/conv_shape.h"

namespace metafew::backend::dnnl_backend {

enum class ConvKernel { forward, backward_data, backward_weights };

// The layout a primitive computes in. User buffers are plain whatever this says.
//   blocked:   oneDNN picks (format_tag::any: nChw16c / OIhw16i16o style); reorders at the boundary.
//   plain:     nchw / oihw forced, no reorders (oneDNN then uses its GEMM-based kernels).
//   direct:    not oneDNN: metafew's own kernels for one input channel and a 3x3 kernel, forward and
//              backward weights (tensor/conv_single_channel.h, Note [Single-channel convolution]), and for
//              backward weights on images of at most 16 pixels (tensor/conv_small_image.h, Note
//              [Small-image weight gradient]). No backward-data kernel.
//   automatic: the measured rule of Note [Conv layout] (conv.cpp); what the library uses by default.
enum class ConvLayout { automatic, blocked, plain, direct };

// Weights generation (forward and backward data): 0, or the generation of the storage holding w (Note
// [Storage generation] in tensor/storage.h). With a generation, a thread keeps the weights it reordered into
// the primitive's layout and reuses them while the same generation comes back (Note [Weights cache] in
// conv.cpp): the caller promises that equal generations mean equal contents of w.

// Activations in oneDNN's blocked layout: `nchw16c` has bit i set (nchw16c_arg(i)) when buffer argument i is
// in nChw16c ([n][c / 16][h * w][16 c], tensor/blocked_layout.h) instead of NCHW, by its position in the
// kernel's argument list: forward x = 0, y = 3; backward data gy = 0, gx = 2; backward weights x = 0, gy = 1.
// A blocked computation then skips that argument's reorder (the caller keeps the data blocked between its own
// kernels, Note [Blocked conv block] in ops/norm.cpp). Such an argument's channels must be a multiple of 16,
// and the kernel's layout must not resolve to direct; otherwise the call throws.
constexpr unsigned nchw16c_arg(int i) { return 1u << i; }

// y = conv(x, w) (+ bias broadcast over n, h, w when bias != nullptr). Overwrites y.
// requires: s.valid(); x: s.x_numel(), w: s.w_numel(), bias: s.oc or nullptr, y: s.y_numel(); y aliases
//           nothing.
void conv2d_forward(const float* x, const float* w, const float* bias, float* y, const tensor::ConvShape& s,
                    ConvLayout layout = ConvLayout::automatic, uint64_t w_generation = 0, unsigned nchw16c = 0);

// gx = (d conv / d x)^T gy, the transposed convolution. Overwrites gx.
// requires: s.valid(); gy: s.y_numel(), w: s.w_numel(), gx: s.x_numel(); gx aliases nothing.
void conv2d_backward_data(const float* gy, const float* w, float* gx, const tensor::ConvShape& s,
                          ConvLayout layout = ConvLayout::automatic, uint64_t w_generation = 0,
                          unsigned nchw16c = 0);

// gw = (d conv / d w)^T gy; when gbias != nullptr also gbias[o] = sum_{n,i,j} gy[n,o,i,j]. Overwrites both.
// requires: s.valid(); x: s.x_numel(), gy: s.y_numel(), gw: s.w_numel(), gbias: s.oc or nullptr; no aliasing.
void conv2d_backward_weights(const float* x, const float* gy, float* gw, float* gbias,
                             const tensor::ConvShape& s, ConvLayout layout = ConvLayout::automatic,
                             unsigned nchw16c = 0);

// Whether ConvLayout::direct has a kernel for this shape and kernel.
bool conv2d_direct_supported(const tensor::ConvShape& s, ConvKernel kernel);

// Whether the kernel runs oneDNN's Winograd kernel for this shape (s.algorithm asks for it and the shape and
// CPU allow it; Note [Winograd convolution] in conv.cpp).
bool conv2d_winograd(const tensor::ConvShape& s, ConvKernel kernel);

// How many batch chunks a Winograd call of this shape runs in (Note [Winograd convolution]); backward weights
// splits only from a size on (Note [Conv threads]).
int64_t conv2d_winograd_chunks(const tensor::ConvShape& s, ConvKernel kernel);

// What ConvLayout::automatic resolves to for this shape and kernel (never returns automatic).
ConvLayout conv2d_layout(const tensor::ConvShape& s, ConvKernel kernel);

// For benchmarks and logs: the oneDNN implementation and the layouts this thread's cached plan uses, e.g.
// "jit:avx512_core src=nChw16c wei=OIhw16i16o dst=nChw16c reorders=3". Creates the plan when missing.
std::string conv2d_describe(const tensor::ConvShape& s, ConvKernel kernel, bool with_bias,
                            ConvLayout layout = ConvLayout::automatic);

// Drops the calling thread's cached primitives, reordered weights and buffers (the next call rebuilds them).
void release_thread_cache();

// Calls of the calling thread that found their reordered weights cached (Note [Weights cache]), since the
// thread's cache was last released; for tests and benchmarks.
std::size_t thread_weights_cache_hits();

// Number of plans (primitive + reorders) cached by the calling thread.
std::size_t thread_cache_size();

const char* to_string(ConvKernel kernel);
const char* to_string(ConvLayout layout);

}  // namespace metafew::backend::dnnl_backend
