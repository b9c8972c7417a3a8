// TensorFlow ops PybertFusedAttention and PybertFusedAttentionGrad: the fused
// multi-head attention of csrc/attention (params.h semantics) on the CPU.
//
//   output[b, i, h, :] = sum_j softmax_j(scale * q[b, i, h] . k[b, j, h] over keys with
//                        input_mask[b, j] != 0) * dropout_keep / (1 - rate) * v[b, j, h, :]
//   lse[b, h, i]       = log-sum-exp of the row (what the gradient op needs)
//
// Tensors are [batch, seq, heads, head_dim] (the layout of BERT's Q/K/V before
// the head transpose, so no transpose is needed); input_mask is int32
// [batch, seq_k]; seed is an int64 scalar keying the Philox dropout stream (the
// gradient op regenerates the same mask from it). Every argument is checked
// here: a bad rank, dtype, head dim or mask shape is InvalidArgument naming it.
//
// CPU kernels: float32 and float64 (attention_cpu.h). GPU kernels (built when
// GOOGLE_CUDA is defined, i.e. CMake -DPYBERT_CUDA=ON): float16, bfloat16 and
// float32 through the same launchers the CUDA test harness calls
// (attention_cuda.h), on TensorFlow's compute stream; input_mask stays in
// device memory, seed is read on the host.
// Test build (CMake -DPYBERT_CUDA_EMU=ON, PYBERT_CUDA_EMU defined): the GPU
// kernels' code path (GpuBackend, launchers, kernels) runs on the CPU device
// through the CPU emulation of CUDA (attention/emu), registered for float16
// and bfloat16, which the CPU kernels do not take.
#include <functional>
#include <string>

#include "attention/attention_cpu.h"
#if GOOGLE_CUDA || PYBERT_CUDA_EMU
#include "attention/attention_cuda.h"
#endif
#if GOOGLE_CUDA
#include "xla/stream_executor/stream.h"
#endif
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace pybert {
namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::DEVICE_GPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

absl::Status ForwardShape(InferenceContext* c) {
  ShapeHandle q, k, v, mask, seed;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &q));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &k));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 4, &v));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &mask));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 0, &seed));
  TF_RETURN_IF_ERROR(c->Merge(k, v, &k));
  DimensionHandle d;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(q, 0), c->Dim(k, 0), &d));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(q, 2), c->Dim(k, 2), &d));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(q, 3), c->Dim(k, 3), &d));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(mask, 0), c->Dim(k, 0), &d));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(mask, 1), c->Dim(k, 1), &d));
  c->set_output(0, q);
  c->set_output(1, c->MakeShape({c->Dim(q, 0), c->Dim(q, 2), c->Dim(q, 1)}));
  return absl::OkStatus();
}

REGISTER_OP("PybertFusedAttention")
    .Input("query: T")
    .Input("key: T")
    .Input("value: T")
    .Input("input_mask: int32")
    .Input("seed: int64")
    .Output("output: T")
    .Output("lse: float")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("scale: float")
    .Attr("dropout_rate: float = 0.0")
    .SetShapeFn(ForwardShape);

REGISTER_OP("PybertFusedAttentionGrad")
    .Input("query: T")
    .Input("key: T")
    .Input("value: T")
    .Input("input_mask: int32")
    .Input("seed: int64")
    .Input("output: T")
    .Input("lse: float")
    .Input("grad_output: T")
    .Output("grad_query: T")
    .Output("grad_key: T")
    .Output("grad_value: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("scale: float")
    .Attr("dropout_rate: float = 0.0")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      c->set_output(2, c->input(2));
      return absl::OkStatus();
    });

std::string ShapeString(const Tensor& t) { return t.shape().DebugString(); }

