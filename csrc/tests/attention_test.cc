// Host-side unit tests of the attention kernels' shared pieces (run by ctest,
// no GPU needed): Philox4x32-10 against the Random123 known-answer vectors,
// the dropout keep rule, and stride helpers. The CUDA kernels compile the same
// header for the device, so a GPU mask equals this host mask bit for bit.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>

#include "attention/params.h"
#include "attention/philox.h"

#include "tests/expect.h"

namespace {

using pybert_test::Expect;

struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t want[4];
};

}  // namespace

int main() {
  using namespace pybert::attention;
  // Random123 kat_vectors, philox4x32 with 10 rounds.
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
       {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
       {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const Kat& k : kats) {
    const Philox4 r = philox4x32_10(k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3], k.key[0], k.key[1]);
    for (int i = 0; i < 4; ++i) {
      char buf[96];
      std::snprintf(buf, sizeof(buf), "philox word %d: got %08x want %08x", i, r.x[i], k.want[i]);
      Expect(r.x[i] == k.want[i], buf);
    }
  }

  Expect(dropout_threshold(0.0f) == 0u, "rate 0 keeps everything");
  Expect(dropout_threshold(-1.0f) == 0u, "negative rate keeps everything");
  Expect(dropout_threshold(0.5f) == 0x80000000u, "rate 0.5 threshold");
  Expect(dropout_threshold(1.0f) == 0xffffffffu, "rate 1 saturates");

  // Keep share and independence of the four words of one counter.
  const float rate = 0.1f;
  const uint32_t thr = dropout_threshold(rate);
  long kept = 0, total = 0, same_as_next_row = 0;
  for (uint32_t bh = 0; bh < 4; ++bh)
    for (uint32_t i = 0; i < 256; ++i)
      for (uint32_t j = 0; j < 256; ++j) {
        const bool k = dropout_keep(1234, 7, thr, bh, i, j);
        kept += k;
        ++total;
        same_as_next_row += k == dropout_keep(1234, 7, thr, bh, i + 1, j);
      }
  const double share = static_cast<double>(kept) / total;
  Expect(std::fabs(share - 0.9) < 0.005, "keep share " + std::to_string(share));
  const double agree = static_cast<double>(same_as_next_row) / total;  // 0.82 if independent
  Expect(std::fabs(agree - 0.82) < 0.01, "rows independent: agreement " + std::to_string(agree));
  Expect(dropout_keep(1, 0, thr, 0, 0, 0) == dropout_keep(1, 0, thr, 0, 0, 0), "deterministic");
  int differ = 0;
  for (uint32_t j = 0; j < 64; ++j)
    differ += dropout_keep(1, 0, thr, 0, 0, j) != dropout_keep(1, 1, thr, 0, 0, j);
  Expect(differ > 0, "offset changes the mask");

  const Strides s = contiguous_strides(128, 12, 64);
  Expect(s.head == 64 && s.seq == 768 && s.batch == 768 * 128, "contiguous strides");

  return pybert_test::Finish("attention_test");
}
