// The CPU attention kernels alone (csrc/attention/attention_cpu.cc): best-of-N
// forward and backward times, float32 and float64, one thread by default, padding
// masks 50-100% long, dropout 0.1; and a hash of every output, to check that a
// change (or PYBERT_ATTENTION_BASELINE=1, which switches the AVX2 and AVX-512
// entry points off, or PYBERT_ATTENTION_NO_AVX512=1) leaves the results bit-identical.
//
//   g++ -O3 -std=c++17 -ffp-contract=off -Wno-psabi -Icsrc -o /tmp/attention_cpu_kernel
//       csrc/attention/attention_cpu.cc bench/attention_cpu_kernel.cc -lpthread   (one line)
//   /tmp/attention_cpu_kernel [batch seq heads head_dim reps threads dropout]
//     (defaults 8 128 12 64 5 1 0.1)
//   (PYBERT_BENCH_F32_ONLY=1: float32 only; PYBERT_BENCH_FULL_ROWS=1: no masked keys)
//   PYBERT_ATTENTION_BASELINE=1 /tmp/attention_cpu_kernel   (also PYBERT_ATTENTION_NO_AVX512=1)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "attention/attention_cpu.h"

using namespace pybert::attention;

namespace {

template <typename T>
void run(DType dtype, int B, int S, int H, int D, int reps, int threads, float rate) {
  const size_t n = static_cast<size_t>(B) * S * H * D;
  std::vector<T> q(n), k(n), v(n), out(n), dout(n), dq(n), dk(n), dv(n);
  std::mt19937 gen(1);
  std::normal_distribution<double> normal;
  for (size_t i = 0; i < n; ++i) {
    q[i] = static_cast<T>(normal(gen));
    k[i] = static_cast<T>(normal(gen));
    v[i] = static_cast<T>(normal(gen));
    dout[i] = static_cast<T>(normal(gen));
  }
  std::vector<int32_t> mask(static_cast<size_t>(B) * S);
  const bool full_rows = std::getenv("PYBERT_BENCH_FULL_ROWS") != nullptr;
  for (int b = 0; b < B; ++b) {
    const int len = full_rows ? S : S / 2 + (b * 37) % (S / 2 + 1);
    for (int j = 0; j < S; ++j) mask[static_cast<size_t>(b) * S + j] = j < len;
  }
  std::vector<float> lse(static_cast<size_t>(B) * H * S);
  BackwardParams p;
  p.dtype = dtype;
  p.batch = B;
  p.heads = H;
  p.seq_q = p.seq_k = S;
  p.head_dim = D;
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.out = out.data();
  const Strides st = contiguous_strides(S, H, D);
  p.q_strides = p.k_strides = p.v_strides = p.out_strides = st;
  p.dout_strides = p.dq_strides = p.dk_strides = p.dv_strides = st;
  p.mask = mask.data();
  p.mask_batch_stride = S;
  p.lse = lse.data();
  p.scale = 1.0f / 8;
  p.dropout_rate = rate;
  p.seed = 3;
  p.dout = dout.data();
  p.dq = dq.data();
  p.dk = dk.data();
  p.dv = dv.data();
  double fwd = 1e30, bwd = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string e = forward_cpu(p, threads);
    const auto t1 = std::chrono::steady_clock::now();
    e += backward_cpu(p, threads);
    const auto t2 = std::chrono::steady_clock::now();
    if (!e.empty()) {
      std::fprintf(stderr, "attention_cpu_kernel: %s\n", e.c_str());
      std::exit(1);
    }
    fwd = std::min(fwd, std::chrono::duration<double, std::milli>(t1 - t0).count());
    bwd = std::min(bwd, std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  uint64_t h = 1469598103934665603ull;  // FNV-1a over every output's bytes
  auto mix = [&h](const void* data, size_t bytes) {
    const auto* c = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < bytes; ++i) h = (h ^ c[i]) * 1099511628211ull;
  };
  for (const auto* x : {&out, &dq, &dk, &dv}) mix(x->data(), n * sizeof(T));
  mix(lse.data(), lse.size() * sizeof(float));
  std::printf("%s [%d, %d, %d, %d] threads %d dropout %g: forward %.2f ms, backward %.2f ms, "
              "outputs %016llx\n", dtype_name(dtype), B, S, H, D, threads, rate, fwd, bwd,
              static_cast<unsigned long long>(h));
}

}  // namespace

int main(int argc, char** argv) {
  int a[6] = {8, 128, 12, 64, 5, 1};
  for (int i = 1; i < argc && i <= 6; ++i) a[i - 1] = std::atoi(argv[i]);
  const float rate = argc > 7 ? static_cast<float>(std::atof(argv[7])) : 0.1f;
  if (a[0] < 1 || a[1] < 2 || a[2] < 1 || a[3] < 1 || a[4] < 1 || a[5] < 1 ||
      !(rate >= 0.f && rate < 1.f)) {
    std::fprintf(stderr, "usage: %s [batch seq heads head_dim reps threads dropout]\n", argv[0]);
    return 2;
  }
  std::printf("AVX2 and AVX-512 entry points: %s\n",
              std::getenv("PYBERT_ATTENTION_BASELINE")    ? "off (PYBERT_ATTENTION_BASELINE)"
              : std::getenv("PYBERT_ATTENTION_NO_AVX512") ? "AVX2 only (PYBERT_ATTENTION_NO_AVX512)"
                                                          : "on where the CPU has them");
  run<float>(DType::kFloat32, a[0], a[1], a[2], a[3], a[4], a[5], rate);
  if (!std::getenv("PYBERT_BENCH_F32_ONLY"))
    run<double>(DType::kFloat64, a[0], a[1], a[2], a[3], a[4], a[5], rate);
  return 0;
}