// Checks the four tensors and fills the shape part of `p`; "" or a message.
std::string Describe(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                     const Tensor& seed, attention::ForwardParams* p) {
  if (q.dims() != 4) return "query must be [batch, seq, heads, head_dim], got " + ShapeString(q);
  if (k.dims() != 4) return "key must be [batch, seq, heads, head_dim], got " + ShapeString(k);
  if (v.shape() != k.shape())
    return "value must have the shape of key " + ShapeString(k) + ", got " + ShapeString(v);
  if (k.dim_size(0) != q.dim_size(0) || k.dim_size(2) != q.dim_size(2) ||
      k.dim_size(3) != q.dim_size(3))
    return "key " + ShapeString(k) + " must match query " + ShapeString(q) +
           " in batch, heads and head_dim";
  if (q.dim_size(3) < 1 || q.dim_size(3) > 1024)
    return "head_dim must be in [1, 1024], got " + std::to_string(q.dim_size(3));
  if (mask.dims() != 2 || mask.dim_size(0) != k.dim_size(0) || mask.dim_size(1) != k.dim_size(1))
    return "input_mask must be [batch, seq_k] = [" + std::to_string(k.dim_size(0)) + ", " +
           std::to_string(k.dim_size(1)) + "], got " + ShapeString(mask);
  if (seed.dims() != 0) return "seed must be a scalar, got " + ShapeString(seed);
  for (int i = 0; i < 4; ++i) {
    if (q.dim_size(i) > (int64_t{1} << 30) || k.dim_size(i) > (int64_t{1} << 30))
      return "query/key dimension too large";
  }
  p->batch = static_cast<int>(q.dim_size(0));
  p->seq_q = static_cast<int>(q.dim_size(1));
  p->heads = static_cast<int>(q.dim_size(2));
  p->head_dim = static_cast<int>(q.dim_size(3));
  p->seq_k = static_cast<int>(k.dim_size(1));
  p->q_strides = attention::contiguous_strides(p->seq_q, p->heads, p->head_dim);
  p->k_strides = attention::contiguous_strides(p->seq_k, p->heads, p->head_dim);
  p->v_strides = p->k_strides;
  p->out_strides = p->q_strides;
  p->mask = mask.flat<int32_t>().data();
  p->mask_batch_stride = p->seq_k;
  p->seed = static_cast<uint64_t>(seed.scalar<int64_t>()());
  p->offset = 0;
  return "";
}

int Threads(OpKernelContext* ctx) {
  const auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  return workers != nullptr && workers->num_threads > 0 ? workers->num_threads : 1;
}

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr attention::DType value = attention::DType::kFloat32;
};
template <>
struct DTypeOf<double> {
  static constexpr attention::DType value = attention::DType::kFloat64;
};
#if GOOGLE_CUDA || PYBERT_CUDA_EMU  // the GPU kernels' types
template <>
struct DTypeOf<Eigen::half> {
  static constexpr attention::DType value = attention::DType::kFloat16;
};
template <>
struct DTypeOf<Eigen::bfloat16> {
  static constexpr attention::DType value = attention::DType::kBFloat16;
};
#endif

// The CPU kernels' workers on TensorFlow's intra-op pool (one shard per worker,
// the calling thread running one), rather than on threads started per call,
// which competed for the cores with the pool's threads while these spun.
attention::Runner IntraOpRunner(OpKernelContext* ctx) {
  const auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  if (workers == nullptr || workers->workers == nullptr) return attention::Runner();
  auto* pool = workers->workers;
  return [pool](int threads, const std::function<void()>& work) {
    pool->ParallelFor(threads, [&work](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) work();
    });
  };
}

// Where the kernels run: each backend returns "" or a message.
struct CpuBackend {
  static std::string Forward(OpKernelContext* ctx, const attention::ForwardParams& p) {
    return attention::forward_cpu(p, Threads(ctx), IntraOpRunner(ctx));
  }
  static std::string Backward(OpKernelContext* ctx, attention::BackwardParams* p) {
    return attention::backward_cpu(*p, Threads(ctx), IntraOpRunner(ctx));
  }
};

