// Runs every CUDA attention kernel configuration once under the CPU emulation,
// for ThreadSanitizer: bash bench/gpu/build_emu.sh OUTDIR with TSAN=1 builds it
// as OUTDIR/emu_racecheck, with the kernels instrumented and the emulator
// telling ThreadSanitizer what orders the CUDA threads (cuda_emu.h). A data
// race between CUDA threads (a missing __syncthreads, a cp.async into a buffer
// another warp still reads, two CTAs writing the same memory) is reported by
// ThreadSanitizer, which then exits with status 66.
//   emu_racecheck            every case (forward variants 1-13, backward 1-5,
//                            fp16/bf16/fp32, head dims 32/64/128, masks,
//                            dropout, several CTAs per head and one; and the
//                            CPU kernels, float32/float64, on 4 threads)
//   emu_racecheck --quick    the default variants and the wgmma ones (forward 11, 13, backward 5)
//   emu_racecheck --mode reverse,early,lockstep
//                            another schedule (cuda_emu.h; ThreadSanitizer
//                            looks at what orders the accesses, so the
//                            schedule matters little)
//   emu_racecheck --selftest-race [--barrier]
//                            a two-warp kernel whose warps read each other's
//                            shared memory, without (a race) or with the
//                            barrier in between (emu_selftest.cc)
// Exit status 1 when a launch fails (the failure is printed). Numerical results
// are checked elsewhere (bench/gpu/check_attention.py --emu).
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

extern "C" {
int pybert_attn_forward(int dtype, int batch, int heads, int seq_q, int seq_k, int head_dim,
                        const void* q, const void* k, const void* v, const int32_t* mask, void* out,
                        float* lse, const long long* strides, float scale, float dropout_rate,
                        unsigned long long seed, unsigned long long offset, int fwd_variant,
                        void* stream, char* err, int err_len);
long long pybert_attn_backward_workspace_bytes(int dtype, int batch, int heads, int seq_q,
                                               int seq_k, int head_dim);
int pybert_attn_backward(int dtype, int batch, int heads, int seq_q, int seq_k, int head_dim,
                         const void* q, const void* k, const void* v, const int32_t* mask,
                         const void* out, const float* lse, const void* dout, void* dq, void* dk,
                         void* dv, void* workspace, const long long* strides, float scale,
                         float dropout_rate, unsigned long long seed, unsigned long long offset,
                         int bwd_variant, void* stream, char* err, int err_len);
int pybert_emu_selftest_neighbour(int warps, int tag, int barrier, int* out, char* err,
                                  int err_len);
void pybert_emu_set_mode(int reverse_order, int late_cp_async, int lockstep);
int pybert_attn_cpu_forward(int dtype, int batch, int heads, int seq_q, int seq_k, int head_dim,
                            const void* q, const void* k, const void* v, const int32_t* mask,
                            void* out, float* lse, const long long* strides, float scale,
                            float dropout_rate, unsigned long long seed, unsigned long long offset,
                            int num_threads, char* err, int err_len);
int pybert_attn_cpu_backward(int dtype, int batch, int heads, int seq_q, int seq_k, int head_dim,
                             const void* q, const void* k, const void* v, const int32_t* mask,
                             const void* out, const float* lse, const void* dout, void* dq,
                             void* dk, void* dv, const long long* strides, float scale,
                             float dropout_rate, unsigned long long seed,
                             unsigned long long offset, int num_threads, char* err, int err_len);
}

