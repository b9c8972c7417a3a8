// CUDA entry points of the fused attention kernels: raw device pointers and a
// stream, no CUDA headers needed by callers (the TensorFlow op's GPU kernel and
// the ctypes test harness in attention_capi.cu both call these).
//
// Every function validates its parameters and every CUDA call, and returns ""
// on success or a message naming the offending argument / CUDA error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "attention/params.h"

namespace pybert {
namespace attention {

struct CudaLaunchOptions {
  // Forward kernel tiling (for tuning and tests), 1..kFwdVariants (listed in
  // launch_impl.cuh: warps, query rows per warp, keys per tile, Q fragments in
  // registers, K/V buffers); 0 = choose.
  int fwd_variant = 0;
  // Backward kernel tiling, 1..kBwdVariants (listed in launch_impl.cuh: keys
  // per CTA, query rows per step, K/V in registers, staggered query order);
  // 0 = choose.
  int bwd_variant = 0;
};
constexpr int kFwdVariants = 13;
constexpr int kBwdVariants = 5;

// Forward pass. p.lse may be null (inference).
std::string forward_cuda(const ForwardParams& p, void* stream, const CudaLaunchOptions& options = {});

// Bytes of device workspace backward_cuda needs for these shapes.
size_t backward_workspace_bytes_cuda(const ForwardParams& p);

// Backward pass: dq, dk, dv from q, k, v, out, lse, dout (lse is required).
std::string backward_cuda(const BackwardParams& p, void* stream,
                          const CudaLaunchOptions& options = {});

// Debug/test helper: writes the dropout keep mask the kernels use,
// keep[((b * heads + h) * seq_q + i) * seq_k + j] = 1 or 0.
std::string dropout_mask_cuda(const ForwardParams& p, uint8_t* keep, void* stream);

}  // namespace attention
}  // namespace pybert
