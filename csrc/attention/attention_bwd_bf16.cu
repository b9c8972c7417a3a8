// Backward kernel instantiations for one dtype (one translation unit per dtype
// and direction, so that nvcc compiles them in parallel).
#include "attention/launch_impl.cuh"

namespace pybert {
namespace attention {
namespace cuda {

std::string launch_bwd_bf16(const BackwardParams& p, cudaStream_t stream, float* dq_accum,
                          float* dvec, int variant) {
  return launch_bwd<__nv_bfloat16>(p, stream, dq_accum, dvec, variant);
}

}  // namespace cuda
}  // namespace attention
}  // namespace pybert
