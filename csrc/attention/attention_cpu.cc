#include "attention/attention_cpu.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "attention/philox.h"

namespace pybert {
namespace attention {
namespace {

// The per-item kernels are forced inline so that they can be compiled a second time
// inside AVX2+FMA entry points (float32 only), chosen at run time when the CPU has
// them; everything reached out of line stays baseline x86-64 code. Built with
// -ffp-contract=off (no FMA), both give the same bits (tested with
// PYBERT_ATTENTION_BASELINE=1, which switches the AVX2 entry points off).
#if defined(__GNUC__)
#define PYBERT_KERNEL __attribute__((always_inline)) inline
#else
#define PYBERT_KERNEL inline
#endif
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define PYBERT_HAVE_AVX2_CLONES 1
#define PYBERT_AVX2 __attribute__((target("avx2,fma")))
#else
#define PYBERT_HAVE_AVX2_CLONES 0
#endif

constexpr int kBlockM = 16;  // query rows per work item
constexpr int kBlockN = 64;  // keys per block

template <typename F>
void parallel_for(int64_t n, int num_threads, F&& fn) {
  const int t = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, n)));
  if (t <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  auto worker = [&] {
    for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
  };
  std::vector<std::thread> threads;
  threads.reserve(t - 1);
  for (int i = 0; i < t - 1; ++i) threads.emplace_back(worker);
  worker();
  for (auto& th : threads) th.join();
}

std::string check(const ForwardParams& p, bool backward) {
  if (p.head_dim < 1 || p.head_dim > 1024)
    return "head_dim must be in [1, 1024], got " + std::to_string(p.head_dim);
  if (p.batch < 0 || p.heads < 1 || p.seq_q < 0 || p.seq_k < 0)
    return "bad shape: batch >= 0, heads >= 1, seq_q >= 0, seq_k >= 0 required";
  if (!(p.dropout_rate >= 0.f && p.dropout_rate < 1.f))
    return "dropout_rate must be in [0, 1), got " + std::to_string(p.dropout_rate);
  if (!std::isfinite(p.scale)) return "scale must be finite";
  if (p.batch == 0 || p.seq_q == 0) return "";
  if (!p.q || !p.out) return "q/out: null pointer";
  if (p.seq_k > 0 && (!p.k || !p.v)) return "k/v: null pointer";
  if (backward) {
    const auto& b = static_cast<const BackwardParams&>(p);
    if (!p.lse) return "lse: null pointer (the backward pass needs the forward's lse)";
    if (!b.dout || !b.dq || (p.seq_k > 0 && (!b.dk || !b.dv))) return "dout/dq/dk/dv: null pointer";
  }
  return "";
}

struct MaskView {
  const int32_t* row;
  bool keep(int j) const { return row == nullptr || row[j] != 0; }
};

template <typename T>
PYBERT_KERNEL void forward_item(const ForwardParams& p, int64_t item, std::vector<T>& kt, std::vector<T>& s) {
  const int D = p.head_dim;
  const int m_blocks = (p.seq_q + kBlockM - 1) / kBlockM;
  const int mb = static_cast<int>(item % m_blocks);
  const int64_t bh = item / m_blocks;
  const int b = static_cast<int>(bh / p.heads), h = static_cast<int>(bh % p.heads);
  const T* q = static_cast<const T*>(p.q) + b * p.q_strides.batch + h * p.q_strides.head;
  const T* k = static_cast<const T*>(p.k) + b * p.k_strides.batch + h * p.k_strides.head;
  const T* v = static_cast<const T*>(p.v) + b * p.v_strides.batch + h * p.v_strides.head;
  T* out = static_cast<T*>(p.out) + b * p.out_strides.batch + h * p.out_strides.head;
  const MaskView mask{p.mask ? p.mask + b * p.mask_batch_stride : nullptr};
  const bool dropout = p.dropout_rate > 0.f;
  const uint32_t threshold = dropout_threshold(p.dropout_rate);
  const int i0 = mb * kBlockM, rows = std::min(kBlockM, p.seq_q - i0);

  std::vector<T> acc(static_cast<size_t>(rows) * D, T(0));
  std::vector<T> m(rows, -std::numeric_limits<T>::infinity()), l(rows, T(0));
  kt.resize(static_cast<size_t>(D) * kBlockN);
  s.resize(kBlockN);
  for (int j0 = 0; j0 < p.seq_k; j0 += kBlockN) {
    const int cols = std::min(kBlockN, p.seq_k - j0);
    bool any = false;
    for (int j = 0; j < cols; ++j) any |= mask.keep(j0 + j);
    if (!any) continue;
    for (int j = 0; j < cols; ++j) {  // K block transposed: kt[d][j]
      const T* kr = k + (j0 + j) * p.k_strides.seq;
      for (int d = 0; d < D; ++d) kt[static_cast<size_t>(d) * kBlockN + j] = kr[d];
    }
    for (int r = 0; r < rows; ++r) {
      const int i = i0 + r;
      const T* qr = q + i * p.q_strides.seq;
      std::fill(s.begin(), s.begin() + cols, T(0));
      for (int d = 0; d < D; ++d) {
        const T qd = qr[d] * static_cast<T>(p.scale);
        const T* ktd = kt.data() + static_cast<size_t>(d) * kBlockN;
        for (int j = 0; j < cols; ++j) s[j] += qd * ktd[j];
      }
      T mx = -std::numeric_limits<T>::infinity();
      for (int j = 0; j < cols; ++j) {
        if (!mask.keep(j0 + j)) s[j] = -std::numeric_limits<T>::infinity();
        mx = std::max(mx, s[j]);
      }
      const T m_new = std::max(m[r], mx);
      const T corr = std::exp(m[r] - m_new);  // m[r] = -inf at first: 0
      T* a = acc.data() + static_cast<size_t>(r) * D;
      for (int d = 0; d < D; ++d) a[d] *= corr;
      T sum = 0;
      for (int j = 0; j < cols; ++j) {
        const T pe = std::exp(s[j] - m_new);
        sum += pe;
        if (pe == T(0)) continue;
        if (dropout && !dropout_keep(p.seed, p.offset, threshold, static_cast<uint32_t>(bh),
                                     static_cast<uint32_t>(i), static_cast<uint32_t>(j0 + j)))
          continue;
        const T* vr = v + (j0 + j) * p.v_strides.seq;
        for (int d = 0; d < D; ++d) a[d] += pe * vr[d];
      }
      l[r] = l[r] * corr + sum;
      m[r] = m_new;
    }
  }
  const T rscale = dropout ? T(1) / (T(1) - static_cast<T>(p.dropout_rate)) : T(1);
  for (int r = 0; r < rows; ++r) {
    const int i = i0 + r;
    const T inv = l[r] > T(0) ? rscale / l[r] : T(0);
    T* o = out + i * p.out_strides.seq;
    const T* a = acc.data() + static_cast<size_t>(r) * D;
    for (int d = 0; d < D; ++d) o[d] = a[d] * inv;
    if (p.lse)
      p.lse[bh * p.seq_q + i] = l[r] > T(0) ? static_cast<float>(m[r] + std::log(l[r]))
                                            : std::numeric_limits<float>::infinity();
  }
}

// Per (b, h, key block): dK, dV. Per (b, h, query block): dQ. Both recompute
// P from lse and dP from dO . V.
template <typename T>
struct BwdPtrs {
  const T *q, *k, *v, *out, *dout;
  T *dq, *dk, *dv;
  MaskView mask;
  const float* lse;
  int64_t bh;
};

template <typename T>
BwdPtrs<T> bwd_ptrs(const BackwardParams& p, int64_t bh) {
  const int b = static_cast<int>(bh / p.heads), h = static_cast<int>(bh % p.heads);
  BwdPtrs<T> r;
  r.q = static_cast<const T*>(p.q) + b * p.q_strides.batch + h * p.q_strides.head;
  r.k = static_cast<const T*>(p.k) + b * p.k_strides.batch + h * p.k_strides.head;
  r.v = static_cast<const T*>(p.v) + b * p.v_strides.batch + h * p.v_strides.head;
  r.out = static_cast<const T*>(p.out) + b * p.out_strides.batch + h * p.out_strides.head;
  r.dout = static_cast<const T*>(p.dout) + b * p.dout_strides.batch + h * p.dout_strides.head;
  r.dq = static_cast<T*>(p.dq) + b * p.dq_strides.batch + h * p.dq_strides.head;
  r.dk = static_cast<T*>(p.dk) + b * p.dk_strides.batch + h * p.dk_strides.head;
  r.dv = static_cast<T*>(p.dv) + b * p.dv_strides.batch + h * p.dv_strides.head;
  r.mask = MaskView{p.mask ? p.mask + b * p.mask_batch_stride : nullptr};
  r.lse = p.lse + bh * p.seq_q;
  r.bh = bh;
  return r;
}

// Eight independent partial sums (a fixed order, so results do not depend on the
// thread count): the compiler vectorizes them, a single running sum it cannot.
template <typename T>
PYBERT_KERNEL T dot(const T* a, const T* b, int n) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  T s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

template <typename T>
PYBERT_KERNEL void backward_dkdv_item(const BackwardParams& p, int64_t item, const std::vector<T>& dvec,
                        const std::vector<T>& lse_all) {
  const int D = p.head_dim;
  const int n_blocks = (p.seq_k + kBlockN - 1) / kBlockN;
  const int nb = static_cast<int>(item % n_blocks);
  const BwdPtrs<T> t = bwd_ptrs<T>(p, item / n_blocks);
  const bool dropout = p.dropout_rate > 0.f;
  const uint32_t threshold = dropout_threshold(p.dropout_rate);
  const T rscale = dropout ? T(1) / (T(1) - static_cast<T>(p.dropout_rate)) : T(1);
  const T scale = static_cast<T>(p.scale);
  const T* dv_rows = dvec.data() + t.bh * p.seq_q;
  for (int j = nb * kBlockN; j < std::min(p.seq_k, (nb + 1) * kBlockN); ++j) {
    T* dkr = t.dk + j * p.dk_strides.seq;
    T* dvr = t.dv + j * p.dv_strides.seq;
    std::fill(dkr, dkr + D, T(0));
    std::fill(dvr, dvr + D, T(0));
    if (!t.mask.keep(j)) continue;
    const T* kr = t.k + j * p.k_strides.seq;
    const T* vr = t.v + j * p.v_strides.seq;
    for (int i = 0; i < p.seq_q; ++i) {
      const T lse = lse_all[t.bh * p.seq_q + i];
      if (std::isinf(lse)) continue;
      const T* qi = t.q + i * p.q_strides.seq;
      const T* doi = t.dout + i * p.dout_strides.seq;
      const T pe = std::exp(dot(qi, kr, D) * scale - lse);
      const bool keep = !dropout || dropout_keep(p.seed, p.offset, threshold,
                                                 static_cast<uint32_t>(t.bh),
                                                 static_cast<uint32_t>(i), static_cast<uint32_t>(j));
      const T dpd = keep ? dot(doi, vr, D) * rscale : T(0);
      const T ds = pe * (dpd - dv_rows[i]) * scale;
      const T pd = keep ? pe * rscale : T(0);
      for (int d = 0; d < D; ++d) {
        dvr[d] += pd * doi[d];
        dkr[d] += ds * qi[d];
      }
    }
  }
}

template <typename T>
PYBERT_KERNEL void backward_dq_item(const BackwardParams& p, int64_t item, const std::vector<T>& dvec,
                      const std::vector<T>& lse_all) {
  const int D = p.head_dim;
  const int m_blocks = (p.seq_q + kBlockM - 1) / kBlockM;
  const int mb = static_cast<int>(item % m_blocks);
  const BwdPtrs<T> t = bwd_ptrs<T>(p, item / m_blocks);
  const bool dropout = p.dropout_rate > 0.f;
  const uint32_t threshold = dropout_threshold(p.dropout_rate);
  const T rscale = dropout ? T(1) / (T(1) - static_cast<T>(p.dropout_rate)) : T(1);
  const T scale = static_cast<T>(p.scale);
  for (int i = mb * kBlockM; i < std::min(p.seq_q, (mb + 1) * kBlockM); ++i) {
    T* dqr = t.dq + i * p.dq_strides.seq;
    std::fill(dqr, dqr + D, T(0));
    const T lse = lse_all[t.bh * p.seq_q + i];
    if (std::isinf(lse)) continue;
    const T* qi = t.q + i * p.q_strides.seq;
    const T* doi = t.dout + i * p.dout_strides.seq;
    const T dvi = dvec[t.bh * p.seq_q + i];
    for (int j = 0; j < p.seq_k; ++j) {
      if (!t.mask.keep(j)) continue;
      const T* kr = t.k + j * p.k_strides.seq;
      const T pe = std::exp(dot(qi, kr, D) * scale - lse);
      const bool keep = !dropout || dropout_keep(p.seed, p.offset, threshold,
                                                 static_cast<uint32_t>(t.bh),
                                                 static_cast<uint32_t>(i), static_cast<uint32_t>(j));
      const T dpd = keep ? dot(doi, t.v + j * p.v_strides.seq, D) * rscale : T(0);
      const T ds = pe * (dpd - dvi) * scale;
      for (int d = 0; d < D; ++d) dqr[d] += ds * kr[d];
    }
  }
}

#if PYBERT_HAVE_AVX2_CLONES
PYBERT_AVX2 void forward_item_avx2(const ForwardParams& p, int64_t item, std::vector<float>& kt,
                                   std::vector<float>& s) {
  forward_item<float>(p, item, kt, s);
}
PYBERT_AVX2 void backward_dkdv_item_avx2(const BackwardParams& p, int64_t item,
                                         const std::vector<float>& dvec,
                                         const std::vector<float>& lse) {
  backward_dkdv_item<float>(p, item, dvec, lse);
}
PYBERT_AVX2 void backward_dq_item_avx2(const BackwardParams& p, int64_t item,
                                       const std::vector<float>& dvec,
                                       const std::vector<float>& lse) {
  backward_dq_item<float>(p, item, dvec, lse);
}
bool cpu_has_avx2() {
  static const bool ok = [] {
    __builtin_cpu_init();
    if (std::getenv("PYBERT_ATTENTION_BASELINE") != nullptr) return false;  // tests
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return ok;
}
#endif

template <typename T>
void run_forward_item(const ForwardParams& p, int64_t item, std::vector<T>& kt, std::vector<T>& s) {
#if PYBERT_HAVE_AVX2_CLONES
  if constexpr (std::is_same<T, float>::value) {
    if (cpu_has_avx2()) return forward_item_avx2(p, item, kt, s);
  }
#endif
  forward_item<T>(p, item, kt, s);
}

template <typename T>
void run_dkdv_item(const BackwardParams& p, int64_t item, const std::vector<T>& dvec,
                   const std::vector<T>& lse) {
#if PYBERT_HAVE_AVX2_CLONES
  if constexpr (std::is_same<T, float>::value) {
    if (cpu_has_avx2()) return backward_dkdv_item_avx2(p, item, dvec, lse);
  }
#endif
  backward_dkdv_item<T>(p, item, dvec, lse);
}

template <typename T>
void run_dq_item(const BackwardParams& p, int64_t item, const std::vector<T>& dvec,
                 const std::vector<T>& lse) {
#if PYBERT_HAVE_AVX2_CLONES
  if constexpr (std::is_same<T, float>::value) {
    if (cpu_has_avx2()) return backward_dq_item_avx2(p, item, dvec, lse);
  }
#endif
  backward_dq_item<T>(p, item, dvec, lse);
}

template <typename T>
std::string forward_impl(const ForwardParams& p, int num_threads) {
  std::string e = check(p, false);
  if (!e.empty() || p.batch == 0 || p.seq_q == 0) return e;
  const int m_blocks = (p.seq_q + kBlockM - 1) / kBlockM;
  parallel_for(static_cast<int64_t>(p.batch) * p.heads * m_blocks, num_threads, [&](int64_t item) {
    thread_local std::vector<T> kt, s;
    run_forward_item<T>(p, item, kt, s);
  });
  return "";
}

template <typename T>
std::string backward_impl(const BackwardParams& p, int num_threads) {
  std::string e = check(p, true);
  if (!e.empty() || p.batch == 0 || p.seq_q == 0) return e;
  const int64_t bhs = static_cast<int64_t>(p.batch) * p.heads;
  std::vector<T> dvec(static_cast<size_t>(bhs) * p.seq_q), lse(dvec.size());
  parallel_for(bhs, num_threads, [&](int64_t bh) {
    const BwdPtrs<T> t = bwd_ptrs<T>(p, bh);
    for (int i = 0; i < p.seq_q; ++i) {
      dvec[bh * p.seq_q + i] =
          dot(t.dout + i * p.dout_strides.seq, t.out + i * p.out_strides.seq, p.head_dim);
      if constexpr (std::is_same<T, float>::value) {
        lse[bh * p.seq_q + i] = t.lse[i];
      } else {  // the float32 lse would cap float64 gradients at ~1e-7: recompute it
        const T* qi = t.q + i * p.q_strides.seq;
        T mx = -std::numeric_limits<T>::infinity(), sum = 0;
        for (int j = 0; j < p.seq_k; ++j)
          if (t.mask.keep(j)) mx = std::max(mx, dot(qi, t.k + j * p.k_strides.seq, p.head_dim) * T(p.scale));
        for (int j = 0; j < p.seq_k && std::isfinite(mx); ++j)
          if (t.mask.keep(j)) sum += std::exp(dot(qi, t.k + j * p.k_strides.seq, p.head_dim) * T(p.scale) - mx);
        lse[bh * p.seq_q + i] = sum > 0 ? mx + std::log(sum) : std::numeric_limits<T>::infinity();
      }
    }
  });
  if (p.seq_k > 0) {
    const int n_blocks = (p.seq_k + kBlockN - 1) / kBlockN;
    parallel_for(bhs * n_blocks, num_threads,
                 [&](int64_t item) { run_dkdv_item<T>(p, item, dvec, lse); });
  }
  const int m_blocks = (p.seq_q + kBlockM - 1) / kBlockM;
  parallel_for(bhs * m_blocks, num_threads, [&](int64_t item) { run_dq_item<T>(p, item, dvec, lse); });
  return "";
}

}  // namespace

std::string forward_cpu(const ForwardParams& p, int num_threads) {
  switch (p.dtype) {
    case DType::kFloat32: return forward_impl<float>(p, num_threads);
    case DType::kFloat64: return forward_impl<double>(p, num_threads);
    default:
      return std::string("dtype: the CPU kernels take float32 or float64, got ") + dtype_name(p.dtype);
  }
}

std::string backward_cpu(const BackwardParams& p, int num_threads) {
  switch (p.dtype) {
    case DType::kFloat32: return backward_impl<float>(p, num_threads);
    case DType::kFloat64: return backward_impl<double>(p, num_threads);
    default:
      return std::string("dtype: the CPU kernels take float32 or float64, got ") + dtype_name(p.dtype);
  }
}

}  // namespace attention
}  // namespace pybert
