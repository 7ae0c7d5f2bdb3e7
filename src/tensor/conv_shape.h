#pragma once
// The geometry of one 2-D convolution: input (n, ic, ih, iw) in NCHW, weights (oc, ic, kh, kw) in OIHW,
// symmetric zero padding, no dilation, no groups. Output (n, oc, oh, ow) in NCHW.
#include <cstdint>
#include <string>

namespace metafew::tensor {

// How the convolution is computed, which decides its rounding (Note [Winograd convolution] in
// backend/dnnl/conv.cpp): direct sums of products, or Winograd's F(4x4, 3x3) minimal filtering where the
// backend has it for the shape (3x3, stride 1, whole 16-channel blocks), direct elsewhere. The f64 reference
// kernels are always direct.
enum class ConvAlgorithm : int8_t { direct, winograd };

struct ConvShape {
  int64_t n = 1, ic = 1, ih = 1, iw = 1;  // input
  int64_t oc = 1, kh = 1, kw = 1;         // weights
  int64_t sh = 1, sw = 1;                 // stride
  int64_t ph = 0, pw = 0;                 // padding (both sides)
  ConvAlgorithm algorithm = ConvAlgorithm::direct;

  int64_t oh() const { return (ih + 2 * ph - kh) / sh + 1; }
  int64_t ow() const { return (iw + 2 * pw - kw) / sw + 1; }
  int64_t x_numel() const { return n * ic * ih * iw; }
  int64_t w_numel() const { return oc * ic * kh * kw; }
  int64_t y_numel() const { return n * oc * oh() * ow(); }
  // Multiply-adds of the forward pass (each backward kernel does the same number).
  int64_t macs() const { return n * oc * oh() * ow() * ic * kh * kw; }
  bool valid() const {
    return n > 0 && ic > 0 && ih > 0 && iw > 0 && oc > 0 && kh > 0 && kw > 0 && sh > 0 && sw > 0 && ph >= 0 &&
           pw >= 0 && ih + 2 * ph >= kh && iw + 2 * pw >= kw;
  }
  std::string to_string() const;
  bool operator==(const ConvShape&) const = default;
};

}  // namespace metafew::tensor
