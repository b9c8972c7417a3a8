// The fiber scheduler and the warp-collective instructions of the CUDA
// emulation (cuda_emu.h).
#include "attention/emu/cuda_emu.h"

#include <sys/mman.h>

#if !(defined(__x86_64__) && defined(__linux__))
#include <ucontext.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

// ThreadSanitizer (build_emu.sh TSAN=1 compiles the kernels with
// -fsanitize=thread and this file, the "hardware", without it but with
// PYBERT_EMU_TSAN=1): the runtime's fiber and annotation interface.
#if PYBERT_EMU_TSAN
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
void __tsan_read_range(void* addr, unsigned long size);
void __tsan_write_range(void* addr, unsigned long size);
}
#endif

// Fiber switch: saves the callee-saved registers on the current stack, stores
// the stack pointer in *save_sp and resumes the fiber whose stack pointer is
// new_sp (x86-64 System V; elsewhere ucontext, whose swapcontext costs a
// system call per switch).
#if defined(__x86_64__) && defined(__linux__)
#define PYBERT_EMU_ASM_SWITCH 1
extern "C" void pybert_emu_switch(void** save_sp, void* new_sp);
asm(R"(
  .text
  .globl pybert_emu_switch
  .hidden pybert_emu_switch
  .type pybert_emu_switch, @function
pybert_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size pybert_emu_switch, .-pybert_emu_switch
)");
#endif

