// The CPU attention kernels' exp (csrc/attention/attention_cpu.cc) gives the same
// bits in the AVX2 and AVX-512 entry points (vminps/vmaxps clamps and a
// vroundps/vrndscaleps floor) as in the baseline code (compare-and-select clamps,
// floor by conversions) for every float input: all 2^32 bit patterns, NaN and
// infinities included (for NaN inputs: NaN out of both). 10-25 s per ISA; an ISA
// the CPU lacks is skipped, and said so. A ctest (it includes the kernels' source
// for their internal functions, built with the same flags).
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "attention/attention_cpu.cc"  // the kernels' internal functions

using namespace pybert::attention;

namespace {

// Compares vexp<true> with vexp<false> on vectors of V over every 32-bit pattern.
template <typename V>
PYBERT_KERNEL int64_t compare_all() {
  constexpr int kLanes = sizeof(V) / sizeof(float);
  int64_t differ = 0;
  for (uint64_t base = 0; base < (uint64_t{1} << 32); base += kLanes) {
    uint32_t in[kLanes];
    for (int l = 0; l < kLanes; ++l) in[l] = static_cast<uint32_t>(base + l);
    V x;
    std::memcpy(&x, in, sizeof(x));
    const V fast = vexp<true>(x), plain = vexp<false>(x);
    if (std::memcmp(&fast, &plain, sizeof(V)) == 0) continue;
    for (int l = 0; l < kLanes; ++l) {
      const float a = fast[l], b = plain[l];
      if (a != a && b != b) continue;  // NaN from both
      uint32_t ua, ub;
      std::memcpy(&ua, &a, 4);
      std::memcpy(&ub, &b, 4);
      if (ua == ub) continue;
      if (differ < 5) std::printf("  input 0x%08x: 0x%08x vs 0x%08x\n", in[l], ua, ub);
      ++differ;
    }
  }
  return differ;
}

PYBERT_AVX2 int64_t compare_avx2() { return compare_all<Vec<float>>(); }
PYBERT_AVX512 int64_t compare_avx512() { return compare_all<VecN<float, 64>::type>(); }

}  // namespace

int main() {
  int status = 0;
  if (!PYBERT_EXP_ASM) std::printf("attention_exp_test: this compiler builds the portable exp only\n");
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    const int64_t d = compare_avx2();
    std::printf("attention_exp_test: AVX2 exp: %" PRId64 " of 2^32 inputs differ from the baseline\n", d);
    status |= d != 0;
  } else {
    std::printf("attention_exp_test: AVX2 exp: skipped (no AVX2 here)\n");
  }
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
    const int64_t d = compare_avx512();
    std::printf("attention_exp_test: AVX-512 exp: %" PRId64 " of 2^32 inputs differ from the baseline\n",
                d);
    status |= d != 0;
  } else {
    std::printf("attention_exp_test: AVX-512 exp: skipped (no AVX-512 here)\n");
  }
  return status;
}
