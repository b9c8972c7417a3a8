// Host-side launch templates, instantiated once per dtype in
// attention_{f16,bf16,f32}.cu (so they compile in parallel).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <string>
#include <type_traits>

#include "attention/attention_cuda.h"
#include "attention/flash_bwd.cuh"
#include "attention/flash_bwd_wgmma.cuh"
#include "attention/flash_fwd.cuh"
#include "attention/flash_fwd_wgmma.cuh"
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

template <typename T, int D, int kWarps, int kMT, int kBlockN = 64, bool kQRegs = true,
          int kStages = 1, int kMinBlocks = 0>
std::string launch_fwd_tc(const ForwardParams& p, cudaStream_t stream) {
  using S = FwdShape<T, D, kWarps, kMT, kBlockN, kStages>;
  auto kernel =
      p.dropout_rate > 0.f
          ? flash_fwd_kernel<T, D, kWarps, kMT, kBlockN, kQRegs, kStages, kMinBlocks, true>
          : flash_fwd_kernel<T, D, kWarps, kMT, kBlockN, kQRegs, kStages, kMinBlocks, false>;
  std::string err = set_smem(kernel, S::kSmemBytes, "flash_fwd_kernel");
  if (!err.empty()) return err;
  const dim3 grid(cdiv(p.seq_q, S::kBlockM), p.heads, p.batch);
  PYBERT_LAUNCH(grid, S::kThreads, S::kSmemBytes, stream, kernel)(p);
  PYBERT_CUDA_TRY(cudaGetLastError(), "flash_fwd_kernel launch");
  return "";
}

namespace {
#if !defined(PYBERT_CUDA_EMU)
// 1 in device code compiled for sm_90a, else 0 (each architecture's code has
// its own initial value; the device's code is the one loaded).
__device__ int g_wgmma_compiled = PYBERT_HAS_WGMMA;
#endif

// Whether the current device runs the wgmma kernels: compute capability 9.0
// and this library's device code for it built for sm_90a. Asked once per
// device (cudaMemcpyFromSymbol synchronizes the device the first time).
inline bool wgmma_available() {
#if defined(PYBERT_CUDA_EMU)
  return true;  // the emulated device is an sm_90a
#else
  static std::atomic<int> known[64];  // 0: not asked yet, 1: yes, 2: no
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    cudaGetLastError();
    return false;
  }
  int v = known[dev].load();
  if (v == 0) {
    int major = 0, minor = 0, compiled = 0;
    bool answered =
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess;
    if (answered && major == 9 && minor == 0)
      answered = cudaMemcpyFromSymbol(&compiled, g_wgmma_compiled, sizeof(int)) == cudaSuccess;
    if (!answered) cudaGetLastError();  // a failed query means no, not a failed launch
    v = answered && major == 9 && minor == 0 && compiled == 1 ? 1 : 2;
    known[dev].store(v);
  }
  return v == 1;
#endif
}
}  // namespace

template <typename T, int kWG, int kStages>
std::string launch_fwd_wgmma(const ForwardParams& p, cudaStream_t stream) {
  using S = FwdWgmmaShape<T, kWG, kStages>;
  auto kernel = p.dropout_rate > 0.f ? flash_fwd_wgmma_kernel<T, kWG, kStages, true>
                                     : flash_fwd_wgmma_kernel<T, kWG, kStages, false>;
  std::string err = set_smem(kernel, S::kSmemBytes, "flash_fwd_wgmma_kernel");
  if (!err.empty()) return err;
  const dim3 grid(cdiv(p.seq_q, S::kBlockM), p.heads, p.batch);
  PYBERT_LAUNCH(grid, S::kThreads, S::kSmemBytes, stream, kernel)(p);
  PYBERT_CUDA_TRY(cudaGetLastError(), "flash_fwd_wgmma_kernel launch");
  return "";
}