namespace pybert_emu {
namespace {

// What the kernels' memory accesses are ordered by, for ThreadSanitizer (no-ops
// in the other builds). Fiber switches themselves order nothing.
namespace tsan {
#if PYBERT_EMU_TSAN
constexpr bool kOn = true;
inline void* current() { return __tsan_get_current_fiber(); }
inline void* create() { return __tsan_create_fiber(0); }
inline void destroy(void* f) { __tsan_destroy_fiber(f); }
inline void switch_to(void* f) { __tsan_switch_to_fiber(f, 1 /* no_sync */); }
inline void acquire(void* a) { __tsan_acquire(a); }
inline void release(void* a) { __tsan_release(a); }
inline void read(const void* a, size_t n) { __tsan_read_range(const_cast<void*>(a), n); }
inline void write(void* a, size_t n) { __tsan_write_range(a, n); }
#else
constexpr bool kOn = false;
inline void* current() { return nullptr; }
inline void* create() { return nullptr; }
inline void destroy(void*) {}
inline void switch_to(void*) {}
inline void acquire(void*) {}
inline void release(void*) {}
inline void read(const void*, size_t) {}
inline void write(void*, size_t) {}
#endif
}  // namespace tsan

constexpr size_t kStackBytes = 256 * 1024;
constexpr int kMaxThreads = 1024;
constexpr size_t kDefaultSmem = 48 * 1024, kMaxSmem = 227 * 1024;  // sm_90 per-CTA limits
constexpr size_t kStaticSmem = 48 * 1024;  // static shared memory limit
// The shared-window address of the first byte of dynamic shared memory
// (smem_address). Not a multiple of 1024, as it need not be on a GPU (static
// shared arrays come first there): code that needs 1024-byte alignment (the
// wgmma swizzle atoms) must align itself, and the 128-byte swizzle is a
// function of these addresses.
constexpr uint32_t kDynSmemBase = 1024 + 16;
constexpr int kMaxStaticArrays = 64;       // per kernel (an emulator limit)
constexpr int kMaxPendingCopies = 256;     // cp.async per thread between waits (likewise)
constexpr int kMaxWgmma = 32;              // wgmma operations per warp between waits (likewise)
constexpr int kWgLog = 256;  // how far the warps of a warpgroup may be apart in wgmma issued (likewise)

enum class Wait { kNone, kBarrier, kWarp, kDone };
enum class Op {
  kNone, kShfl, kRedMax, kRedAdd, kLdm, kLdmT, kMmaF16, kMmaBF16,
  kWgFence, kWgmma, kWgCommit, kWgWait
};

const char* op_name(Op op) {
  switch (op) {
    case Op::kShfl: return "__shfl_xor_sync";
    case Op::kRedMax: return "__reduce_max_sync";
    case Op::kRedAdd: return "__reduce_add_sync";
    case Op::kLdm: return "ldmatrix.x4";
    case Op::kLdmT: return "ldmatrix.x4.trans";
    case Op::kMmaF16: return "mma.m16n8k16 (f16)";
    case Op::kMmaBF16: return "mma.m16n8k16 (bf16)";
    case Op::kWgFence: return "wgmma.fence";
    case Op::kWgmma: return "wgmma.mma_async";
    case Op::kWgCommit: return "wgmma.commit_group";
    case Op::kWgWait: return "wgmma.wait_group";
    case Op::kNone: break;
  }
  return "?";
}

struct PendingCopy {
  void* dst;
  const void* src;
  bool valid;
};

struct Fiber {
  ThreadState* st = nullptr;  // in the CTA's memory (the kernel reads it: threadIdx etc.)
#if PYBERT_EMU_ASM_SWITCH
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
  Wait wait = Wait::kNone;
  int lane = 0, warp = 0;
  int barrier_result = 0;
  unsigned gen = 0;  // the barrier or collective this thread waits at (its generation)
  size_t static_cursor = 0;  // static shared arrays declared so far: bytes, count
  int static_count = 0;
  void* tsan = nullptr;  // ThreadSanitizer fiber
  // fixed arrays: nothing is allocated by a CUDA thread (for ThreadSanitizer)
  PendingCopy copies[kMaxPendingCopies];
  int n_copies = 0;
  // warp-collective operands: inputs and where the results go
  const void* in = nullptr;
  void* out = nullptr;
  int arg = 0;
};

struct WarpState {
  int arrived = 0;
  Op op = Op::kNone;
  unsigned gen = 0;  // collectives completed
  // wgmma: operations issued and not yet computed (Block::wg_ops), commit
  // groups closed so far, and whether a wgmma.fence came since the last wait.
  int n_wg = 0;
  uint64_t wg_issued = 0;  // wgmma issued since the CTA started
  unsigned wg_committed = 0;
  bool wg_fenced = false;
};

// One lane's operands of wgmma_m64nNk16 (on its stack while it waits).
struct WgmmaArgs {
  MmaType type;
  int n;
  float* d;
  const uint32_t* a;  // null: A from shared memory (desc_a)
  uint64_t desc_a, desc;
  bool accumulate, trans_a, trans_b;
};

// What the four warps of a warpgroup must give alike for each wgmma (the
// instruction is .aligned: the warpgroup issues it together).
struct WgSig {
  uint64_t desc = 0, desc_a = 0;
  int n = 0;
  MmaType type = MmaType::kF16;
  bool a_smem = false, accumulate = false, trans_a = false, trans_b = false;
  bool operator==(const WgSig& o) const {
    return desc == o.desc && desc_a == o.desc_a && n == o.n && type == o.type &&
           a_smem == o.a_smem && accumulate == o.accumulate && trans_a == o.trans_a &&
           trans_b == o.trans_b;
  }
};
struct WgLogEntry {
  uint64_t seq1 = 0;  // 1 + the operation's index in the warpgroup's sequence; 0: empty
  WgSig sig;
  int warp = 0;  // the warp that issued it first
};

// One warp's issued wgmma: its lanes' A fragments and accumulator addresses.
struct WgmmaOp {
  MmaType type;
  int n;
  uint64_t desc_a, desc;
  bool a_smem, accumulate, trans_a, trans_b;
  int wq;          // the warp's index in its warpgroup: A rows 16 wq..
  unsigned group;  // commit group (WarpState::wg_committed when issued)
  uint32_t a[32][4];           // the lanes' A fragments at the issue
  const uint32_t* a_reg[32];   // where they live (they must not change before the wait)
  float* d[32];
};

struct Block;
thread_local Block* t_block = nullptr;
thread_local Fiber* t_fiber = nullptr;

struct Block {
  std::vector<Fiber> fibers;
  std::vector<WarpState> warps;
  size_t smem_bytes = 0;  // dynamic shared memory of the launch
  // The CTA's memory (cta_memory()): shared memory, sync objects, stacks.
  unsigned char* smem = nullptr;
  unsigned char* static_smem = nullptr;
  // ThreadSanitizer: this CTA's sync objects (start, 2 barrier generations,
  // 2 per warp), the launch's (start, done), the scheduler's own fiber.
  char* sync = nullptr;
  ThreadState* states = nullptr;  // one per thread
  char* stacks = nullptr;  // kStackBytes per thread
  std::unique_ptr<char[]> owned;  // without ThreadSanitizer: reused from CTA to CTA
  size_t owned_bytes = 0;
  char* mapped = nullptr;  // with it: mapped for one CTA (munmap resets its history)
  size_t mapped_bytes = 0;
  size_t static_sizes[kMaxStaticArrays];  // the CTA's static shared arrays, in order
  std::vector<WgmmaOp> wg_ops;  // kMaxWgmma per warp
  std::vector<WgLogEntry> wg_log;  // kWgLog per warpgroup: the last wgmma issued
  // The async proxy's view of dynamic shared memory (what wgmma reads): a copy
  // taken at each barrier that some thread's fence.proxy.async came before
  // (without ThreadSanitizer; with it wgmma reads shared memory itself).
  std::vector<unsigned char> async_view;
  bool async_valid = false, proxy_fenced = false;
  int n_static = 0;
  size_t static_used = 0;
  unsigned barrier_gen = 0;  // barriers completed
  char* launch_sync = nullptr;
  void* sched_tsan = nullptr;
#if PYBERT_EMU_ASM_SWITCH
  void* sched_sp = nullptr;
#else
  ucontext_t sched;
#endif
  int live = 0, at_barrier = 0, barrier_or = 0;
  bool failed = false;
  std::string error;
  Body body = nullptr;
  void* ctx = nullptr;
};

std::mutex g_mutex;
std::map<const void*, int> g_max_smem;  // cudaFuncSetAttribute values
Mode g_mode;
// Per host thread, as in CUDA (launches record their failure on the calling thread).
thread_local cudaError_t g_last_error = cudaSuccess;
thread_local std::string g_last_message;

void record_error(cudaError_t e, const std::string& msg) {
  if (g_last_error == cudaSuccess) {
    g_last_error = e;
    g_last_message = msg;
  }
}

char* barrier_sync(Block* b, unsigned gen) { return b->sync + 8 + 8 * (gen & 1); }
char* warp_sync(Block* b, int warp, unsigned gen) {
  return b->sync + 24 + 16 * warp + 8 * (gen & 1);
}

bool in_smem(const Block* b, const void* p, size_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t d = reinterpret_cast<uintptr_t>(b->smem);
  const uintptr_t s = reinterpret_cast<uintptr_t>(b->static_smem);
  return (a >= d && a + n <= d + b->smem_bytes) || (a >= s && a + n <= s + b->static_used);
}

void yield_to_scheduler() {
  Fiber* f = t_fiber;
  tsan::switch_to(t_block->sched_tsan);
#if PYBERT_EMU_ASM_SWITCH
  pybert_emu_switch(&f->sp, t_block->sched_sp);
#else
  swapcontext(&f->ctx, &t_block->sched);
#endif
}

void resume(Block* b, Fiber* f) {
  t_fiber = f;
  tsan::switch_to(f->tsan);
#if PYBERT_EMU_ASM_SWITCH
  pybert_emu_switch(&b->sched_sp, f->sp);
#else
  swapcontext(&b->sched, &f->ctx);
#endif
}

[[noreturn]] void abort_fiber(const std::string& msg) {
  Block* b = t_block;
  if (!b->failed) {
    b->failed = true;
    const Fiber* f = t_fiber;
    b->error = msg + " (block " + std::to_string(f->st->block_idx.x) + "," +
               std::to_string(f->st->block_idx.y) + "," + std::to_string(f->st->block_idx.z) +
               ", thread " + std::to_string(f->st->thread_idx.x) + ")";
  }
  for (;;) yield_to_scheduler();  // never resumed
}

void release_barrier(Block* b) {
  if (b->proxy_fenced && !tsan::kOn) {
    b->async_view.assign(b->smem, b->smem + b->smem_bytes);
    b->async_valid = true;
  }
  b->proxy_fenced = false;
  for (Fiber& f : b->fibers)
    if (f.wait == Wait::kBarrier) {
      f.wait = Wait::kNone;
      f.barrier_result = b->barrier_or;
    }
  b->at_barrier = 0;
  b->barrier_or = 0;
  ++b->barrier_gen;
}

void finish_copies(Fiber* f) {
  for (int i = 0; i < f->n_copies; ++i) {
    const PendingCopy& c = f->copies[i];
    tsan::write(c.dst, 16);
    if (c.valid)
      std::memcpy(c.dst, c.src, 16);
    else
      std::memset(c.dst, 0, 16);
  }
  f->n_copies = 0;
}

void fiber_entry() {
  Block* b = t_block;
  if (tsan::kOn) {
    tsan::acquire(b->launch_sync);  // the host's writes before the launch
    tsan::acquire(b->sync);         // this CTA's fresh memory
  }
  b->body(b->ctx);
  Fiber* f = t_fiber;
  if (tsan::kOn) tsan::release(b->launch_sync + 8);  // for the host, after the launch
  f->n_copies = 0;  // copies never waited for: dropped
  if (b->warps[f->warp].n_wg > 0)
    abort_fiber("a thread exited with wgmma operations of its warp never waited for");
  f->wait = Wait::kDone;
  --b->live;
  if (b->warps[f->warp].arrived > 0)
    abort_fiber(std::string("a thread exited while other lanes of its warp wait at ") +
                op_name(b->warps[f->warp].op));
  if (b->at_barrier > 0 && b->at_barrier == b->live) release_barrier(b);
  yield_to_scheduler();  // not resumed again
}

#if PYBERT_EMU_ASM_SWITCH
// A new fiber's stack: six zeroed callee-saved registers, then fiber_entry as
// the return address of pybert_emu_switch, then a dummy return address (so
// that fiber_entry starts with the stack alignment of a called function).
void* initial_sp(char* stack, size_t bytes) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;
  *--sp = reinterpret_cast<void*>(&fiber_entry);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;
  return sp;
}
#endif

// The byte offset in the CTA's shared window of element (k, n) of a wgmma
// operand given by a matrix descriptor (B[k][n], or A[m][k] with m for n),
// from the canonical layouts of the PTX ISA: 128-byte swizzle only, as (rows
// of 128 bytes, 8-row atoms)
//   K-major:  start + (n % 8) * 128 + (n / 8) * SBO + 2 k
//   MN-major: start + 2 (n % 64) + (n / 64) * LBO + (k % 8) * 128 + (k / 8) * SBO
// then the 16-byte chunk bits [4, 7) XOR the row bits [7, 10) of that address.
size_t wgmma_offset(Block* b, uint64_t desc, bool mn_major, int k, int n) {
  const size_t start = (desc & 0x3FFFu) << 4, lbo = ((desc >> 16) & 0x3FFFu) << 4,
               sbo = ((desc >> 32) & 0x3FFFu) << 4;  // shared-window addresses
  if ((desc >> 62) != 1)
    abort_fiber("wgmma: descriptor swizzle mode " + std::to_string(desc >> 62) +
                " (only the 128-byte swizzle, 1, is emulated)");
  if (((desc >> 49) & 7u) != 0) abort_fiber("wgmma: descriptor base offset != 0 (not emulated)");
  const size_t pre = mn_major ? start + 2 * (n % 64) + (n / 64) * lbo + (k % 8) * 128 + (k / 8) * sbo
                             : start + (n % 8) * 128 + (n / 8) * sbo + 2 * k;
  const size_t addr = pre ^ (((pre >> 7) & 7u) << 4);
  const size_t off = addr - kDynSmemBase;  // wraps (and fails below) under the base
  if (addr < kDynSmemBase || off + 2 > b->smem_bytes)
    abort_fiber("wgmma: operand element (k " + std::to_string(k) + ", m/n " + std::to_string(n) +
                ") at shared address " + std::to_string(addr) + ", outside the " +
                std::to_string(b->smem_bytes) + " bytes of dynamic shared memory at " +
                std::to_string(kDynSmemBase));
  return off;
}

// ThreadSanitizer: the shared memory an operation reads, read by this fiber,
// by 16-byte chunks (8 elements contiguous in k, or in n for MN-major B: the
// swizzle keeps address bits [0, 4)). Checks the descriptor in every build.
void wgmma_annotate_operand(Block* b, uint64_t desc, bool mn_major, int n0, int n) {
  for (int k = 0; k < 16; k += mn_major ? 1 : 8)
    for (int j = n0; j < n0 + n; j += mn_major ? 8 : 1) {
      const size_t off = wgmma_offset(b, desc, mn_major, k, j);
      if (off + 16 > b->smem_bytes) abort_fiber("wgmma: operand outside dynamic shared memory");
      tsan::read(b->smem + off, 16);
    }
}
void wgmma_annotate(Block* b, const WgmmaOp& op) {
  wgmma_annotate_operand(b, op.desc, op.trans_b, 0, op.n);
  if (op.a_smem) wgmma_annotate_operand(b, op.desc_a, op.trans_a, 16 * op.wq, 16);
}

// The shared memory wgmma reads: writes through the generic proxy (stores,
// cp.async) reach it through a fence.proxy.async and then a barrier.
const unsigned char* async_smem(Block* b) {
  if (tsan::kOn) return b->smem;
  if (!b->async_valid)
    abort_fiber("wgmma reads shared memory that no fence.proxy.async, then a barrier, has made "
                "visible to the async proxy");
  return b->async_view.data();
}

// Computes one warp's issued operation: its 16 rows of D (+)= A B.
void wgmma_execute(Block* b, const WgmmaOp& op) {
  auto cvt = [&](uint32_t w, int half) {
    const uint16_t h = static_cast<uint16_t>(half ? w >> 16 : w & 0xffffu);
    return op.type == MmaType::kF16 ? half_bits_to_float(h) : bf16_bits_to_float(h);
  };
  float A[16][16], B[16][256];
  const unsigned char* smem = async_smem(b);
  if (op.a_smem) {  // this warp's rows 16 wq + [0, 16) of the warpgroup's A
    for (int r = 0; r < 16; ++r)
      for (int k = 0; k < 16; ++k) {
        uint16_t v;
        std::memcpy(&v, smem + wgmma_offset(b, op.desc_a, op.trans_a, k, 16 * op.wq + r), 2);
        A[r][k] = cvt(v, 0);
      }
  }
  for (int l = 0; l < 32 && !op.a_smem; ++l) {
    // PTX: A's registers must keep their values until the wait (the hardware
    // may read them any time before).
    for (int e = 0; e < 4; ++e)
      if (op.a_reg[l][e] != op.a[l][e])
        abort_fiber("wgmma: lane " + std::to_string(l) + " of warp " + std::to_string(op.wq) +
                    " of its warpgroup changed an A register of a wgmma.mma_async before the "
                    "wgmma.wait_group that covers it");
    const int g = l / 4, t = l % 4;
    for (int e = 0; e < 2; ++e) {
      A[g][2 * t + e] = cvt(op.a[l][0], e);
      A[g + 8][2 * t + e] = cvt(op.a[l][1], e);
      A[g][8 + 2 * t + e] = cvt(op.a[l][2], e);
      A[g + 8][8 + 2 * t + e] = cvt(op.a[l][3], e);
    }
  }
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < op.n; ++n) {
      uint16_t v;
      std::memcpy(&v, smem + wgmma_offset(b, op.desc, op.trans_b, k, n), 2);
      B[k][n] = cvt(v, 0);
    }
  wgmma_annotate(b, op);
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int i = 0; i < op.n / 8; ++i)
      for (int e = 0; e < 4; ++e) {
        const int row = g + 8 * (e / 2), col = 8 * i + 2 * t + e % 2;
        float s = 0.f;  // the products of 16-bit inputs are exact in float32
        for (int k = 0; k < 16; ++k) s += A[row][k] * B[k][col];
        float& d = op.d[l][4 * i + e];
        d = (op.accumulate ? d : 0.f) + s;
      }
  }
}

