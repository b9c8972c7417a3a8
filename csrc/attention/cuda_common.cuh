// Device helpers for the tensor-core attention kernels: element types, packed
// conversions, mma.sync m16n8k16 (fp32 accumulate), ldmatrix and cp.async.
// Fragment layouts follow the PTX ISA for mma.m16n8k16 with .row.col:
//   A (16x16): a[0]=(g, 2t..2t+1) a[1]=(g+8, 2t..) a[2]=(g, 8+2t..) a[3]=(g+8, 8+2t..)
//   B (16x8):  b[0]=(k 2t..2t+1, n g) b[1]=(k 8+2t.., n g)
//   C (16x8):  c[0..1]=(g, 2t..2t+1) c[2..3]=(g+8, 2t..2t+1)
// with g = lane / 4 and t = lane % 4.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

// The CPU emulation build (emu/cuda_emu.h) replaces the inline PTX below with
// emulated instructions; these macros hide the CUDA-only syntax (shared-memory
// declarations, kernel launches).
#if defined(PYBERT_CUDA_EMU)
#define PYBERT_DYNAMIC_SMEM(name) unsigned char* name = ::pybert_emu::dynamic_smem()
#define PYBERT_STATIC_SMEM(type, name, count) \
  type* const name = ::pybert_emu::static_smem<type>(count)
#else
#define PYBERT_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
// PYBERT_STATIC_SMEM(int, s, 8): a static shared array, __shared__ int s[8].
#define PYBERT_STATIC_SMEM(type, name, count) __shared__ type name[count]
// PYBERT_LAUNCH(grid, block, smem, stream, kernel)(args...)
#define PYBERT_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#endif

namespace pybert {
namespace attention {
namespace cuda {

template <typename T>
struct Elem;

template <>
struct Elem<__half> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }
  static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
#if defined(PYBERT_CUDA_EMU)
    ::pybert_emu::mma_m16n8k16(::pybert_emu::MmaType::kF16, d, a, b0, b1);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
  }
};

template <>
struct Elem<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float x) {
    return __float2bfloat16_rn(x);
  }
  static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
#if defined(PYBERT_CUDA_EMU)
    ::pybert_emu::mma_m16n8k16(::pybert_emu::MmaType::kBF16, d, a, b0, b1);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
  }
};

template <>
struct Elem<float> {
  static __device__ __forceinline__ float to_float(float x) { return x; }
  static __device__ __forceinline__ float from_float(float x) { return x; }
};

#if defined(PYBERT_CUDA_EMU)
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  ::pybert_emu::ldmatrix_x4(r, p, false);
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  ::pybert_emu::ldmatrix_x4(r, p, true);
}
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  ::pybert_emu::cp_async_16(dst, src, valid);
}
__device__ __forceinline__ void cp_async_commit() {}
__device__ __forceinline__ void cp_async_wait_all() { ::pybert_emu::cp_async_wait_all(); }
#else
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// 16-byte global -> shared copy; src_bytes == 0 zero-fills the destination.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }
#endif

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// 2^x through the MUFU unit (relative error ~2^-22; ex2(-inf) = +0).
__device__ __forceinline__ float fast_exp2(float x) {
#if defined(PYBERT_CUDA_EMU)
  return exp2f(x);
#else
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
#endif
}

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Key-mask summary of one batch row, computed by a whole CTA.
//   kv_len: 1 + the last kept key (0 if none); prefix: every key < kv_len is kept.
struct MaskInfo {
  int kv_len;
  bool prefix;
};

__device__ __forceinline__ MaskInfo scan_mask(const int32_t* mask_row, int seq_k, int* s_scratch) {
  MaskInfo info;
  if (mask_row == nullptr) {
    info.kv_len = seq_k;
    info.prefix = true;
    return info;
  }
  int last = 0, count = 0;
  for (int j = threadIdx.x; j < seq_k; j += blockDim.x) {
    if (mask_row[j] != 0) {
      last = j + 1;
      ++count;
    }
  }
  last = __reduce_max_sync(0xffffffffu, static_cast<unsigned>(last));
  count = __reduce_add_sync(0xffffffffu, static_cast<unsigned>(count));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  if (lane == 0) {
    s_scratch[2 * warp] = last;
    s_scratch[2 * warp + 1] = count;
  }
  __syncthreads();
  last = 0;
  count = 0;
  for (int w = 0; w < nwarps; ++w) {
    last = max(last, s_scratch[2 * w]);
    count += s_scratch[2 * w + 1];
  }
  __syncthreads();
  info.kv_len = last;
  info.prefix = (count == last);
  return info;
}

}  // namespace cuda
}  // namespace attention
}  // namespace pybert
