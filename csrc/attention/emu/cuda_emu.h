// A CPU emulation of the part of CUDA the attention kernels use, so that the
// real kernel code (flash_fwd.cuh, flash_bwd.cuh, simt_f32.cuh and their
// launchers) runs and is tested on a machine without a GPU.
//
// Every CUDA thread is a fiber; the threads of one CTA run on one OS thread,
// each until it reaches a barrier (__syncthreads*), a warp-collective
// instruction (shuffles, reductions, ldmatrix, mma.sync) or its end. A
// collective completes when all 32 lanes of the warp have reached it (the
// kernels only use full-warp masks); a barrier when every thread of the CTA
// that has not exited has. Anything else is reported as a launch failure with
// the reason: lanes of a warp at different collectives, a barrier some threads
// never reach, an ldmatrix/cp.async address outside the CTA's shared memory
// or misaligned, dynamic shared memory over 48 KiB without
// cudaFuncSetAttribute, static shared memory over 48 KiB, the two over
// 227 KiB, or a launch configuration the hardware rejects.
//
// Knobs that shake out missing barriers and waits (set with set_mode()):
//   - schedule: by default one warp runs from one barrier to the next before
//     the next warp starts (so a warp that reads shared memory another warp
//     has not yet written in this phase sees stale data or the poison below);
//     "lockstep" advances every warp by one collective at a time instead;
//   - order: warps (and lanes) in index order or in reverse order;
//   - cp.async: copies land when issued ("early") or only when the issuing
//     thread waits for them ("late");
//   - shared memory (dynamic and static) starts as 0xFF bytes in every CTA
//     (NaN in every float type).
// Built with TSAN=1 (bench/gpu/build_emu.sh), the emulator tells
// ThreadSanitizer about every CUDA thread (a TSan fiber, created afresh for
// each CTA) and about what orders their memory accesses: __syncthreads (a
// barrier), a completed warp-collective instruction (its lanes, as
// __syncwarp), kernel boundaries (the launches of one host thread run in
// order), nothing between CTAs but atomics. Shared memory and the thread
// stacks are allocated afresh for each CTA. ldmatrix reads its 32 rows for the
// lane that gives each address, cp.async reads its source and writes its
// destination for the issuing thread both when issued and when waited for. So
// ThreadSanitizer reports as a data race: a missing __syncthreads between a
// write and another warp's read of shared memory, a cp.async into a buffer
// another warp may still read, two CTAs writing the same global memory.
// Tensor-core semantics follow the PTX ISA: mma.m16n8k16 .row.col with
// float32 accumulation (products and sums in float32; the hardware's internal
// order differs, so results agree to rounding, not bit for bit), ldmatrix
// .m8n8.x4 with and without .trans, and the sm_90a warpgroup MMA
// wgmma.mma_async .m64nNk16 (A from registers or shared memory, B from shared
// memory, through 128-byte-swizzled shared-memory descriptors) with its
// asynchrony: an operation's result appears, and its shared memory is read, at
// the wgmma.wait_group that covers it (the swizzle a function of the
// shared-window address; dynamic shared memory starts at one that is not a
// multiple of 1024; shared-memory writes reach it only through a
// fence.proxy.async and a barrier); a wgmma without a wgmma.fence since the
// warp's last wait,
// A registers changed before the wait, warps of a warpgroup that do not issue
// the same wgmma sequence, a block that is not whole warpgroups, a descriptor
// outside shared memory and an operation never waited for are launch failures.
// Device memory is host memory.
//
// Compiled with -DPYBERT_CUDA_EMU, with csrc/attention/emu/include first on
// the include path (it holds stand-ins for cuda_runtime.h, cuda_fp16.h and
// cuda_bf16.h), by bench/gpu/build_emu.sh.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#ifndef PYBERT_CUDA_EMU
#error "cuda_emu.h is for the CPU emulation build (-DPYBERT_CUDA_EMU)"
#endif

// The emulated device is an sm_90 (H100): kernels take their sm_90 paths.
#define __CUDA_ARCH__ 900

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Shared memory is declared with PYBERT_DYNAMIC_SMEM / PYBERT_STATIC_SMEM
// (attention/cuda_common.cuh); a bare __shared__ does not compile here.
#define __shared__ use_PYBERT_STATIC_SMEM_for_shared_arrays_in_emulated_kernels

// ---- vector types (layout and alignment as in CUDA's vector_types.h) ----
struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
};
struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) {
  return uint4{x, y, z, w};
}
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