// Compute a completed collective for the 32 lanes starting at fibers[first].
void complete(Block* b, int first, Op op) {
  Fiber* L = &b->fibers[first];
  WarpState& w = b->warps[first / 32];
  switch (op) {
    case Op::kWgFence:
      w.wg_fenced = true;
      break;
    case Op::kWgmma: {
      if (b->fibers.size() % 128 != 0)
        abort_fiber("wgmma in a block that is not whole warpgroups (" +
                    std::to_string(b->fibers.size()) + " threads)");
      if (!w.wg_fenced)
        abort_fiber("wgmma.mma_async without a wgmma.fence since the warp's last wgmma.wait_group");
      const WgmmaArgs& a0 = *static_cast<const WgmmaArgs*>(L[0].in);
      for (int l = 1; l < 32; ++l) {
        const WgmmaArgs& al = *static_cast<const WgmmaArgs*>(L[l].in);
        if (al.type != a0.type || al.n != a0.n || al.desc != a0.desc ||
            (al.a == nullptr) != (a0.a == nullptr) || (a0.a == nullptr && al.desc_a != a0.desc_a) ||
            al.accumulate != a0.accumulate || al.trans_a != a0.trans_a || al.trans_b != a0.trans_b)
          abort_fiber("wgmma: lanes of a warp give different descriptors, shapes or flags");
      }
      if (a0.n < 8 || a0.n > 256 || a0.n % 8 != 0)
        abort_fiber("wgmma: n = " + std::to_string(a0.n) + " (8..256, a multiple of 8)");
      if (w.n_wg == kMaxWgmma)
        abort_fiber("over 32 wgmma operations pending in one warp (an emulator limit)");
      {  // the warpgroup's warps issue the same operations in the same order
        const int wg = first / 128;
        const WgSig sig{a0.desc,     a0.a == nullptr ? a0.desc_a : 0, a0.n,        a0.type,
                        a0.a == nullptr, a0.accumulate,                a0.trans_a, a0.trans_b};
        const uint64_t seq = w.wg_issued++;
        uint64_t slowest = seq;
        for (int q = 0; q < 4; ++q) slowest = std::min(slowest, b->warps[4 * wg + q].wg_issued);
        if (seq - slowest >= static_cast<uint64_t>(kWgLog))
          abort_fiber("warps of a warpgroup over 256 wgmma apart (an emulator limit)");
        WgLogEntry& e = b->wg_log[static_cast<size_t>(wg) * kWgLog + seq % kWgLog];
        if (e.seq1 == seq + 1) {
          if (!(e.sig == sig))
            abort_fiber("wgmma " + std::to_string(seq) + " of warpgroup " + std::to_string(wg) +
                        ": warp " + std::to_string(first / 32) + " gives other descriptors, "
                        "shape or flags than warp " + std::to_string(e.warp) +
                        " (the four warps of a warpgroup issue each wgmma together)");
        } else {
          e.seq1 = seq + 1;
          e.sig = sig;
          e.warp = first / 32;
        }
      }
      WgmmaOp& o = b->wg_ops[static_cast<size_t>(first / 32) * kMaxWgmma + w.n_wg++];
      o.type = a0.type;
      o.n = a0.n;
      o.desc = a0.desc;
      o.accumulate = a0.accumulate;
      o.trans_b = a0.trans_b;
      o.a_smem = a0.a == nullptr;
      o.desc_a = a0.desc_a;
      o.trans_a = a0.trans_a;
      o.wq = (first / 32) % 4;
      o.group = w.wg_committed;
      for (int l = 0; l < 32; ++l) {
        const WgmmaArgs& al = *static_cast<const WgmmaArgs*>(L[l].in);
        for (int e = 0; e < 4; ++e) o.a[l][e] = o.a_smem ? 0u : al.a[e];
        o.a_reg[l] = al.a;
        o.d[l] = al.d;
      }
      wgmma_annotate(b, o);  // checks the descriptor now, too
      break;
    }
    case Op::kWgCommit:
      ++w.wg_committed;
      break;
    case Op::kWgWait: {
      const int pending = L[0].arg;
      for (int l = 1; l < 32; ++l)
        if (L[l].arg != pending) abort_fiber("wgmma.wait_group: lanes give different counts");
      // Groups older than the newest `pending` committed ones complete, in order.
      WgmmaOp* ops = &b->wg_ops[static_cast<size_t>(first / 32) * kMaxWgmma];
      int kept = 0;
      for (int i = 0; i < w.n_wg; ++i) {
        if (static_cast<int64_t>(ops[i].group) < static_cast<int64_t>(w.wg_committed) - pending)
          wgmma_execute(b, ops[i]);
        else
          ops[kept++] = ops[i];
      }
      w.n_wg = kept;
      w.wg_fenced = false;
      break;
    }
    case Op::kShfl:
      for (int l = 0; l < 32; ++l) {
        const int src = l ^ (L[l].arg & 31);
        *static_cast<float*>(L[l].out) = *static_cast<const float*>(L[src].in);
      }
      break;
    case Op::kRedMax:
    case Op::kRedAdd: {
      unsigned acc = 0u;
      for (int l = 0; l < 32; ++l) {
        const unsigned v = *static_cast<const unsigned*>(L[l].in);
        acc = op == Op::kRedMax ? std::max(acc, v) : acc + v;
      }
      for (int l = 0; l < 32; ++l) *static_cast<unsigned*>(L[l].out) = acc;
      break;
    }
    case Op::kLdm:
    case Op::kLdmT: {
      // Matrix m (0..3) has its 8 row addresses from lanes 8m..8m+7 (checked
      // in collective()); each row is 8 consecutive 16-bit elements.
      auto elem = [&](int m, int row, int col) {
        uint16_t v;
        std::memcpy(&v, static_cast<const uint16_t*>(L[8 * m + row].in) + col, 2);
        return static_cast<uint32_t>(v);
      };
      for (int l = 0; l < 32; ++l) {
        uint32_t* r = static_cast<uint32_t*>(L[l].out);
        const int g = l / 4, t = l % 4;
        for (int m = 0; m < 4; ++m) {
          if (op == Op::kLdm)  // lane l holds row g, columns 2t, 2t+1
            r[m] = elem(m, g, 2 * t) | (elem(m, g, 2 * t + 1) << 16);
          else  // transposed: row 2t and 2t+1 of column g
            r[m] = elem(m, 2 * t, g) | (elem(m, 2 * t + 1, g) << 16);
        }
      }
      break;
    }
    case Op::kMmaF16:
    case Op::kMmaBF16: {
      auto cvt = [&](uint32_t w, int half) {
        const uint16_t h = static_cast<uint16_t>(half ? w >> 16 : w & 0xffffu);
        return op == Op::kMmaF16 ? half_bits_to_float(h) : bf16_bits_to_float(h);
      };
      float A[16][16], B[16][8], C[16][8];
      for (int l = 0; l < 32; ++l) {
        const int g = l / 4, t = l % 4;
        const uint32_t* in = static_cast<const uint32_t*>(L[l].in);  // a[4], b0, b1
        const float* d = static_cast<const float*>(L[l].out);
        for (int e = 0; e < 2; ++e) {
          A[g][2 * t + e] = cvt(in[0], e);
          A[g + 8][2 * t + e] = cvt(in[1], e);
          A[g][8 + 2 * t + e] = cvt(in[2], e);
          A[g + 8][8 + 2 * t + e] = cvt(in[3], e);
          B[2 * t + e][g] = cvt(in[4], e);
          B[8 + 2 * t + e][g] = cvt(in[5], e);
          C[g][2 * t + e] = d[e];
          C[g + 8][2 * t + e] = d[2 + e];
        }
      }
      for (int l = 0; l < 32; ++l) {
        const int g = l / 4, t = l % 4;
        float* d = static_cast<float*>(L[l].out);
        for (int e = 0; e < 4; ++e) {
          const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
          float s = 0.f;  // the products of 16-bit inputs are exact in float32
          for (int k = 0; k < 16; ++k) s += A[row][k] * B[k][col];
          d[e] = C[row][col] + s;
        }
      }
      break;
    }
    case Op::kNone: break;
  }
}