// Forward variants (tensor cores): warps x query rows per warp, keys per tile,
// Q fragments in registers or re-read from shared memory, K/V buffers, and the
// CTAs per SM the registers must allow (0 = no limit).
//   1: 4 warps x 16 rows, 64 keys, Q in registers, single-buffered
//   2: 8 warps x 16 rows, 64 keys, Q in registers, single-buffered
//   3: 4 warps x 32 rows, 64 keys, Q in registers, single-buffered
//      (head_dim 128: Q from shared memory)
//   4: 4 warps x 32 rows, 128 keys, Q from shared memory, single-buffered  (head_dim <= 64)
//   5: 4 warps x 32 rows, 64 keys, Q in registers, double-buffered
//      (head_dim 128: Q from shared memory)
//   6: 8 warps x 16 rows, 64 keys, Q in registers, double-buffered         (head_dim <= 64)
//   7: 8 warps x 16 rows, 128 keys, Q from shared memory, 2 CTAs/SM        (head_dim <= 64)
//   8: 4 warps x 32 rows, 128 keys, Q from shared memory, double-buffered  (head_dim <= 64)
//   9: 4 warps x 16 rows, 64 keys, Q in registers, double-buffered         (head_dim <= 64)
//  10: wgmma (sm_90a), 1 warpgroup x 64 rows, 128 keys, double-buffered    (head_dim 64)
//  11: wgmma (sm_90a), 2 warpgroups x 64 rows, 128 keys, double-buffered   (head_dim 64)
//  12: wgmma (sm_90a), 1 warpgroup x 64 rows, 128 keys, 3 buffers, S of the
//      next tile and P V of this one in flight during the softmax          (head_dim 64)
//  13: wgmma (sm_90a), 2 warpgroups x 64 rows, 128 keys, 3 buffers, as 12 (head_dim 64)
// 0 = the default: 8 for head dims 32 and 64 (on an H100 the fastest or within
// 3% of it in 44 of 48 benchmarked head-dim-64 rows, bench/RESULTS.md); for
// head dim 128, 1 up to 128 queries, else 3 (27% less time than 1 and 2 at
// 64 x 512).
// A variant not available for a head dim runs 1; 10-13 where the device
// is not an sm_90 or the library has no sm_90a code run the default.
// (kFwdVariants in attention_cuda.h.)
template <typename T, int D>
std::string launch_fwd_tc_d(const ForwardParams& p, cudaStream_t stream, int variant) {
  if constexpr (D == 64) {
    if (variant >= 10 && variant <= 13) {
      if (wgmma_available()) {
        if (variant == 10) return launch_fwd_wgmma<T, 1, 2>(p, stream);
        if (variant == 11) return launch_fwd_wgmma<T, 2, 2>(p, stream);
        if (variant == 12) return launch_fwd_wgmma<T, 1, 3>(p, stream);
        return launch_fwd_wgmma<T, 2, 3>(p, stream);
      }
      variant = 0;
    }
  }
  if (variant == 0) variant = D <= 64 ? 8 : (p.seq_q <= 128 ? 1 : 3);
  if (variant == 2) return launch_fwd_tc<T, D, 8, 1>(p, stream);
  if constexpr (D <= 64) {
    switch (variant) {
      case 3: return launch_fwd_tc<T, D, 4, 2>(p, stream);
      case 4: return launch_fwd_tc<T, D, 4, 2, 128, false, 1>(p, stream);
      case 5: return launch_fwd_tc<T, D, 4, 2, 64, true, 2>(p, stream);
      case 6: return launch_fwd_tc<T, D, 8, 1, 64, true, 2>(p, stream);
      case 7: return launch_fwd_tc<T, D, 8, 1, 128, false, 1, 2>(p, stream);
      case 8: return launch_fwd_tc<T, D, 4, 2, 128, false, 2>(p, stream);
      case 9: return launch_fwd_tc<T, D, 4, 1, 64, true, 2>(p, stream);
      default: break;
    }
  } else {  // 32 rows per warp fit the registers only with Q re-read from shared memory
    switch (variant) {
      case 3: return launch_fwd_tc<T, D, 4, 2, 64, false, 1>(p, stream);
      case 5: return launch_fwd_tc<T, D, 4, 2, 64, false, 2>(p, stream);
      default: break;
    }
  }
  return launch_fwd_tc<T, D, 4, 1>(p, stream);
}

template <typename T>
std::string launch_fwd(const ForwardParams& p, cudaStream_t stream, int variant) {
  if constexpr (std::is_same<T, float>::value) {
    const dim3 grid(cdiv(p.seq_q, 4), p.heads, p.batch);
    switch (p.head_dim) {
      case 32: PYBERT_LAUNCH(grid, 128, 0, stream, fwd_f32_kernel<32>)(p); break;
      case 64: PYBERT_LAUNCH(grid, 128, 0, stream, fwd_f32_kernel<64>)(p); break;
      case 128: PYBERT_LAUNCH(grid, 128, 0, stream, fwd_f32_kernel<128>)(p); break;
      default: return "head_dim must be 32, 64 or 128";
    }
    PYBERT_CUDA_TRY(cudaGetLastError(), "fwd_f32_kernel launch");
    return "";
  } else {
    switch (p.head_dim) {
      case 32: return launch_fwd_tc_d<T, 32>(p, stream, variant);
      case 64: return launch_fwd_tc_d<T, 64>(p, stream, variant);
      case 128: return launch_fwd_tc_d<T, 128>(p, stream, variant);
      default: return "head_dim must be 32, 64 or 128";
    }
  }
}