#if GOOGLE_CUDA || PYBERT_CUDA_EMU
void* GpuStream(OpKernelContext* ctx) {
#if PYBERT_CUDA_EMU
  (void)ctx;  // the emulation runs every launch to completion: any non-null handle
  static int emulated_stream;
  return &emulated_stream;
#else
  auto* context = ctx->op_device_context();
  if (context == nullptr || context->stream() == nullptr) return nullptr;
  return context->stream()->platform_specific_handle().stream;
#endif
}

struct GpuBackend {
  static std::string Forward(OpKernelContext* ctx, const attention::ForwardParams& p) {
    void* stream = GpuStream(ctx);
    if (stream == nullptr) return "no CUDA stream for the GPU kernel";
    return attention::forward_cuda(p, stream);
  }
  static std::string Backward(OpKernelContext* ctx, attention::BackwardParams* p) {
    void* stream = GpuStream(ctx);
    if (stream == nullptr) return "no CUDA stream for the GPU kernel";
    // float32 dQ accumulators + per-row terms; freed after the launch, which
    // is safe because TensorFlow's GPU allocator is ordered on this stream.
    Tensor workspace;
    const auto bytes = static_cast<int64_t>(attention::backward_workspace_bytes_cuda(*p));
    absl::Status status = ctx->allocate_temp(tensorflow::DT_INT8, TensorShape({bytes}), &workspace);
    if (!status.ok()) return "workspace of " + std::to_string(bytes) + " bytes: " + status.ToString();
    p->workspace = workspace.flat<int8_t>().data();
    return attention::backward_cuda(*p, stream);
  }
};
#endif

// A kernel's message as a status: out of memory is ResourceExhausted (a
// smaller batch may fit), anything else names a bad argument.
absl::Status KernelError(const std::string& op, const std::string& err) {
  if (err.rfind(attention::kOutOfMemory, 0) == 0) return absl::ResourceExhaustedError(op + err);
  return absl::InvalidArgumentError(op + err);
}

template <typename Backend, typename T>
class AttentionOpBase : public OpKernel {
 public:
  explicit AttentionOpBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("dropout_rate", &rate_));
    OP_REQUIRES(ctx, rate_ >= 0.f && rate_ < 1.f,
                absl::InvalidArgumentError("dropout_rate must be in [0, 1), got " +
                                           std::to_string(rate_)));
  }

 protected:
  void Fill(attention::ForwardParams* p) const {
    p->dtype = DTypeOf<T>::value;
    p->scale = scale_;
    p->dropout_rate = rate_;
  }
  float scale_ = 1.f;
  float rate_ = 0.f;
};

template <typename Backend, typename T>
class FusedAttentionOp : public AttentionOpBase<Backend, T> {
 public:
  using AttentionOpBase<Backend, T>::AttentionOpBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor &q = ctx->input(0), &k = ctx->input(1), &v = ctx->input(2);
    const Tensor &mask = ctx->input(3), &seed = ctx->input(4);
    attention::ForwardParams p;
    std::string err = Describe(q, k, v, mask, seed, &p);
    OP_REQUIRES(ctx, err.empty(), absl::InvalidArgumentError("PybertFusedAttention: " + err));
    Tensor* out = nullptr;
    Tensor* lse = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, q.shape(), &out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
                            1, TensorShape({q.dim_size(0), q.dim_size(2), q.dim_size(1)}), &lse));
    this->Fill(&p);
    p.q = q.flat<T>().data();
    p.k = k.flat<T>().data();
    p.v = v.flat<T>().data();
    p.out = out->flat<T>().data();
    p.lse = lse->flat<float>().data();
    err = Backend::Forward(ctx, p);
    OP_REQUIRES(ctx, err.empty(), KernelError("PybertFusedAttention: ", err));
  }
};

