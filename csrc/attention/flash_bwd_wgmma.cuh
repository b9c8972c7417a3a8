// Backward kernel on Hopper warpgroup MMA (wgmma, sm_90a), head dim 64: the
// algorithm of flash_bwd_kernel (flash_bwd.cuh; same preprocess and dQ
// conversion kernels, masks, dropout stream and outputs) with every product on
// wgmma. One CTA per (128 keys, head, batch), two warpgroups of 64 keys each;
// the CTA streams over query tiles of 64 rows. K, V (once) and the Q and dO
// tiles (double-buffered) sit in shared memory in the 128-byte-swizzled layout
// (wgmma.cuh), so the tensor cores read them directly. Per query tile, each
// warpgroup computes for its 64 keys
//   S^T = K Q^T and dP^T = V dO^T            (A = K, V; B = Q, dO: both K-major)
//   P^T, dS^T in registers (the accumulator layout is the A-fragment layout)
//   dV += Pd^T dO and dK += dS^T Q            (A = registers; B = dO, Q: MN-major)
// and writes dS^T to shared memory; then each warpgroup adds half of the head
// dim of dQ = dS K over all 128 keys (A = dS^T read transposed, B = K
// MN-major, m64n32) into the float32 accumulator with atomics.
#pragma once

#include <cmath>
#include <type_traits>

#include "attention/cuda_common.cuh"
#include "attention/flash_bwd.cuh"
#include "attention/flash_fwd_wgmma.cuh"
#include "attention/params.h"
#include "attention/philox.h"
#include "attention/wgmma.cuh"

namespace pybert {
namespace attention {
namespace cuda {

template <typename T>
struct BwdWgmmaShape {
  static constexpr int D = 64;
  static constexpr int kBlockN = 128;  // keys per CTA: 2 warpgroups x 64
  static constexpr int kBlockM = 64;   // query rows per step
  static constexpr int kThreads = 256;
  static constexpr int kRowBytes = 128;  // 64 16-bit elements: one swizzle row
  // 1024 bytes of alignment slack; K, V; double-buffered Q and dO; dS^T (keys x queries).
  static constexpr size_t kSmemBytes =
      1024 + static_cast<size_t>(kRowBytes) * (2 * kBlockN + 4 * kBlockM + kBlockN);
  static_assert(sizeof(T) == 2, "16-bit types only");
};

template <typename T, bool kDropout>
__global__ void __launch_bounds__(256) flash_bwd_wgmma_kernel(const BackwardParams p,
                                                              float* dq_accum, const float* dvec,
                                                              bool stagger) {
#if PYBERT_HAS_WGMMA
  using S = BwdWgmmaShape<T>;
  constexpr int D = S::D, kBlockN = S::kBlockN, kBlockM = S::kBlockM, kThreads = S::kThreads;
  constexpr int kRB = S::kRowBytes;
  PYBERT_DYNAMIC_SMEM(smem_raw);
  PYBERT_STATIC_SMEM(int, s_keep, kBlockN);
  PYBERT_STATIC_SMEM(float, sLsebuf, 2 * kBlockM);  // [2][kBlockM], times log2(e)
  PYBERT_STATIC_SMEM(float, sDvbuf, 2 * kBlockM);   // [2][kBlockM]
  T* sK = reinterpret_cast<T*>(smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u));
  T* sV = sK + kBlockN * D;
  T* sQbuf = sV + kBlockN * D;          // [2][kBlockM * D]
  T* sdObuf = sQbuf + 2 * kBlockM * D;  // [2][kBlockM * D]
  T* sdS = sdObuf + 2 * kBlockM * D;    // dS^T: row = key (kBlockN), 64 queries per row

  const int h = blockIdx.y, b = blockIdx.z;
  const int n0 = blockIdx.x * kBlockN;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int wg = warp / 4;                 // warpgroup: keys n0 + 64 wg + [0, 64)
  const int key0 = wg * 64 + (warp % 4) * 16;  // the warp's first key (accumulator rows)
  const int qrow0 = (warp % 4) * 16;       // the warp's first query row in the dQ product
  const BwdSlices<T, D> sl(p, b, h, dq_accum, dvec);

  // no kept key in this tile: dk, dv zeroed, nothing to add to dq
  if (!bwd_scan_keys<T, D, kBlockN, kThreads>(p, n0, sl.mask_row, s_keep, sl.dk, sl.dv)) return;
  load_tile_sw128<T, kThreads>(sK, sl.k + n0 * p.k_strides.seq, p.k_strides.seq, 0, kBlockN,
                               p.seq_k - n0);
  load_tile_sw128<T, kThreads>(sV, sl.v + n0 * p.v_strides.seq, p.v_strides.seq, 0, kBlockN,
                               p.seq_k - n0);
  // Query tiles are visited in the order first_mt, first_mt + 1, ... (mod n_mt).
  const int n_mt = (p.seq_q + kBlockM - 1) / kBlockM;
  const int first_mt =
      stagger ? static_cast<int>((static_cast<int64_t>(blockIdx.x) * n_mt) / gridDim.x) : 0;
  const int first_m0 = first_mt * kBlockM;
  load_tile_sw128<T, kThreads>(sQbuf, sl.q, p.q_strides.seq, first_m0, kBlockM, p.seq_q);
  load_tile_sw128<T, kThreads>(sdObuf, sl.dout, p.dout_strides.seq, first_m0, kBlockM, p.seq_q);
  cp_async_commit();
  for (int r = tid; r < kBlockM; r += kThreads) {
    sl.row_stats(p.seq_q, first_m0 + r, sLsebuf[r], sDvbuf[r]);
  }

