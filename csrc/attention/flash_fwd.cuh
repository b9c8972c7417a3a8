// Forward tensor-core kernel (FlashAttention-2 style): one CTA per
// (query tile of 16 * kWarps * kMT rows, head, batch); each warp owns kMT
// tiles of 16 query rows and streams over kBlockN-key tiles with an online
// softmax, so nothing of size seq_q x seq_k is ever stored. Key tiles past the
// last kept key are skipped; a tile is masked element-wise only when it
// straddles that end or the mask has holes.
//   kQRegs:  the warp's Q fragments stay in registers (else re-read from shared
//            memory for every key tile: fewer registers for larger tiles).
//   kStages: 1 = one K and one V buffer (the next K tile loads during P.V, the
//            V tile during Q.K^T and the softmax: two barriers per tile);
//            2 = two of each: tile nb + 1 (K and V) loads during all of tile
//            nb's work, and one barrier per tile suffices.
//   kMinBlocks: CTAs per SM the register allocation must allow (0: no limit;
//            1 would change ptxas's heuristics and cost registers).
#pragma once

#include <cmath>

#include "attention/cuda_common.cuh"
#include "attention/params.h"
#include "attention/philox.h"

namespace pybert {
namespace attention {
namespace cuda {

template <typename T, int D, int kWarps, int kMT, int kBlockN_ = 64, int kStages_ = 1>
struct FwdShape {
  static constexpr int kBlockM = 16 * kWarps * kMT;  // each warp owns kMT tiles of 16 rows
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kNT = kBlockN / 8;  // 8-key mma tiles per key tile
  static constexpr int kStages = kStages_;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kStride = D + 8;  // padded rows: conflict-free ldmatrix
  static constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static constexpr size_t kSmemBytes =
      sizeof(T) * (kBlockM + 2 * kStages * kBlockN) * kStride;
  static_assert(kBlockN % 16 == 0, "key tiles are whole 16-key mma steps");
  static_assert(kStages == 1 || kStages == 2, "one or two K/V buffers");
};

// Copies rows [row0, row0 + rows) of a [seq, D] slice (row stride seq_stride)
// into shared memory, zero-filling rows >= limit.
template <typename T, int D, int kStride, int kThreads>
__device__ __forceinline__ void load_tile_async(T* dst, const T* src, int64_t seq_stride, int row0,
                                                int rows, int limit) {
  constexpr int kChunks = D / 8;
  for (int idx = threadIdx.x; idx < rows * kChunks; idx += kThreads) {
    const int r = idx / kChunks, c = idx % kChunks;
    const int row = row0 + r;
    const bool valid = row < limit;
    const T* s = valid ? src + row * seq_stride + c * 8 : src;
    cp_async_16(dst + r * kStride + c * 8, s, valid);
  }
}

// One (batch, head)'s slices of the forward's tensors.
template <typename T>
struct FwdSlices {
  int bh;
  const T *q, *k, *v;
  T* out;
  float* lse;                // null if not wanted
  const int32_t* mask_row;   // null: no mask
  __device__ __forceinline__ FwdSlices(const ForwardParams& p, int b, int h)
      : bh(b * p.heads + h),
        q(static_cast<const T*>(p.q) + b * p.q_strides.batch + h * p.q_strides.head),
        k(static_cast<const T*>(p.k) + b * p.k_strides.batch + h * p.k_strides.head),
        v(static_cast<const T*>(p.v) + b * p.v_strides.batch + h * p.v_strides.head),
        out(static_cast<T*>(p.out) + b * p.out_strides.batch + h * p.out_strides.head),
        lse(p.lse ? p.lse + static_cast<int64_t>(bh) * p.seq_q : nullptr),
        mask_row(p.mask ? p.mask + b * p.mask_batch_stride : nullptr) {}
};

// Query rows [m0, m0 + rows) of a (batch, head) whose keys are all masked:
// the defined output 0 and lse +inf.
template <typename T, int D, int kThreads>
__device__ __forceinline__ void fwd_write_empty(const ForwardParams& p, T* out, float* lse, int m0,
                                                int rows) {
  for (int idx = threadIdx.x; idx < rows * (D / 8); idx += kThreads) {
    const int r = idx / (D / 8), c = idx % (D / 8);
    if (m0 + r < p.seq_q)
      *reinterpret_cast<uint4*>(out + (m0 + r) * p.out_strides.seq + c * 8) = make_uint4(0, 0, 0, 0);
  }
  if (lse)
    for (int r = threadIdx.x; r < rows; r += kThreads)
      if (m0 + r < p.seq_q) lse[m0 + r] = INFINITY;
}

template <typename T, int D, int kWarps, int kMT, int kBlockN, bool kQRegs, int kStages,
          int kMinBlocks, bool kDropout>
__global__ void __launch_bounds__(32 * kWarps, kMinBlocks) flash_fwd_kernel(const ForwardParams p) {
  using S = FwdShape<T, D, kWarps, kMT, kBlockN, kStages>;
  constexpr int kBlockM = S::kBlockM, kThreads = S::kThreads, kNT = S::kNT;
  constexpr int kStride = S::kStride;
  PYBERT_DYNAMIC_SMEM(smem_raw);
  PYBERT_STATIC_SMEM(int, s_scratch, 2 * kWarps);
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK0 = sQ + kBlockM * kStride;            // K buffers: sK0 [, sK0 + kBlockN * kStride]
  T* sV0 = sK0 + kStages * kBlockN * kStride;  // V buffers likewise

  const int h = blockIdx.y, b = blockIdx.z;
  const int m0 = blockIdx.x * kBlockM;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const FwdSlices<T> sl(p, b, h);
  const int bh = sl.bh;
  const T *q = sl.q, *k = sl.k, *v = sl.v;
  T* out = sl.out;
  float* lse = sl.lse;
  const int32_t* mask_row = sl.mask_row;
  const MaskInfo info = scan_mask(mask_row, p.seq_k, s_scratch);

  if (info.kv_len == 0) {  // every key masked
    fwd_write_empty<T, D, kThreads>(p, out, lse, m0, kBlockM);
    return;
  }
  const int n_blocks = (info.kv_len + kBlockN - 1) / kBlockN;
  const float scale_log2 = p.scale * kLog2e;
  const uint32_t threshold = kDropout ? dropout_threshold(p.dropout_rate) : 0u;
  auto load_k = [&](int nb) {
    load_tile_async<T, D, kStride, kThreads>(sK0 + (nb % kStages) * kBlockN * kStride,
                                             k + nb * kBlockN * p.k_strides.seq, p.k_strides.seq,
                                             0, kBlockN, p.seq_k - nb * kBlockN);
  };
  auto load_v = [&](int nb) {
    load_tile_async<T, D, kStride, kThreads>(sV0 + (nb % kStages) * kBlockN * kStride,
                                             v + nb * kBlockN * p.v_strides.seq, p.v_strides.seq,
                                             0, kBlockN, p.seq_k - nb * kBlockN);
  };

  // cp.async groups, in commit order. kStages 1: {Q, K0}, then per tile nb:
  // {V nb} and {K nb+1}. kStages 2: {Q, K0, V0}, then per tile nb:
  // {K nb+1, V nb+1}. Every wait is for all of this thread's groups.
  load_tile_async<T, D, kStride, kThreads>(sQ, q, p.q_strides.seq, m0, kBlockM, p.seq_q);
  load_k(0);
  if constexpr (kStages == 2) load_v(0);
  cp_async_commit();

  // Warp w owns query rows m0 + (w * kMT + mt) * 16 + [0, 16).
  uint32_t qf[kQRegs ? kMT : 1][D / 16][4];
  float acc[kMT][D / 8][4];
  float m_i[kMT][2], l_i[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int i = 0; i < D / 8; ++i) acc[mt][i][0] = acc[mt][i][1] = acc[mt][i][2] = acc[mt][i][3] = 0.f;
    m_i[mt][0] = m_i[mt][1] = -INFINITY;
    l_i[mt][0] = l_i[mt][1] = 0.f;
  }
  auto q_frag = [&](uint32_t(&r)[4], int mt, int kt) {
    ldmatrix_x4(r, sQ + ((warp * kMT + mt) * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kStride +
                       kt * 16 + (lane / 16) * 8);
  };

  for (int nb = 0; nb < n_blocks; ++nb) {
    const int n0 = nb * kBlockN;
    const T* sK = sK0 + (nb % kStages) * kBlockN * kStride;
    const T* sV = sV0 + (nb % kStages) * kBlockN * kStride;
    cp_async_wait_all();
    // K tile (kStages 2: and V tile) visible; every warp is done with tile nb - 1,
    // whose buffers the next copies overwrite.
    __syncthreads();
    if constexpr (kQRegs) {
      if (nb == 0) {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int kt = 0; kt < D / 16; ++kt) q_frag(qf[mt][kt], mt, kt);
      }
    }
    if constexpr (kStages == 1) {
      load_v(nb);
      cp_async_commit();
    } else if (nb + 1 < n_blocks) {
      load_k(nb + 1);
      load_v(nb + 1);
      cp_async_commit();
    }

    float s[kMT][kNT][4];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int i = 0; i < kNT; ++i) s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.f;
#pragma unroll
    for (int kt = 0; kt < D / 16; ++kt) {
      uint32_t qs[kQRegs ? 1 : kMT][4];
      if constexpr (!kQRegs) {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) q_frag(qs[mt], mt, kt);
      }
#pragma unroll
      for (int np = 0; np < kNT / 2; ++np) {
        uint32_t r[4];
        ldmatrix_x4(r, sK + (np * 16 + (lane / 16) * 8 + lane % 8) * kStride + kt * 16 +
                           ((lane / 8) % 2) * 8);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          if constexpr (kQRegs) {
            Elem<T>::mma(s[mt][2 * np], qf[mt][kt], r[0], r[1]);
            Elem<T>::mma(s[mt][2 * np + 1], qf[mt][kt], r[2], r[3]);
          } else {
            Elem<T>::mma(s[mt][2 * np], qs[mt], r[0], r[1]);
            Elem<T>::mma(s[mt][2 * np + 1], qs[mt], r[2], r[3]);
          }
        }
      }
    }
    if (!info.prefix || n0 + kBlockN > info.kv_len) {
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int col = n0 + nt * 8 + 2 * t + e;
          const bool keep = col < info.kv_len && (info.prefix || mask_row[col] != 0);
          if (!keep) {
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) s[mt][nt][e] = s[mt][nt][2 + e] = -INFINITY;
          }
        }
      }
    }
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * r], s[mt][nt][2 * r + 1]));
        mx = quad_max(mx);
        const float m_new = fmaxf(m_i[mt][r], mx * scale_log2);
        const float m_use = m_new == -INFINITY ? 0.f : m_new;
        const float corr = fast_exp2(m_i[mt][r] - m_use);
        m_i[mt][r] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float pe = fast_exp2(fmaf(s[mt][nt][2 * r + e], scale_log2, -m_use));
            s[mt][nt][2 * r + e] = pe;
            sum += pe;
          }
        }
        l_i[mt][r] = l_i[mt][r] * corr + sum;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) {
          acc[mt][dt][2 * r] *= corr;
          acc[mt][dt][2 * r + 1] *= corr;
        }
      }
      if constexpr (kDropout) {
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
          const int col = n0 + nt * 8 + 2 * t;  // even: words (col & 3) and (col & 3) + 1
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int row = m0 + (warp * kMT + mt) * 16 + g + 8 * r;
            const Philox4 w = dropout_words(p.seed, p.offset, bh, row, col);
            const bool lo = (col & 2) == 0;
            if ((lo ? w.x[0] : w.x[2]) < threshold) s[mt][nt][2 * r] = 0.f;
            if ((lo ? w.x[1] : w.x[3]) < threshold) s[mt][nt][2 * r + 1] = 0.f;
          }
        }
      }
    }
    if constexpr (kStages == 1) {
      cp_async_wait_all();
      __syncthreads();  // V tile visible; every warp is done with this K tile
      if (nb + 1 < n_blocks) {
        load_k(nb + 1);
        cp_async_commit();
      }
    }
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      uint32_t pa[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        pa[mt][0] = Elem<T>::pack(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pa[mt][1] = Elem<T>::pack(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pa[mt][2] = Elem<T>::pack(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pa[mt][3] = Elem<T>::pack(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t r[4];
        ldmatrix_x4_trans(r, sV + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kStride + dp * 16 +
                                 (lane / 16) * 8);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          Elem<T>::mma(acc[mt][2 * dp], pa[mt], r[0], r[1]);
          Elem<T>::mma(acc[mt][2 * dp + 1], pa[mt], r[2], r[3]);
        }
      }
    }
  }

#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float l = quad_sum(l_i[mt][r]);
      float inv = l > 0.f ? 1.f / l : 0.f;
      if constexpr (kDropout) inv *= 1.f / (1.f - p.dropout_rate);
      const int row = m0 + (warp * kMT + mt) * 16 + g + 8 * r;
      if (row < p.seq_q) {
        T* orow = out + row * p.out_strides.seq;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt)
          *reinterpret_cast<uint32_t*>(orow + dt * 8 + 2 * t) =
              Elem<T>::pack(acc[mt][dt][2 * r] * inv, acc[mt][dt][2 * r + 1] * inv);
        if (lse != nullptr && t == 0) lse[row] = l > 0.f ? (m_i[mt][r] + log2f(l)) * kLn2 : INFINITY;
      }
    }
  }
}

}  // namespace cuda
}  // namespace attention
}  // namespace pybert