void collective(Op op, const void* in, void* out, int arg = 0) {
  Block* b = t_block;
  Fiber* f = t_fiber;
  if (b == nullptr) {
    std::fprintf(stderr, "pybert_emu: %s outside a kernel\n", op_name(op));
    std::abort();
  }
  const int first = f->warp * 32;
  if (first + 32 > static_cast<int>(b->fibers.size()))
    abort_fiber(std::string(op_name(op)) + " in a partial warp (block size not a multiple of 32)");
  WarpState& w = b->warps[f->warp];
  if (w.arrived > 0 && w.op != op)
    abort_fiber(std::string("warp divergence: lanes at ") + op_name(w.op) + " and at " + op_name(op));
  w.op = op;
  if (op == Op::kLdm || op == Op::kLdmT) {
    if (!in_smem(b, in, 16))
      abort_fiber("ldmatrix: lane " + std::to_string(f->lane) +
                  "'s row address outside shared memory");
    if (reinterpret_cast<uintptr_t>(in) % 16 != 0)
      abort_fiber("ldmatrix: lane " + std::to_string(f->lane) +
                  "'s row address not 16-byte aligned");
    tsan::read(in, 16);  // the row this lane addresses
  }
  f->in = in;
  f->out = out;
  f->arg = arg;
  f->gen = w.gen;
  if (tsan::kOn) tsan::release(warp_sync(b, f->warp, f->gen));
  if (++w.arrived < 32) {
    f->wait = Wait::kWarp;
    yield_to_scheduler();
  } else {
    complete(b, first, op);
    w.arrived = 0;
    w.op = Op::kNone;
    ++w.gen;
    for (int l = 0; l < 32; ++l) b->fibers[first + l].wait = Wait::kNone;
  }
  if (tsan::kOn) tsan::acquire(warp_sync(b, f->warp, f->gen));
}

