// Small kernels that test the CUDA emulation itself (tests/test_attention_emu.py):
// tensor-core fragments through the same ldmatrix/mma/wgmma wrappers the
// attention kernels use, and the failures the emulator must report. Emulation
// build only.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "attention/cuda_common.cuh"
#include "attention/wgmma.cuh"

namespace {

using pybert::attention::cuda::Elem;
using pybert::attention::cuda::ldmatrix_x4;
using pybert::attention::cuda::ldmatrix_x4_trans;

int report(cudaError_t e, char* err, int err_len) {
  if (e == cudaSuccess) return 0;
  std::snprintf(err, err_len, "%s: %s", cudaGetErrorName(e), cudaGetErrorString(e));
  return 1;
}

// d[16][16] = a[16][16] . b + c with b given as [k][n] (b_kn) or as [n][k];
// fragments loaded with ldmatrix (a: .x4; b: .x4.trans from [k][n], .x4 from
// [n][k]), two m16n8k16 mma per call, as in flash_fwd.cuh / flash_bwd.cuh.
template <typename T>
__global__ void mma_kernel(const uint16_t* a, const uint16_t* b, bool b_kn, const float* c,
                           float* d) {
  PYBERT_DYNAMIC_SMEM(smem_raw);
  constexpr int kStride = 24;  // padded rows, 16-byte aligned
  uint16_t* sa = reinterpret_cast<uint16_t*>(smem_raw);
  uint16_t* sb = sa + 16 * kStride;
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  for (int i = lane; i < 256; i += 32) {
    sa[(i / 16) * kStride + i % 16] = a[i];
    sb[(i / 16) * kStride + i % 16] = b[i];
  }
  __syncthreads();
  uint32_t af[4], bf[4];
  ldmatrix_x4(af, sa + (((lane / 8) % 2) * 8 + lane % 8) * kStride + (lane / 16) * 8);
  if (b_kn)  // the V pattern: rows are k
    ldmatrix_x4_trans(bf, sb + (((lane / 8) % 2) * 8 + lane % 8) * kStride + (lane / 16) * 8);
  else  // the K pattern: rows are n
    ldmatrix_x4(bf, sb + ((lane / 16) * 8 + lane % 8) * kStride + ((lane / 8) % 2) * 8);
  float acc[2][4];
  for (int nt = 0; nt < 2; ++nt)
    for (int e = 0; e < 4; ++e) acc[nt][e] = c[(g + 8 * (e / 2)) * 16 + nt * 8 + 2 * t + e % 2];
  Elem<T>::mma(acc[0], af, bf[0], bf[1]);
  Elem<T>::mma(acc[1], af, bf[2], bf[3]);
  for (int nt = 0; nt < 2; ++nt)
    for (int e = 0; e < 4; ++e) d[(g + 8 * (e / 2)) * 16 + nt * 8 + 2 * t + e % 2] = acc[nt][e];
}

// D (64 x 64) = A (64 x 64, [m][k]) . B + C through four wgmma m64n64k16 (one
// warpgroup), B stored 128-byte swizzled as the attention kernels store their
// tiles (row r's 16-byte chunk j at chunk j ^ (r % 8)): b_kn false: B given as
// [n][k], the rows are n (K-major: the K tile of S = Q K^T, start + 32 bytes
// per k step); b_kn true: B given as [k][n], the rows are k (MN-major: the V
// tile of O = P V, start + 16 rows per k step). mode 1: also copies the
// accumulators to `early` between the issue and the wait; mode 2: zeroes B in
// shared memory between the issue and the wait; mode 3: no wgmma.fence; mode
// 4: changes an A register between the issue and the wait; mode 5: B 128 bytes
// past a 1024-byte boundary of the shared window (the swizzle atoms misaligned);
// mode 6: warp 1 leaves out the last wgmma; mode 7: warp 2 gives its first
// wgmma another B descriptor than the other warps; mode 8: no
// fence.proxy.async between the stores of A and B and the wgmma.
template <typename T>
__global__ void wgmma_kernel(const uint16_t* a, const uint16_t* b, bool b_kn, const float* c,
                             float* d, float* early, int mode) {
  using namespace pybert::attention::cuda;
  PYBERT_DYNAMIC_SMEM(smem_raw);
  constexpr int kStride = 72;  // A: padded rows for ldmatrix; 64 * 72 * 2 bytes = 9 KiB
  uint16_t* sa = reinterpret_cast<uint16_t*>(smem_raw);
  // B at the first 1024-byte boundary of the shared window past A (the
  // emulated dynamic shared memory, like a GPU's, need not start at one)
  unsigned char* after_a = smem_raw + 64 * kStride * 2;
  uint16_t* sb = reinterpret_cast<uint16_t*>(
      after_a + ((1024u - (smem_u32(after_a) & 1023u)) & 1023u) + (mode == 5 ? 128 : 0));
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  for (int i = tid; i < 64 * 64; i += 128) {
    const int r = i / 64, j = i % 64;
    sa[r * kStride + j] = a[i];
    sb[r * 64 + (((j / 8) ^ (r % 8)) * 8) + j % 8] = b[i];
  }
  if (mode != 8) fence_proxy_async();
  __syncthreads();
  uint32_t af[4][4];
  for (int kt = 0; kt < 4; ++kt)
    ldmatrix_x4(af[kt], sa + (warp * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kStride + kt * 16 +
                            (lane / 16) * 8);
  float acc[8][4];
  for (int i = 0; i < 8; ++i)
    for (int e = 0; e < 4; ++e) acc[i][e] = c[(warp * 16 + g + 8 * (e / 2)) * 64 + 8 * i + 2 * t + e % 2];
  if (mode != 3) wgmma_fence();
  for (int kt = 0; kt < (mode == 6 && warp == 1 ? 3 : 4); ++kt) {
    const int bk = mode == 7 && warp == 2 && kt == 0 ? 1 : kt;
    if (b_kn)
      wgmma_m64n64k16<T, true>(acc, af[kt], wgmma_desc_sw128(smem_u32(sb) + bk * 2048, 16, 1024), true);
    else
      wgmma_m64n64k16<T, false>(acc, af[kt], wgmma_desc_sw128(smem_u32(sb) + bk * 32, 16, 1024), true);
  }
  wgmma_commit();
  if (mode == 4) af[1][2] ^= 1u;
  if (mode == 1)
    for (int i = 0; i < 8; ++i)
      for (int e = 0; e < 4; ++e)
        early[(warp * 16 + g + 8 * (e / 2)) * 64 + 8 * i + 2 * t + e % 2] = acc[i][e];
  if (mode == 2) {
    __syncthreads();  // every warp has issued
    for (int i = tid; i < 64 * 64; i += 128) sb[i] = 0;
    fence_proxy_async();
    __syncthreads();
  }
  wgmma_wait<0>();
  for (int i = 0; i < 8; ++i)
    for (int e = 0; e < 4; ++e) d[(warp * 16 + g + 8 * (e / 2)) * 64 + 8 * i + 2 * t + e % 2] = acc[i][e];
}

// Each warp writes its slot of shared memory, then reads its neighbour's:
// correct only with the barrier in between (without it, a warp reads its
// neighbour's slot before the write: the 0xFF bytes shared memory starts as).
__global__ void neighbour_kernel(int* out, int tag, bool barrier) {
  PYBERT_STATIC_SMEM(int, slots, 8);
  const int warp = threadIdx.x / 32, n = blockDim.x / 32;
  if (threadIdx.x % 32 == 0) slots[warp] = tag + warp;
  if (barrier) __syncthreads();
  if (threadIdx.x % 32 == 0) out[warp] = slots[(warp + 1) % n];
}

// Bugs the emulator must report as launch failures.
__global__ void divergent_kernel(int kind, float* out) {
  const int lane = threadIdx.x % 32;
  float x = static_cast<float>(lane);
  if (kind == 0) {  // half a warp at a shuffle, half at a barrier
    if (lane < 16)
      x = __shfl_xor_sync(0xffffffffu, x, 1);
    else
      __syncthreads();
  } else if (kind == 1) {  // lanes exit while the others wait at a shuffle
    if (lane >= 8) return;
    x = __shfl_xor_sync(0xffffffffu, x, 1);
  } else if (kind == 2) {  // ldmatrix outside the dynamic shared memory
    PYBERT_DYNAMIC_SMEM(smem_raw);
    uint32_t r[4];
    ldmatrix_x4(r, smem_raw + 64 * 16 + lane * 16);
    x = static_cast<float>(r[0]);
  }
  out[threadIdx.x] = x;
}

// 64 KiB of static shared memory (over the hardware's 48 KiB).
__global__ void big_static_kernel(float* out) {
  PYBERT_STATIC_SMEM(int, big, 16 * 1024);
  big[threadIdx.x] = 1;
  out[threadIdx.x] = static_cast<float>(big[threadIdx.x]);
}

template <int kId>  // one kernel per test case: the shared-memory attribute is per kernel
__global__ void noop_kernel(float* out) {
  PYBERT_DYNAMIC_SMEM(smem_raw);
  if (threadIdx.x == 0) out[0] = static_cast<float>(smem_raw[0]);
}

}  // namespace

extern "C" {

int pybert_emu_selftest_mma(int bf16, const uint16_t* a, const uint16_t* b, int b_kn,
                            const float* c, float* d, char* err, int err_len) {
  cudaGetLastError();
  if (bf16)
    PYBERT_LAUNCH(1, 32, 2 * 16 * 24 * 2, nullptr, mma_kernel<__nv_bfloat16>)(a, b, b_kn != 0, c, d);
  else
    PYBERT_LAUNCH(1, 32, 2 * 16 * 24 * 2, nullptr, mma_kernel<__half>)(a, b, b_kn != 0, c, d);
  return report(cudaGetLastError(), err, err_len);
}

int pybert_emu_selftest_wgmma(int bf16, const uint16_t* a, const uint16_t* b, int b_kn,
                              const float* c, float* d, float* early, int mode, char* err,
                              int err_len) {
  cudaGetLastError();
  const size_t smem = (64 * 72 + 64 * 64) * 2 + 1024 + 128;  // + alignment slack, mode 5's shift
  if (bf16)
    PYBERT_LAUNCH(1, 128, smem, nullptr, wgmma_kernel<__nv_bfloat16>)(a, b, b_kn != 0, c, d, early, mode);
  else
    PYBERT_LAUNCH(1, 128, smem, nullptr, wgmma_kernel<__half>)(a, b, b_kn != 0, c, d, early, mode);
  return report(cudaGetLastError(), err, err_len);
}

int pybert_emu_selftest_neighbour(int warps, int tag, int barrier, int* out, char* err,
                                  int err_len) {
  cudaGetLastError();
  PYBERT_LAUNCH(1, 32 * warps, 0, nullptr, neighbour_kernel)(out, tag, barrier != 0);
  return report(cudaGetLastError(), err, err_len);
}

// kind 0-2: divergent_kernel; 3: 64 KiB of dynamic shared memory without
// cudaFuncSetAttribute; 4: the same after it; 5: a block of 2048 threads;
// 6: 64 KiB of static shared memory.
int pybert_emu_selftest_failure(int kind, float* out, char* err, int err_len) {
  cudaGetLastError();
  if (kind <= 2) {
    PYBERT_LAUNCH(1, 64, 64 * 16, nullptr, divergent_kernel)(kind, out);
  } else if (kind == 3) {
    PYBERT_LAUNCH(1, 32, 65536, nullptr, noop_kernel<3>)(out);
  } else if (kind == 4) {
    const cudaError_t e =
        cudaFuncSetAttribute(noop_kernel<4>, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536);
    if (e != cudaSuccess) return report(e, err, err_len);
    PYBERT_LAUNCH(1, 32, 65536, nullptr, noop_kernel<4>)(out);
  } else if (kind == 5) {
    PYBERT_LAUNCH(1, 2048, 0, nullptr, noop_kernel<5>)(out);
  } else {
    PYBERT_LAUNCH(1, 32, 0, nullptr, big_static_kernel)(out);
  }
  return report(cudaGetLastError(), err, err_len);
}

}  // extern "C"
