// float32 kernels without tensor cores: one warp per query row (forward, dQ)
// or per key row (dK, dV), lanes split the head dimension. Exact float32
// accumulation; meant for correctness in float32 models, not for speed.
#pragma once

#include <cmath>

#include "attention/cuda_common.cuh"
#include "attention/params.h"
#include "attention/philox.h"

namespace pybert {
namespace attention {
namespace cuda {

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

template <int D>
__device__ __forceinline__ float dot_row(const float (&a)[D / 32], const float* row, int lane) {
  float s = 0.f;
#pragma unroll
  for (int e = 0; e < D / 32; ++e) s += a[e] * row[e * 32 + lane];
  return warp_sum(s);
}

// Grid (ceil(seq_q / 4), heads, batch), 128 threads.
template <int D>
__global__ void __launch_bounds__(128) fwd_f32_kernel(const ForwardParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int i = blockIdx.x * 4 + warp, h = blockIdx.y, b = blockIdx.z;
  if (i >= p.seq_q) return;
  const int bh = b * p.heads + h;
  const float* q = static_cast<const float*>(p.q) + b * p.q_strides.batch + i * p.q_strides.seq +
                   h * p.q_strides.head;
  const float* k = static_cast<const float*>(p.k) + b * p.k_strides.batch + h * p.k_strides.head;
  const float* v = static_cast<const float*>(p.v) + b * p.v_strides.batch + h * p.v_strides.head;
  float* out = static_cast<float*>(p.out) + b * p.out_strides.batch + i * p.out_strides.seq +
               h * p.out_strides.head;
  const int32_t* mask_row = p.mask ? p.mask + b * p.mask_batch_stride : nullptr;
  const uint32_t threshold = dropout_threshold(p.dropout_rate);
  const bool dropout = p.dropout_rate > 0.f;
  float qr[D / 32], acc[D / 32];
#pragma unroll
  for (int e = 0; e < D / 32; ++e) {
    qr[e] = q[e * 32 + lane] * p.scale;
    acc[e] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j = 0; j < p.seq_k; ++j) {
    if (mask_row && mask_row[j] == 0) continue;
    const float s = dot_row<D>(qr, k + j * p.k_strides.seq, lane);
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);
    const float pe = expf(s - m_new);
    l = l * corr + pe;
    const bool keep = !dropout || dropout_keep(p.seed, p.offset, threshold, bh, i, j);
    const float* vr = v + j * p.v_strides.seq;
#pragma unroll
    for (int e = 0; e < D / 32; ++e) acc[e] = acc[e] * corr + (keep ? pe * vr[e * 32 + lane] : 0.f);
    m = m_new;
  }
  float inv = l > 0.f ? 1.f / l : 0.f;
  if (dropout) inv /= (1.f - p.dropout_rate);
#pragma unroll
  for (int e = 0; e < D / 32; ++e) out[e * 32 + lane] = acc[e] * inv;
  if (p.lse && lane == 0) p.lse[static_cast<int64_t>(bh) * p.seq_q + i] = l > 0.f ? m + logf(l) : INFINITY;
}

// dK, dV: grid (ceil(seq_k / 4), heads, batch); warp per key.
template <int D>
__global__ void __launch_bounds__(128) bwd_dkdv_f32_kernel(const BackwardParams p, const float* dvec) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int j = blockIdx.x * 4 + warp, h = blockIdx.y, b = blockIdx.z;
  if (j >= p.seq_k) return;
  const int bh = b * p.heads + h;
  const float* q = static_cast<const float*>(p.q) + b * p.q_strides.batch + h * p.q_strides.head;
  const float* k = static_cast<const float*>(p.k) + b * p.k_strides.batch + j * p.k_strides.seq +
                   h * p.k_strides.head;
  const float* v = static_cast<const float*>(p.v) + b * p.v_strides.batch + j * p.v_strides.seq +
                   h * p.v_strides.head;
  const float* dout = static_cast<const float*>(p.dout) + b * p.dout_strides.batch + h * p.dout_strides.head;
  float* dk = static_cast<float*>(p.dk) + b * p.dk_strides.batch + j * p.dk_strides.seq +
              h * p.dk_strides.head;
  float* dv = static_cast<float*>(p.dv) + b * p.dv_strides.batch + j * p.dv_strides.seq +
              h * p.dv_strides.head;
  const float* lse = p.lse + static_cast<int64_t>(bh) * p.seq_q;
  const float* dvec_bh = dvec + static_cast<int64_t>(bh) * p.seq_q;
  const bool kept = p.mask == nullptr || p.mask[b * p.mask_batch_stride + j] != 0;
  const uint32_t threshold = dropout_threshold(p.dropout_rate);
  const bool dropout = p.dropout_rate > 0.f;
  const float rscale = dropout ? 1.f / (1.f - p.dropout_rate) : 1.f;
  float kr[D / 32], vr[D / 32], adk[D / 32], adv[D / 32];
#pragma unroll
  for (int e = 0; e < D / 32; ++e) {
    kr[e] = k[e * 32 + lane];
    vr[e] = v[e * 32 + lane];
    adk[e] = adv[e] = 0.f;
  }
  for (int i = 0; kept && i < p.seq_q; ++i) {
    const float* qi = q + i * p.q_strides.seq;
    const float* doi = dout + i * p.dout_strides.seq;
    const float pe = expf(dot_row<D>(kr, qi, lane) * p.scale - lse[i]);
    const float dpd = dot_row<D>(vr, doi, lane);
    const bool keep = !dropout || dropout_keep(p.seed, p.offset, threshold, bh, i, j);
    const float pd = keep ? pe * rscale : 0.f;
    const float ds = pe * ((keep ? dpd * rscale : 0.f) - dvec_bh[i]);
#pragma unroll
    for (int e = 0; e < D / 32; ++e) {
      adv[e] += pd * doi[e * 32 + lane];
      adk[e] += ds * qi[e * 32 + lane];
    }
  }
#pragma unroll
  for (int e = 0; e < D / 32; ++e) {
    dk[e * 32 + lane] = adk[e] * p.scale;
    dv[e * 32 + lane] = adv[e];
  }
}

// dQ: grid (ceil(seq_q / 4), heads, batch); warp per query.
template <int D>
__global__ void __launch_bounds__(128) bwd_dq_f32_kernel(const BackwardParams p, const float* dvec) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int i = blockIdx.x * 4 + warp, h = blockIdx.y, b = blockIdx.z;
  if (i >= p.seq_q) return;
  const int bh = b * p.heads + h;
  const float* q = static_cast<const float*>(p.q) + b * p.q_strides.batch + i * p.q_strides.seq +
                   h * p.q_strides.head;
  const float* k = static_cast<const float*>(p.k) + b * p.k_strides.batch + h * p.k_strides.head;
  const float* v = static_cast<const float*>(p.v) + b * p.v_strides.batch + h * p.v_strides.head;
  const float* dout = static_cast<const float*>(p.dout) + b * p.dout_strides.batch +
                      i * p.dout_strides.seq + h * p.dout_strides.head;
  float* dq = static_cast<float*>(p.dq) + b * p.dq_strides.batch + i * p.dq_strides.seq +
              h * p.dq_strides.head;
  const int32_t* mask_row = p.mask ? p.mask + b * p.mask_batch_stride : nullptr;
  const float lse = p.lse[static_cast<int64_t>(bh) * p.seq_q + i];
  const float dvi = dvec[static_cast<int64_t>(bh) * p.seq_q + i];
  const uint32_t threshold = dropout_threshold(p.dropout_rate);
  const bool dropout = p.dropout_rate > 0.f;
  const float rscale = dropout ? 1.f / (1.f - p.dropout_rate) : 1.f;
  float qr[D / 32], dor[D / 32], adq[D / 32];
#pragma unroll
  for (int e = 0; e < D / 32; ++e) {
    qr[e] = q[e * 32 + lane];
    dor[e] = dout[e * 32 + lane];
    adq[e] = 0.f;
  }
  for (int j = 0; j < p.seq_k; ++j) {
    if (mask_row && mask_row[j] == 0) continue;
    const float* kj = k + j * p.k_strides.seq;
    const float pe = expf(dot_row<D>(qr, kj, lane) * p.scale - lse);
    const float dpd = dot_row<D>(dor, v + j * p.v_strides.seq, lane);
    const bool keep = !dropout || dropout_keep(p.seed, p.offset, threshold, bh, i, j);
    const float ds = pe * ((keep ? dpd * rscale : 0.f) - dvi);
#pragma unroll
    for (int e = 0; e < D / 32; ++e) adq[e] += ds * kj[e * 32 + lane];
  }
#pragma unroll
  for (int e = 0; e < D / 32; ++e) dq[e * 32 + lane] = adq[e] * p.scale;
}

}  // namespace cuda
}  // namespace attention
}  // namespace pybert