// ---- 16-bit float types (round to nearest even, as the _rn intrinsics) ----
namespace pybert_emu {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t float_to_half_bits(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u);  // NaN / inf
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (ax < 0x38800000u) {                        // below 2^-14: subnormal half (unit 2^-24)
    const float scaled = bits_f32(ax) * 16777216.0f;  // exact (power of two)
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));  // default mode: to even
  }
  uint32_t r = ax - 0x38000000u;  // rebias the exponent (127 - 15) << 23
  r += 0xfffu + ((r >> 13) & 1u);  // round the 13 dropped bits to nearest even
  return sign | static_cast<uint16_t>(r >> 13);
}

inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = std::ldexp(static_cast<float>(m), -24);
    return sign ? -v : v;
  }
  if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
  return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

inline uint16_t float_to_bf16_bits(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline float bf16_bits_to_float(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }

}  // namespace pybert_emu

struct __half {
  uint16_t x;
};
struct __half2 {
  __half x, y;
};
struct __nv_bfloat16 {
  uint16_t x;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __half __float2half_rn(float f) { return __half{pybert_emu::float_to_half_bits(f)}; }
inline float __half2float(__half h) { return pybert_emu::half_bits_to_float(h.x); }
inline __half2 __floats2half2_rn(float lo, float hi) {
  return __half2{__float2half_rn(lo), __float2half_rn(hi)};
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  return __nv_bfloat16{pybert_emu::float_to_bf16_bits(f)};
}
inline float __bfloat162float(__nv_bfloat16 b) { return pybert_emu::bf16_bits_to_float(b.x); }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return __nv_bfloat162{__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}

// ---- runtime API subset ----
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
enum cudaFuncAttribute : int { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct CUstream_st;
typedef CUstream_st* cudaStream_t;

cudaError_t cudaGetLastError();
const char* cudaGetErrorName(cudaError_t e);
// The message of the last failure (the emulator says what went wrong), else a
// generic text for e.
const char* cudaGetErrorString(cudaError_t e);

namespace pybert_emu {

struct ThreadState;
// The running fiber's CUDA thread (threadIdx etc. below read it).
ThreadState* current();
struct ThreadState {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};

// How the emulated CTAs run (see the top of this file).
struct Mode {
  bool reverse_order = false;  // warps (and lanes) run in reverse index order
  bool late_cp_async = true;   // cp.async copies land at the issuing thread's wait
  bool lockstep = false;       // all warps advance one instruction of sync at a time
                               // (else one warp runs from barrier to barrier, then the next)
};
void set_mode(const Mode& m);
Mode mode();

cudaError_t set_max_dynamic_smem(const void* kernel, int bytes);

// Runs body() as every thread of every CTA of the grid; returns false (and
// records why for cudaGetLastError) on a launch failure.
using Body = void (*)(void* ctx);
bool run_grid(const void* kernel, dim3 grid, dim3 block, size_t smem_bytes, Body body, void* ctx);

template <typename... P>
struct Launch {
  dim3 grid, block;
  size_t smem;
  void (*kernel)(P...);
  template <typename... A>
  void operator()(A&&... a) const {
    std::tuple<std::decay_t<P>...> args(std::forward<A>(a)...);
    struct Ctx {
      void (*kernel)(P...);
      std::tuple<std::decay_t<P>...>* args;
    } ctx{kernel, &args};
    run_grid(
        reinterpret_cast<const void*>(kernel), grid, block, smem,
        [](void* c) {
          Ctx* x = static_cast<Ctx*>(c);
          std::apply(x->kernel, *x->args);  // each thread gets its own copy of the parameters
        },
        &ctx);
  }
};
template <typename... P>
Launch<P...> launch(dim3 grid, dim3 block, size_t smem, void (*kernel)(P...)) {
  return Launch<P...>{grid, block, smem, kernel};
}

// Device-side operations.
int syncthreads_or(int predicate);
unsigned char* dynamic_smem();
// The next static shared array of the calling thread's CTA (every thread of a
// CTA must declare the same arrays in the same order, as in CUDA, where they
// are function-scope declarations).
void* static_smem_bytes(size_t bytes, size_t align);
template <typename T>
T* static_smem(size_t count) {
  return static_cast<T*>(static_smem_bytes(sizeof(T) * count, alignof(T)));
}
float shfl_xor(float x, int lane_mask);
unsigned reduce_max(unsigned x);
unsigned reduce_add(unsigned x);
void ldmatrix_x4(uint32_t (&r)[4], const void* p, bool trans);
enum class MmaType { kF16, kBF16 };
void mma_m16n8k16(MmaType type, float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
void cp_async_16(void* dst, const void* src, bool valid);
void cp_async_wait_all();
// Hopper warpgroup MMA (attention/wgmma.cuh): the shared-window address of a
// pointer into the CTA's shared memory (dynamic shared memory starts at an
// address that is a multiple of 16, not of 1024); wgmma.fence / commit_group /
// wait_group; wgmma.mma_async .m64nNk16 with float32 accumulators d (n / 2
// per thread), A from registers (a, the mma.m16n8k16 A fragment of the
// warp's 16 rows) and B from shared memory through a matrix descriptor (128-byte
// swizzle only; trans_b: MN-major B). Each warp's operation is recorded when all
// its lanes issue it and computed when a wait_group covers its group: the
// accumulators change, and shared memory is read, only then; an A register
// changed in between is a launch failure.
uint32_t smem_address(const void* p);
// fence.proxy.async.shared::cta: wgmma reads shared memory as it was at the
// last barrier that a fence.proxy.async came before (by any thread of the CTA:
// an approximation of the per-thread rule), so generic-proxy writes without
// one stay invisible to it.
void fence_proxy_async();
void wgmma_fence();
void wgmma_commit_group();
void wgmma_wait_group(int pending);
void wgmma_m64nNk16(MmaType type, int n, float* d, const uint32_t (&a)[4], uint64_t desc_b,
                    bool accumulate, bool trans_b);
// The same with A (64 x 16: warp w % 4 of the warpgroup reads rows 16 (w % 4)..)
// from shared memory too (trans_a: MN-major A).
void wgmma_m64nNk16_ss(MmaType type, int n, float* d, uint64_t desc_a, uint64_t desc_b,
                       bool accumulate, bool trans_a, bool trans_b);
void fail(const char* what);  // a launch failure from device code

}  // namespace pybert_emu

template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  return pybert_emu::set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), value);
}

