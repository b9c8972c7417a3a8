// Forward kernel on Hopper warpgroup MMA (wgmma, sm_90a), head dim 64: one CTA
// per (64 * kWG query rows, head, batch); warpgroup w owns query rows
// m0 + 64 w + [0, 64), each of its warps 16 of them. The same algorithm,
// masking, online softmax, dropout stream and outputs as flash_fwd_kernel
// (flash_fwd.cuh); what differs is who feeds the tensor cores:
//   - K and V tiles of 128 keys are double-buffered in shared memory in the
//     128-byte-swizzled layout wgmma reads (wgmma.cuh), so the tensor cores
//     read K and V directly (no ldmatrix for them);
//   - S = Q K^T: per 16 columns of the head dim, two wgmma m64n64k16 (keys
//     0-63 and 64-127), A = the warp's Q fragments (loaded once, ldmatrix);
//   - O += P V: per 16 keys one wgmma m64n64k16, A = P packed to 16 bits from
//     the S accumulators in registers (their layouts coincide), B = the V tile
//     read transposed (MN-major).
// With two K/V buffers (variants 10, 11) each tile's two products are issued
// and waited for in turn, and the overlap of one warpgroup's softmax with
// tensor-core work comes from the other CTAs on the SM; with three (variants
// 12 and 13, one and two warpgroups) a warpgroup keeps P V of one tile in
// flight during the softmax of the next (no warp specialization either way).
#pragma once

#include <cmath>

#include "attention/cuda_common.cuh"
#include "attention/flash_fwd.cuh"
#include "attention/params.h"
#include "attention/philox.h"
#include "attention/wgmma.cuh"

namespace pybert {
namespace attention {
namespace cuda {

template <typename T, int kWG, int kStages = 2>
struct FwdWgmmaShape {
  static constexpr int D = 64;
  static constexpr int kBlockM = 64 * kWG;
  static constexpr int kBlockN = 128;
  static constexpr int kThreads = 128 * kWG;
  static constexpr int kRowBytes = D * 2;  // one 128-byte swizzle row per key or query
  static constexpr size_t kTileBytes = static_cast<size_t>(kBlockN) * kRowBytes;
  // 1024 bytes of slack to align the tiles to the swizzle atom, Q, kStages K and V tiles.
  static constexpr size_t kSmemBytes =
      1024 + static_cast<size_t>(kBlockM) * kRowBytes + 2 * kStages * kTileBytes;
  static_assert(kStages == 2 || kStages == 3, "two or three K/V buffers");
  static_assert(sizeof(T) == 2, "16-bit types only");
};

// Copies rows [row0, row0 + rows) of a [seq, 64] slice (row stride seq_stride)
// into a 128-byte-swizzled tile at a 1024-byte aligned address, zero-filling
// rows >= limit: chunk c of row r lands at chunk c ^ (r % 8) of the row.
template <typename T, int kThreads>
__device__ __forceinline__ void load_tile_sw128(T* dst, const T* src, int64_t seq_stride, int row0,
                                                int rows, int limit) {
  for (int idx = threadIdx.x; idx < rows * 8; idx += kThreads) {
    const int r = idx / 8, c = idx % 8;
    const int row = row0 + r;
    const bool valid = row < limit;
    const T* s = valid ? src + row * seq_stride + c * 8 : src;
    cp_async_16(dst + r * 64 + ((c ^ (r & 7)) * 8), s, valid);
  }
}

// One key tile's scores s (this warp's 16 rows x 128 keys, s[half][i]: keys
// n0 + 64 half + 8 i + [0, 8)): masked keys to -inf, then the online softmax
// (running max m_i and sum l_i per row, in log2 units); s becomes P and corr
// the factor the output accumulators must be scaled by.
__device__ __forceinline__ void wgmma_softmax_tile(float (&s)[2][8][4], const MaskInfo& info,
                                                   const int32_t* mask_row, int n0, int t,
                                                   float scale_log2, float (&m_i)[2],
                                                   float (&l_i)[2], float (&corr)[2]) {
  if (!info.prefix || n0 + 128 > info.kv_len) {
#pragma unroll
    for (int half = 0; half < 2; ++half)
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int col = n0 + half * 64 + i * 8 + 2 * t + e;
          const bool keep = col < info.kv_len && (info.prefix || mask_row[col] != 0);
          if (!keep) s[half][i][e] = s[half][i][2 + e] = -INFINITY;
        }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = -INFINITY;
#pragma unroll
    for (int half = 0; half < 2; ++half)
#pragma unroll
      for (int i = 0; i < 8; ++i) mx = fmaxf(mx, fmaxf(s[half][i][2 * r], s[half][i][2 * r + 1]));
    mx = quad_max(mx);
    const float m_new = fmaxf(m_i[r], mx * scale_log2);
    const float m_use = m_new == -INFINITY ? 0.f : m_new;
    corr[r] = fast_exp2(m_i[r] - m_use);
    m_i[r] = m_new;
    float sum = 0.f;
#pragma unroll
    for (int half = 0; half < 2; ++half)
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float pe = fast_exp2(fmaf(s[half][i][2 * r + e], scale_log2, -m_use));
          s[half][i][2 * r + e] = pe;
          sum += pe;
        }
    l_i[r] = l_i[r] * corr[r] + sum;
  }
}

// Dropout (the Philox stream of flash_fwd_kernel) on P, then P packed to 16
// bits as the A fragments of O += P V (16 keys per k step).
template <typename T, bool kDropout>
__device__ __forceinline__ void wgmma_pack_p(float (&s)[2][8][4], uint32_t (&pa)[8][4],
                                             const ForwardParams& p, uint32_t threshold, int bh,
                                             int row0, int n0, int t) {
  if constexpr (kDropout) {
#pragma unroll
    for (int half = 0; half < 2; ++half)
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int col = n0 + half * 64 + i * 8 + 2 * t;  // even: words (col & 3) and (col & 3) + 1
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const Philox4 w = dropout_words(p.seed, p.offset, bh, row0 + 8 * r, col);
          const bool lo = (col & 2) == 0;
          if ((lo ? w.x[0] : w.x[2]) < threshold) s[half][i][2 * r] = 0.f;
          if ((lo ? w.x[1] : w.x[3]) < threshold) s[half][i][2 * r + 1] = 0.f;
        }
      }
  }
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    const float(&lo)[4] = s[kk / 4][(2 * kk) % 8];
    const float(&hi)[4] = s[kk / 4][(2 * kk + 1) % 8];
    pa[kk][0] = Elem<T>::pack(lo[0], lo[1]);
    pa[kk][1] = Elem<T>::pack(lo[2], lo[3]);
    pa[kk][2] = Elem<T>::pack(hi[0], hi[1]);
    pa[kk][3] = Elem<T>::pack(hi[2], hi[3]);
  }
}