// Lays out the memory of a CTA of n threads: dynamic and static shared memory,
// sync objects, the threads' indices, stacks. With ThreadSanitizer it is
// mapped afresh for every CTA (the mapping's history is the scheduler's;
// munmap forgets it), so that nothing orders this CTA's threads after the
// last one's.
void cta_memory(Block* b, int n, int n_warps) {
  const size_t smem = (b->smem_bytes + 15) / 16 * 16;
  const size_t sync = (24 + 16 * static_cast<size_t>(n_warps) + 15) / 16 * 16;
  const size_t states = (sizeof(ThreadState) * n + 15) / 16 * 16;
  const size_t total = smem + kStaticSmem + sync + states + static_cast<size_t>(n) * kStackBytes;
  char* base;
  if (tsan::kOn) {
    void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      std::fprintf(stderr, "pybert_emu: mmap of %zu bytes failed\n", total);
      std::abort();
    }
    b->mapped = base = static_cast<char*>(m);
    b->mapped_bytes = total;
  } else {
    if (b->owned_bytes < total) {
      b->owned.reset(new char[total]);
      b->owned_bytes = total;
    }
    base = b->owned.get();
  }
  b->smem = reinterpret_cast<unsigned char*>(base);
  b->static_smem = b->smem + smem;
  b->sync = base + smem + kStaticSmem;
  b->states = reinterpret_cast<ThreadState*>(b->sync + sync);
  b->stacks = b->sync + sync + states;
}

