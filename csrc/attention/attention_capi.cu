// extern "C" face of the CUDA attention launchers for the ctypes test harness
// (bench/gpu/check_attention.py): raw device pointers, a stream and element
// strides, so it needs neither TensorFlow nor pybind11. The CPU kernels are
// exposed the same way (host pointers, a thread count) so the harness can check
// that both backends compute the same thing, dropout mask included.
// Returns 0 on success, else 1 with the message copied into err.
#include <cstdint>
#include <cstring>
#include <string>

#include "attention/attention_cpu.h"
#include "attention/attention_cuda.h"

namespace {

using pybert::attention::BackwardParams;
using pybert::attention::DType;
using pybert::attention::ForwardParams;
using pybert::attention::Strides;

Strides strides_at(const long long* s, int i) {
  Strides r;
  r.batch = s[3 * i];
  r.seq = s[3 * i + 1];
  r.head = s[3 * i + 2];
  return r;
}

int report(const std::string& msg, char* err, int err_len) {
  if (msg.empty()) return 0;
  if (err != nullptr && err_len > 0) {
    const size_t n = std::min(msg.size(), static_cast<size_t>(err_len - 1));
    std::memcpy(err, msg.data(), n);
    err[n] = '\0';
  }
  return 1;
}

void set_shape(ForwardParams& p, int dtype, int batch, int heads, int seq_q, int seq_k,
               int head_dim) {
  p.dtype = static_cast<DType>(dtype);
  p.batch = batch;
  p.heads = heads;
  p.seq_q = seq_q;
  p.seq_k = seq_k;
  p.head_dim = head_dim;
}

void fill(ForwardParams& p, int dtype, int batch, int heads, int seq_q, int seq_k, int head_dim,
          const void* q, const void* k, const void* v, const int32_t* mask, void* out, float* lse,
          const long long* strides, float scale, float dropout_rate, unsigned long long seed,
          unsigned long long offset) {
  set_shape(p, dtype, batch, heads, seq_q, seq_k, head_dim);
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.q_strides = strides_at(strides, 0);
  p.k_strides = strides_at(strides, 1);
  p.v_strides = strides_at(strides, 2);
  p.out_strides = strides_at(strides, 3);
  p.mask = mask;
  p.mask_batch_stride = seq_k;
  p.lse = lse;
  p.scale = scale;
  p.dropout_rate = dropout_rate;
  p.seed = seed;
  p.offset = offset;
}

// The gradient tensors of a backward call: strides 4..7 are dout, dq, dk, dv.
void fill_grads(BackwardParams& p, const void* dout, void* dq, void* dk, void* dv,
                const long long* strides) {
  p.dout = dout;
  p.dq = dq;
  p.dk = dk;
  p.dv = dv;
  p.dout_strides = strides_at(strides, 4);
  p.dq_strides = strides_at(strides, 5);
  p.dk_strides = strides_at(strides, 6);
  p.dv_strides = strides_at(strides, 7);
}

}  // namespace

extern "C" {

// strides: 4 x (batch, seq, head) element strides for q, k, v, out.
int pybert_attn_forward(int dtype, int batch, int heads, int seq_q, int seq_k, int head_dim,
                        const void* q, const void* k, const void* v, const int32_t* mask, void* out,
                        float* lse, const long long* strides, float scale, float dropout_rate,
                        unsigned long long seed, unsigned long long offset, int fwd_variant,
                        void* stream, char* err, int err_len) {
  ForwardParams p;
  fill(p, dtype, batch, heads, seq_q, seq_k, head_dim, q, k, v, mask, out, lse, strides, scale,
       dropout_rate, seed, offset);
  pybert::attention::CudaLaunchOptions options;
  options.fwd_variant = fwd_variant;
  return report(pybert::attention::forward_cuda(p, stream, options), err, err_len);
}

long long pybert_attn_backward_workspace_bytes(int dtype, int batch, int heads, int seq_q,
                                               int seq_k, int head_dim) {
  ForwardParams p;
  set_shape(p, dtype, batch, heads, seq_q, seq_k, head_dim);
  return static_cast<long long>(pybert::attention::backward_workspace_bytes_cuda(p));
}

// strides: 8 x (batch, seq, head) for q, k, v, out, dout, dq, dk, dv.
int pybert_attn_backward(int dtype, int batch, int heads, int seq_q, int seq_k, int head_dim,
                         const void* q, const void* k, const void* v, const int32_t* mask,
                         const void* out, const float* lse, const void* dout, void* dq, void* dk,
                         void* dv, void* workspace, const long long* strides, float scale,
                         float dropout_rate, unsigned long long seed, unsigned long long offset,
                         int bwd_variant, void* stream, char* err, int err_len) {
  BackwardParams p;
  fill(p, dtype, batch, heads, seq_q, seq_k, head_dim, q, k, v, mask, const_cast<void*>(out),
       const_cast<float*>(lse), strides, scale, dropout_rate, seed, offset);
  fill_grads(p, dout, dq, dk, dv, strides);
  p.workspace = workspace;
  pybert::attention::CudaLaunchOptions options;
  options.bwd_variant = bwd_variant;
  return report(pybert::attention::backward_cuda(p, stream, options), err, err_len);
}

// The CPU kernels (attention_cpu.h) on host memory, same arguments as above.
int pybert_attn_cpu_forward(int dtype, int batch, int heads, int seq_q, int seq_k, int head_dim,
                            const void* q, const void* k, const void* v, const int32_t* mask,
                            void* out, float* lse, const long long* strides, float scale,
                            float dropout_rate, unsigned long long seed, unsigned long long offset,
                            int num_threads, char* err, int err_len) {
  ForwardParams p;
  fill(p, dtype, batch, heads, seq_q, seq_k, head_dim, q, k, v, mask, out, lse, strides, scale,
       dropout_rate, seed, offset);
  return report(pybert::attention::forward_cpu(p, num_threads), err, err_len);
}

int pybert_attn_cpu_backward(int dtype, int batch, int heads, int seq_q, int seq_k, int head_dim,
                             const void* q, const void* k, const void* v, const int32_t* mask,
                             const void* out, const float* lse, const void* dout, void* dq,
                             void* dk, void* dv, const long long* strides, float scale,
                             float dropout_rate, unsigned long long seed,
                             unsigned long long offset, int num_threads, char* err, int err_len) {
  BackwardParams p;
  fill(p, dtype, batch, heads, seq_q, seq_k, head_dim, q, k, v, mask, const_cast<void*>(out),
       const_cast<float*>(lse), strides, scale, dropout_rate, seed, offset);
  fill_grads(p, dout, dq, dk, dv, strides);
  return report(pybert::attention::backward_cpu(p, num_threads), err, err_len);
}

int pybert_attn_dropout_mask(int batch, int heads, int seq_q, int seq_k, float dropout_rate,
                             unsigned long long seed, unsigned long long offset, uint8_t* keep,
                             void* stream, char* err, int err_len) {
  ForwardParams p;
  set_shape(p, 0, batch, heads, seq_q, seq_k, 0);
  p.dropout_rate = dropout_rate;
  p.seed = seed;
  p.offset = offset;
  return report(pybert::attention::dropout_mask_cuda(p, keep, stream), err, err_len);
}

}  // extern "C"
