// Hopper warpgroup MMA (wgmma, sm_90a only) for the attention kernels:
// wgmma.mma_async m64n64k16 and m64n32k16 with float32 accumulators, A from
// registers ("rs") or from shared memory ("ss"), B from shared memory through
// matrix descriptors, plus the fences and waits around them. PTX ISA semantics:
//   - a warpgroup (4 consecutive warps, the first a multiple of 4) computes a
//     64 x 64 block; warp w % 4 of the group owns rows 16 (w % 4) + [0, 16):
//     its A fragment and its accumulator fragment have the mma.m16n8k16 layouts
//     (cuda_common.cuh) for those 16 rows, the accumulator as 8 column tiles of
//     8: d[i][0..1] = (g, 8i + 2t..), d[i][2..3] = (g + 8, 8i + 2t..);
//   - B (16 x 64) is read from shared memory asynchronously, any time until
//     wgmma.wait_group returns, and the accumulators are undefined until then;
//   - wgmma.fence must come before the first wgmma and between any other
//     access to its registers and the wgmma;
//   - shared memory written through the generic proxy (st.shared, cp.async)
//     must be made visible with fence.proxy.async before wgmma reads it.
// Shared-memory layout: only the 128-byte swizzle (rows of 64 16-bit
// elements, 8-row atoms of 1024 bytes at 1024-byte aligned addresses; the
// 16-byte chunk c of row r of an atom is stored at chunk c ^ (r % 8)).
//   K-major B (B[k][n] at row n, element k: S = Q K^T with K[key][d]):
//     descriptor start = the tile + 32 bytes per 16-element k step, SBO = 1024
//     (the next 8 rows), LBO unused (1);
//   MN-major B (B[k][n] at row k, element n: O = P V with V[key][d]):
//     start = the tile + 2048 bytes per 16-row k step (+ 2 bytes per column
//     where n starts past column 0), SBO = 1024 (the next 8 rows of k), LBO =
//     the next 64 columns of n (unused at n <= 64).
//   A from shared memory (64 x 16, warpgroup rows): the same with m for n
//   (K-major: rows m; MN-major, transposed: rows k, elements m).
// The CPU emulation (emu/cuda_emu.h) implements the same semantics, waits
// included: an operation computes when its group is waited for, so reading an
// accumulator early or overwriting B before the wait gives wrong numbers there.
// ptxas serializes the wgmma of a kernel (and says so: C7513/C7514, "Potential
// Performance Loss") where other instructions write a wgmma's input registers
// or read its accumulators between a wgmma.fence and the wait that retires it;
// tests/test_attention_cuda.py checks that it does not for these kernels.
#pragma once

#include <cstdint>
#include <type_traits>

#include "attention/cuda_common.cuh"

// Whether this compilation pass has wgmma: the CPU emulation, or device code
// for sm_90a (the launcher reads which at run time: g_wgmma_compiled,
// launch_impl.cuh).
#if defined(PYBERT_CUDA_EMU) || (defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL))
#define PYBERT_HAS_WGMMA 1
#else
#define PYBERT_HAS_WGMMA 0
#endif

