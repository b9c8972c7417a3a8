// The CPU attention kernels' exp (csrc/attention/attention_cpu.cc) gives the same
// bits in the AVX2 and AVX-512 entry points (vminps/vmaxps clamps and a
// vroundps/vrndscaleps floor) as the baseline code (compare-and-select clamps,
// floor by conversions, compiled for baseline x86-64 here as in the kernels'
// baseline path) for every float input: all 2^32 bit patterns, NaN and
// infinities included, every output bit compared (NaN payloads too). About 20 s
// per ISA; an ISA the CPU lacks is skipped, and said so. A ctest (it includes the
// kernels' source for their internal functions, built with the same flags).
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "attention/attention_cpu.cc"  // the kernels' internal functions

using namespace pybert::attention;

namespace {

constexpr uint64_t kChunk = uint64_t{1} << 20;

// out[i] = e^x for x with the bits base + i, i < kChunk, with vectors of V.
template <typename V, bool Fast>
PYBERT_KERNEL void exp_chunk(uint64_t base, float* out) {
  constexpr int kLanes = sizeof(V) / sizeof(float);
  for (uint64_t i = 0; i < kChunk; i += kLanes) {
    uint32_t in[kLanes];
    for (int l = 0; l < kLanes; ++l) in[l] = static_cast<uint32_t>(base + i + l);
    V x;
    std::memcpy(&x, in, sizeof(x));
    const V y = vexp<Fast>(x);
    std::memcpy(out + i, &y, sizeof(y));
  }
}
__attribute__((noinline)) void exp_baseline(uint64_t base, float* out) {
  exp_chunk<Vec<float>, false>(base, out);
}
PYBERT_AVX2 __attribute__((noinline)) void exp_avx2(uint64_t base, float* out) {
  exp_chunk<Vec<float>, true>(base, out);
}
PYBERT_AVX512 __attribute__((noinline)) void exp_avx512(uint64_t base, float* out) {
  exp_chunk<VecN<float, 64>::type, true>(base, out);
}

// Inputs in [base, base + kChunk) whose outputs differ; the first few printed.
int64_t count_differ(const char* isa, uint64_t base, const float* want, const float* got,
                     int64_t printed) {
  int64_t differ = 0;
  if (std::memcmp(want, got, kChunk * sizeof(float)) == 0) return 0;
  for (uint64_t i = 0; i < kChunk; ++i) {
    uint32_t a, b;
    std::memcpy(&a, want + i, 4);
    std::memcpy(&b, got + i, 4);
    if (a == b) continue;
    if (printed + differ < 5)
      std::printf("  %s: input 0x%08x: 0x%08x, baseline 0x%08x\n", isa,
                  static_cast<uint32_t>(base + i), b, a);
    ++differ;
  }
  return differ;
}

}  // namespace

int main() {
  if (!PYBERT_EXP_ASM) std::printf("attention_exp_test: this compiler builds the portable exp only\n");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  std::vector<float> want(kChunk), got(kChunk);
  int64_t d2 = 0, d512 = 0;
  for (uint64_t base = 0; base < (uint64_t{1} << 32); base += kChunk) {
    exp_baseline(base, want.data());
    if (avx2) {
      exp_avx2(base, got.data());
      d2 += count_differ("AVX2", base, want.data(), got.data(), d2);
    }
    if (avx512) {
      exp_avx512(base, got.data());
      d512 += count_differ("AVX-512", base, want.data(), got.data(), d512);
    }
  }
  if (avx2) {
    std::printf("attention_exp_test: AVX2 exp: %" PRId64 " of 2^32 inputs differ from the baseline\n",
                d2);
  } else {
    std::printf("attention_exp_test: AVX2 exp: skipped (no AVX2 here)\n");
  }
  if (avx512) {
    std::printf("attention_exp_test: AVX-512 exp: %" PRId64
                " of 2^32 inputs differ from the baseline\n", d512);
  } else {
    std::printf("attention_exp_test: AVX-512 exp: skipped (no AVX-512 here)\n");
  }
  return d2 != 0 || d512 != 0;
}
