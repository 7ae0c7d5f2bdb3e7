#pragma once
// The machine's arithmetic ceiling, measured: a register-resident FMA loop on every thread.
namespace metafew::core {

// f32 GFLOP/s of independent fused multiply-adds on `threads` threads (widest vector unit the build targets),
// measured over about `seconds`. An FMA counts as 2 FLOP.
double fma_peak_gflops(int threads, double seconds = 0.2);
// The vector width the FMA loop uses, e.g. "avx512 (16 x f32)".
const char* fma_isa();

}  // namespace metafew::core