// The descriptors of the 8 wgmma of S = Q K^T ([kt][half]) and of O += P V
// ([kk]) for a 128-key tile at shared address k_addr / v_addr; pinned (an
// empty asm) where they are computed, so that none is computed between a
// wgmma.fence and the wgmma using it (ptxas would serialize the pipeline).
__device__ __forceinline__ void wgmma_s_descs(uint64_t (&d)[4][2], uint32_t k_addr) {
#pragma unroll
  for (int kt = 0; kt < 4; ++kt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      d[kt][half] = wgmma_desc_sw128(k_addr + half * 64 * 128 + kt * 32, 16, 1024);
      wgmma_pin(d[kt][half]);
    }
}
__device__ __forceinline__ void wgmma_pv_descs(uint64_t (&d)[8], uint32_t v_addr) {
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    d[kk] = wgmma_desc_sw128(v_addr + kk * 16 * 128, 16, 1024);
    wgmma_pin(d[kk]);
  }
}

// S = Q K^T for one 128-key tile (issued, not waited for).
template <typename T>
__device__ __forceinline__ void wgmma_issue_s(float (&s)[2][8][4], const uint32_t (&qf)[4][4],
                                              const uint64_t (&d)[4][2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) wgmma_m64n64k16_zero<T, false>(s[half], qf[0], d[0][half]);
#pragma unroll
  for (int kt = 1; kt < 4; ++kt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) wgmma_m64n64k16<T, false>(s[half], qf[kt], d[kt][half], true);
  }
}
template <typename T>
__device__ __forceinline__ void wgmma_issue_s(float (&s)[2][8][4], const uint32_t (&qf)[4][4],
                                              uint32_t k_addr) {
  uint64_t d[4][2];
  wgmma_s_descs(d, k_addr);
  wgmma_issue_s<T>(s, qf, d);
}

// O += P V for one 128-key tile (issued, not waited for).
template <typename T>
__device__ __forceinline__ void wgmma_issue_pv(float (&acc)[8][4], const uint32_t (&pa)[8][4],
                                               const uint64_t (&d)[8]) {
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) wgmma_m64n64k16<T, true>(acc, pa[kk], d[kk], true);
}
template <typename T>
__device__ __forceinline__ void wgmma_issue_pv(float (&acc)[8][4], const uint32_t (&pa)[8][4],
                                               uint32_t v_addr) {
  uint64_t d[8];
  wgmma_pv_descs(d, v_addr);
  wgmma_issue_pv<T>(acc, pa, d);
}

