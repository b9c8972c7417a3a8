// A C++ twin of CPython's random.Random (Modules/_randommodule.c plus the
// integer helpers of Lib/random.py), so that C++ code consuming it makes the
// same draws, in the same order, as Python code given the same seed:
//
//   seed:          Random(n) for an int n >= 0 seeds MT19937 with
//                  init_by_array(the 32-bit little-endian words of n); 0 -> [0]
//   random():      53-bit double from two outputs, (a * 2^26 + b) / 2^53
//   getrandbits(k) k <= 32: one output >> (32 - k); more: 32-bit words from
//                  the least significant up, the last one shifted down
//   _randbelow(n): k = n.bit_length(); getrandbits(k) until it is < n
//   randint, shuffle, choice: as Lib/random.py builds them on _randbelow
//
// Only the integer and random() paths are here: they are what the BERT data
// tools draw. Header-only; no Python headers.
#ifndef PYBERT_DATA_PY_RANDOM_H_
#define PYBERT_DATA_PY_RANDOM_H_

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <utility>

namespace pybert {
namespace data {

class PyRandom {
 public:
  // random.Random(seed) for 0 <= seed < 2**64.
  explicit PyRandom(uint64_t seed) {
    uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
    // CPython uses as many words as the value needs, but at least one.
    InitByArray(key, key[1] != 0 ? 2 : 1);
  }

  // random.Random.getrandbits(32) and the building block of everything else.
  uint32_t NextUint32() {
    if (index_ >= kN) Twist();
    uint32_t y = mt_[index_++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
  }

  // random.Random.random(): a double in [0, 1) with 53 random bits.
  double Random() {
    const uint32_t a = NextUint32() >> 5;
    const uint32_t b = NextUint32() >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
  }

  // random.Random.getrandbits(k) for 1 <= k <= 64.
  uint64_t GetRandBits(int k) {
    if (k <= 32) return NextUint32() >> (32 - k);
    // Two words, least significant first; only the last one is shortened.
    const uint64_t low = NextUint32();
    const uint64_t high = NextUint32() >> (64 - k);
    return low | (high << 32);
  }

  // random.Random._randbelow(n): uniform in [0, n) for n >= 1, by rejection.
  // k is n.bit_length(), not (n - 1).bit_length(): n = 1 still draws.
  uint64_t RandBelow(uint64_t n) {
    if (n == 0) throw std::invalid_argument("RandBelow: n must be >= 1");
    const int k = BitLength(n);
    uint64_t r = GetRandBits(k);
    while (r >= n) r = GetRandBits(k);
    return r;
  }

  // random.Random.randint(a, b): uniform in [a, b], a <= b.
  int64_t RandInt(int64_t a, int64_t b) {
    if (b < a) throw std::invalid_argument("RandInt: empty range");
    return a + static_cast<int64_t>(RandBelow(static_cast<uint64_t>(b - a) + 1));
  }

  // random.Random.shuffle(x) on x[0, n).
  template <typename T>
  void Shuffle(T* x, size_t n) {
    for (size_t i = n > 0 ? n - 1 : 0; i >= 1; --i) {
      const size_t j = static_cast<size_t>(RandBelow(i + 1));
      std::swap(x[i], x[j]);
    }
  }

  // The index random.Random.choice(seq) picks for len(seq) == n >= 1.
  size_t ChoiceIndex(size_t n) { return static_cast<size_t>(RandBelow(n)); }

  // int.bit_length(): 0 for 0.
  static int BitLength(uint64_t n) {
#if defined(__GNUC__) || defined(__clang__)
    return n == 0 ? 0 : 64 - __builtin_clzll(n);
#else
    int k = 0;
    while (n != 0) {
      ++k;
      n >>= 1;
    }
    return k;
#endif
  }

 private:
  static constexpr int kN = 624;
  static constexpr int kM = 397;
  static constexpr uint32_t kMatrixA = 0x9908b0dfU;
  static constexpr uint32_t kUpperMask = 0x80000000U;
  static constexpr uint32_t kLowerMask = 0x7fffffffU;

  void InitGenrand(uint32_t s) {
    mt_[0] = s;
    for (int i = 1; i < kN; ++i) {
      mt_[i] = 1812433253U * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
    }
    index_ = kN;
  }

  void InitByArray(const uint32_t* key, size_t key_length) {
    InitGenrand(19650218U);
    size_t i = 1, j = 0;
    for (size_t k = kN > key_length ? kN : key_length; k; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525U)) + key[j] +
               static_cast<uint32_t>(j);
      ++i;
      ++j;
      if (i >= kN) {
        mt_[0] = mt_[kN - 1];
        i = 1;
      }
      if (j >= key_length) j = 0;
    }
    for (size_t k = kN - 1; k; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941U)) -
               static_cast<uint32_t>(i);
      ++i;
      if (i >= kN) {
        mt_[0] = mt_[kN - 1];
        i = 1;
      }
    }
    mt_[0] = 0x80000000U;  // MSB set: the state is never all zero
  }

  // Regenerates all kN words at once (genrand_uint32's refill).
  void Twist() {
    auto mix = [](uint32_t upper, uint32_t lower) {
      const uint32_t y = (upper & kUpperMask) | (lower & kLowerMask);
      return (y >> 1) ^ ((y & 1U) ? kMatrixA : 0U);
    };
    int kk = 0;
    for (; kk < kN - kM; ++kk) mt_[kk] = mt_[kk + kM] ^ mix(mt_[kk], mt_[kk + 1]);
    for (; kk < kN - 1; ++kk) mt_[kk] = mt_[kk + (kM - kN)] ^ mix(mt_[kk], mt_[kk + 1]);
    mt_[kN - 1] = mt_[kM - 1] ^ mix(mt_[kN - 1], mt_[0]);
    index_ = 0;
  }

  uint32_t mt_[kN];
  int index_ = kN;
};

}  // namespace data
}  // namespace pybert

#endif  // PYBERT_DATA_PY_RANDOM_H_