template <typename T, int D, int kWarps, int kKT, int kBlockM, bool kCacheKV>
std::string launch_bwd_tc(const BackwardParams& p, cudaStream_t stream, float* dq_accum,
                          float* dvec, bool stagger) {
  const int64_t rows = static_cast<int64_t>(p.batch) * p.heads * p.seq_q;
  using S = BwdShape<T, D, kBlockM, kWarps, kKT>;
  const bool direct = p.seq_k <= S::kBlockN;  // one CTA per (b, h) covers every key
  // Dvec; and the zeroed dQ accumulator unless dq is written directly.
  PYBERT_LAUNCH(cdiv(rows, 128 / (D / 8)), 128, 0, stream, bwd_preprocess_kernel<T, D>)(
      p, dvec, !direct || p.seq_k == 0 ? dq_accum : nullptr);
  PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_preprocess_kernel launch");
  if (p.seq_k > 0) {
    decltype(&flash_bwd_kernel<T, D, kBlockM, kWarps, kKT, kCacheKV, false, false>) kernel;
    if (direct)
      kernel = p.dropout_rate > 0.f ? flash_bwd_kernel<T, D, kBlockM, kWarps, kKT, kCacheKV, true, true>
                                    : flash_bwd_kernel<T, D, kBlockM, kWarps, kKT, kCacheKV, false, true>;
    else
      kernel = p.dropout_rate > 0.f ? flash_bwd_kernel<T, D, kBlockM, kWarps, kKT, kCacheKV, true, false>
                                    : flash_bwd_kernel<T, D, kBlockM, kWarps, kKT, kCacheKV, false, false>;
    std::string err = set_smem(kernel, S::kSmemBytes, "flash_bwd_kernel");
    if (!err.empty()) return err;
    PYBERT_LAUNCH(dim3(cdiv(p.seq_k, S::kBlockN), p.heads, p.batch), S::kThreads, S::kSmemBytes,
                  stream, kernel)(p, dq_accum, dvec, stagger && !direct);
    PYBERT_CUDA_TRY(cudaGetLastError(), "flash_bwd_kernel launch");
  }
  if (!direct || p.seq_k == 0) {
    PYBERT_LAUNCH(cdiv(rows * (D / 8), 128), 128, 0, stream, bwd_convert_dq_kernel<T, D>)(
        p, dq_accum);
    PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_convert_dq_kernel launch");
  }
  return "";
}

// The wgmma backward (head dim 64): preprocess (Dvec, zeroed dQ accumulator),
// the kernel (dQ always through the accumulator), the dQ conversion.
template <typename T>
std::string launch_bwd_wgmma(const BackwardParams& p, cudaStream_t stream, float* dq_accum,
                             float* dvec) {
  constexpr int D = 64;
  using S = BwdWgmmaShape<T>;
  const int64_t rows = static_cast<int64_t>(p.batch) * p.heads * p.seq_q;
  PYBERT_LAUNCH(cdiv(rows, 128 / (D / 8)), 128, 0, stream, bwd_preprocess_kernel<T, D>)(
      p, dvec, dq_accum);
  PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_preprocess_kernel launch");
  if (p.seq_k > 0) {
    auto kernel = p.dropout_rate > 0.f ? flash_bwd_wgmma_kernel<T, true>
                                       : flash_bwd_wgmma_kernel<T, false>;
    std::string err = set_smem(kernel, S::kSmemBytes, "flash_bwd_wgmma_kernel");
    if (!err.empty()) return err;
    PYBERT_LAUNCH(dim3(cdiv(p.seq_k, S::kBlockN), p.heads, p.batch), S::kThreads, S::kSmemBytes,
                  stream, kernel)(p, dq_accum, dvec, p.seq_k > S::kBlockN);
    PYBERT_CUDA_TRY(cudaGetLastError(), "flash_bwd_wgmma_kernel launch");
  }
  PYBERT_LAUNCH(cdiv(rows * (D / 8), 128), 128, 0, stream, bwd_convert_dq_kernel<T, D>)(
      p, dq_accum);
  PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_convert_dq_kernel launch");
  return "";
}