// The epilogue: O / l (and / (1 - rate)) and the log-sum-exp of this warp's rows.
template <typename T, bool kDropout>
__device__ __forceinline__ void wgmma_store_out(const float (&acc)[8][4], const float (&m_i)[2],
                                                const float (&l_i)[2], const ForwardParams& p,
                                                T* out, float* lse, int row0, int t) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float l = quad_sum(l_i[r]);
    float inv = l > 0.f ? 1.f / l : 0.f;
    if constexpr (kDropout) inv *= 1.f / (1.f - p.dropout_rate);
    const int row = row0 + 8 * r;
    if (row < p.seq_q) {
      T* orow = out + row * p.out_strides.seq;
#pragma unroll
      for (int dt = 0; dt < 8; ++dt)
        *reinterpret_cast<uint32_t*>(orow + dt * 8 + 2 * t) =
            Elem<T>::pack(acc[dt][2 * r] * inv, acc[dt][2 * r + 1] * inv);
      if (lse != nullptr && t == 0) lse[row] = l > 0.f ? (m_i[r] + log2f(l)) * kLn2 : INFINITY;
    }
  }
}

// kStages 2: per tile, S = Q K^T is computed and waited for, then the softmax,
// then O += P V, waited for; tile nb + 1 loads meanwhile.
// kStages 3 (pipelined, as FlashAttention-3 within a warpgroup): S of tile nb
// and O += P V of tile nb - 1 are in flight together, and the softmax of tile
// nb runs while that P V product still is; tile nb + 1 loads meanwhile.
template <typename T, int kWG, int kStages, bool kDropout>
__global__ void __launch_bounds__(128 * kWG) flash_fwd_wgmma_kernel(const ForwardParams p) {
#if PYBERT_HAS_WGMMA
  using S = FwdWgmmaShape<T, kWG, kStages>;
  constexpr int D = S::D, kBlockM = S::kBlockM, kBlockN = S::kBlockN, kThreads = S::kThreads;
  PYBERT_DYNAMIC_SMEM(smem_raw);
  PYBERT_STATIC_SMEM(int, s_scratch, 2 * 4 * kWG);
  // Tiles start at the next 1024-byte boundary of the shared window (the
  // swizzle is a function of the address).
  T* sQ = reinterpret_cast<T*>(smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u));
  T* sK0 = sQ + kBlockM * D;              // kStages K tiles
  T* sV0 = sK0 + kStages * kBlockN * D;   // kStages V tiles

  const int h = blockIdx.y, b = blockIdx.z;
  const int m0 = blockIdx.x * kBlockM;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int wrow = (warp / 4) * 64 + (warp % 4) * 16;  // the warp's first row in the tile
  const FwdSlices<T> sl(p, b, h);
  const MaskInfo info = scan_mask(sl.mask_row, p.seq_k, s_scratch);

  if (info.kv_len == 0) {  // every key masked
    fwd_write_empty<T, D, kThreads>(p, sl.out, sl.lse, m0, kBlockM);
    return;
  }
  const int n_blocks = (info.kv_len + kBlockN - 1) / kBlockN;
  const float scale_log2 = p.scale * kLog2e;
  const uint32_t threshold = kDropout ? dropout_threshold(p.dropout_rate) : 0u;
  auto load_kv = [&](int nb) {
    const int n0 = nb * kBlockN;
    load_tile_sw128<T, kThreads>(sK0 + (nb % kStages) * kBlockN * D, sl.k + n0 * p.k_strides.seq,
                                 p.k_strides.seq, 0, kBlockN, p.seq_k - n0);
    load_tile_sw128<T, kThreads>(sV0 + (nb % kStages) * kBlockN * D, sl.v + n0 * p.v_strides.seq,
                                 p.v_strides.seq, 0, kBlockN, p.seq_k - n0);
  };
  auto k_addr = [&](int nb) { return smem_u32(sK0 + (nb % kStages) * kBlockN * D); };
  auto v_addr = [&](int nb) { return smem_u32(sV0 + (nb % kStages) * kBlockN * D); };
  auto load_q_frags = [&](uint32_t(&qf)[D / 16][4]) {
#pragma unroll
    for (int kt = 0; kt < D / 16; ++kt) {
      const int r = wrow + ((lane / 8) % 2) * 8 + lane % 8, c = 2 * kt + lane / 16;
      ldmatrix_x4(qf[kt], sQ + r * D + ((c ^ (r & 7)) * 8));
    }
  };
  // cp.async groups: {Q, K0, V0}, then per tile one group of the next tile.
  load_tile_sw128<T, kThreads>(sQ, sl.q, p.q_strides.seq, m0, kBlockM, p.seq_q);
  load_kv(0);
  cp_async_commit();

  uint32_t qf[D / 16][4];
  float acc[D / 8][4];
  float m_i[2] = {-INFINITY, -INFINITY}, l_i[2] = {0.f, 0.f};
