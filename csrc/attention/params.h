// Fused multi-head attention: the one parameter struct shared by the CPU and
// CUDA kernels and by every adapter (TensorFlow op, test harnesses).
//
// Framework-free: no CUDA, Python or TensorFlow headers.
//
// Semantics (identical on every backend):
//   out[b, i, h, :] = sum_j P[b, h, i, j] * Z[b, h, i, j] / (1 - dropout_rate) * v[b, j, h, :]
//   P[b, h, i, :]   = softmax_j(scale * q[b, i, h, :] . k[b, j, h, :]  over keys j with mask[b, j] != 0)
//   Z               = the Philox dropout keep mask (philox.h), all ones when dropout_rate == 0.
// Tensors are [batch, seq, heads, head_dim] with arbitrary element strides for
// batch, seq and head; head_dim is contiguous. The mask is int32 [batch, seq_k],
// nonzero = keep (BERT's input_mask); a null mask keeps every key.
// A query row whose keys are all masked is defined to produce zeros, and its
// stored log-sum-exp is +inf, so that the backward pass gives it zero gradient.
// lse is float32 [batch, heads, seq_q] in natural-log units: the only thing the
// backward pass needs from the forward pass besides its output.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace pybert {
namespace attention {

// kFloat64 is CPU-only (reference precision); the CUDA kernels reject it.
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat64: return "float64";
  }
  return "unknown";
}

// Element strides of a [batch, seq, heads, head_dim] tensor (head_dim stride 1).
struct Strides {
  int64_t batch = 0;
  int64_t seq = 0;
  int64_t head = 0;
};

inline Strides contiguous_strides(int seq, int heads, int head_dim) {
  Strides s;
  s.head = head_dim;
  s.seq = static_cast<int64_t>(heads) * head_dim;
  s.batch = s.seq * seq;
  return s;
}

struct ForwardParams {
  DType dtype = DType::kFloat32;
  int batch = 0, heads = 0, seq_q = 0, seq_k = 0, head_dim = 0;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  Strides q_strides, k_strides, v_strides, out_strides;
  const int32_t* mask = nullptr;  // [batch, seq_k], nonzero = keep; may be null
  int64_t mask_batch_stride = 0;
  float* lse = nullptr;  // [batch, heads, seq_q]; may be null for inference
  float scale = 1.0f;
  float dropout_rate = 0.0f;  // in [0, 1)
  uint64_t seed = 0;
  uint64_t offset = 0;  // only the low 32 bits enter the Philox counter
};

struct BackwardParams : ForwardParams {
  // ForwardParams::out and lse are the forward pass's outputs (inputs here).
  const void* dout = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  Strides dout_strides, dq_strides, dk_strides, dv_strides;
  void* workspace = nullptr;  // backward_workspace_bytes() bytes, device/host memory of the backend
};

}  // namespace attention
}  // namespace pybert