  const bool keep0 = s_keep[key0 + g], keep1 = s_keep[key0 + g + 8];
  const float scale_log2 = p.scale * kLog2e;
  const uint32_t threshold = kDropout ? dropout_threshold(p.dropout_rate) : 0u;
  const float rscale = kDropout ? 1.f / (1.f - p.dropout_rate) : 1.f;
  const uint32_t k_addr = smem_u32(sK), v_addr = smem_u32(sV), ds_addr = smem_u32(sdS);

  float acc_dk[D / 8][4], acc_dv[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc_dk[i][e] = acc_dv[i][e] = 0.f;

  int buf = 0;
  for (int it = 0; it < n_mt; ++it, buf ^= 1) {
    const BwdQueryStep qs(it, first_mt, n_mt, kBlockM);
    const int m0 = qs.m0, nm = qs.nm;
    const bool has_next = qs.has_next;
    float next_lse = INFINITY, next_dv = 0.f;
    if (has_next && tid < kBlockM) sl.row_stats(p.seq_q, nm + tid, next_lse, next_dv);
    cp_async_wait_all();
    fence_proxy_async();
    // This tile (and K, V) landed, for wgmma too; every warpgroup is done with
    // the previous step (its dQ product read dS^T and the buffers the next
    // copies overwrite; its wgmma were waited for).
    __syncthreads();
    if (has_next) {
      load_tile_sw128<T, kThreads>(sQbuf + (buf ^ 1) * kBlockM * D, sl.q + nm * p.q_strides.seq,
                                   p.q_strides.seq, 0, kBlockM, p.seq_q - nm);
      load_tile_sw128<T, kThreads>(sdObuf + (buf ^ 1) * kBlockM * D,
                                   sl.dout + nm * p.dout_strides.seq, p.dout_strides.seq, 0, kBlockM,
                                   p.seq_q - nm);
      cp_async_commit();
    }
    const uint32_t q_addr = smem_u32(sQbuf + buf * kBlockM * D);
    const uint32_t do_addr = smem_u32(sdObuf + buf * kBlockM * D);
    const float* sLse = sLsebuf + buf * kBlockM;
    const float* sDv = sDvbuf + buf * kBlockM;

    // S^T = K Q^T, dP^T = V dO^T: rows = this warpgroup's keys, columns = queries.
    float st[kBlockM / 8][4], dpt[kBlockM / 8][4];
    wgmma_fence();
#pragma unroll
    for (int kt = 0; kt < D / 16; ++kt) {
      const uint32_t a_off = wg * 64 * kRB + kt * 32;
      wgmma_ss<T, false, false, 64>(st, wgmma_desc_sw128(k_addr + a_off, 16, 1024),
                                    wgmma_desc_sw128(q_addr + kt * 32, 16, 1024), kt > 0);
      wgmma_ss<T, false, false, 64>(dpt, wgmma_desc_sw128(v_addr + a_off, 16, 1024),
                                    wgmma_desc_sw128(do_addr + kt * 32, 16, 1024), kt > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    wgmma_fence_regs(st);
    wgmma_fence_regs(dpt);

    // P^T (0 for masked keys and for query rows past seq_q, whose lse is +inf).
#pragma unroll
    for (int nt = 0; nt < kBlockM / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float l2 = sLse[nt * 8 + 2 * t + e];
        st[nt][e] = keep0 ? fast_exp2(fmaf(st[nt][e], scale_log2, -l2)) : 0.f;
        st[nt][2 + e] = keep1 ? fast_exp2(fmaf(st[nt][2 + e], scale_log2, -l2)) : 0.f;
      }
    uint32_t zbits = ~0u;  // bit nt * 4 + 2 r + e: keep
    if constexpr (kDropout) {
      zbits = 0u;
#pragma unroll
      for (int nt = 0; nt < kBlockM / 8; ++nt)
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int key = n0 + key0 + g + 8 * r;
            const int row = m0 + nt * 8 + 2 * t + e;
            if (dropout_keep(p.seed, p.offset, threshold, sl.bh, row, key))
              zbits |= 1u << (nt * 4 + 2 * r + e);
          }
    }
    // Pd^T = P^T o Z * rscale and dS^T = P^T o (dP^T o Z * rscale - Dvec), as A fragments
    // (16 queries per k step); dS^T also to shared memory for the dQ product.
    uint32_t pa[kBlockM / 16][4], sa[kBlockM / 16][4];
#pragma unroll
    for (int kk = 0; kk < kBlockM / 16; ++kk) {
      float pd[2][4], ds[2][4];
#pragma unroll
      for (int x = 0; x < 2; ++x)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int nt = 2 * kk + x;
          const bool z = (zbits >> (nt * 4 + e)) & 1u;
          const float dvi = sDv[nt * 8 + 2 * t + (e & 1)];
          pd[x][e] = z ? st[nt][e] * rscale : 0.f;
          ds[x][e] = st[nt][e] * ((z ? dpt[nt][e] * rscale : 0.f) - dvi);
        }
      pa[kk][0] = Elem<T>::pack(pd[0][0], pd[0][1]);
      pa[kk][1] = Elem<T>::pack(pd[0][2], pd[0][3]);
      pa[kk][2] = Elem<T>::pack(pd[1][0], pd[1][1]);
      pa[kk][3] = Elem<T>::pack(pd[1][2], pd[1][3]);
      sa[kk][0] = Elem<T>::pack(ds[0][0], ds[0][1]);
      sa[kk][1] = Elem<T>::pack(ds[0][2], ds[0][3]);
      sa[kk][2] = Elem<T>::pack(ds[1][0], ds[1][1]);
      sa[kk][3] = Elem<T>::pack(ds[1][2], ds[1][3]);
      // row key0 + g (+8), queries 16 kk + 2t (+8): chunk 2 kk (+1) of the row, swizzled
#pragma unroll
      for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int x = 0; x < 2; ++x) {
          const int row = key0 + g + 8 * r, c = 2 * kk + x;
          *reinterpret_cast<uint32_t*>(sdS + row * 64 + ((c ^ (row & 7)) * 8) + 2 * t) = sa[kk][2 * x + r];
        }
    }
    // dV += Pd^T dO, dK += dS^T Q (B rows = queries: MN-major, 16 rows per k step).
    wgmma_fence_regs(acc_dv);
    wgmma_fence_regs(acc_dk);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBlockM / 16; ++kk) {
      wgmma_m64n64k16<T, true>(acc_dv, pa[kk], wgmma_desc_sw128(do_addr + kk * 16 * kRB, 16, 1024),
                               true);
      wgmma_m64n64k16<T, true>(acc_dk, sa[kk], wgmma_desc_sw128(q_addr + kk * 16 * kRB, 16, 1024),
                               true);
    }
    wgmma_commit();
    if (has_next && tid < kBlockM) {
      sLsebuf[(buf ^ 1) * kBlockM + tid] = next_lse;
      sDvbuf[(buf ^ 1) * kBlockM + tid] = next_dv;
    }
    fence_proxy_async();
    __syncthreads();  // dS^T complete (and visible to wgmma)