namespace {

enum DType { kF32 = 0, kF16 = 1, kBF16 = 2, kF64 = 3 };
enum MaskKind { kNoMask, kPadded, kHoles };

const char* dtype_name(int d) {
  return d == kF32 ? "fp32" : d == kF16 ? "fp16" : d == kBF16 ? "bf16" : "fp64";
}
size_t elem_size(int d) { return d == kF64 ? 8 : d == kF32 ? 4 : 2; }
const char* mask_name(int m) { return m == kNoMask ? "none" : m == kPadded ? "padded" : "holes"; }

struct Case {
  int dtype, batch, heads, seq_q, seq_k, head_dim, mask;
  float dropout;
  int fwd_variant, bwd_variant;
  bool cpu = false;  // the CPU kernels (attention_cpu.cc) on 4 threads instead
};

// Random tensor [batch, seq, heads, head_dim] in the dtype's bits.
std::vector<unsigned char> random_tensor(int dtype, size_t n, std::mt19937* rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const size_t es = elem_size(dtype);
  std::vector<unsigned char> t(n * es);
  for (size_t i = 0; i < n; ++i) {
    const float x = u(*rng);
    if (dtype == kF32) {
      std::memcpy(&t[i * 4], &x, 4);
    } else if (dtype == kF64) {
      const double d = x;
      std::memcpy(&t[i * 8], &d, 8);
    } else if (dtype == kF16) {
      const __half h = __float2half_rn(x);
      std::memcpy(&t[i * 2], &h, 2);
    } else {
      uint32_t bits;
      std::memcpy(&bits, &x, 4);
      const uint16_t b = static_cast<uint16_t>(bits >> 16);  // truncation is fine for inputs
      std::memcpy(&t[i * 2], &b, 2);
    }
  }
  return t;
}

// Batch 0: every key (or random holes); batch 1: 5/8 of the keys (or none).
std::vector<int32_t> make_mask(int kind, int batch, int seq_k, std::mt19937* rng) {
  std::vector<int32_t> m(static_cast<size_t>(batch) * seq_k, 1);
  for (int b = 0; b < batch; ++b)
    for (int j = 0; j < seq_k; ++j) {
      int32_t& x = m[static_cast<size_t>(b) * seq_k + j];
      if (kind == kPadded) x = b % 2 == 0 || j < seq_k * 5 / 8;
      if (kind == kHoles) x = b % 2 == 0 ? ((*rng)() % 4 != 0) : 0;
    }
  return m;
}

bool run_case(const Case& c, std::mt19937* rng) {
  const size_t nq = static_cast<size_t>(c.batch) * c.seq_q * c.heads * c.head_dim;
  const size_t nk = static_cast<size_t>(c.batch) * c.seq_k * c.heads * c.head_dim;
  auto q = random_tensor(c.dtype, nq, rng), k = random_tensor(c.dtype, nk, rng),
       v = random_tensor(c.dtype, nk, rng), dout = random_tensor(c.dtype, nq, rng);
  const size_t es = elem_size(c.dtype);
  std::vector<unsigned char> out(nq * es), dq(nq * es), dk(nk * es), dv(nk * es);
  std::vector<float> lse(static_cast<size_t>(c.batch) * c.heads * c.seq_q);
  const std::vector<int32_t> mask = make_mask(c.mask, c.batch, c.seq_k, rng);
  const long long hd = c.head_dim;
  const long long sq[3] = {c.seq_q * c.heads * hd, c.heads * hd, hd};
  const long long sk[3] = {c.seq_k * c.heads * hd, c.heads * hd, hd};
  long long strides[24];
  for (int t = 0; t < 8; ++t)  // q k v out dout dq dk dv
    std::memcpy(strides + 3 * t, (t == 1 || t == 2 || t == 6 || t == 7) ? sk : sq, sizeof(sq));
  const float scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  const int32_t* mp = c.mask == kNoMask ? nullptr : mask.data();
  char err[1024] = "";
  char name[256];
  std::snprintf(name, sizeof(name), "%s%s B%d H%d Sq%d Sk%d D%d mask=%s dropout=%g fwd=%d bwd=%d",
                c.cpu ? "cpu " : "", dtype_name(c.dtype), c.batch, c.heads, c.seq_q, c.seq_k,
                c.head_dim, mask_name(c.mask), c.dropout, c.fwd_variant, c.bwd_variant);
  // the CUDA kernels (through the emulation), or the CPU kernels on 4 threads
  const char* what = "forward";
  int rc = c.cpu ? pybert_attn_cpu_forward(c.dtype, c.batch, c.heads, c.seq_q, c.seq_k,
                                           c.head_dim, q.data(), k.data(), v.data(), mp,
                                           out.data(), lse.data(), strides, scale, c.dropout,
                                           1234, 0, 4, err, sizeof(err))
                 : pybert_attn_forward(c.dtype, c.batch, c.heads, c.seq_q, c.seq_k, c.head_dim,
                                       q.data(), k.data(), v.data(), mp, out.data(), lse.data(),
                                       strides, scale, c.dropout, 1234, 0, c.fwd_variant,
                                       nullptr, err, sizeof(err));
  if (rc == 0) {
    what = "backward";
    if (c.cpu) {
      rc = pybert_attn_cpu_backward(c.dtype, c.batch, c.heads, c.seq_q, c.seq_k, c.head_dim,
                                    q.data(), k.data(), v.data(), mp, out.data(), lse.data(),
                                    dout.data(), dq.data(), dk.data(), dv.data(), strides, scale,
                                    c.dropout, 1234, 0, 4, err, sizeof(err));
    } else {
      std::vector<unsigned char> ws(static_cast<size_t>(pybert_attn_backward_workspace_bytes(
          c.dtype, c.batch, c.heads, c.seq_q, c.seq_k, c.head_dim)));
      rc = pybert_attn_backward(c.dtype, c.batch, c.heads, c.seq_q, c.seq_k, c.head_dim,
                                q.data(), k.data(), v.data(), mp, out.data(), lse.data(),
                                dout.data(), dq.data(), dk.data(), dv.data(), ws.data(), strides,
                                scale, c.dropout, 1234, 0, c.bwd_variant, nullptr, err,
                                sizeof(err));
    }
  }
  if (rc != 0) {
    std::printf("FAILED %s %s: %s\n", what, name, err);
    return false;
  }
  std::printf("ok %s\n", name);
  std::fflush(stdout);
  return true;
}

std::vector<Case> cases(bool quick) {
  std::vector<Case> cs;
  for (int dtype : {kF16, kBF16}) {
    for (int d : {32, 64, 128}) {
      // every forward variant (with the default backward), 131 queries and keys:
      // partial tiles, several key tiles per CTA, padded rows
      // (10-13, the wgmma kernels, exist for head dim 64; --quick runs 11,
      // whose two warpgroups share the K/V buffers, in fp16: the dtype does
      // not change what orders the threads)
      const bool wg_quick = d == 64 && dtype == kF16;
      const std::vector<int> fwd =
          quick    ? (wg_quick ? std::vector<int>{0, 11} : std::vector<int>{0})
          : d == 64 ? std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
          : d == 32 ? std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9}
                    : std::vector<int>{1, 2, 3, 5};
      for (int fv : fwd) cs.push_back({dtype, 2, 1, 131, 131, d, kPadded, 0.f, fv, 0});
      // the three-buffer wgmma variants reuse a K/V buffer from the 4th key
      // tile on: 500 keys (--quick: 13, two warpgroups sharing the ring)
      if (d == 64 && (!quick || wg_quick))
        for (int fv : quick ? std::vector<int>{13} : std::vector<int>{12, 13})
          cs.push_back({dtype, 2, 1, 131, 500, d, kPadded, 0.f, fv, 0});
      // every backward variant: several key CTAs per head (131 keys; dQ by
      // atomics, staggered query order) and one (48 keys; dQ written directly)
      // (5, the wgmma kernel, exists for head dim 64; --quick runs it in fp16)
      const std::vector<int> bwd = quick ? (wg_quick ? std::vector<int>{0, 5} : std::vector<int>{0})
                                         : d == 64  ? std::vector<int>{1, 2, 3, 4, 5}
                                         : d == 32  ? std::vector<int>{1, 2, 3}
                                                    : std::vector<int>{1};
      for (int bv : bwd) {
        cs.push_back({dtype, 2, 1, 131, 131, d, kHoles, 0.f, 0, bv});
        cs.push_back({dtype, 2, 1, 48, 48, d, kPadded, 0.f, 0, bv});
      }
      // dropout; no mask, two heads, queries != keys
      cs.push_back({dtype, 2, 1, 131, 131, d, kPadded, 0.1f, 0, 0});
      cs.push_back({dtype, 1, 2, 70, 200, d, kNoMask, 0.f, 0, 0});
    }
  }
  for (int d : {32, 64, 128}) cs.push_back({kF32, 2, 1, 37, 45, d, kHoles, 0.1f, 0, 0});
  // the CPU kernels: 2 x 3 (batch, head) items for the backward's threads, 300
  // queries = two 256-row chunks for the forward's
  for (int dtype : {kF32, kF64}) {
    Case c{dtype, 2, 3, 300, 130, 64, kPadded, 0.f, 0, 0};
    c.cpu = true;
    cs.push_back(c);
    c.mask = kHoles;
    c.dropout = 0.1f;
    cs.push_back(c);
  }
  return cs;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, selftest = false, barrier = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--selftest-race") {
      selftest = true;
    } else if (a == "--barrier") {
      barrier = true;
    } else if (a == "--mode" && i + 1 < argc) {
      const std::string m = argv[++i];
      bool reverse = false, early = false, lockstep = false;
      size_t pos = 0;
      while (pos <= m.size()) {
        const size_t end = std::min(m.find(',', pos), m.size());
        const std::string tok = m.substr(pos, end - pos);
        if (tok == "reverse" || tok == "forward") {
          reverse = tok == "reverse";
        } else if (tok == "early" || tok == "late") {
          early = tok == "early";
        } else if (tok == "lockstep" || tok == "warps") {
          lockstep = tok == "lockstep";
        } else {
          std::fprintf(stderr,
                       "emu_racecheck: --mode %s: '%s' is not one of forward, reverse, early, "
                       "late, warps, lockstep\n", m.c_str(), tok.c_str());
          return 2;
        }
        pos = end + 1;
      }
      pybert_emu_set_mode(reverse, !early, lockstep);
      std::printf("mode %s%s%s\n", reverse ? "reverse" : "forward", early ? ",early" : ",late",
                  lockstep ? ",lockstep" : ",warps");
    } else {
      std::fprintf(stderr, "emu_racecheck: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (selftest) {
    int out[2];
    char err[512] = "";
    if (pybert_emu_selftest_neighbour(2, 7, barrier ? 1 : 0, out, err, sizeof(err)) != 0) {
      std::printf("FAILED selftest: %s\n", err);
      return 1;
    }
    std::printf("ok selftest (barrier %d): %d %d\n", barrier ? 1 : 0, out[0], out[1]);
    return 0;
  }
  std::mt19937 rng(7);
  int failed = 0, n = 0;
  for (const Case& c : cases(quick)) {
    ++n;
    if (!run_case(c, &rng)) ++failed;
  }
  std::printf("%d cases, %d failed launches\n", n, failed);
  return failed == 0 ? 0 : 1;
}
