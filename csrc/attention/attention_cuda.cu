// Validation and dtype dispatch of the CUDA attention entry points.
#include "attention/attention_cuda.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "attention/cuda_common.cuh"
#include "attention/params.h"
#include "attention/philox.h"

namespace pybert {
namespace attention {
namespace cuda {
std::string launch_fwd_f16(const ForwardParams& p, cudaStream_t stream, int variant);
std::string launch_fwd_bf16(const ForwardParams& p, cudaStream_t stream, int variant);
std::string launch_fwd_f32(const ForwardParams& p, cudaStream_t stream, int variant);
std::string launch_bwd_f16(const BackwardParams& p, cudaStream_t stream, float* dq_accum, float* dvec, int variant);
std::string launch_bwd_bf16(const BackwardParams& p, cudaStream_t stream, float* dq_accum, float* dvec, int variant);
std::string launch_bwd_f32(const BackwardParams& p, cudaStream_t stream, float* dq_accum, float* dvec, int variant);

// keep[((bh * seq_q) + i) * seq_k + j]
__global__ void dropout_mask_kernel(const ForwardParams p, uint8_t* keep) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = static_cast<int64_t>(p.batch) * p.heads * p.seq_q * p.seq_k;
  if (idx >= total) return;
  const uint32_t j = static_cast<uint32_t>(idx % p.seq_k);
  const int64_t row = idx / p.seq_k;
  const uint32_t i = static_cast<uint32_t>(row % p.seq_q);
  const uint32_t bh = static_cast<uint32_t>(row / p.seq_q);
  keep[idx] = dropout_keep(p.seed, p.offset, dropout_threshold(p.dropout_rate), bh, i, j) ? 1 : 0;
}

// Zeroes a [batch, seq_k, heads, head_dim] tensor of elt-byte elements (dK and dV
// when there are no queries): one thread per element.
__global__ void zero_keys_kernel(void* base, const Strides s, int batch, int seq_k, int heads,
                                 int head_dim, int elt) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = static_cast<int64_t>(batch) * seq_k * heads * head_dim;
  if (idx >= total) return;
  const int d = static_cast<int>(idx % head_dim);
  const int64_t row = idx / head_dim;
  const int h = static_cast<int>(row % heads);
  const int64_t bj = row / heads;
  const int j = static_cast<int>(bj % seq_k);
  const int b = static_cast<int>(bj / seq_k);
  const int64_t at = b * s.batch + j * s.seq + h * s.head + d;
  if (elt == 4) {
    static_cast<uint32_t*>(base)[at] = 0u;
  } else {
    static_cast<uint16_t*>(base)[at] = 0u;
  }
}

}  // namespace cuda

namespace {

std::string check_tensor(const char* name, const void* ptr, const Strides& s, DType dtype) {
  if (ptr == nullptr) return std::string(name) + ": null pointer";
  const uintptr_t addr = reinterpret_cast<uintptr_t>(ptr);
  if (dtype == DType::kFloat32) {
    if (addr % 4 != 0) return std::string(name) + ": float32 data must be 4-byte aligned";
  } else if (addr % 16 != 0 || s.batch % 8 != 0 || s.seq % 8 != 0 || s.head % 8 != 0) {
    return std::string(name) + ": the " + dtype_name(dtype) +
           " kernels need 16-byte aligned rows (a 16-byte aligned pointer and batch, seq and head "
           "strides that are multiples of 8 elements)";
  }
  if (s.batch < 0 || s.seq < 0 || s.head < 0) return std::string(name) + ": negative stride";
  return "";
}

std::string check_forward(const ForwardParams& p) {
  const int dt = static_cast<int>(p.dtype);
  if (p.dtype == DType::kFloat64) return "dtype: float64 is supported by the CPU kernels only";
  if (dt < 0 || dt > 2) return "dtype: unsupported value " + std::to_string(dt);
  if (p.head_dim != 32 && p.head_dim != 64 && p.head_dim != 128)
    return "head_dim must be 32, 64 or 128, got " + std::to_string(p.head_dim);
  if (p.batch < 0 || p.batch > 65535) return "batch must be in [0, 65535], got " + std::to_string(p.batch);
  if (p.heads < 0 || p.heads > 65535) return "heads must be in [0, 65535], got " + std::to_string(p.heads);
  if (p.seq_q < 0) return "seq_q must be >= 0, got " + std::to_string(p.seq_q);
  if (p.seq_k < 0) return "seq_k must be >= 0, got " + std::to_string(p.seq_k);
  if (!(p.dropout_rate >= 0.f && p.dropout_rate < 1.f))
    return "dropout_rate must be in [0, 1), got " + std::to_string(p.dropout_rate);
  if (!std::isfinite(p.scale)) return "scale must be finite";
  if (p.batch == 0 || p.heads == 0 || p.seq_q == 0) return "";  // empty: nothing to read
  std::string e;
  if (!(e = check_tensor("q", p.q, p.q_strides, p.dtype)).empty()) return e;
  if (!(e = check_tensor("out", p.out, p.out_strides, p.dtype)).empty()) return e;
  if (p.seq_k > 0) {
    if (!(e = check_tensor("k", p.k, p.k_strides, p.dtype)).empty()) return e;
    if (!(e = check_tensor("v", p.v, p.v_strides, p.dtype)).empty()) return e;
  }
  if (p.mask != nullptr && (reinterpret_cast<uintptr_t>(p.mask) % 4 != 0 || p.mask_batch_stride < 0))
    return "mask: must be 4-byte aligned int32 with a non-negative batch stride";
  return "";
}

size_t dq_accum_floats(const ForwardParams& p) {
  return static_cast<size_t>(p.batch) * p.heads * p.seq_q * p.head_dim;
}

}  // namespace