namespace pybert {
namespace attention {
namespace cuda {

// Matrix descriptor, 128-byte swizzle; addresses and offsets in bytes of the
// shared window.
__device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t start, uint32_t lbo, uint32_t sbo) {
  return static_cast<uint64_t>((start & 0x3FFFFu) >> 4) |
         (static_cast<uint64_t>((lbo & 0x3FFFFu) >> 4) << 16) |
         (static_cast<uint64_t>((sbo & 0x3FFFFu) >> 4) << 32) | (uint64_t(1) << 62);
}

#if defined(PYBERT_CUDA_EMU)
__device__ __forceinline__ void wgmma_pin(uint64_t&) {}
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return ::pybert_emu::smem_address(p); }
__device__ __forceinline__ void wgmma_fence() { ::pybert_emu::wgmma_fence(); }
__device__ __forceinline__ void wgmma_commit() { ::pybert_emu::wgmma_commit_group(); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  ::pybert_emu::wgmma_wait_group(N);
}
__device__ __forceinline__ void fence_proxy_async() { ::pybert_emu::fence_proxy_async(); }
template <int R, int C>
__device__ __forceinline__ void wgmma_fence_regs(float (&)[R][C]) {}

template <typename T>
constexpr ::pybert_emu::MmaType emu_mma_type() {
  return std::is_same<T, __half>::value ? ::pybert_emu::MmaType::kF16 : ::pybert_emu::MmaType::kBF16;
}
template <typename T, bool kTransB>
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[8][4], const uint32_t (&a)[4],
                                                uint64_t desc_b, bool accumulate) {
  ::pybert_emu::wgmma_m64nNk16(emu_mma_type<T>(), 64, &d[0][0], a, desc_b, accumulate, kTransB);
}
// d = A x B: d is only written (its previous values are no input).
template <typename T, bool kTransB>
__device__ __forceinline__ void wgmma_m64n64k16_zero(float (&d)[8][4], const uint32_t (&a)[4],
                                                     uint64_t desc_b) {
  ::pybert_emu::wgmma_m64nNk16(emu_mma_type<T>(), 64, &d[0][0], a, desc_b, false, kTransB);
}
template <typename T, bool kTransA, bool kTransB, int N>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 8][4], uint64_t desc_a, uint64_t desc_b,
                                         bool accumulate) {
  static_assert(N == 32 || N == 64, "n 32 or 64");
  ::pybert_emu::wgmma_m64nNk16_ss(emu_mma_type<T>(), N, &d[0][0], desc_a, desc_b, accumulate,
                                  kTransA, kTransB);
}
#else
// Keeps a value computed here (the compiler may not sink it past this point).
__device__ __forceinline__ void wgmma_pin(uint64_t& x) { asm volatile("" : "+l"(x)); }
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void wgmma_fence() {
#if PYBERT_HAS_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if PYBERT_HAS_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if PYBERT_HAS_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// This thread's generic-proxy writes to shared memory (cp.async included,
// after its wait) become visible to the async proxy (wgmma operand reads).
__device__ __forceinline__ void fence_proxy_async() {
#if PYBERT_HAS_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Keeps the compiler from moving accesses of these registers across the
// wgmma fence/wait around them (the asm of wgmma names them only at issue).
template <int R, int C>
__device__ __forceinline__ void wgmma_fence_regs(float (&r)[R][C]) {
#pragma unroll
  for (int i = 0; i < R; ++i)
#pragma unroll
    for (int j = 0; j < C; ++j) asm volatile("" : "+f"(r[i][j])::"memory");
}

// asm operand lists of the accumulators: C "+f" (read and written) or "=f"
// (written only), for 16 (n 32) or 32 (n 64) registers.
#define PYBERT_WGMMA_D16C(C, d)                                                   \
  C(d[0][0]), C(d[0][1]), C(d[0][2]), C(d[0][3]), C(d[1][0]), C(d[1][1]), C(d[1][2]), \
      C(d[1][3]), C(d[2][0]), C(d[2][1]), C(d[2][2]), C(d[2][3]), C(d[3][0]), C(d[3][1]), \
      C(d[3][2]), C(d[3][3])
#define PYBERT_WGMMA_D32C(C, d)                                                            \
  PYBERT_WGMMA_D16C(C, d), C(d[4][0]), C(d[4][1]), C(d[4][2]), C(d[4][3]), C(d[5][0]),     \
      C(d[5][1]), C(d[5][2]), C(d[5][3]), C(d[6][0]), C(d[6][1]), C(d[6][2]), C(d[6][3]), \
      C(d[7][0]), C(d[7][1]), C(d[7][2]), C(d[7][3])
#define PYBERT_WGMMA_D16(d) PYBERT_WGMMA_D16C("+f", d)
#define PYBERT_WGMMA_D32(d) PYBERT_WGMMA_D32C("+f", d)
#define PYBERT_WGMMA_D32_OUT(d) PYBERT_WGMMA_D32C("=f", d)
// d (32 registers) = A (4) x B (descriptor) [+ d]; TYPE f16 or bf16, TNSP the B
// transpose flag (0: K-major, 1: MN-major).
#define PYBERT_WGMMA_RS(TYPE, TNSP)                                                              \
  asm volatile(                                                                                  \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %36, 0;\n"                                               \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                                \
      " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23," \
      "%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %37, p, 1, 1, " TNSP ";\n}\n"         \
      : PYBERT_WGMMA_D32(d)                                                                      \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(static_cast<int>(accumulate)),          \
        "l"(desc_b))

// d = A x B with the scale-d immediate 0: d is only written, not read, so the
// registers it held are no input of the wgmma (ptxas's pipeline analysis).
#define PYBERT_WGMMA_RS_ZERO(TYPE, TNSP)                                                         \
  asm volatile(                                                                                  \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                                \
      " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23," \
      "%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, 0, 1, 1, " TNSP ";\n"           \
      : PYBERT_WGMMA_D32_OUT(d)                                                                  \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b))
// RS(TYPE, TNSP) for the element type T and the B transpose flag kTransB.
#define PYBERT_WGMMA_RS_ALL(RS)                   \
  if constexpr (std::is_same<T, __half>::value) { \
    if constexpr (kTransB)                        \
      RS("f16", "1");                             \
    else                                          \
      RS("f16", "0");                             \
  } else {                                        \
    if constexpr (kTransB)                        \
      RS("bf16", "1");                            \
    else                                          \
      RS("bf16", "0");                            \
  }
template <typename T, bool kTransB>
__device__ __forceinline__ void wgmma_m64n64k16_zero(float (&d)[8][4], const uint32_t (&a)[4],
                                                     uint64_t desc_b) {
#if PYBERT_HAS_WGMMA
  PYBERT_WGMMA_RS_ALL(PYBERT_WGMMA_RS_ZERO)
#else
  (void)d, (void)a, (void)desc_b;
#endif
}

template <typename T, bool kTransB>
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[8][4], const uint32_t (&a)[4],
                                                uint64_t desc_b, bool accumulate) {
#if PYBERT_HAS_WGMMA
  PYBERT_WGMMA_RS_ALL(PYBERT_WGMMA_RS)
#else
  (void)d, (void)a, (void)desc_b, (void)accumulate;
#endif
}
// d = A (descriptor) x B (descriptor) [+ d], n 64 (32 registers) or 32 (16).
#define PYBERT_WGMMA_SS64(TYPE, TA, TB)                                                          \
  asm volatile(                                                                                  \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                               \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                                \
      " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23," \
      "%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, " TA ", " TB ";\n}\n"               \
      : PYBERT_WGMMA_D32(d)                                                                      \
      : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)))
