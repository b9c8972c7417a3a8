// Host-side launch templates, instantiated once per dtype in
// attention_{f16,bf16,f32}.cu (so they compile in parallel).
#pragma once

#include <cuda_runtime.h>

#include <string>
#include <type_traits>

#include "attention/flash_bwd.cuh"
#include "attention/flash_fwd.cuh"
#include "attention/params.h"
#include "attention/simt_f32.cuh"

namespace pybert {
namespace attention {
namespace cuda {

#define PYBERT_CUDA_TRY(expr, what)                                                        \
  do {                                                                                     \
    const cudaError_t pybert_err_ = (expr);                                                \
    if (pybert_err_ != cudaSuccess)                                                        \
      return std::string(what) + ": " + cudaGetErrorName(pybert_err_) + " (" +           \
             cudaGetErrorString(pybert_err_) + ")";                                        \
  } while (0)

inline int cdiv(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

template <typename Kernel>
std::string set_smem(Kernel kernel, size_t bytes, const char* name) {
  if (bytes > 48 * 1024)
    PYBERT_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(bytes)),
                    std::string("cudaFuncSetAttribute(") + name + ")");
  return "";
}

template <typename T, int D, int kWarps>
std::string launch_fwd_tc(const ForwardParams& p, cudaStream_t stream) {
  using S = FwdShape<T, D, kWarps>;
  auto kernel = p.dropout_rate > 0.f ? flash_fwd_kernel<T, D, kWarps, true>
                                     : flash_fwd_kernel<T, D, kWarps, false>;
  std::string err = set_smem(kernel, S::kSmemBytes, "flash_fwd_kernel");
  if (!err.empty()) return err;
  const dim3 grid(cdiv(p.seq_q, S::kBlockM), p.heads, p.batch);
  kernel<<<grid, S::kThreads, S::kSmemBytes, stream>>>(p);
  PYBERT_CUDA_TRY(cudaGetLastError(), "flash_fwd_kernel launch");
  return "";
}

template <typename T, int D>
std::string launch_fwd_tc_d(const ForwardParams& p, cudaStream_t stream, int block_m) {
  if (block_m == 128) return launch_fwd_tc<T, D, 8>(p, stream);
  return launch_fwd_tc<T, D, 4>(p, stream);
}

template <typename T>
std::string launch_fwd(const ForwardParams& p, cudaStream_t stream, int block_m) {
  if constexpr (std::is_same<T, float>::value) {
    const dim3 grid(cdiv(p.seq_q, 4), p.heads, p.batch);
    switch (p.head_dim) {
      case 32: fwd_f32_kernel<32><<<grid, 128, 0, stream>>>(p); break;
      case 64: fwd_f32_kernel<64><<<grid, 128, 0, stream>>>(p); break;
      case 128: fwd_f32_kernel<128><<<grid, 128, 0, stream>>>(p); break;
      default: return "head_dim must be 32, 64 or 128";
    }
    PYBERT_CUDA_TRY(cudaGetLastError(), "fwd_f32_kernel launch");
    return "";
  } else {
    switch (p.head_dim) {
      case 32: return launch_fwd_tc_d<T, 32>(p, stream, block_m);
      case 64: return launch_fwd_tc_d<T, 64>(p, stream, block_m);
      case 128: return launch_fwd_tc_d<T, 128>(p, stream, block_m);
      default: return "head_dim must be 32, 64 or 128";
    }
  }
}

template <typename T, int D>
std::string launch_bwd_d(const BackwardParams& p, cudaStream_t stream, float* dq_accum,
                         float* dvec) {
  const int64_t rows = static_cast<int64_t>(p.batch) * p.heads * p.seq_q;
  bwd_preprocess_kernel<T, D><<<cdiv(rows, 128 / (D / 8)), 128, 0, stream>>>(p, dvec);
  PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_preprocess_kernel launch");
  if constexpr (std::is_same<T, float>::value) {
    if (p.seq_k == 0) {  // no keys: dq = 0, dk and dv are empty
      PYBERT_CUDA_TRY(cudaMemsetAsync(dq_accum, 0, sizeof(float) * rows * D, stream),
                      "cudaMemsetAsync(dq accumulator)");
      bwd_convert_dq_kernel<T, D><<<cdiv(rows * (D / 8), 128), 128, 0, stream>>>(p, dq_accum);
      PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_convert_dq_kernel launch");
      return "";
    }
    bwd_dkdv_f32_kernel<D><<<dim3(cdiv(p.seq_k, 4), p.heads, p.batch), 128, 0, stream>>>(p, dvec);
    PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_dkdv_f32_kernel launch");
    bwd_dq_f32_kernel<D><<<dim3(cdiv(p.seq_q, 4), p.heads, p.batch), 128, 0, stream>>>(p, dvec);
    PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_dq_f32_kernel launch");
  } else {
    constexpr int kBlockM = D <= 64 ? 64 : 32;
    using S = BwdShape<T, D, kBlockM>;
    PYBERT_CUDA_TRY(cudaMemsetAsync(dq_accum, 0, sizeof(float) * rows * D, stream),
                    "cudaMemsetAsync(dq accumulator)");
    auto kernel = p.dropout_rate > 0.f ? flash_bwd_kernel<T, D, kBlockM, true>
                                       : flash_bwd_kernel<T, D, kBlockM, false>;
    std::string err = set_smem(kernel, S::kSmemBytes, "flash_bwd_kernel");
    if (!err.empty()) return err;
    if (p.seq_k > 0) {
      kernel<<<dim3(cdiv(p.seq_k, S::kBlockN), p.heads, p.batch), S::kThreads, S::kSmemBytes,
               stream>>>(p, dq_accum, dvec);
      PYBERT_CUDA_TRY(cudaGetLastError(), "flash_bwd_kernel launch");
    }
    bwd_convert_dq_kernel<T, D><<<cdiv(rows * (D / 8), 128), 128, 0, stream>>>(p, dq_accum);
    PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_convert_dq_kernel launch");
  }
  return "";
}

template <typename T>
std::string launch_bwd(const BackwardParams& p, cudaStream_t stream, float* dq_accum, float* dvec) {
  switch (p.head_dim) {
    case 32: return launch_bwd_d<T, 32>(p, stream, dq_accum, dvec);
    case 64: return launch_bwd_d<T, 64>(p, stream, dq_accum, dvec);
    case 128: return launch_bwd_d<T, 128>(p, stream, dq_accum, dvec);
    default: return "head_dim must be 32, 64 or 128";
  }
}

}  // namespace cuda
}  // namespace attention
}  // namespace pybert