// Runs one CTA to completion on this OS thread. Returns "" or the failure.
std::string run_block(Block* b, dim3 grid, dim3 block, uint3 bid) {
  const int n = static_cast<int>(block.x * block.y * block.z);
  const int n_warps = (n + 31) / 32;
  b->fibers.resize(n);
  b->warps.assign(n_warps, WarpState{});
  if (b->wg_ops.size() < static_cast<size_t>(n_warps) * kMaxWgmma)
    b->wg_ops.resize(static_cast<size_t>(n_warps) * kMaxWgmma);
  b->wg_log.assign(static_cast<size_t>((n_warps + 3) / 4) * kWgLog, WgLogEntry{});
  cta_memory(b, n, n_warps);
  std::memset(b->smem, 0xff, b->smem_bytes);  // NaN in every float type
  std::memset(b->static_smem, 0xff, kStaticSmem);
  b->n_static = 0;
  b->static_used = 0;
  b->barrier_gen = 0;
  b->async_valid = b->proxy_fenced = false;
  if (tsan::kOn) tsan::release(b->sync);
  b->live = n;
  b->at_barrier = b->barrier_or = 0;
  b->failed = false;
  b->error.clear();
  for (int i = 0; i < n; ++i) {
    Fiber& f = b->fibers[i];
    f.st = b->states + i;
    f.st->thread_idx = uint3{static_cast<unsigned>(i) % block.x,
                             (static_cast<unsigned>(i) / block.x) % block.y,
                             static_cast<unsigned>(i) / (block.x * block.y)};
    f.st->block_idx = bid;
    f.st->block_dim = block;
    f.st->grid_dim = grid;
    f.wait = Wait::kNone;
    f.lane = i % 32;
    f.warp = i / 32;
    f.gen = 0;
    f.static_cursor = 0;
    f.static_count = 0;
    f.n_copies = 0;
    f.tsan = tsan::create();
    char* stack = b->stacks + static_cast<size_t>(i) * kStackBytes;
#if PYBERT_EMU_ASM_SWITCH
    f.sp = initial_sp(stack, kStackBytes);
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stack;
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = &b->sched;
    makecontext(&f.ctx, fiber_entry, 0);
#endif
  }
  const bool reverse = g_mode.reverse_order, lockstep = g_mode.lockstep;
  while (b->live > 0 && !b->failed) {
    bool ran = false;
    // lockstep: one pass over all threads (each runs to its next barrier or
    // warp-collective instruction); else each warp in turn runs until all its
    // lanes wait at a barrier or have exited.
    for (int wk = 0; wk < (lockstep ? 1 : n_warps) && !b->failed; ++wk) {
      const int w = reverse ? n_warps - 1 - wk : wk;
      const int lo = lockstep ? 0 : 32 * w, hi = lockstep ? n : std::min(n, 32 * w + 32);
      bool progressed = true;
      while (progressed && !b->failed) {
        progressed = false;
        for (int k = lo; k < hi && !b->failed; ++k) {
          Fiber& f = b->fibers[reverse ? hi - 1 - (k - lo) : k];
          if (f.wait != Wait::kNone) continue;
          resume(b, &f);
          progressed = ran = true;
        }
        if (lockstep) break;
      }
    }
    if (!ran && !b->failed) {
      int at_bar = 0, at_warp = 0;
      for (const Fiber& f : b->fibers) {
        at_bar += f.wait == Wait::kBarrier;
        at_warp += f.wait == Wait::kWarp;
      }
      b->failed = true;
      b->error = "deadlock: " + std::to_string(at_bar) + " threads wait at __syncthreads, " +
                 std::to_string(at_warp) + " at warp-collective instructions, " +
                 std::to_string(n - b->live) + " exited";
    }
  }
  for (int w = 0; w < n_warps && !b->failed; ++w)
    if (b->warps[w].wg_issued != b->warps[w & ~3].wg_issued) {
      b->failed = true;
      b->error = "warp " + std::to_string(w) + " issued " +
                 std::to_string(b->warps[w].wg_issued) + " wgmma and warp " +
                 std::to_string(w & ~3) + " of its warpgroup " +
                 std::to_string(b->warps[w & ~3].wg_issued) +
                 " (the four warps of a warpgroup issue each wgmma together)";
    }
  t_fiber = nullptr;
  if (tsan::kOn) {
    for (Fiber& f : b->fibers) tsan::destroy(f.tsan);
    munmap(b->mapped, b->mapped_bytes);
    b->mapped = nullptr;
  }
  return b->failed ? b->error : "";
}

}  // namespace

