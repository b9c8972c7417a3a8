// Backward tensor-core kernels (FlashAttention-2 style).
//   1. bwd_preprocess: Dvec[bh, i] = dout[i] . out[i] (float32).
//   2. flash_bwd_kernel: one CTA per (key tile, head, batch); each warp owns
//      16 or 32 keys and the CTA streams over query tiles, recomputing
//      P^T = exp(K Q^T * scale - lse) (and the dropout mask from Philox), then
//        dV += (P o Z / (1 - rate))^T dO,   dP^T = V dO^T,
//        dS^T = P^T o (dP^T o Z / (1 - rate) - Dvec),  dK += dS^T Q * scale,
//      and adds dS K * scale into a float32 dQ accumulator with atomics.
//   3. bwd_convert_dq: the accumulator -> dq in the tensor's dtype and strides.
// With `stagger`, the CTAs of one (batch, head) start their query loops at
// different query tiles (and wrap around), so that they do not all add into
// the same dQ rows at the same time (atomic contention at long sequences).
#pragma once

#include <cmath>
#include <type_traits>

#include "attention/cuda_common.cuh"
#include "attention/flash_fwd.cuh"
#include "attention/params.h"
#include "attention/philox.h"

namespace pybert {
namespace attention {
namespace cuda {

template <typename T>
__device__ __forceinline__ void load8(const T* p, float (&f)[8]) {
  if constexpr (sizeof(T) == 2) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = Elem<T>::to_float(e[i]);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = Elem<T>::to_float(p[i]);
  }
}

// One row per D/8 consecutive threads; 128 threads per block. With dq_zero,
// also zeroes that row of the float32 dQ accumulator (instead of a memset pass).
template <typename T, int D>
__global__ void __launch_bounds__(128) bwd_preprocess_kernel(const BackwardParams p, float* dvec,
                                                             float* dq_zero) {
  constexpr int kTPR = D / 8;
  constexpr int kRowsPerBlock = 128 / kTPR;
  const int64_t row_id = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kTPR;
  const int c = threadIdx.x % kTPR;
  const int64_t total = static_cast<int64_t>(p.batch) * p.heads * p.seq_q;
  float sum = 0.f;
  if (row_id < total) {
    const int i = static_cast<int>(row_id % p.seq_q);
    const int64_t bh = row_id / p.seq_q;
    const int b = static_cast<int>(bh / p.heads), h = static_cast<int>(bh % p.heads);
    const T* o = static_cast<const T*>(p.out) + b * p.out_strides.batch + i * p.out_strides.seq +
                 h * p.out_strides.head + c * 8;
    const T* d = static_cast<const T*>(p.dout) + b * p.dout_strides.batch +
                 i * p.dout_strides.seq + h * p.dout_strides.head + c * 8;
    float fo[8], fd[8];
    load8(o, fo);
    load8(d, fd);
#pragma unroll
    for (int e = 0; e < 8; ++e) sum += fo[e] * fd[e];
    if (dq_zero != nullptr) {
      float4* z = reinterpret_cast<float4*>(dq_zero + row_id * D + c * 8);
      z[0] = z[1] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }
#pragma unroll
  for (int off = kTPR / 2; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (row_id < total && c == 0) dvec[row_id] = sum;
}

// dq[b, i, h, :] = dq_accum[(bh * seq_q + i) * D + :]; 8 elements per thread
// (two 16-byte loads; one 16-byte store for the 2-byte types).
template <typename T, int D>
__global__ void __launch_bounds__(128) bwd_convert_dq_kernel(const BackwardParams p,
                                                             const float* dq_accum) {
  const int64_t chunk = static_cast<int64_t>(blockIdx.x) * 128 + threadIdx.x;
  const int64_t total = static_cast<int64_t>(p.batch) * p.heads * p.seq_q * (D / 8);
  if (chunk >= total) return;
  const int c = static_cast<int>(chunk % (D / 8));
  const int64_t row_id = chunk / (D / 8);
  const int i = static_cast<int>(row_id % p.seq_q);
  const int64_t bh = row_id / p.seq_q;
  const int b = static_cast<int>(bh / p.heads), h = static_cast<int>(bh % p.heads);
  const float4* src = reinterpret_cast<const float4*>(dq_accum + row_id * D + c * 8);
  const float4 lo = src[0], hi = src[1];
  T* dst = static_cast<T*>(p.dq) + b * p.dq_strides.batch + i * p.dq_strides.seq +
           h * p.dq_strides.head + c * 8;
  if constexpr (sizeof(T) == 2) {  // rows are 16-byte aligned (checked by the entry point)
    uint4 o;
    o.x = Elem<T>::pack(lo.x, lo.y);
    o.y = Elem<T>::pack(lo.z, lo.w);
    o.z = Elem<T>::pack(hi.x, hi.y);
    o.w = Elem<T>::pack(hi.z, hi.w);
    *reinterpret_cast<uint4*>(dst) = o;
  } else {  // float32 rows are only 4-byte aligned
    const float f[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
    for (int e = 0; e < 8; ++e) dst[e] = f[e];
  }
}

// One (batch, head)'s slices of the backward's tensors (dq_accum: its float32
// rows of the dQ accumulator, dvec: of rowsum(dO * O)).
template <typename T, int D>
struct BwdSlices {
  int bh;
  const T *q, *k, *v, *dout;
  T *dk, *dv, *dq;
  const float *lse, *dvec;
  float* dq_accum;
  const int32_t* mask_row;  // null: no mask
  __device__ __forceinline__ BwdSlices(const BackwardParams& p, int b, int h, float* dq_acc,
                                       const float* dvec_all)
      : bh(b * p.heads + h),
        q(static_cast<const T*>(p.q) + b * p.q_strides.batch + h * p.q_strides.head),
        k(static_cast<const T*>(p.k) + b * p.k_strides.batch + h * p.k_strides.head),
        v(static_cast<const T*>(p.v) + b * p.v_strides.batch + h * p.v_strides.head),
        dout(static_cast<const T*>(p.dout) + b * p.dout_strides.batch + h * p.dout_strides.head),
        dk(static_cast<T*>(p.dk) + b * p.dk_strides.batch + h * p.dk_strides.head),
        dv(static_cast<T*>(p.dv) + b * p.dv_strides.batch + h * p.dv_strides.head),
        dq(static_cast<T*>(p.dq) + b * p.dq_strides.batch + h * p.dq_strides.head),
        lse(p.lse + static_cast<int64_t>(bh) * p.seq_q),
        dvec(dvec_all + static_cast<int64_t>(bh) * p.seq_q),
        dq_accum(dq_acc + static_cast<int64_t>(bh) * p.seq_q * D),
        mask_row(p.mask ? p.mask + b * p.mask_batch_stride : nullptr) {}
  // Query row `row`'s lse (times log2(e)) and Dvec; +inf and 0 past seq_q (P = 0 there).
  __device__ __forceinline__ void row_stats(int seq_q, int row, float& lse2, float& dv) const {
    lse2 = row < seq_q ? lse[row] * kLog2e : INFINITY;
    dv = row < seq_q ? dvec[row] : 0.f;
  }
};

// Step `it` of a backward CTA's walk over the query tiles, which starts at
// tile first_mt and wraps around: the tile's first row, and whether there is a
// next step and its tile's first row.
struct BwdQueryStep {
  int m0, nm;
  bool has_next;
  __device__ __forceinline__ BwdQueryStep(int it, int first_mt, int n_mt, int block_m) {
    const int mt = first_mt + it < n_mt ? first_mt + it : first_mt + it - n_mt;
    m0 = mt * block_m;
    has_next = it + 1 < n_mt;
    nm = mt + 1 < n_mt ? m0 + block_m : 0;
  }
};

// The keys [n0, n0 + kBlockN) of one (batch, head) a backward CTA owns:
// s_keep[r] = whether key n0 + r exists and is kept. If none is, zeroes their
// rows of dk and dv and returns false (the CTA has nothing else to add).
template <typename T, int D, int kBlockN, int kThreads>
__device__ __forceinline__ bool bwd_scan_keys(const BackwardParams& p, int n0,
                                              const int32_t* mask_row, int* s_keep, T* dk, T* dv) {
  bool any_keep = false;
  for (int r = threadIdx.x; r < kBlockN; r += kThreads) {
    const int j = n0 + r;
    const bool keep = j < p.seq_k && (mask_row == nullptr || mask_row[j] != 0);
    s_keep[r] = keep;
    any_keep |= keep;
  }
  if (__syncthreads_or(any_keep)) return true;
  for (int idx = threadIdx.x; idx < kBlockN * (D / 8); idx += kThreads) {
    const int r = idx / (D / 8), c = idx % (D / 8);
    if (n0 + r < p.seq_k) {
      *reinterpret_cast<uint4*>(dk + (n0 + r) * p.dk_strides.seq + c * 8) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(dv + (n0 + r) * p.dv_strides.seq + c * 8) = make_uint4(0, 0, 0, 0);
    }
  }
  return false;
}

template <typename T, int D, int kBlockM, int kWarps, int kKT>
struct BwdShape {
  static constexpr int kBlockN = 16 * kKT * kWarps;  // keys per CTA: 16 * kKT per warp
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kStride = D + 8;
  static constexpr int kSStride = kBlockM + 8;
  // K, V; double-buffered Q, dO; dS^T; double-buffered lse, Dvec.
  static constexpr size_t kSmemBytes =
      sizeof(T) * ((2 * kBlockN + 4 * kBlockM) * kStride + kBlockN * kSStride) +
      sizeof(float) * 4 * kBlockM;
};

// kKT: key tiles of 16 per warp (2 halves the shared-memory loads of Q and dO
// per tensor-core instruction, at the cost of registers).
// kDirectDq: one CTA covers every key (seq_k <= kBlockN), so dq is written
// directly in T instead of through the float32 accumulator and atomics.
// kCacheKV: the warp's K and V A-fragments stay in registers for the whole loop
// (else they are re-read from shared memory each step: fewer registers).
template <typename T, int D, int kBlockM, int kWarps, int kKT, bool kCacheKV, bool kDropout,
          bool kDirectDq>
__global__ void __launch_bounds__(32 * kWarps) flash_bwd_kernel(const BackwardParams p,
                                                                float* dq_accum,
                                                                const float* dvec, bool stagger) {
  using S = BwdShape<T, D, kBlockM, kWarps, kKT>;
  constexpr int kBlockN = S::kBlockN, kThreads = S::kThreads, kStride = S::kStride;
  constexpr int kSStride = S::kSStride;
  constexpr int kWarpKeys = 16 * kKT;        // keys per warp
  constexpr int kQTiles = kBlockM / 16;      // query tiles of 16 rows in the dQ phase
  constexpr int kParts = kWarps / kQTiles;   // warps sharing one query tile, split over D
  constexpr int DP = D / kParts;             // head-dim columns per warp in the dQ phase
  static_assert(kBlockM == 32 || kBlockM == 64 || kBlockM == 128, "kBlockM");
  static_assert(kKT == 1 || kKT == 2, "kKT");
  // Dropout keep bits of one 16 x kBlockM key tile: bit nt * 4 + 2 * r + e.
  using ZBits = std::conditional_t<(kBlockM > 64), uint64_t, uint32_t>;
  static_assert(kParts >= 1 && kWarps % kQTiles == 0 && DP % 16 == 0, "DP");
  PYBERT_DYNAMIC_SMEM(smem_raw);
  PYBERT_STATIC_SMEM(int, s_keep, kBlockN);
  T* sK = reinterpret_cast<T*>(smem_raw);
  T* sV = sK + kBlockN * kStride;
  T* sQbuf = sV + kBlockN * kStride;          // [2][kBlockM * kStride]
  T* sdObuf = sQbuf + 2 * kBlockM * kStride;  // [2][kBlockM * kStride]
  T* sdS = sdObuf + 2 * kBlockM * kStride;
  float* sLsebuf = reinterpret_cast<float*>(sdS + kBlockN * kSStride);  // [2][kBlockM]
  float* sDvbuf = sLsebuf + 2 * kBlockM;                                // [2][kBlockM]

  const int h = blockIdx.y, b = blockIdx.z;
  const int n0 = blockIdx.x * kBlockN;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const BwdSlices<T, D> sl(p, b, h, dq_accum, dvec);
  const int bh = sl.bh;
  const T *q = sl.q, *k = sl.k, *v = sl.v, *dout = sl.dout;
  T *dk = sl.dk, *dv = sl.dv, *dq = sl.dq;
  float* dq_bh = sl.dq_accum;
  const int32_t* mask_row = sl.mask_row;

  if (!bwd_scan_keys<T, D, kBlockN, kThreads>(p, n0, mask_row, s_keep, dk, dv)) {
    // no kept key in this tile: dk, dv zeroed
    if constexpr (kDirectDq) {  // the only CTA of this (b, h): dq is zero too
      for (int idx = tid; idx < p.seq_q * (D / 8); idx += kThreads) {
        const int r = idx / (D / 8), c = idx % (D / 8);
        *reinterpret_cast<uint4*>(dq + r * p.dq_strides.seq + c * 8) = make_uint4(0, 0, 0, 0);
      }
    }
    return;
  }
  load_tile_async<T, D, kStride, kThreads>(sK, k + n0 * p.k_strides.seq, p.k_strides.seq, 0, kBlockN,
                                           p.seq_k - n0);
  load_tile_async<T, D, kStride, kThreads>(sV, v + n0 * p.v_strides.seq, p.v_strides.seq, 0, kBlockN,
                                           p.seq_k - n0);
  // Query tiles are visited in the order first_mt, first_mt + 1, ... (mod n_mt).
  const int n_mt = (p.seq_q + kBlockM - 1) / kBlockM;
  const int first_mt =
      stagger ? static_cast<int>((static_cast<int64_t>(blockIdx.x) * n_mt) / gridDim.x) : 0;
  const int first_m0 = first_mt * kBlockM;
  load_tile_async<T, D, kStride, kThreads>(sQbuf, q, p.q_strides.seq, first_m0, kBlockM, p.seq_q);
  load_tile_async<T, D, kStride, kThreads>(sdObuf, dout, p.dout_strides.seq, first_m0, kBlockM,
                                           p.seq_q);
  cp_async_commit();
  for (int r = tid; r < kBlockM; r += kThreads) {
    sl.row_stats(p.seq_q, first_m0 + r, sLsebuf[r], sDvbuf[r]);
  }

  // Warp w owns keys n0 + w * kWarpKeys + j * 16 + [0, 16) for j < kKT.
  const int key0 = warp * kWarpKeys;
  bool keep0[kKT], keep1[kKT];
#pragma unroll
  for (int j = 0; j < kKT; ++j) {
    keep0[j] = s_keep[key0 + j * 16 + g];
    keep1[j] = s_keep[key0 + j * 16 + g + 8];
  }
  const float scale_log2 = p.scale * kLog2e;
  const uint32_t threshold = kDropout ? dropout_threshold(p.dropout_rate) : 0u;
  const float rscale = kDropout ? 1.f / (1.f - p.dropout_rate) : 1.f;
  const int qt = warp % kQTiles, dpart = warp / kQTiles;
  // A-fragment address of key tile j: row key0 + j * 16 + a_row, column a_col.
  const int a_row = ((lane / 8) % 2) * 8 + lane % 8, a_col = (lane / 16) * 8;

  float acc_dk[kKT][D / 8][4], acc_dv[kKT][D / 8][4];
#pragma unroll
  for (int j = 0; j < kKT; ++j)
#pragma unroll
    for (int i = 0; i < D / 8; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc_dk[j][i][e] = acc_dv[j][i][e] = 0.f;
  uint32_t kf[kCacheKV ? kKT : 1][kCacheKV ? D / 16 : 1][4];
  uint32_t vf[kCacheKV ? kKT : 1][kCacheKV ? D / 16 : 1][4];

  int buf = 0;
  for (int it = 0; it < n_mt; ++it, buf ^= 1) {
    const BwdQueryStep qs(it, first_mt, n_mt, kBlockM);
    const int m0 = qs.m0, nm = qs.nm;
    const bool has_next = qs.has_next;
    float next_lse = INFINITY, next_dv = 0.f;
    if (has_next && tid < kBlockM) sl.row_stats(p.seq_q, nm + tid, next_lse, next_dv);
    cp_async_wait_all();
    __syncthreads();  // this tile landed; every warp is done with the previous step
    if (has_next) {
      load_tile_async<T, D, kStride, kThreads>(sQbuf + (buf ^ 1) * kBlockM * kStride,
                                               q + nm * p.q_strides.seq, p.q_strides.seq, 0, kBlockM,
                                               p.seq_q - nm);
      load_tile_async<T, D, kStride, kThreads>(sdObuf + (buf ^ 1) * kBlockM * kStride,
                                               dout + nm * p.dout_strides.seq, p.dout_strides.seq, 0,
                                               kBlockM, p.seq_q - nm);
      cp_async_commit();
    }
    if constexpr (kCacheKV) {
      if (it == 0) {
#pragma unroll
        for (int j = 0; j < kKT; ++j)
#pragma unroll
          for (int kt = 0; kt < D / 16; ++kt) {
            const int off = (key0 + j * 16 + a_row) * kStride + kt * 16 + a_col;
            ldmatrix_x4(kf[j][kt], sK + off);
            ldmatrix_x4(vf[j][kt], sV + off);
          }
      }
    }
    const T* sQ = sQbuf + buf * kBlockM * kStride;
    const T* sdO = sdObuf + buf * kBlockM * kStride;
    const float* sLse = sLsebuf + buf * kBlockM;
    const float* sDv = sDvbuf + buf * kBlockM;

    // S^T = K Q^T and dP^T = V dO^T for this warp's keys x kBlockM queries.
    float st[kKT][kBlockM / 8][4], dpt[kKT][kBlockM / 8][4];
#pragma unroll
    for (int j = 0; j < kKT; ++j)
#pragma unroll
      for (int i = 0; i < kBlockM / 8; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) st[j][i][e] = dpt[j][i][e] = 0.f;
#pragma unroll
    for (int kt = 0; kt < D / 16; ++kt) {
      uint32_t a[kKT][4], av[kKT][4];
#pragma unroll
      for (int j = 0; j < kKT; ++j) {
        if constexpr (kCacheKV) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            a[j][e] = kf[j][kt][e];
            av[j][e] = vf[j][kt][e];
          }
        } else {
          const int off = (key0 + j * 16 + a_row) * kStride + kt * 16 + a_col;
          ldmatrix_x4(a[j], sK + off);
          ldmatrix_x4(av[j], sV + off);
        }
      }
#pragma unroll
      for (int np = 0; np < kBlockM / 16; ++np) {
        uint32_t r[4], rd[4];
        const int off = (np * 16 + (lane / 16) * 8 + lane % 8) * kStride + kt * 16 + ((lane / 8) % 2) * 8;
        ldmatrix_x4(r, sQ + off);
        ldmatrix_x4(rd, sdO + off);
#pragma unroll
        for (int j = 0; j < kKT; ++j) {
          Elem<T>::mma(st[j][2 * np], a[j], r[0], r[1]);
          Elem<T>::mma(st[j][2 * np + 1], a[j], r[2], r[3]);
          Elem<T>::mma(dpt[j][2 * np], av[j], rd[0], rd[1]);
          Elem<T>::mma(dpt[j][2 * np + 1], av[j], rd[2], rd[3]);
        }
      }
    }
    // P^T (0 for masked keys and for query rows past seq_q, whose lse is +inf).
#pragma unroll
    for (int j = 0; j < kKT; ++j)
#pragma unroll
      for (int nt = 0; nt < kBlockM / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float l2 = sLse[nt * 8 + 2 * t + e];
          st[j][nt][e] = keep0[j] ? fast_exp2(fmaf(st[j][nt][e], scale_log2, -l2)) : 0.f;
          st[j][nt][2 + e] = keep1[j] ? fast_exp2(fmaf(st[j][nt][2 + e], scale_log2, -l2)) : 0.f;
        }
      }
    ZBits zbits[kKT];  // bit nt*4 + 2*r + e: keep
#pragma unroll
    for (int j = 0; j < kKT; ++j) {
      zbits[j] = ~ZBits(0);
      if constexpr (kDropout) {
        zbits[j] = 0;
#pragma unroll
        for (int nt = 0; nt < kBlockM / 8; ++nt)
#pragma unroll
          for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int key = n0 + key0 + j * 16 + g + 8 * r;
              const int row = m0 + nt * 8 + 2 * t + e;
              if (dropout_keep(p.seed, p.offset, threshold, bh, row, key))
                zbits[j] |= ZBits(1) << (nt * 4 + 2 * r + e);
            }
      }
    }
    // dV += Pd^T dO.
#pragma unroll
    for (int kk = 0; kk < kBlockM / 16; ++kk) {
      uint32_t a[kKT][4];
#pragma unroll
      for (int j = 0; j < kKT; ++j) {
        float pd[2][4];
#pragma unroll
        for (int x = 0; x < 2; ++x)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int nt = 2 * kk + x;
            const bool z = (zbits[j] >> (nt * 4 + e)) & 1u;
            pd[x][e] = z ? st[j][nt][e] * rscale : 0.f;
          }
        a[j][0] = Elem<T>::pack(pd[0][0], pd[0][1]);
        a[j][1] = Elem<T>::pack(pd[0][2], pd[0][3]);
        a[j][2] = Elem<T>::pack(pd[1][0], pd[1][1]);
        a[j][3] = Elem<T>::pack(pd[1][2], pd[1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t r[4];
        ldmatrix_x4_trans(r, sdO + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kStride +
                                 dp * 16 + (lane / 16) * 8);
#pragma unroll
        for (int j = 0; j < kKT; ++j) {
          Elem<T>::mma(acc_dv[j][2 * dp], a[j], r[0], r[1]);
          Elem<T>::mma(acc_dv[j][2 * dp + 1], a[j], r[2], r[3]);
        }
      }
    }
    // dS^T = P^T o (dP^T o Z * rscale - Dvec), kept in st.
#pragma unroll
    for (int j = 0; j < kKT; ++j)
#pragma unroll
      for (int nt = 0; nt < kBlockM / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const bool z = (zbits[j] >> (nt * 4 + e)) & 1u;
          const float dvi = sDv[nt * 8 + 2 * t + (e & 1)];
          st[j][nt][e] = st[j][nt][e] * ((z ? dpt[j][nt][e] * rscale : 0.f) - dvi);
        }
    // dK += dS^T Q; dS^T -> shared memory for the dQ phase.
#pragma unroll
    for (int kk = 0; kk < kBlockM / 16; ++kk) {
      uint32_t a[kKT][4];
#pragma unroll
      for (int j = 0; j < kKT; ++j) {
        a[j][0] = Elem<T>::pack(st[j][2 * kk][0], st[j][2 * kk][1]);
        a[j][1] = Elem<T>::pack(st[j][2 * kk][2], st[j][2 * kk][3]);
        a[j][2] = Elem<T>::pack(st[j][2 * kk + 1][0], st[j][2 * kk + 1][1]);
        a[j][3] = Elem<T>::pack(st[j][2 * kk + 1][2], st[j][2 * kk + 1][3]);
        T* srow = sdS + (key0 + j * 16 + g) * kSStride + kk * 16 + 2 * t;
        *reinterpret_cast<uint32_t*>(srow) = a[j][0];
        *reinterpret_cast<uint32_t*>(srow + 8 * kSStride) = a[j][1];
        *reinterpret_cast<uint32_t*>(srow + 8) = a[j][2];
        *reinterpret_cast<uint32_t*>(srow + 8 * kSStride + 8) = a[j][3];
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t r[4];
        ldmatrix_x4_trans(r, sQ + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kStride + dp * 16 +
                                 (lane / 16) * 8);
#pragma unroll
        for (int j = 0; j < kKT; ++j) {
          Elem<T>::mma(acc_dk[j][2 * dp], a[j], r[0], r[1]);
          Elem<T>::mma(acc_dk[j][2 * dp + 1], a[j], r[2], r[3]);
        }
      }
    }
    if (has_next && tid < kBlockM) {
      sLsebuf[(buf ^ 1) * kBlockM + tid] = next_lse;
      sDvbuf[(buf ^ 1) * kBlockM + tid] = next_dv;
    }
    __syncthreads();  // dS^T complete

    // dQ[qt tile, dpart columns] += dS K * scale over this CTA's keys.
    float acc_dq[DP / 8][4];
#pragma unroll
    for (int i = 0; i < DP / 8; ++i) acc_dq[i][0] = acc_dq[i][1] = acc_dq[i][2] = acc_dq[i][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      uint32_t a[4];
      ldmatrix_x4_trans(a, sdS + (kk * 16 + (lane / 16) * 8 + lane % 8) * kSStride + qt * 16 +
                               ((lane / 8) % 2) * 8);
#pragma unroll
      for (int dp = 0; dp < DP / 16; ++dp) {
        uint32_t r[4];
        ldmatrix_x4_trans(r, sK + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kStride +
                                 dpart * DP + dp * 16 + (lane / 16) * 8);
        Elem<T>::mma(acc_dq[2 * dp], a, r[0], r[1]);
        Elem<T>::mma(acc_dq[2 * dp + 1], a, r[2], r[3]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = m0 + qt * 16 + g + 8 * r;
      if (row < p.seq_q) {
        if constexpr (kDirectDq) {
          T* dst = dq + row * p.dq_strides.seq + dpart * DP + 2 * t;
#pragma unroll
          for (int dt = 0; dt < DP / 8; ++dt)
            *reinterpret_cast<uint32_t*>(dst + dt * 8) =
                Elem<T>::pack(acc_dq[dt][2 * r] * p.scale, acc_dq[dt][2 * r + 1] * p.scale);
        } else {
          float* dst = dq_bh + static_cast<int64_t>(row) * D + dpart * DP + 2 * t;
#pragma unroll
          for (int dt = 0; dt < DP / 8; ++dt) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
            atomicAdd(reinterpret_cast<float2*>(dst + dt * 8),
                      make_float2(acc_dq[dt][2 * r] * p.scale, acc_dq[dt][2 * r + 1] * p.scale));
#else
            atomicAdd(dst + dt * 8, acc_dq[dt][2 * r] * p.scale);
            atomicAdd(dst + dt * 8 + 1, acc_dq[dt][2 * r + 1] * p.scale);
#endif
          }
        }
      }
    }
  }

#pragma unroll
  for (int j = 0; j < kKT; ++j)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int key = n0 + key0 + j * 16 + g + 8 * r;
      if (key < p.seq_k) {
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) {
          *reinterpret_cast<uint32_t*>(dk + key * p.dk_strides.seq + dt * 8 + 2 * t) =
              Elem<T>::pack(acc_dk[j][dt][2 * r] * p.scale, acc_dk[j][dt][2 * r + 1] * p.scale);
          *reinterpret_cast<uint32_t*>(dv + key * p.dv_strides.seq + dt * 8 + 2 * t) =
              Elem<T>::pack(acc_dv[j][dt][2 * r], acc_dv[j][dt][2 * r + 1]);
        }
      }
    }
}

}  // namespace cuda
}  // namespace attention
}  // namespace pybert
