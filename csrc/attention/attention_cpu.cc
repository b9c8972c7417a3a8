#include "attention/attention_cpu.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

#include "attention/philox.h"
#include "common/parallel.h"

namespace pybert {
namespace attention {
namespace {

// The per-item kernels are forced inline so that they can be compiled a second time
// inside AVX2+FMA entry points, and a third time inside AVX-512 ones whose
// products take 64-byte vectors (float32 only), chosen at run time when the CPU
// has them; everything else reached out of line is baseline x86-64 code, except
// the dropout mask's Philox (integer only): dropout_row_avx2, which the baseline
// and AVX2 kernels call on AVX2 CPUs, and dropout_row_avx512, which the AVX-512
// ones call. Built with -ffp-contract=off (no FMA), all give the same bits
// (tested with PYBERT_ATTENTION_BASELINE=1, which switches the AVX2 and AVX-512
// code off, and PYBERT_ATTENTION_NO_AVX512=1, which switches AVX-512 off).
#if defined(__GNUC__)
#define PYBERT_KERNEL __attribute__((always_inline)) inline
#else
#define PYBERT_KERNEL inline
#endif
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define PYBERT_HAVE_AVX2_CLONES 1
#define PYBERT_AVX2 __attribute__((target("avx2,fma")))
#define PYBERT_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#else
#define PYBERT_HAVE_AVX2_CLONES 0
#endif

// fn(i, next) for i < n: `next` is the item the same thread runs after i (-1 if
// none), claimed from the shared counter before i runs, so that i can prefetch it;
// only while at least `t` items are unclaimed, so that with few items (batch 1 on
// many threads) no thread sits on one that an idle thread could run.
// With a runner (attention_cpu.h), the first exception a worker throws is
// rethrown here after the runner returns (run_guarded, common/parallel.h).
template <typename F>
void parallel_for(int64_t n, int num_threads, const Runner& runner, F&& fn) {
  const int t = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, n)));
  if (t <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i, i + 1 < n ? i + 1 : -1);
    return;
  }
  std::atomic<int64_t> next{0};
  auto worker = [&] {
    int64_t i = next.fetch_add(1);
    while (i < n) {
      int64_t j = n;
      if (next.load(std::memory_order_relaxed) <= n - t) j = next.fetch_add(1);
      fn(i, j < n ? j : -1);
      i = j < n ? j : next.fetch_add(1);
    }
  };
  if (!runner) return run_workers(t, worker);
  run_guarded(t, [&](int threads, const auto& guarded) { runner(threads, guarded); }, worker);
}

// Software prefetch (into L2) of the source rows the next work item will read,
// spread over the current item's softmax rows: they lie a head's stride apart
// (3 KB for 12 heads of 64, a 4 KB page each), a pattern the hardware
// prefetchers do not start on before the packing loads miss.
class RowPrefetch {
 public:
  template <typename T>
  void add(const T* base, int64_t stride, int rows, int cols) {
    if (n_ == kMaxSpans || rows <= 0 || base == nullptr) return;
    spans_[n_++] = Span{reinterpret_cast<const char*>(base),
                        stride * static_cast<int64_t>(sizeof(T)), rows,
                        cols * static_cast<int>(sizeof(T))};
    total_ += rows;
  }
  int total() const { return total_; }
  // Rows [done, upto) of the spans, in order.
  void issue(int upto) {
    for (; done_ < upto && done_ < total_; ++done_) {
      while (done_ - first_ >= spans_[span_].rows) first_ += spans_[span_++].rows;
      const Span& s = spans_[span_];
      const char* row = s.base + (done_ - first_) * s.stride;
      for (int off = 0; off < s.bytes; off += 64) __builtin_prefetch(row + off, 0, 2);
      __builtin_prefetch(row + s.bytes - 1, 0, 2);
    }
  }

 private:
  struct Span {
    const char* base;
    int64_t stride;  // bytes
    int rows, bytes;
  };
  static constexpr int kMaxSpans = 5;
  Span spans_[kMaxSpans];
  int n_ = 0, total_ = 0, done_ = 0, span_ = 0, first_ = 0;
};

std::string check(const ForwardParams& p, bool backward) {
  if (p.head_dim < 1 || p.head_dim > 1024)
    return "head_dim must be in [1, 1024], got " + std::to_string(p.head_dim);
  if (p.batch < 0 || p.heads < 0 || p.seq_q < 0 || p.seq_k < 0)
    return "bad shape: batch, heads, seq_q and seq_k must be >= 0";
  if (!(p.dropout_rate >= 0.f && p.dropout_rate < 1.f))
    return "dropout_rate must be in [0, 1), got " + std::to_string(p.dropout_rate);
  if (!std::isfinite(p.scale)) return "scale must be finite";
  if (p.batch == 0 || p.heads == 0 || p.seq_q == 0) return "";  // empty: nothing to read
  if (!p.q || !p.out) return "q/out: null pointer";
  if (p.seq_k > 0 && (!p.k || !p.v)) return "k/v: null pointer";
  if (backward) {
    const auto& b = static_cast<const BackwardParams&>(p);
    if (!p.lse) return "lse: null pointer (the backward pass needs the forward's lse)";
    if (!b.dout || !b.dq || (p.seq_k > 0 && (!b.dk || !b.dv))) return "dout/dq/dk/dv: null pointer";
  }
  return "";
}