// Backward variants (tensor cores): warps x keys per warp, query rows per step.
//   1: 4 warps x 16 keys, 64 rows (32 for head_dim 128), K/V fragments in registers
//      (head_dim <= 64)
//   2: 8 warps x 16 keys, 64 rows, K/V fragments in registers    (head_dim <= 64)
//   3: 4 warps x 32 keys, 32 rows, staggered query order          (head_dim <= 64)
//   4: 8 warps x 32 keys, 32 rows, staggered query order          (head_dim 64)
//   5: wgmma (sm_90a), 2 warpgroups x 64 keys, 64 rows, staggered (head_dim 64)
// 0 = the default: 3 for head_dim 32 and 64 (fastest at every benchmarked shape
// on an H100: half the shared-memory loads of Q and dO per tensor-core
// instruction; bench/RESULTS.md), 1 for head_dim 128. A variant not available
// for a head dim runs 1; 5 where the device is not an sm_90 or the library has
// no sm_90a code runs the default.
template <typename T, int D>
std::string launch_bwd_d(const BackwardParams& p, cudaStream_t stream, float* dq_accum,
                         float* dvec, int variant) {
  if constexpr (std::is_same<T, float>::value) {
    (void)variant;
    const int64_t rows = static_cast<int64_t>(p.batch) * p.heads * p.seq_q;
    // no keys: dq = 0 (the zeroed accumulator, converted), dk and dv are empty
    PYBERT_LAUNCH(cdiv(rows, 128 / (D / 8)), 128, 0, stream, bwd_preprocess_kernel<T, D>)(
        p, dvec, p.seq_k == 0 ? dq_accum : nullptr);
    PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_preprocess_kernel launch");
    if (p.seq_k == 0) {
      PYBERT_LAUNCH(cdiv(rows * (D / 8), 128), 128, 0, stream, bwd_convert_dq_kernel<T, D>)(
        p, dq_accum);
      PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_convert_dq_kernel launch");
      return "";
    }
    PYBERT_LAUNCH(dim3(cdiv(p.seq_k, 4), p.heads, p.batch), 128, 0, stream,
                  bwd_dkdv_f32_kernel<D>)(p, dvec);
    PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_dkdv_f32_kernel launch");
    PYBERT_LAUNCH(dim3(cdiv(p.seq_q, 4), p.heads, p.batch), 128, 0, stream,
                  bwd_dq_f32_kernel<D>)(p, dvec);
    PYBERT_CUDA_TRY(cudaGetLastError(), "bwd_dq_f32_kernel launch");
    return "";
  } else {
    constexpr int kSmallM = D <= 64 ? 64 : 32;
    if constexpr (D == 64) {
      if (variant == 5) {
        if (wgmma_available()) return launch_bwd_wgmma<T>(p, stream, dq_accum, dvec);
        variant = 0;
      }
    }
    if (variant == 0) variant = D <= 64 ? 3 : 1;
    if constexpr (D <= 64) {
      switch (variant) {
        case 2: return launch_bwd_tc<T, D, 8, 1, 64, true>(p, stream, dq_accum, dvec, false);
        case 3: return launch_bwd_tc<T, D, 4, 2, 32, false>(p, stream, dq_accum, dvec, true);
        case 4:
          if constexpr (D == 64)
            return launch_bwd_tc<T, D, 8, 2, 32, false>(p, stream, dq_accum, dvec, true);
          break;
        default: break;
      }
    }
    return launch_bwd_tc<T, D, 4, 1, kSmallM, (D <= 64)>(p, stream, dq_accum, dvec, false);
  }
}

template <typename T>
std::string launch_bwd(const BackwardParams& p, cudaStream_t stream, float* dq_accum, float* dvec,
                       int variant) {
  switch (p.head_dim) {
    case 32: return launch_bwd_d<T, 32>(p, stream, dq_accum, dvec, variant);
    case 64: return launch_bwd_d<T, 64>(p, stream, dq_accum, dvec, variant);
    case 128: return launch_bwd_d<T, 128>(p, stream, dq_accum, dvec, variant);
    default: return "head_dim must be 32, 64 or 128";
  }
}

}  // namespace cuda
}  // namespace attention
}  // namespace pybert