#define threadIdx (::pybert_emu::current()->thread_idx)
#define blockIdx (::pybert_emu::current()->block_idx)
#define blockDim (::pybert_emu::current()->block_dim)
#define gridDim (::pybert_emu::current()->grid_dim)

inline void __syncthreads() { pybert_emu::syncthreads_or(0); }
inline int __syncthreads_or(int predicate) { return pybert_emu::syncthreads_or(predicate); }
inline float __shfl_xor_sync(unsigned mask, float x, int lane_mask) {
  if (mask != 0xffffffffu) pybert_emu::fail("__shfl_xor_sync: only full-warp masks are emulated");
  return pybert_emu::shfl_xor(x, lane_mask);
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned x) {
  if (mask != 0xffffffffu) pybert_emu::fail("__reduce_max_sync: only full-warp masks are emulated");
  return pybert_emu::reduce_max(x);
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned x) {
  if (mask != 0xffffffffu) pybert_emu::fail("__reduce_add_sync: only full-warp masks are emulated");
  return pybert_emu::reduce_add(x);
}
inline int max(int a, int b) { return a > b ? a : b; }  // CUDA's integer max/min
inline int min(int a, int b) { return a < b ? a : b; }
inline uint32_t __umulhi(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}
// The CTAs of a grid may run on several OS threads: atomics are real atomics.
inline float atomicAdd(float* addr, float v) {
  uint32_t* u = reinterpret_cast<uint32_t*>(addr);
  uint32_t old = __atomic_load_n(u, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(u, &old, pybert_emu::f32_bits(pybert_emu::bits_f32(old) + v),
                                      true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return pybert_emu::bits_f32(old);
}
inline float2 atomicAdd(float2* addr, float2 v) {  // sm_90: one 8-byte atomic per pair
  if (reinterpret_cast<uintptr_t>(addr) % 8 != 0) pybert_emu::fail("atomicAdd(float2*): misaligned");
  const float x = atomicAdd(&addr->x, v.x);
  return float2{x, atomicAdd(&addr->y, v.y)};
}

// Kernel launch: PYBERT_LAUNCH(grid, block, smem, stream, kernel)(args...).
#define PYBERT_LAUNCH(grid, block, smem, stream, ...) \
  ((void)(stream), ::pybert_emu::launch((grid), (block), (smem), __VA_ARGS__))