ThreadState* current() { return t_fiber->st; }

void set_mode(const Mode& m) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_mode = m;
}
Mode mode() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_mode;
}

cudaError_t set_max_dynamic_smem(const void* kernel, int bytes) {
  if (bytes < 0 || static_cast<size_t>(bytes) > kMaxSmem) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_max_smem[kernel] = bytes;
  return cudaSuccess;
}

bool run_grid(const void* kernel, dim3 grid, dim3 block, size_t smem_bytes, Body body, void* ctx) {
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxThreads || block.z > 64 || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    record_error(cudaErrorInvalidConfiguration,
                 "invalid launch configuration: grid (" + std::to_string(grid.x) + "," +
                     std::to_string(grid.y) + "," + std::to_string(grid.z) + "), block " +
                     std::to_string(threads) + " threads");
    return false;
  }
  size_t limit = kDefaultSmem;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_max_smem.find(kernel);
    if (it != g_max_smem.end()) limit = std::max(limit, static_cast<size_t>(it->second));
  }
  if (smem_bytes > limit) {
    record_error(cudaErrorInvalidValue,
                 std::to_string(smem_bytes) + " bytes of dynamic shared memory over the kernel's "
                 "limit of " + std::to_string(limit) + " (cudaFuncSetAttribute)");
    return false;
  }
  const uint64_t n_blocks = static_cast<uint64_t>(grid.x) * grid.y * grid.z;
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const unsigned n_workers = static_cast<unsigned>(std::min<uint64_t>(std::min(hw, 8u), n_blocks));
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::string first_error;
  std::mutex err_mutex;
  // ThreadSanitizer: the host's accesses before the launch happen before the
  // kernel's (start), the kernel's before the host's after it (done).
  std::unique_ptr<char[]> launch_sync(tsan::kOn ? new char[16] : nullptr);
  if (tsan::kOn) tsan::release(launch_sync.get());
  auto worker = [&]() {
    Block blk;
    blk.smem_bytes = smem_bytes;
    blk.body = body;
    blk.ctx = ctx;
    blk.launch_sync = launch_sync.get();
    blk.sched_tsan = tsan::current();
    t_block = &blk;
    for (;;) {
      const uint64_t i = next.fetch_add(1);
      if (i >= n_blocks || failed.load()) break;
      const uint3 bid{static_cast<unsigned>(i % grid.x), static_cast<unsigned>((i / grid.x) % grid.y),
                      static_cast<unsigned>(i / (static_cast<uint64_t>(grid.x) * grid.y))};
      const std::string e = run_block(&blk, grid, block, bid);
      if (!e.empty()) {
        std::lock_guard<std::mutex> lock(err_mutex);
        if (!failed.exchange(true)) first_error = e;
      }
    }
    t_block = nullptr;
  };
  if (n_workers <= 1) {
    worker();
  } else {
    std::vector<std::thread> pool;
    for (unsigned w = 0; w < n_workers; ++w) pool.emplace_back(worker);
    for (std::thread& t : pool) t.join();
  }
  if (tsan::kOn) tsan::acquire(launch_sync.get() + 8);
  if (failed.load()) {
    record_error(cudaErrorLaunchFailure, "kernel failed: " + first_error);
    return false;
  }
  return true;
}

int syncthreads_or(int predicate) {
  Block* b = t_block;
  Fiber* f = t_fiber;
  if (b->warps[f->warp].arrived > 0)
    abort_fiber(std::string("__syncthreads while other lanes of the warp wait at ") +
                op_name(b->warps[f->warp].op));
  b->barrier_or |= predicate != 0;
  f->wait = Wait::kBarrier;
  f->gen = b->barrier_gen;
  if (tsan::kOn) tsan::release(barrier_sync(b, f->gen));
  if (++b->at_barrier == b->live) {
    release_barrier(b);
  } else {
    yield_to_scheduler();
  }
  if (tsan::kOn) tsan::acquire(barrier_sync(b, f->gen));
  return f->barrier_result;
}

