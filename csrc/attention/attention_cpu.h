// CPU kernels of the fused attention (float32 and float64), same semantics as
// the CUDA kernels (params.h): padding mask, fully masked rows -> 0 with
// lse = +inf, Philox dropout regenerated in the backward pass. Memory does not
// grow with seq^2: the forward takes 4 query rows at a time against every key
// up to the last kept one (packed K^T and V tiles, an exact softmax over the
// row); the backward recomputes probabilities from the saved lse.
// Work is split over (batch, head, 256-row query chunk) for the forward and
// (batch, head) for the backward, so every output element is computed by one
// thread in a fixed order: results do not depend on the thread count (nor on
// whether the AVX2 or AVX-512 entry points run: no FMA contraction).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "attention/params.h"

namespace pybert {
namespace attention {

// dtype kFloat32 or kFloat64 (q, k, v, out, dout, dq, dk, dv of that type;
// lse is float32 either way; the float64 backward recomputes it in float64).
// Returns "" or a message naming the bad argument; nothing is thrown (scratch
// that cannot be allocated: a message starting with kOutOfMemory).
inline constexpr const char kOutOfMemory[] = "out of memory";
// Where the work runs: runner(threads, work) must call work() on up to `threads`
// threads at once, the calling thread among them, and return when every call
// has returned (work() takes its items from a shared counter, so any number of
// calls, even one, covers them all; it throws nothing). Empty: threads started
// for the call (common/parallel.h). The TensorFlow op passes its intra-op pool.
using Runner = std::function<void(int threads, const std::function<void()>& work)>;
std::string forward_cpu(const ForwardParams& p, int num_threads, const Runner& runner = Runner());
std::string backward_cpu(const BackwardParams& p, int num_threads, const Runner& runner = Runner());

}  // namespace attention
}  // namespace pybert
