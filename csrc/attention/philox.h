// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11) and the dropout keep rule shared by the CPU and CUDA attention kernels.
// Usable from host and device code.
//
// The keep decision for attention probability (b, h, i, j) is a pure function
// of (seed, offset, b * heads + h, i, j): counter = (j / 4, i, b * heads + h,
// offset), key = (seed low, seed high), and word j % 4 of the output is kept
// when it is >= dropout_threshold(rate). The backward pass regenerates the mask
// instead of storing it.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define PYBERT_HD __host__ __device__ __forceinline__
#else
#define PYBERT_HD inline
#endif

namespace pybert {
namespace attention {

// Philox4x32-10's multipliers and key increments (also used by the CPU kernels'
// AVX2 version, attention_cpu.cc).
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

struct Philox4 {
  uint32_t x[4];
};

PYBERT_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
#if defined(__CUDA_ARCH__)
  *lo = a * b;
  *hi = __umulhi(a, b);
#else
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *lo = static_cast<uint32_t>(p);
  *hi = static_cast<uint32_t>(p >> 32);
#endif
}

PYBERT_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kPhiloxM0, c0, &hi0, &lo0);
    philox_mulhilo(kPhiloxM1, c2, &hi1, &lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  Philox4 r;
  r.x[0] = c0;
  r.x[1] = c1;
  r.x[2] = c2;
  r.x[3] = c3;
  return r;
}

// Words >= threshold are kept: P(keep) = 1 - rate (to 2^-32).
PYBERT_HD uint32_t dropout_threshold(float rate) {
  if (!(rate > 0.0f)) return 0u;
  const double t = static_cast<double>(rate) * 4294967296.0;
  return t >= 4294967295.0 ? 4294967295u : static_cast<uint32_t>(t);
}

// The four Philox words covering keys 4*(j/4) .. 4*(j/4)+3 of row (bh, i).
PYBERT_HD Philox4 dropout_words(uint64_t seed, uint64_t offset, uint32_t bh, uint32_t i,
                                uint32_t j) {
  return philox4x32_10(j >> 2, i, bh, static_cast<uint32_t>(offset), static_cast<uint32_t>(seed),
                       static_cast<uint32_t>(seed >> 32));
}

PYBERT_HD bool dropout_keep(uint64_t seed, uint64_t offset, uint32_t threshold, uint32_t bh,
                            uint32_t i, uint32_t j) {
  return dropout_words(seed, offset, bh, i, j).x[j & 3] >= threshold;
}

}  // namespace attention
}  // namespace pybert