#define PYBERT_WGMMA_SS32(TYPE, TA, TB)                                                          \
  asm volatile(                                                                                  \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"                                               \
      "wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPE "." TYPE                                \
      " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, %16, %17, p, 1, 1, " TA ", " TB \
      ";\n}\n"                                                                                    \
      : PYBERT_WGMMA_D16(d)                                                                      \
      : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)))
#define PYBERT_WGMMA_SS_ALL(SS)                 \
  if constexpr (std::is_same<T, __half>::value) { \
    if constexpr (kTransA && kTransB)           \
      SS("f16", "1", "1");                      \
    else if constexpr (kTransA)                 \
      SS("f16", "1", "0");                      \
    else if constexpr (kTransB)                 \
      SS("f16", "0", "1");                      \
    else                                        \
      SS("f16", "0", "0");                      \
  } else {                                      \
    if constexpr (kTransA && kTransB)           \
      SS("bf16", "1", "1");                     \
    else if constexpr (kTransA)                 \
      SS("bf16", "1", "0");                     \
    else if constexpr (kTransB)                 \
      SS("bf16", "0", "1");                     \
    else                                        \
      SS("bf16", "0", "0");                     \
  }

template <typename T, bool kTransA, bool kTransB, int N>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 8][4], uint64_t desc_a, uint64_t desc_b,
                                         bool accumulate) {
  static_assert(N == 32 || N == 64, "n 32 or 64");
#if PYBERT_HAS_WGMMA
  if constexpr (N == 64) {
    PYBERT_WGMMA_SS_ALL(PYBERT_WGMMA_SS64)
  } else {
    PYBERT_WGMMA_SS_ALL(PYBERT_WGMMA_SS32)
  }
#else
  (void)d, (void)desc_a, (void)desc_b, (void)accumulate;
#endif
}
#undef PYBERT_WGMMA_SS_ALL
#undef PYBERT_WGMMA_SS32
#undef PYBERT_WGMMA_SS64
#undef PYBERT_WGMMA_RS
#undef PYBERT_WGMMA_RS_ZERO
#undef PYBERT_WGMMA_RS_ALL
#undef PYBERT_WGMMA_D32
#undef PYBERT_WGMMA_D32_OUT
#undef PYBERT_WGMMA_D16
#undef PYBERT_WGMMA_D16C
#undef PYBERT_WGMMA_D32C
#endif

}  // namespace cuda
}  // namespace attention
}  // namespace pybert