std::string forward_cuda(const ForwardParams& p, void* stream, const CudaLaunchOptions& options) {
  std::string e = check_forward(p);
  if (!e.empty() || p.batch == 0 || p.heads == 0 || p.seq_q == 0) return e;
  if (options.fwd_variant < 0 || options.fwd_variant > kFwdVariants)
    return "fwd_variant must be in [0, " + std::to_string(kFwdVariants) + "], got " +
           std::to_string(options.fwd_variant);
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.dtype) {
    case DType::kFloat16: return cuda::launch_fwd_f16(p, s, options.fwd_variant);
    case DType::kBFloat16: return cuda::launch_fwd_bf16(p, s, options.fwd_variant);
    case DType::kFloat32: return cuda::launch_fwd_f32(p, s, options.fwd_variant);
    case DType::kFloat64: break;
  }
  return "dtype: unsupported";
}

size_t backward_workspace_bytes_cuda(const ForwardParams& p) {
  const size_t rows = static_cast<size_t>(p.batch) * p.heads * p.seq_q;
  return sizeof(float) * (dq_accum_floats(p) + rows) + 16;
}

std::string backward_cuda(const BackwardParams& p, void* stream, const CudaLaunchOptions& options) {
  if (options.bwd_variant < 0 || options.bwd_variant > kBwdVariants)
    return "bwd_variant must be in [0, " + std::to_string(kBwdVariants) + "], got " +
           std::to_string(options.bwd_variant);
  std::string e = check_forward(p);
  if (!e.empty() || p.batch == 0 || p.heads == 0) return e;
  if (p.seq_q == 0) {  // no query attends to any key: dK = dV = 0
    if (p.seq_k == 0) return "";
    if (!(e = check_tensor("dk", p.dk, p.dk_strides, p.dtype)).empty()) return e;
    if (!(e = check_tensor("dv", p.dv, p.dv_strides, p.dtype)).empty()) return e;
    const int elt = p.dtype == DType::kFloat32 ? 4 : 2;
    const int64_t total = static_cast<int64_t>(p.batch) * p.seq_k * p.heads * p.head_dim;
    const auto s = static_cast<cudaStream_t>(stream);
    for (void* t : {p.dk, p.dv}) {
      const Strides& st = t == p.dk ? p.dk_strides : p.dv_strides;
      PYBERT_LAUNCH(static_cast<unsigned>((total + 255) / 256), 256, 0, s, cuda::zero_keys_kernel)(
          t, st, p.batch, p.seq_k, p.heads, p.head_dim, elt);
      const cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return std::string("zero_keys_kernel launch: ") + cudaGetErrorString(err);
    }
    return "";
  }
  if (p.lse == nullptr) return "lse: null pointer (the backward pass needs the forward's lse)";
  if (p.workspace == nullptr) return "workspace: null pointer";
  if (reinterpret_cast<uintptr_t>(p.workspace) % 16 != 0) return "workspace: must be 16-byte aligned";
  if (!(e = check_tensor("dout", p.dout, p.dout_strides, p.dtype)).empty()) return e;
  if (!(e = check_tensor("dq", p.dq, p.dq_strides, p.dtype)).empty()) return e;
  if (p.seq_k > 0) {
    if (!(e = check_tensor("dk", p.dk, p.dk_strides, p.dtype)).empty()) return e;
    if (!(e = check_tensor("dv", p.dv, p.dv_strides, p.dtype)).empty()) return e;
  }
  float* dq_accum = static_cast<float*>(p.workspace);
  float* dvec = dq_accum + dq_accum_floats(p);
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.dtype) {
    case DType::kFloat16: return cuda::launch_bwd_f16(p, s, dq_accum, dvec, options.bwd_variant);
    case DType::kBFloat16: return cuda::launch_bwd_bf16(p, s, dq_accum, dvec, options.bwd_variant);
    case DType::kFloat32: return cuda::launch_bwd_f32(p, s, dq_accum, dvec, options.bwd_variant);
    case DType::kFloat64: break;
  }
  return "dtype: unsupported";
}

std::string dropout_mask_cuda(const ForwardParams& p, uint8_t* keep, void* stream) {
  if (p.batch < 0 || p.heads < 0 || p.seq_q < 0 || p.seq_k < 0) return "bad shape";
  if (!(p.dropout_rate >= 0.f && p.dropout_rate < 1.f)) return "dropout_rate must be in [0, 1)";
  const int64_t total = static_cast<int64_t>(p.batch) * p.heads * p.seq_q * p.seq_k;
  if (total == 0) return "";
  if (keep == nullptr) return "keep: null pointer";
  PYBERT_LAUNCH(static_cast<unsigned>((total + 255) / 256), 256, 0,
                static_cast<cudaStream_t>(stream), cuda::dropout_mask_kernel)(p, keep);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return std::string("dropout_mask_kernel launch: ") + cudaGetErrorString(err);
  return "";
}

}  // namespace attention
}  // namespace pybert