unsigned char* dynamic_smem() { return t_block->smem; }

void* static_smem_bytes(size_t bytes, size_t align) {
  Block* b = t_block;
  Fiber* f = t_fiber;
  const size_t off = (f->static_cursor + align - 1) / align * align;
  const int idx = f->static_count++;
  if (idx >= kMaxStaticArrays) abort_fiber("over 64 static shared arrays (an emulator limit)");
  if (idx < b->n_static) {
    if (b->static_sizes[idx] != bytes)
      abort_fiber("static shared array " + std::to_string(idx) + " declared with " +
                  std::to_string(bytes) + " bytes by this thread and " +
                  std::to_string(b->static_sizes[idx]) + " by another of its CTA");
  } else {
    b->static_sizes[b->n_static++] = bytes;
  }
  if (off + bytes > kStaticSmem) abort_fiber("static shared memory over 48 KiB");
  if (off + bytes + b->smem_bytes > kMaxSmem)
    abort_fiber("static and dynamic shared memory over 227 KiB");
  f->static_cursor = off + bytes;
  b->static_used = std::max(b->static_used, off + bytes);
  return b->static_smem + off;
}

float shfl_xor(float x, int lane_mask) {
  float r;
  collective(Op::kShfl, &x, &r, lane_mask);
  return r;
}
unsigned reduce_max(unsigned x) {
  unsigned r;
  collective(Op::kRedMax, &x, &r);
  return r;
}
unsigned reduce_add(unsigned x) {
  unsigned r;
  collective(Op::kRedAdd, &x, &r);
  return r;
}
void ldmatrix_x4(uint32_t (&r)[4], const void* p, bool trans) {
  collective(trans ? Op::kLdmT : Op::kLdm, p, r);
}
void mma_m16n8k16(MmaType type, float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const uint32_t in[6] = {a[0], a[1], a[2], a[3], b0, b1};
  collective(type == MmaType::kF16 ? Op::kMmaF16 : Op::kMmaBF16, in, d);
}

void cp_async_16(void* dst, const void* src, bool valid) {
  Block* b = t_block;
  if (!in_smem(b, dst, 16)) abort_fiber("cp.async: destination outside shared memory");
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0 ||
      (valid && reinterpret_cast<uintptr_t>(src) % 16 != 0))
    abort_fiber("cp.async: 16-byte copy with a misaligned address");
  // ThreadSanitizer: the copy may happen any time until the wait (there too).
  if (valid) tsan::read(src, 16);
  tsan::write(dst, 16);
  Fiber* f = t_fiber;
  if (f->n_copies == kMaxPendingCopies)
    abort_fiber("over 256 cp.async pending in one thread (an emulator limit)");
  f->copies[f->n_copies++] = PendingCopy{dst, src, valid};
  if (!g_mode.late_cp_async) finish_copies(t_fiber);
}

void cp_async_wait_all() { finish_copies(t_fiber); }

uint32_t smem_address(const void* p) {
  Block* b = t_block;
  if (!in_smem(b, p, 1)) abort_fiber("shared address of a pointer outside shared memory");
  const auto* c = static_cast<const unsigned char*>(p);
  if (c >= b->static_smem)  // static arrays: after the dynamic ones in this window
    return static_cast<uint32_t>(kDynSmemBase + (b->smem_bytes + 15) / 16 * 16 +
                                 (c - b->static_smem));
  return static_cast<uint32_t>(kDynSmemBase + (c - b->smem));
}
void fence_proxy_async() { t_block->proxy_fenced = true; }
void wgmma_fence() { collective(Op::kWgFence, nullptr, nullptr); }
void wgmma_commit_group() { collective(Op::kWgCommit, nullptr, nullptr); }
void wgmma_wait_group(int pending) {
  if (pending < 0 || pending > 7) abort_fiber("wgmma.wait_group: count outside [0, 7]");
  collective(Op::kWgWait, nullptr, nullptr, pending);
}
void wgmma_m64nNk16(MmaType type, int n, float* d, const uint32_t (&a)[4], uint64_t desc_b,
                    bool accumulate, bool trans_b) {
  const WgmmaArgs args{type, n, d, a, 0, desc_b, accumulate, false, trans_b};
  collective(Op::kWgmma, &args, nullptr);
}
void wgmma_m64nNk16_ss(MmaType type, int n, float* d, uint64_t desc_a, uint64_t desc_b,
                       bool accumulate, bool trans_a, bool trans_b) {
  const WgmmaArgs args{type, n, d, nullptr, desc_a, desc_b, accumulate, trans_a, trans_b};
  collective(Op::kWgmma, &args, nullptr);
}

void fail(const char* what) { abort_fiber(what); }

}  // namespace pybert_emu

cudaError_t cudaGetLastError() {
  const cudaError_t e = pybert_emu::g_last_error;
  pybert_emu::g_last_error = cudaSuccess;
  if (e == cudaSuccess) pybert_emu::g_last_message.clear();
  return e;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
  const std::string& msg = pybert_emu::g_last_message;
  if (!msg.empty()) return msg.c_str();
  return e == cudaSuccess ? "no error" : "emulated CUDA error";
}

// For the ctypes harness: how CTAs run (cuda_emu.h, "Knobs").
extern "C" void pybert_emu_set_mode(int reverse_order, int late_cp_async, int lockstep) {
  pybert_emu::Mode m;
  m.reverse_order = reverse_order != 0;
  m.late_cp_async = late_cp_async != 0;
  m.lockstep = lockstep != 0;
  pybert_emu::set_mode(m);
}