// ---- 32-byte vectors (GCC/Clang vector extensions: AVX in the AVX2 entry points,
// pairs of SSE2 registers in the baseline build; the same operations either way).
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
  typedef int32_t itype __attribute__((vector_size(32)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
  typedef int64_t itype __attribute__((vector_size(32)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
constexpr int kW = static_cast<int>(32 / sizeof(T));  // lanes

template <typename T>
PYBERT_KERNEL Vec<T> vload(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
PYBERT_KERNEL void vstore(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof(v));
}
// Every lane x (outside hot loops: it costs an addition, 0 + -0 being +0; the
// products below multiply by a scalar instead, which compiles to a broadcast).
template <typename T>
PYBERT_KERNEL Vec<T> vset1(T x) {
  return Vec<T>{} + x;
}

// Vectors of Bytes bytes: VecN<T, 32>::type is Vec<T>; 64-byte ones serve the
// AVX-512 entry points.
template <typename T, int Bytes>
struct VecN;
template <>
struct VecN<float, 32> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct VecN<float, 64> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct VecN<double, 32> {
  typedef double type __attribute__((vector_size(32)));
};
typedef int32_t IVec64 __attribute__((vector_size(64)));
template <typename V, typename T>
PYBERT_KERNEL V vloadn(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename V, typename T>
PYBERT_KERNEL void vstoren(T* p, V v) {
  std::memcpy(p, &v, sizeof(v));
}
template <typename V, typename T>
PYBERT_KERNEL V splat(T x) {
  V v;
  for (int l = 0; l < static_cast<int>(sizeof(V) / sizeof(T)); ++l) v[l] = x;
  return v;
}
// sum += e, e's 32-byte parts in index order (the order of 32-byte passes, so
// a row sum has the same bits at either width).
template <typename T, typename V>
PYBERT_KERNEL void add_in_order(Vec<T>& sum, V e) {
  Vec<T> part[sizeof(V) / sizeof(Vec<T>)];
  std::memcpy(part, &e, sizeof(e));
  for (const Vec<T>& x : part) sum += x;
}
// e^x, lanewise. float: Cephes' expf (range reduction by ln 2, degree-5
// polynomial; ~1 ulp), inputs clamped to [-88.38, 88.38] (so e^-inf is ~1e-38,
// not 0: callers zero masked entries themselves). double: std::exp per lane.
//
// exp_reduced: the rest of it from the clamped x and tmp = floor(x log2(e) + 1/2).
template <typename V, typename VI>
PYBERT_KERNEL V exp_reduced(V x, V tmp) {
  x = x - tmp * 0.693359375f;
  x = x - tmp * -2.12194440e-4f;
  const V z = x * x;
  V y = V{} + 1.9875691500E-4f;
  y = y * x + 1.3981999507E-3f;
  y = y * x + 8.3334519073E-3f;
  y = y * x + 4.1665795894E-2f;
  y = y * x + 1.6666665459E-1f;
  y = y * x + 5.0000001201E-1f;
  y = y * z + x + 1.f;
  const VI e = (__builtin_convertvector(tmp, VI) + 127) << 23;
  V pow2n;
  std::memcpy(&pow2n, &e, sizeof(pow2n));
  return y * pow2n;
}
constexpr float kExpMax = 88.3762626647949f, kLog2e = 1.44269504088896341f;
// Clamp by compare-and-select, floor by truncating, converting back and stepping
// down where that went up.
template <typename V, typename VI>
PYBERT_KERNEL V vexp_float(V x) {
  const V hi = V{} + kExpMax, lo = V{} - kExpMax;
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  const V fx = x * kLog2e + 0.5f;
  V tmp = __builtin_convertvector(__builtin_convertvector(fx, VI), V);
  tmp = tmp > fx ? tmp - 1.f : tmp;  // floor
  return exp_reduced<V, VI>(x, tmp);
}
// The same with vminps/vmaxps (the same selects, NaN included: a NaN x stays x)
// and vroundps/vrndscaleps toward -inf: 6 instructions fewer per vector, 1.4x
// the exp pass's rate on Zen 5, and the same bits for every float input
// (csrc/tests/attention_exp_test.cc compares all 2^32). Inline assembly because
// these kernels are default-target inline code, compiled into the AVX2 and
// AVX-512 entry points by inlining, and GCC will not inline a target-specific
// intrinsic into them; only those entry points reach it (vexp<true>). GCC only:
// clang checks the operands' sizes against the file's target, not the function's,
// so a clang build keeps the portable form everywhere.
#if PYBERT_HAVE_AVX2_CLONES && !defined(__clang__)
#define PYBERT_EXP_ASM 1
#else
#define PYBERT_EXP_ASM 0
#endif
#if PYBERT_EXP_ASM
template <typename V>
PYBERT_KERNEL V vmin_asm(V a, V b) {  // a < b ? a : b (b if either is NaN)
  V r;
  asm("vminps %2, %1, %0" : "=v"(r) : "v"(a), "v"(b));
  return r;
}
template <typename V>
PYBERT_KERNEL V vmax_asm(V a, V b) {  // a > b ? a : b (b if either is NaN)
  V r;
  asm("vmaxps %2, %1, %0" : "=v"(r) : "v"(a), "v"(b));
  return r;
}
template <typename V>
PYBERT_KERNEL V vfloor_asm(V x) {
  V r;
  if constexpr (sizeof(V) == 64) {
    asm("vrndscaleps $9, %1, %0" : "=v"(r) : "v"(x));  // 9: toward -inf, no precision exception
  } else {
    asm("vroundps $9, %1, %0" : "=x"(r) : "x"(x));
  }
  return r;
}
template <typename V, typename VI>
PYBERT_KERNEL V vexp_float_avx(V x) {
  x = vmin_asm(V{} + kExpMax, x);
  x = vmax_asm(V{} - kExpMax, x);
  return exp_reduced<V, VI>(x, vfloor_asm(x * kLog2e + 0.5f));
}
#endif
// Avx2: called from the AVX2 or AVX-512 entry points.
template <bool Avx2>
PYBERT_KERNEL Vec<float> vexp(Vec<float> x) {
#if PYBERT_EXP_ASM
  if constexpr (Avx2) return vexp_float_avx<Vec<float>, VecOf<float>::itype>(x);
#endif
  return vexp_float<Vec<float>, VecOf<float>::itype>(x);
}
template <bool Avx2>
PYBERT_KERNEL VecN<float, 64>::type vexp(VecN<float, 64>::type x) {
#if PYBERT_EXP_ASM
  if constexpr (Avx2) return vexp_float_avx<VecN<float, 64>::type, IVec64>(x);
#endif
  return vexp_float<VecN<float, 64>::type, IVec64>(x);
}
template <bool Avx2>
PYBERT_KERNEL Vec<double> vexp(Vec<double> x) {
  for (int i = 0; i < 4; ++i) x[i] = std::exp(x[i]);
  return x;
}

// The scalar factor of a vector-times-scalar product in the kernels' inner loops.
// Avx2 (the AVX2 entry points): the scalar itself, which GCC multiplies in with a
// broadcast load (vbroadcastss). Baseline: the scalar splatted in registers first;
// left to GCC, a 32-byte vector times a scalar in an SSE2 build stores the scalar
// and reloads it as a vector, a store-forwarding stall per product that made the
// baseline kernels ~20x slower than the AVX2 ones. Same bits either way.
template <typename T>
PYBERT_KERNEL Vec<T> vsplat(T x) {
  if constexpr (kW<T> == 8) {
    return Vec<T>{x, x, x, x, x, x, x, x};
  } else {
    return Vec<T>{x, x, x, x};
  }
}
template <bool Avx2, typename T>
PYBERT_KERNEL auto factor(T x) {
  if constexpr (Avx2) {
    return x;
  } else {
    return vsplat(x);
  }
}

// ---- Register-blocked products on packed, zero-padded tiles. Column counts
// (n, dp) are multiples of 2 * kW<T>; every sum runs in a fixed order. VB: the
// blocks' vector bytes, 32 (Vec<T>), or 64 in the AVX-512 entry points, whose
// blocks take 2 x 16 floats where the columns allow and 2 x 8 for the rest: the
// same sums in the same order, so the same bits; Zen 5's 512-bit pipes run them
// at about twice the rate (bench/attention_cpu_kernel.cc).

// Runs block(bytes, c) for c = 0, 2W, 4W, ... < n (W = bytes / sizeof(T) lanes):
// blocks of VB bytes while they fit, then of 32.
template <typename T, int VB, typename Block>
PYBERT_KERNEL void column_blocks(int n, Block&& block) {
  int c = 0;
  if constexpr (VB == 64) {
    constexpr int W2 = 2 * 64 / static_cast<int>(sizeof(T));
    for (; c + W2 <= n; c += W2) block(std::integral_constant<int, 64>(), c);
  }
  for (; c < n; c += 2 * kW<T>) block(std::integral_constant<int, 32>(), c);
}

// S[r][j] = sum_d A[r][d] * Bt[d][j] for r < R, j < n, d < dp.
template <typename T, int R, bool Avx2, int VB>
PYBERT_KERNEL void gemm_abt(const T* A, int lda, const T* Bt, int ldb, int dp, int n, T* S, int lds) {
  column_blocks<T, VB>(n, [&](auto bytes, int j) {
    typedef typename VecN<T, decltype(bytes)::value>::type V;
    constexpr int W = decltype(bytes)::value / static_cast<int>(sizeof(T));
    V acc[R][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = V{};
    for (int d = 0; d < dp; ++d) {
      const V b0 = vloadn<V>(Bt + static_cast<size_t>(d) * ldb + j);
      const V b1 = vloadn<V>(Bt + static_cast<size_t>(d) * ldb + j + W);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const auto a = factor<Avx2>(A[r * lda + d]);
        acc[r][0] += b0 * a;
        acc[r][1] += b1 * a;
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      vstoren(S + r * lds + j, acc[r][0]);
      vstoren(S + r * lds + j + W, acc[r][1]);
    }
  });
}

// O[r][d] += sum_j P[r][j] * B[j][d] for r < R, d < dp, j < n.
template <typename T, int R, bool Avx2, int VB>
PYBERT_KERNEL void gemm_ab_acc(const T* P, int ldp, const T* B, int ldb, int n, int dp, T* O,
                               int ldo) {
  column_blocks<T, VB>(dp, [&](auto bytes, int d0) {
    typedef typename VecN<T, decltype(bytes)::value>::type V;
    constexpr int W = decltype(bytes)::value / static_cast<int>(sizeof(T));
    V acc[R][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      acc[r][0] = vloadn<V>(O + r * ldo + d0);
      acc[r][1] = vloadn<V>(O + r * ldo + d0 + W);
    }
    for (int j = 0; j < n; ++j) {
      const V b0 = vloadn<V>(B + static_cast<size_t>(j) * ldb + d0);
      const V b1 = vloadn<V>(B + static_cast<size_t>(j) * ldb + d0 + W);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const auto a = factor<Avx2>(P[r * ldp + j]);
        acc[r][0] += b0 * a;
        acc[r][1] += b1 * a;
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      vstoren(O + r * ldo + d0, acc[r][0]);
      vstoren(O + r * ldo + d0 + W, acc[r][1]);
    }
  });
}

// C[j][d] += sum_{r < rows} A[r][j] * B[r][d] for j < n (a multiple of Cols), d < dp:
// Cols columns of A at a time. The AVX2 entry points take 4 (eight independent
// sums in flight: with 2 the backward waited on the add latency); the baseline
// code 2 (its pairs of SSE registers would not hold eight). Same bits either way.
template <typename T, int Cols, bool Avx2, int VB>
PYBERT_KERNEL void gemm_atb_acc(const T* A, int lda, const T* B, int ldb, int rows, int n, int dp,
                                T* C, int ldc) {
  for (int j = 0; j < n; j += Cols) {
    T* c[Cols];
    for (int x = 0; x < Cols; ++x) c[x] = C + static_cast<size_t>(j + x) * ldc;
    column_blocks<T, VB>(dp, [&](auto bytes, int d0) {
      typedef typename VecN<T, decltype(bytes)::value>::type V;
      constexpr int W = decltype(bytes)::value / static_cast<int>(sizeof(T));
      V acc[Cols][2];
#pragma GCC unroll 4
      for (int x = 0; x < Cols; ++x) {
        acc[x][0] = vloadn<V>(c[x] + d0);
        acc[x][1] = vloadn<V>(c[x] + d0 + W);
      }
      for (int r = 0; r < rows; ++r) {
        const V b0 = vloadn<V>(B + r * ldb + d0), b1 = vloadn<V>(B + r * ldb + d0 + W);
#pragma GCC unroll 4
        for (int x = 0; x < Cols; ++x) {
          const auto a = factor<Avx2>(A[r * lda + j + x]);
          acc[x][0] += b0 * a;
          acc[x][1] += b1 * a;
        }
      }
#pragma GCC unroll 4
      for (int x = 0; x < Cols; ++x) {
        vstoren(c[x] + d0, acc[x][0]);
        vstoren(c[x] + d0 + W, acc[x][1]);
      }
    });
  }
}

inline int round_up(int x, int m) { return (x + m - 1) / m * m; }

constexpr int kRows = 4;       // query rows per register block
constexpr int kKeyTile = 64;   // keys per cache tile: a 64 x head_dim tile is reused by every row block
constexpr int kFwdChunk = 256;  // query rows per forward work item
constexpr int kStepRows = 16;  // query rows per step (forward softmax; backward dK/dV rank update)

// S[r][j] = A[r] . Bt[:, j] for r < rows (a multiple of kRows), j < n, key tiles outermost.
template <typename T, bool Avx2, int VB>
PYBERT_KERNEL void scores_tiled(const T* A, int lda, int rows, const T* Bt, int ldb, int dp, int n,
                                T* S, int lds) {
  for (int j0 = 0; j0 < n; j0 += kKeyTile) {
    const int nt = std::min(kKeyTile, n - j0);
    for (int r0 = 0; r0 < rows; r0 += kRows)
      gemm_abt<T, kRows, Avx2, VB>(A + r0 * lda, lda, Bt + j0, ldb, dp, nt, S + r0 * lds + j0, lds);
  }
}

// O[r] = sum_j P[r][j] B[j] for r < rows (a multiple of kRows), j < n, key tiles outermost.
template <typename T, bool Avx2, int VB>
PYBERT_KERNEL void products_tiled(const T* P, int ldp, int rows, const T* B, int ldb, int n, int dp,
                                  T* O, int ldo) {
  for (int r = 0; r < rows; ++r) std::fill(O + r * ldo, O + r * ldo + dp, T(0));
  for (int j0 = 0; j0 < n; j0 += kKeyTile) {
    const int nt = std::min(kKeyTile, n - j0);
    for (int r0 = 0; r0 < rows; r0 += kRows)
      gemm_ab_acc<T, kRows, Avx2, VB>(P + r0 * ldp + j0, ldp, B + static_cast<size_t>(j0) * ldb,
                                      ldb, nt, dp, O + r0 * ldo, ldo);
  }
}

// Packing: rows [0, rows) of a [seq, D] slice (row stride ld) into dst[rows_p][dp]
// (rows_p >= rows; zero padding), or transposed into dst[dp][cols_p].
template <typename T>
PYBERT_KERNEL void pack_rows(const T* src, int64_t ld, int rows, int D, int rows_p, int dp, T* dst) {
  for (int r = 0; r < rows_p; ++r) {
    T* o = dst + static_cast<size_t>(r) * dp;
    if (r < rows) {
      const T* s = src + r * ld;
      for (int d = 0; d < D; ++d) o[d] = s[d];
      std::fill(o + D, o + dp, T(0));
    } else {
      std::fill(o, o + dp, T(0));
    }
  }
}
// Lanes of a and b picked by the indices (0-7: a's, 8-15: b's).
template <int... I>
PYBERT_KERNEL Vec<float> shuffle(Vec<float> a, Vec<float> b) {
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define PYBERT_SHUFFLEVECTOR 1
#endif
#endif
#if defined(PYBERT_SHUFFLEVECTOR)
  return __builtin_shufflevector(a, b, I...);
#else  // GCC before 12 (and before 10 without __has_builtin)
  return __builtin_shuffle(a, b, VecOf<float>::itype{I...});
#endif
}

// x[i][j] <- x[j][i]: an 8 x 8 transpose in registers (with AVX: unpacks, then
// shufps, then vperm2f128; 24 shuffles for 64 floats).
PYBERT_KERNEL void transpose8(Vec<float> x[8]) {
  Vec<float> t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = shuffle<0, 8, 1, 9, 4, 12, 5, 13>(x[i], x[i + 1]);
    t[i + 1] = shuffle<2, 10, 3, 11, 6, 14, 7, 15>(x[i], x[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = shuffle<0, 1, 8, 9, 4, 5, 12, 13>(t[i], t[i + 2]);
    u[i + 1] = shuffle<2, 3, 10, 11, 6, 7, 14, 15>(t[i], t[i + 2]);
    u[i + 2] = shuffle<0, 1, 8, 9, 4, 5, 12, 13>(t[i + 1], t[i + 3]);
    u[i + 3] = shuffle<2, 3, 10, 11, 6, 7, 14, 15>(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 4; ++i) {
    x[i] = shuffle<0, 1, 2, 3, 8, 9, 10, 11>(u[i], u[i + 4]);
    x[i + 4] = shuffle<4, 5, 6, 7, 12, 13, 14, 15>(u[i], u[i + 4]);
  }
}

// (cols_p is a multiple of 8: eight source rows become one contiguous store;
// ldt >= cols_p is the row stride of dst. float: 8 x 8 blocks transposed in
// registers, absent rows read as zeros.)
template <typename T>
PYBERT_KERNEL void pack_cols(const T* src, int64_t ld, int rows, int D, int cols_p, int dp, T* dst,
                             int ldt) {
  for (int r0 = 0; r0 < cols_p; r0 += 8) {
    const T* s[8];
    for (int x = 0; x < 8; ++x) s[x] = r0 + x < rows ? src + (r0 + x) * ld : nullptr;
    int d0 = 0;
    if constexpr (kW<T> == 8) {
      for (; d0 + 8 <= D; d0 += 8) {
        Vec<T> x[8];
        for (int i = 0; i < 8; ++i) x[i] = s[i] ? vload(s[i] + d0) : Vec<T>{};
        transpose8(x);
        for (int i = 0; i < 8; ++i) vstore(dst + static_cast<size_t>(d0 + i) * ldt + r0, x[i]);
      }
    }
    for (int d = d0; d < D; ++d) {
      T tmp[8];
      for (int x = 0; x < 8; ++x) tmp[x] = s[x] ? s[x][d] : T(0);
      std::memcpy(dst + static_cast<size_t>(d) * ldt + r0, tmp, sizeof(tmp));
    }
  }
  for (int d = D; d < dp; ++d)
    std::fill(dst + static_cast<size_t>(d) * ldt, dst + static_cast<size_t>(d) * ldt + cols_p, T(0));
}

// Row stride of the transposed [dp][np] tiles: np plus one 64-byte line, so that
// a power-of-two np does not map a key tile's rows onto a few L1 sets.
template <typename T>
inline int transposed_ld(int np) {
  return np + static_cast<int>(64 / sizeof(T));
}

// Head h of batch row b of a [batch, seq, heads, head_dim] tensor: a [seq, head_dim]
// slice with row stride s.seq (T = const float for the inputs).
template <typename T, typename V>
inline T* head_slice(V* base, const Strides& s, int b, int h) {
  return static_cast<T*>(base) + b * s.batch + h * s.head;
}

// dK and dV of keys [j0, seq_k) of (batch b, head h) are zero: no query attends to them.
template <typename T>
inline void zero_key_grads(const BackwardParams& p, int b, int h, int j0) {
  T* dk = head_slice<T>(p.dk, p.dk_strides, b, h);
  T* dv = head_slice<T>(p.dv, p.dv_strides, b, h);
  for (int j = j0; j < p.seq_k; ++j) {
    std::fill(dk + j * p.dk_strides.seq, dk + j * p.dk_strides.seq + p.head_dim, T(0));
    std::fill(dv + j * p.dv_strides.seq, dv + j * p.dv_strides.seq + p.head_dim, T(0));
  }
}

struct MaskView {
  const int32_t* row;
  bool keep(int j) const { return row == nullptr || row[j] != 0; }
  // 1 + the last kept key (0 if none).
  int kv_len(int seq_k) const {
    if (row == nullptr) return seq_k;
    for (int j = seq_k; j > 0; --j)
      if (row[j - 1] != 0) return j;
    return 0;
  }
};

// Per-thread scratch buffers of one work item.
template <typename T>
struct Scratch {
  std::vector<T> a, b, c, d, e, f, g, h, keep;
  std::vector<T> rows;     // per query row: Dvec, then lse (backward)
  std::vector<uint8_t> z;  // one row of the dropout keep mask
};

// A thread's Scratch, taken from a process-wide free list on first use and given
// back when the thread ends. The worker threads that run_workers starts live for
// one call: with thread_local buffers of their own, every call allocated them
// anew (and faulted their pages in), ~20% of a forward pass at [32, 128, 12, 64]
// when the TensorFlow op still ran on such threads (it now runs on TensorFlow's
// pool; the C entry points and the harness still start threads). The list holds
// at most as many as ever ran at once.
template <typename T>
class ScratchLease {
 public:
  ScratchLease() = default;
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  ~ScratchLease() {  // allocates nothing: the list has room for every Scratch made
    if (s_ == nullptr) return;
    std::lock_guard<std::mutex> lock(pool().mu);
    pool().free.push_back(s_);
  }
  Scratch<T>& get() {
    if (s_ == nullptr) {
      {
        std::lock_guard<std::mutex> lock(pool().mu);
        if (!pool().free.empty()) {
          s_ = pool().free.back();
          pool().free.pop_back();
        } else {
          pool().free.reserve(pool().made + 1);  // may throw here, not in the destructor
          ++pool().made;
        }
      }
      if (s_ == nullptr) s_ = new Scratch<T>();
    }
    return *s_;
  }

 private:
  struct Pool {
    std::mutex mu;
    std::vector<Scratch<T>*> free;
    size_t made = 0;
  };
  static Pool& pool() {
    static Pool* p = new Pool();  // never destroyed: leases may outlive static destructors
    return *p;
  }
  Scratch<T>* s_ = nullptr;
};

// The dropout keep mask Z of row (bh, i) for keys [0, n): one Philox call per
// four keys (dropout_words, philox.h).
inline void dropout_row_scalar(const ForwardParams& p, uint32_t threshold, uint32_t bh, uint32_t i,
                               int n, uint8_t* z) {
  for (int j = 0; j < n; j += 4) {
    const Philox4 w = dropout_words(p.seed, p.offset, bh, i, static_cast<uint32_t>(j));
    for (int e = 0; e < 4; ++e) z[j + e] = w.x[e] >= threshold;
  }
}

#if PYBERT_HAVE_AVX2_CLONES
bool cpu_has_avx2();

// The same words, eight Philox calls at a time: each 64-bit lane of two AVX2
// registers holds one 32-bit word, so each product is one vpmuludq (32 x 32 ->
// 64 bits). Used on AVX2 CPUs; the tests compare it with the scalar one
// (PYBERT_ATTENTION_BASELINE=1 runs that).
PYBERT_AVX2 void dropout_row_avx2(const ForwardParams& p, uint32_t threshold, uint32_t bh,
                                  uint32_t i, int n, uint8_t* z) {
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM0), m1 = _mm256_set1_epi64x(kPhiloxM1);
  const __m256i low = _mm256_set1_epi64x(0xFFFFFFFFu);
  const __m256i thr = _mm256_set1_epi64x(static_cast<int64_t>(threshold) - 1);
  const __m256i one = _mm256_set1_epi8(1);
  const __m256i order = _mm256_setr_epi8(0, 2, 8, 10, 4, 6, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1,
                                         0, 2, 8, 10, 4, 6, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1);
  const uint32_t s0 = static_cast<uint32_t>(p.seed), s1 = static_cast<uint32_t>(p.seed >> 32);
  for (int j0 = 0; j0 < n; j0 += 32) {
    const int64_t block = static_cast<uint32_t>(j0) >> 2;
    __m256i c0[2] = {_mm256_setr_epi64x(block, block + 1, block + 2, block + 3),
                     _mm256_setr_epi64x(block + 4, block + 5, block + 6, block + 7)};
    __m256i c1[2], c2[2], c3[2];
    for (int h = 0; h < 2; ++h) {
      c1[h] = _mm256_set1_epi64x(i);
      c2[h] = _mm256_set1_epi64x(bh);
      c3[h] = _mm256_set1_epi64x(static_cast<uint32_t>(p.offset));
    }
    uint32_t k0 = s0, k1 = s1;
    for (int round = 0; round < 10; ++round) {
      const __m256i key0 = _mm256_set1_epi64x(k0), key1 = _mm256_set1_epi64x(k1);
      for (int h = 0; h < 2; ++h) {
        const __m256i p0 = _mm256_mul_epu32(c0[h], m0), p1 = _mm256_mul_epu32(c2[h], m1);
        c0[h] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1[h]), key0);
        c2[h] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3[h]), key1);
        c1[h] = _mm256_and_si256(p1, low);
        c3[h] = _mm256_and_si256(p0, low);
      }
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    // z[j0 + 4 l + e] = word e of call l >= threshold, for the 8 calls l = 4 h + lane:
    // 64-bit compares (the words are below 2^32, so signed is exact), then the
    // masks interleaved into bytes in that order, 32 bytes in one store.
    __m256i bytes[2];
    for (int h = 0; h < 2; ++h) {
      const __m256i m0 = _mm256_cmpgt_epi64(c0[h], thr), m1 = _mm256_cmpgt_epi64(c1[h], thr);
      const __m256i m2 = _mm256_cmpgt_epi64(c2[h], thr), m3 = _mm256_cmpgt_epi64(c3[h], thr);
      // per 128-bit half (calls 2 x, 2 x + 1), as 16-bit masks: e0 e1 e0' e1' e2 e3 e2' e3'
      const __m256i w16 = _mm256_packs_epi32(_mm256_blend_epi32(m0, m1, 0xAA),
                                             _mm256_blend_epi32(m2, m3, 0xAA));
      // -> bytes e0 e1 e2 e3 e0' e1' e2' e3' in each half's low 8, then both halves' low 8
      bytes[h] = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(w16, order), 0x08);
    }
    const __m256i all = _mm256_and_si256(_mm256_permute2x128_si256(bytes[0], bytes[1], 0x20), one);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(z + j0), all);
  }
}

// The same words with 64-byte vectors, G groups of eight Philox calls (32 keys)
// in flight (up to 4, 128 keys: 1.5x the rate of 2 on Zen 5). Only the low 32
// bits of each 64-bit lane are kept exact: vpmuludq reads nothing else, so the
// products are not masked and the three-way XORs are one vpternlogq (6
// instructions per round for 8 calls; 20 in the AVX2 version). Lane 2m holds
// call m and lane 2m + 1 call 4 + m, so that unpacking the words' pairs gives
// keys 0-15 and 16-31 in order. Used by the AVX-512 entry points (3.5x the AVX2
// version's rate on Zen 5).
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_epi32() (a self-initialized
// variable) as the unused source of their masked builtins, which -Wall reports as
// uninitialized (GCC bug 105593, fixed in GCC 13).
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
template <int G>
PYBERT_AVX512 void philox_keys_avx512(const ForwardParams& p, __m512i thr, uint32_t bh, uint32_t i,
                                      int j0, uint8_t* z) {
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0), m1 = _mm512_set1_epi64(kPhiloxM1);
  const __m512i lane = _mm512_setr_epi64(0, 4, 1, 5, 2, 6, 3, 7);
  __m512i c0[G], c1[G], c2[G], c3[G];
  for (int g = 0; g < G; ++g) {
    c0[g] = _mm512_add_epi64(_mm512_set1_epi64(static_cast<uint32_t>(j0 + 32 * g) >> 2), lane);
    c1[g] = _mm512_set1_epi64(i);
    c2[g] = _mm512_set1_epi64(bh);
    c3[g] = _mm512_set1_epi64(static_cast<uint32_t>(p.offset));
  }
  uint32_t k0 = static_cast<uint32_t>(p.seed), k1 = static_cast<uint32_t>(p.seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const __m512i key0 = _mm512_set1_epi64(k0), key1 = _mm512_set1_epi64(k1);
    for (int g = 0; g < G; ++g) {
      const __m512i p0 = _mm512_mul_epu32(c0[g], m0), p1 = _mm512_mul_epu32(c2[g], m1);
      c0[g] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c1[g], key0, 0x96);  // a^b^c
      c2[g] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c3[g], key1, 0x96);
      c1[g] = p1;
      c3[g] = p0;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  const __m512i one = _mm512_set1_epi32(1);
  for (int g = 0; g < G; ++g) {
    // 32-bit words (w0, w1) and (w2, w3) of each call, then (w0, w1, w2, w3) per call
    const __m512i w01 = _mm512_mask_blend_epi32(0xAAAA, c0[g], _mm512_slli_epi64(c1[g], 32));
    const __m512i w23 = _mm512_mask_blend_epi32(0xAAAA, c2[g], _mm512_slli_epi64(c3[g], 32));
    const __m512i keys[2] = {_mm512_unpacklo_epi64(w01, w23), _mm512_unpackhi_epi64(w01, w23)};
    for (int x = 0; x < 2; ++x) {
      const __mmask16 keep = _mm512_cmpge_epu32_mask(keys[x], thr);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(z + j0 + 32 * g + 16 * x),
                       _mm512_cvtepi32_epi8(_mm512_maskz_mov_epi32(keep, one)));
    }
  }
}
PYBERT_AVX512 void dropout_row_avx512(const ForwardParams& p, uint32_t threshold, uint32_t bh,
                                      uint32_t i, int n, uint8_t* z) {
  const __m512i thr = _mm512_set1_epi32(static_cast<int>(threshold));
  int j0 = 0;
  for (; j0 + 96 < n; j0 += 128) philox_keys_avx512<4>(p, thr, bh, i, j0, z);
  const int left = n - j0;
  if (left > 64) {
    philox_keys_avx512<3>(p, thr, bh, i, j0, z);
  } else if (left > 32) {
    philox_keys_avx512<2>(p, thr, bh, i, j0, z);
  } else if (left > 0) {
    philox_keys_avx512<1>(p, thr, bh, i, j0, z);
  }
}
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

// Wide: called from the AVX-512 entry points, which take the AVX-512 version.
// Only they do: from the baseline kernels (float64), whose code in between is
// SSE, each call cost ~2.5 us more than it saved on Zen 5 (the 512-bit units
// waking up, presumably).
template <bool Wide>
inline void dropout_row(const ForwardParams& p, uint32_t threshold, uint32_t bh, uint32_t i, int n,
                        std::vector<uint8_t>& z) {
  z.resize(static_cast<size_t>(n) + 32);
#if PYBERT_HAVE_AVX2_CLONES
  if constexpr (Wide) return dropout_row_avx512(p, threshold, bh, i, n, z.data());
  if (cpu_has_avx2()) return dropout_row_avx2(p, threshold, bh, i, n, z.data());
#endif
  dropout_row_scalar(p, threshold, bh, i, n, z.data());
}


// Forward, one (batch, head, 256-row query chunk): the scores of 4 rows against
// every kept key at a time (exact two-pass softmax over the row), then P V.
template <typename T, bool Avx2, int VB>
PYBERT_KERNEL void forward_item(const ForwardParams& p, int64_t item, int64_t next, Scratch<T>& w) {
  constexpr int W2 = 2 * kW<T>;
  typedef typename VecN<T, VB>::type VV;  // the elementwise passes' vectors
  constexpr int kL = VB / static_cast<int>(sizeof(T));
  const int D = p.head_dim, dp = round_up(D, W2);
  const int chunks = (p.seq_q + kFwdChunk - 1) / kFwdChunk;
  RowPrefetch pf;
  if (next >= 0) {  // the next item's K, V and Q rows
    const int64_t nbh = next / chunks;
    const int nb = static_cast<int>(nbh / p.heads), nh = static_cast<int>(nbh % p.heads);
    const int n0 = static_cast<int>(next % chunks) * kFwdChunk;
    const MaskView nmask{p.mask ? p.mask + nb * p.mask_batch_stride : nullptr};
    const int nkv = p.seq_k > 0 ? nmask.kv_len(p.seq_k) : 0;
    if (nkv > 0) {
      pf.add(head_slice<const T>(p.k, p.k_strides, nb, nh), p.k_strides.seq, nkv, D);
      pf.add(head_slice<const T>(p.v, p.v_strides, nb, nh), p.v_strides.seq, nkv, D);
    }
    pf.add(head_slice<const T>(p.q, p.q_strides, nb, nh) + n0 * p.q_strides.seq, p.q_strides.seq,
           std::min(kFwdChunk, p.seq_q - n0), D);
  }
  const int64_t bh = item / chunks;
  const int i0 = static_cast<int>(item % chunks) * kFwdChunk;
  const int i1 = std::min(p.seq_q, i0 + kFwdChunk);
  const int b = static_cast<int>(bh / p.heads), h = static_cast<int>(bh % p.heads);
  const T* q = head_slice<const T>(p.q, p.q_strides, b, h);
  T* out = head_slice<T>(p.out, p.out_strides, b, h);
  const MaskView mask{p.mask ? p.mask + b * p.mask_batch_stride : nullptr};
  const int kv = p.seq_k > 0 ? mask.kv_len(p.seq_k) : 0;
  if (kv == 0) {  // every key masked: defined output 0, lse +inf
    for (int i = i0; i < i1; ++i) {
      std::fill(out + i * p.out_strides.seq, out + i * p.out_strides.seq + D, T(0));
      if (p.lse) p.lse[bh * p.seq_q + i] = std::numeric_limits<float>::infinity();
    }
    pf.issue(pf.total());
    return;
  }
  const T* k = head_slice<const T>(p.k, p.k_strides, b, h);
  const T* v = head_slice<const T>(p.v, p.v_strides, b, h);
  const int np = round_up(kv, W2);
  const bool dropout = p.dropout_rate > 0.f;
  const uint32_t threshold = dropout_threshold(p.dropout_rate);
  const T rscale = dropout ? T(1) / (T(1) - static_cast<T>(p.dropout_rate)) : T(1);
  const T scale = static_cast<T>(p.scale);
  const int ldt = transposed_ld<T>(np);
  w.a.resize(static_cast<size_t>(dp) * ldt);  // K^T
  w.b.resize(static_cast<size_t>(np) * dp);  // V
  w.c.resize(static_cast<size_t>(kStepRows) * dp);  // Q rows
  w.d.resize(static_cast<size_t>(kStepRows) * np);  // scores -> probabilities
  w.e.resize(static_cast<size_t>(kStepRows) * dp);  // P V
  w.keep.resize(np);
  pack_cols(k, p.k_strides.seq, kv, D, np, dp, w.a.data(), ldt);
  pack_rows(v, p.v_strides.seq, kv, D, np, dp, w.b.data());
  for (int j = 0; j < np; ++j) w.keep[j] = j < kv && mask.keep(j) ? T(1) : T(0);
  const T ninf = -std::numeric_limits<T>::infinity();
  const int steps = (i1 - i0 + kStepRows - 1) / kStepRows;
  for (int r0 = i0; r0 < i1; r0 += kStepRows) {
    const int rows = std::min(kStepRows, i1 - r0), rows_p = round_up(rows, kRows);
    const int64_t step = (r0 - i0) / kStepRows;  // this step's share of the prefetch
    const int pf_from = static_cast<int>(pf.total() * step / steps);
    const int pf_to = static_cast<int>(pf.total() * (step + 1) / steps);
    pack_rows(q + r0 * p.q_strides.seq, p.q_strides.seq, rows, D, rows_p, dp, w.c.data());
    scores_tiled<T, Avx2, VB>(w.c.data(), dp, rows_p, w.a.data(), ldt, dp, np, w.d.data(), np);
    T inv[kStepRows], lse[kStepRows];
    for (int r = 0; r < rows; ++r) {
      pf.issue(pf_from + (pf_to - pf_from) * (r + 1) / rows);
      T* s = w.d.data() + static_cast<size_t>(r) * np;
      Vec<T> mx = vset1(ninf);
      for (int j = 0; j < np; j += kW<T>) {
        const Vec<T> kp = vload(w.keep.data() + j);
        Vec<T> x = vload(s + j) * scale;
        x = kp > vset1(T(0)) ? x : vset1(ninf);
        vstore(s + j, x);
        mx = x > mx ? x : mx;
      }
      T m = ninf;
      for (int l = 0; l < kW<T>; ++l) m = std::max(m, mx[l]);
      Vec<T> sum = vset1(T(0));
      for (int j = 0; j < np; j += kL) {
        const VV e = vexp<Avx2>(vloadn<VV>(s + j) - m) * vloadn<VV>(w.keep.data() + j);
        vstoren(s + j, e);
        add_in_order<T>(sum, e);
      }
      T l = 0;
      for (int x = 0; x < kW<T>; ++x) l += sum[x];
      if (dropout) {
        dropout_row<VB == 64>(p, threshold, static_cast<uint32_t>(bh),
                              static_cast<uint32_t>(r0 + r), kv, w.z);
        for (int j = 0; j < kv; ++j) s[j] = w.z[j] ? s[j] : T(0);  // branch-free
      }
      inv[r] = rscale / l;
      lse[r] = m + std::log(l);
    }
    for (int r = rows; r < rows_p; ++r)
      std::fill(w.d.begin() + static_cast<size_t>(r) * np, w.d.begin() + static_cast<size_t>(r + 1) * np, T(0));
    products_tiled<T, Avx2, VB>(w.d.data(), np, rows_p, w.b.data(), dp, np, dp, w.e.data(), dp);
    for (int r = 0; r < rows; ++r) {
      const int i = r0 + r;
      T* o = out + i * p.out_strides.seq;
      const T* a = w.e.data() + static_cast<size_t>(r) * dp;
      for (int d = 0; d < D; ++d) o[d] = a[d] * inv[r];
      if (p.lse) p.lse[bh * p.seq_q + i] = static_cast<float>(lse[r]);
    }
  }
}

// One running sum in index order: the order of every element of gemm_abt, so
// that Dvec = dO . O and dP = dO . V (and the recomputed float64 lse and the
// scores) round the same way; e.g. with a single key, dS = P (dP - Dvec) is 0.
template <typename T>
PYBERT_KERNEL T dot(const T* a, const T* b, int n) {
  T s = 0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
// out[r] = dot(a + r lda, b + r ldb, n) for r < rows, eight rows interleaved
// (eight independent sums in flight; the same order per row).
template <typename T>
PYBERT_KERNEL void dots(const T* a, int64_t lda, const T* b, int64_t ldb, int rows, int n, T* out) {
  int r0 = 0;
  for (; r0 + 8 <= rows; r0 += 8) {
    T s[8] = {};
    for (int i = 0; i < n; ++i)
      for (int x = 0; x < 8; ++x) s[x] += a[(r0 + x) * lda + i] * b[(r0 + x) * ldb + i];
    for (int x = 0; x < 8; ++x) out[r0 + x] = s[x];
  }
  for (; r0 < rows; ++r0) out[r0] = dot(a + r0 * lda, b + r0 * ldb, n);
}

// Backward, one (batch, head): for each step of 16 query rows, recompute
// P = exp(scale Q K^T - lse) and dP = dO V^T four rows at a time, then
//   dS = P o (dP o Z / (1 - rate) - Dvec) * scale,  dQ rows = dS K (complete),
// and accumulate dV += (P o Z / (1 - rate))^T dO and dK += dS^T Q over the steps.
template <typename T, int AtbCols, bool Avx2, int VB>
PYBERT_KERNEL void backward_item(const BackwardParams& p, int64_t bh, int64_t next, Scratch<T>& w) {
  constexpr int W2 = 2 * kW<T>;
  typedef typename VecN<T, VB>::type VV;  // the elementwise passes' vectors
  constexpr int kL = VB / static_cast<int>(sizeof(T));
  const int D = p.head_dim, dp = round_up(D, W2);
  RowPrefetch pf;
  if (next >= 0) {  // the next item's rows, in the order it reads them
    const int nb = static_cast<int>(next / p.heads), nh = static_cast<int>(next % p.heads);
    const MaskView nmask{p.mask ? p.mask + nb * p.mask_batch_stride : nullptr};
    const int nkv = p.seq_k > 0 ? nmask.kv_len(p.seq_k) : 0;
    if (nkv > 0) {
      pf.add(head_slice<const T>(p.k, p.k_strides, nb, nh), p.k_strides.seq, nkv, D);
      pf.add(head_slice<const T>(p.v, p.v_strides, nb, nh), p.v_strides.seq, nkv, D);
      pf.add(head_slice<const T>(p.dout, p.dout_strides, nb, nh), p.dout_strides.seq, p.seq_q, D);
      pf.add(head_slice<const T>(p.out, p.out_strides, nb, nh), p.out_strides.seq, p.seq_q, D);
      pf.add(head_slice<const T>(p.q, p.q_strides, nb, nh), p.q_strides.seq, p.seq_q, D);
    }
  }
  const int b = static_cast<int>(bh / p.heads), h = static_cast<int>(bh % p.heads);
  const T* q = head_slice<const T>(p.q, p.q_strides, b, h);
  const T* k = head_slice<const T>(p.k, p.k_strides, b, h);
  const T* v = head_slice<const T>(p.v, p.v_strides, b, h);
  const T* out = head_slice<const T>(p.out, p.out_strides, b, h);
  const T* dout = head_slice<const T>(p.dout, p.dout_strides, b, h);
  T* dq = head_slice<T>(p.dq, p.dq_strides, b, h);
  T* dk = head_slice<T>(p.dk, p.dk_strides, b, h);
  T* dv = head_slice<T>(p.dv, p.dv_strides, b, h);
  const MaskView mask{p.mask ? p.mask + b * p.mask_batch_stride : nullptr};
  const int kv = p.seq_k > 0 ? mask.kv_len(p.seq_k) : 0;
  zero_key_grads<T>(p, b, h, kv);  // keys past the last kept one
  if (kv == 0) {
    for (int i = 0; i < p.seq_q; ++i)
      std::fill(dq + i * p.dq_strides.seq, dq + i * p.dq_strides.seq + D, T(0));
    pf.issue(pf.total());
    return;
  }
  const int np = round_up(kv, W2);
  const bool dropout = p.dropout_rate > 0.f;
  const uint32_t threshold = dropout_threshold(p.dropout_rate);
  const T rscale = dropout ? T(1) / (T(1) - static_cast<T>(p.dropout_rate)) : T(1);
  const T scale = static_cast<T>(p.scale);
  const size_t kd = static_cast<size_t>(np) * dp, rn = static_cast<size_t>(kStepRows) * np,
               rd = static_cast<size_t>(kStepRows) * dp;
  const int ldt = transposed_ld<T>(np);
  w.a.resize(static_cast<size_t>(dp) * ldt);  // K^T [dp][np]
  w.b.resize(static_cast<size_t>(dp) * ldt);  // V^T [dp][np]
  w.c.resize(kd);      // K   [np][dp]
  w.d.assign(kd, 0);   // dK accumulator [np][dp]
  w.e.assign(kd, 0);   // dV accumulator [np][dp]
  w.f.resize(3 * rd);  // Q rows, dO rows, dQ rows
  w.g.resize(2 * rn);  // P o Z * rscale rows, S -> dS rows
  w.h.resize(rn);      // dP rows
  w.keep.resize(np);
  pack_rows(k, p.k_strides.seq, kv, D, np, dp, w.c.data());
  pack_cols(w.c.data(), dp, kv, D, np, dp, w.a.data(), ldt);
  pack_cols(v, p.v_strides.seq, kv, D, np, dp, w.b.data(), ldt);
  for (int j = 0; j < np; ++j) w.keep[j] = j < kv && mask.keep(j) ? T(1) : T(0);
  T* qb = w.f.data();
  T* dob = qb + rd;
  T* dqb = dob + rd;
  T* pz = w.g.data();
  T* ds = pz + rn;
  // Dvec = rowsum(dO o O) and lse per query row.
  w.rows.resize(2 * static_cast<size_t>(p.seq_q));
  T* dvec_bh = w.rows.data();
  T* lse_bh = dvec_bh + p.seq_q;
  dots(dout, p.dout_strides.seq, out, p.out_strides.seq, p.seq_q, D, dvec_bh);
  if constexpr (std::is_same<T, float>::value)
    std::copy(p.lse + bh * p.seq_q, p.lse + (bh + 1) * p.seq_q, lse_bh);
  const int steps = (p.seq_q + kStepRows - 1) / kStepRows;
  for (int i0 = 0; i0 < p.seq_q; i0 += kStepRows) {
    const int rows = std::min(kStepRows, p.seq_q - i0), rows_p = round_up(rows, kRows);
    const int64_t step = i0 / kStepRows;  // this step's share of the prefetch
    const int pf_from = static_cast<int>(pf.total() * step / steps);
    const int pf_to = static_cast<int>(pf.total() * (step + 1) / steps);
    pack_rows(q + i0 * p.q_strides.seq, p.q_strides.seq, rows, D, kStepRows, dp, qb);
    pack_rows(dout + i0 * p.dout_strides.seq, p.dout_strides.seq, rows, D, kStepRows, dp, dob);
    scores_tiled<T, Avx2, VB>(qb, dp, rows_p, w.a.data(), ldt, dp, np, ds, np);          // S
    scores_tiled<T, Avx2, VB>(dob, dp, rows_p, w.b.data(), ldt, dp, np, w.h.data(), np);  // dP
    if constexpr (!std::is_same<T, float>::value) {
      // The float32 lse would cap float64 gradients at ~1e-7: recomputed from the
      // step's scores (kept keys in index order, scalar exp).
      for (int r = 0; r < rows; ++r) {
        const T* sr = ds + static_cast<size_t>(r) * np;
        T mx = -std::numeric_limits<T>::infinity(), sum = 0;
        for (int j = 0; j < kv; ++j)
          if (w.keep[j] != T(0)) mx = std::max(mx, sr[j] * scale);
        for (int j = 0; j < kv && std::isfinite(mx); ++j)
          if (w.keep[j] != T(0)) sum += std::exp(sr[j] * scale - mx);
        lse_bh[i0 + r] = sum > 0 ? mx + std::log(sum) : std::numeric_limits<T>::infinity();
      }
    }
    for (int r = 0; r < kStepRows; ++r) {
      pf.issue(pf_from + (pf_to - pf_from) * (r + 1) / kStepRows);
      const int i = i0 + r;
      T* sr = ds + static_cast<size_t>(r) * np;
      T* pr = pz + static_cast<size_t>(r) * np;
      const T* dpr = w.h.data() + static_cast<size_t>(r) * np;
      if (r >= rows || std::isinf(lse_bh[i])) {  // padding row or fully masked row
        std::fill(sr, sr + np, T(0));
        std::fill(pr, pr + np, T(0));
        continue;
      }
      const T l = lse_bh[i], dvi = dvec_bh[i];
      for (int j = 0; j < np; j += kL) {
        const VV pe = vexp<Avx2>(vloadn<VV>(sr + j) * scale - l) * vloadn<VV>(w.keep.data() + j);
        vstoren(pr + j, pe);
        vstoren(sr + j, pe * (vloadn<VV>(dpr + j) * rscale - dvi) * scale);
      }
      if (dropout) {  // dropped entries: dS = P o (0 - Dvec) * scale, P o Z = 0
        dropout_row<VB == 64>(p, threshold, static_cast<uint32_t>(bh), static_cast<uint32_t>(i), kv,
                              w.z);
        std::fill(w.z.begin() + kv, w.z.begin() + np, uint8_t(1));  // (P is 0 past kv)
        const VV zero{}, ndv = splat<VV>(T(0) - dvi), sc = splat<VV>(scale);
        const VV rs = splat<VV>(rscale);
        for (int j = 0; j < np; j += kL) {
          VV kept{};
          for (int x = 0; x < kL; ++x) kept[x] = static_cast<T>(w.z[j + x]);
          const VV pv = vloadn<VV>(pr + j);
          vstoren(sr + j, kept != zero ? vloadn<VV>(sr + j) : pv * ndv * sc);
          vstoren(pr + j, kept != zero ? pv * rs : zero);
        }
      }
    }
    products_tiled<T, Avx2, VB>(ds, np, rows_p, w.c.data(), dp, np, dp, dqb, dp);  // dQ = dS K
    for (int r = 0; r < rows; ++r) {
      T* o = dq + (i0 + r) * p.dq_strides.seq;
      const T* a = dqb + static_cast<size_t>(r) * dp;
      for (int d = 0; d < D; ++d) o[d] = a[d];
    }
    gemm_atb_acc<T, AtbCols, Avx2, VB>(pz, np, dob, dp, kStepRows, np, dp, w.e.data(), dp);
    gemm_atb_acc<T, AtbCols, Avx2, VB>(ds, np, qb, dp, kStepRows, np, dp, w.d.data(), dp);
  }
  for (int j = 0; j < kv; ++j) {
    const T* a = w.d.data() + static_cast<size_t>(j) * dp;
    const T* c = w.e.data() + static_cast<size_t>(j) * dp;
    T* okr = dk + j * p.dk_strides.seq;
    T* ovr = dv + j * p.dv_strides.seq;
    for (int d = 0; d < D; ++d) {
      okr[d] = a[d];
      ovr[d] = c[d];
    }
  }
}

#if PYBERT_HAVE_AVX2_CLONES
PYBERT_AVX2 void forward_item_avx2(const ForwardParams& p, int64_t item, int64_t next,
                                   Scratch<float>& w) {
  forward_item<float, true, 32>(p, item, next, w);
}
PYBERT_AVX2 void backward_item_avx2(const BackwardParams& p, int64_t bh, int64_t next,
                                    Scratch<float>& w) {
  backward_item<float, 4, true, 32>(p, bh, next, w);
}
PYBERT_AVX512 void forward_item_avx512(const ForwardParams& p, int64_t item, int64_t next,
                                       Scratch<float>& w) {
  forward_item<float, true, 64>(p, item, next, w);
}
PYBERT_AVX512 void backward_item_avx512(const BackwardParams& p, int64_t bh, int64_t next,
                                        Scratch<float>& w) {
  backward_item<float, 4, true, 64>(p, bh, next, w);
}
bool cpu_has_avx2() {
  static const bool ok = [] {
    __builtin_cpu_init();
    if (std::getenv("PYBERT_ATTENTION_BASELINE") != nullptr) return false;  // tests
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return ok;
}
bool cpu_has_avx512() {
  static const bool ok = [] {
    __builtin_cpu_init();
    // tests, and CPUs that slow down under 512-bit code (README)
    if (std::getenv("PYBERT_ATTENTION_NO_AVX512") != nullptr) return false;
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return ok;
}
#endif

template <typename T>
void run_forward_item(const ForwardParams& p, int64_t item, int64_t next, Scratch<T>& w) {
#if PYBERT_HAVE_AVX2_CLONES
  if constexpr (std::is_same<T, float>::value) {
    if (cpu_has_avx512()) return forward_item_avx512(p, item, next, w);
    if (cpu_has_avx2()) return forward_item_avx2(p, item, next, w);
  }
#endif
  forward_item<T, false, 32>(p, item, next, w);
}

template <typename T>
void run_backward_item(const BackwardParams& p, int64_t bh, int64_t next, Scratch<T>& w) {
#if PYBERT_HAVE_AVX2_CLONES
  if constexpr (std::is_same<T, float>::value) {
    if (cpu_has_avx512()) return backward_item_avx512(p, bh, next, w);
    if (cpu_has_avx2()) return backward_item_avx2(p, bh, next, w);
  }
#endif
  backward_item<T, 2, false, 32>(p, bh, next, w);
}

template <typename T>
std::string forward_impl(const ForwardParams& p, int num_threads, const Runner& runner) {
  std::string e = check(p, false);
  if (!e.empty() || p.batch == 0 || p.heads == 0 || p.seq_q == 0) return e;
  const int chunks = (p.seq_q + kFwdChunk - 1) / kFwdChunk;
  parallel_for(static_cast<int64_t>(p.batch) * p.heads * chunks, num_threads, runner,
               [&](int64_t item, int64_t next) {
    thread_local ScratchLease<T> w;
    run_forward_item<T>(p, item, next, w.get());
  });
  return "";
}

template <typename T>
std::string backward_impl(const BackwardParams& p, int num_threads, const Runner& runner) {
  std::string e = check(p, true);
  if (!e.empty() || p.batch == 0 || p.heads == 0) return e;
  if (p.seq_q == 0) {  // no query attends to any key: dK = dV = 0
    if (p.seq_k == 0) return "";
    if (!p.dk || !p.dv) return "dk/dv: null pointer";
    for (int b = 0; b < p.batch; ++b)
      for (int h = 0; h < p.heads; ++h) zero_key_grads<T>(p, b, h, 0);
    return "";
  }
  parallel_for(static_cast<int64_t>(p.batch) * p.heads, num_threads, runner,
               [&](int64_t bh, int64_t next) {
    thread_local ScratchLease<T> w;
    run_backward_item<T>(p, bh, next, w.get());
  });
  return "";
}

}  // namespace

// Nothing is thrown past these two: the callers (the TF op, ctypes) take a
// message. Scratch buffers that cannot be allocated give kOutOfMemory's text.
template <typename Fn>
std::string guarded(const char* what, Fn fn) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return std::string(kOutOfMemory) + ": the " + what + " pass's scratch buffers";
  } catch (const std::exception& e) {
    return std::string(what) + " pass failed: " + e.what();
  }
}

std::string forward_cpu(const ForwardParams& p, int num_threads, const Runner& runner) {
  return guarded("forward", [&]() -> std::string {
    switch (p.dtype) {
      case DType::kFloat32: return forward_impl<float>(p, num_threads, runner);
      case DType::kFloat64: return forward_impl<double>(p, num_threads, runner);
      default:
        return std::string("dtype: the CPU kernels take float32 or float64, got ") +
               dtype_name(p.dtype);
    }
  });
}

std::string backward_cpu(const BackwardParams& p, int num_threads, const Runner& runner) {
  return guarded("backward", [&]() -> std::string {
    switch (p.dtype) {
      case DType::kFloat32: return backward_impl<float>(p, num_threads, runner);
      case DType::kFloat64: return backward_impl<double>(p, num_threads, runner);
      default:
        return std::string("dtype: the CPU kernels take float32 or float64, got ") +
               dtype_name(p.dtype);
    }
  });
}

}  // namespace attention
}  // namespace pybert