template <typename Backend, typename T>
class FusedAttentionGradOp : public AttentionOpBase<Backend, T> {
 public:
  using AttentionOpBase<Backend, T>::AttentionOpBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor &q = ctx->input(0), &k = ctx->input(1), &v = ctx->input(2);
    const Tensor &mask = ctx->input(3), &seed = ctx->input(4);
    const Tensor &out = ctx->input(5), &lse = ctx->input(6), &dout = ctx->input(7);
    attention::BackwardParams p;
    std::string err = Describe(q, k, v, mask, seed, &p);
    if (err.empty() && (out.shape() != q.shape() || dout.shape() != q.shape()))
      err = "output and grad_output must have the shape of query " + ShapeString(q);
    if (err.empty() &&
        lse.shape() != TensorShape({q.dim_size(0), q.dim_size(2), q.dim_size(1)}))
      err = "lse must be [batch, heads, seq_q], got " + ShapeString(lse);
    OP_REQUIRES(ctx, err.empty(),
                absl::InvalidArgumentError("PybertFusedAttentionGrad: " + err));
    Tensor *dq = nullptr, *dk = nullptr, *dv = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, q.shape(), &dq));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, k.shape(), &dk));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, v.shape(), &dv));
    this->Fill(&p);
    p.q = q.flat<T>().data();
    p.k = k.flat<T>().data();
    p.v = v.flat<T>().data();
    p.out = const_cast<T*>(out.flat<T>().data());
    p.lse = const_cast<float*>(lse.flat<float>().data());
    p.dout = dout.flat<T>().data();
    p.dq = dq->flat<T>().data();
    p.dk = dk->flat<T>().data();
    p.dv = dv->flat<T>().data();
    p.dout_strides = p.dq_strides = p.q_strides;
    p.dk_strides = p.dv_strides = p.k_strides;
    err = Backend::Backward(ctx, &p);
    OP_REQUIRES(ctx, err.empty(), KernelError("PybertFusedAttentionGrad: ", err));
  }
};

// On the CPU device: the CPU kernels; in the emulation build (no GOOGLE_CUDA)
// also the GPU code path for the 16-bit types, which the CPU kernels lack.
#define PYBERT_REGISTER_CPU(T, Backend)                                                       \
  REGISTER_KERNEL_BUILDER(                                                                    \
      Name("PybertFusedAttention").Device(DEVICE_CPU).TypeConstraint<T>("T"),                 \
      FusedAttentionOp<Backend, T>);                                                          \
  REGISTER_KERNEL_BUILDER(                                                                    \
      Name("PybertFusedAttentionGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),             \
      FusedAttentionGradOp<Backend, T>);
PYBERT_REGISTER_CPU(float, CpuBackend)
PYBERT_REGISTER_CPU(double, CpuBackend)
#if PYBERT_CUDA_EMU && !GOOGLE_CUDA
PYBERT_REGISTER_CPU(Eigen::half, GpuBackend)
PYBERT_REGISTER_CPU(Eigen::bfloat16, GpuBackend)
#endif
#undef PYBERT_REGISTER_CPU

#if GOOGLE_CUDA
// The seed is read on the host; input_mask (int32) stays in device memory.
#define PYBERT_REGISTER_GPU(T)                                                                \
  REGISTER_KERNEL_BUILDER(Name("PybertFusedAttention")                                        \
                              .Device(DEVICE_GPU)                                             \
                              .TypeConstraint<T>("T")                                         \
                              .HostMemory("seed"),                                            \
                          FusedAttentionOp<GpuBackend, T>);                                   \
  REGISTER_KERNEL_BUILDER(Name("PybertFusedAttentionGrad")                                    \
                              .Device(DEVICE_GPU)                                             \
                              .TypeConstraint<T>("T")                                         \
                              .HostMemory("seed"),                                            \
                          FusedAttentionGradOp<GpuBackend, T>);
PYBERT_REGISTER_GPU(Eigen::half)
PYBERT_REGISTER_GPU(Eigen::bfloat16)
PYBERT_REGISTER_GPU(float)
#undef PYBERT_REGISTER_GPU
#endif

}  // namespace
}  // namespace pybert
