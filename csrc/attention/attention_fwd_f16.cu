// Forward kernel instantiations for one dtype (one translation unit per dtype
// and direction, so that nvcc compiles them in parallel).
#include "attention/launch_impl.cuh"

namespace pybert {
namespace attention {
namespace cuda {

std::string launch_fwd_f16(const ForwardParams& p, cudaStream_t stream, int variant) {
  return launch_fwd<__half>(p, stream, variant);
}

}  // namespace cuda
}  // namespace attention
}  // namespace pybert