#pragma unroll
  for (int i = 0; i < D / 8; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  auto rescale = [&](const float(&corr)[2]) {
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      acc[dt][0] *= corr[0];
      acc[dt][1] *= corr[0];
      acc[dt][2] *= corr[1];
      acc[dt][3] *= corr[1];
    }
  };

  if constexpr (kStages == 3) {
    // Iteration nb issues S of tile nb and P V of tile nb - 1 together; the
    // softmax of tile nb runs while P V is in flight. Tile nb + 1 loads
    // meanwhile, into the buffers of tile nb - 2.
    cp_async_wait_all();
    fence_proxy_async();
    __syncthreads();  // Q and tile 0 visible
    load_q_frags(qf);
    if (n_blocks > 1) {
      load_kv(1);
      cp_async_commit();
    }
    uint32_t pa[8][4];  // P of the previous tile, the A operand of its P V
    {
      float s[2][8][4], corr[2];
      wgmma_fence();
      wgmma_issue_s<T>(s, qf, k_addr(0));
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_fence_regs(s[0]);
      wgmma_fence_regs(s[1]);
      wgmma_softmax_tile(s, info, sl.mask_row, 0, t, scale_log2, m_i, l_i, corr);  // acc is 0
      wgmma_pack_p<T, kDropout>(s, pa, p, threshold, sl.bh, m0 + wrow + g, 0, t);
    }
    for (int nb = 1; nb < n_blocks; ++nb) {
      const int n0 = nb * kBlockN;
      cp_async_wait_all();
      fence_proxy_async();
      // tile nb visible; every warp has waited for its reads of tile nb - 2,
      // whose buffers the next copies overwrite
      __syncthreads();
      if (nb + 1 < n_blocks) {
        load_kv(nb + 1);
        cp_async_commit();
      }
      float s[2][8][4], corr[2];
      uint64_t ds[4][2], dv[8];
      wgmma_s_descs(ds, k_addr(nb));
      wgmma_pv_descs(dv, v_addr(nb - 1));
      wgmma_fence_regs(acc);
      wgmma_fence();
      wgmma_issue_s<T>(s, qf, ds);
      wgmma_commit();
      wgmma_issue_pv<T>(acc, pa, dv);
      wgmma_commit();
      wgmma_wait<1>();  // S (P V stays in flight during the softmax)
      wgmma_fence_regs(s[0]);
      wgmma_fence_regs(s[1]);
      wgmma_softmax_tile(s, info, sl.mask_row, n0, t, scale_log2, m_i, l_i, corr);
      wgmma_wait<0>();  // P V of tile nb - 1
      wgmma_fence_regs(acc);
      rescale(corr);
      // P to 16 bits only now: the P V product just waited for read pa
      wgmma_pack_p<T, kDropout>(s, pa, p, threshold, sl.bh, m0 + wrow + g, n0, t);
    }
    wgmma_fence_regs(acc);
    wgmma_fence();
    wgmma_issue_pv<T>(acc, pa, v_addr(n_blocks - 1));
    wgmma_commit();
    wgmma_wait<0>();
    wgmma_fence_regs(acc);
  } else {
    for (int nb = 0; nb < n_blocks; ++nb) {
      const int n0 = nb * kBlockN;
      cp_async_wait_all();
      fence_proxy_async();
      // K and V tile nb visible (to wgmma too); every warpgroup has waited for
      // its wgmma reads of tile nb - 1, whose buffers the next copies overwrite.
      __syncthreads();
      if (nb == 0) load_q_frags(qf);
      if (nb + 1 < n_blocks) {
        load_kv(nb + 1);
        cp_async_commit();
      }

      // S = Q K^T, the softmax, O += P V.
      float s[2][8][4];
      uint32_t pa[8][4];
      float corr[2];
      wgmma_fence();
      wgmma_issue_s<T>(s, qf, k_addr(nb));
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_fence_regs(s[0]);
      wgmma_fence_regs(s[1]);
      wgmma_softmax_tile(s, info, sl.mask_row, n0, t, scale_log2, m_i, l_i, corr);
      wgmma_pack_p<T, kDropout>(s, pa, p, threshold, sl.bh, m0 + wrow + g, n0, t);
      rescale(corr);
      wgmma_fence_regs(acc);
      wgmma_fence();
      wgmma_issue_pv<T>(acc, pa, v_addr(nb));
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_fence_regs(acc);
    }
  }
  wgmma_store_out<T, kDropout>(acc, m_i, l_i, p, sl.out, sl.lse, m0 + wrow + g, t);
#else
  (void)p;
#endif
}

}  // namespace cuda
}  // namespace attention
}  // namespace pybert