    // dQ[64 queries, 32 wg + (0..31)] += dS K * scale over this CTA's keys:
    // A = dS (queries x keys) = sdS read transposed, B = K rows (MN-major).
    float acc_dq[4][4];
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk)
      wgmma_ss<T, true, true, 32>(acc_dq, wgmma_desc_sw128(ds_addr + kk * 16 * kRB, 16, 1024),
                                  wgmma_desc_sw128(k_addr + kk * 16 * kRB + wg * 64, 16, 1024),
                                  kk > 0);
    wgmma_commit();
    wgmma_wait<0>();  // the dQ product, and dK/dV (their A registers change next step)
    wgmma_fence_regs(acc_dq);
    wgmma_fence_regs(acc_dv);
    wgmma_fence_regs(acc_dk);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = m0 + qrow0 + g + 8 * r;
      if (row < p.seq_q) {
        float* dst = sl.dq_accum + static_cast<int64_t>(row) * D + wg * 32 + 2 * t;
#pragma unroll
        for (int dt = 0; dt < 4; ++dt)
          atomicAdd(reinterpret_cast<float2*>(dst + dt * 8),
                    make_float2(acc_dq[dt][2 * r] * p.scale, acc_dq[dt][2 * r + 1] * p.scale));
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = n0 + key0 + g + 8 * r;
    if (key < p.seq_k) {
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        *reinterpret_cast<uint32_t*>(sl.dk + key * p.dk_strides.seq + dt * 8 + 2 * t) =
            Elem<T>::pack(acc_dk[dt][2 * r] * p.scale, acc_dk[dt][2 * r + 1] * p.scale);
        *reinterpret_cast<uint32_t*>(sl.dv + key * p.dv_strides.seq + dt * 8 + 2 * t) =
            Elem<T>::pack(acc_dv[dt][2 * r], acc_dv[dt][2 * r + 1]);
      }
    }
  }
#else
  (void)p, (void)dq_accum, (void)dvec, (void)stagger;
#endif
}

}  // namespace cuda
}  // namespace attention
}  // namespace pybert
