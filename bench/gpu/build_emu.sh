#!/usr/bin/env bash
# Builds the CUDA attention kernels for the CPU emulation of CUDA
# (csrc/attention/emu/cuda_emu.h) into one shared library with the same
# extern "C" API as the GPU build (attention_capi.cu), for
#   python3 bench/gpu/check_attention.py --emu --lib <that library>
# and tests/test_attention_emu.py. Needs only g++ (no CUDA toolkit).
#   bash bench/gpu/build_emu.sh [OUTDIR]   (default build/emu; prints the library path)
# ASAN=1: with AddressSanitizer (kernel reads/writes outside the tensors, which
# the checks may not see, are reported with the kernel's name); load it with
#   LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 python3 ...
set -euo pipefail
cd "$(dirname "$0")/../.."
OUTDIR=${1:-build/emu}
CXX=${CXX:-g++}
mkdir -p "$OUTDIR"
SAN=()
if [ "${ASAN:-0}" = 1 ]; then SAN=(-fsanitize=address -fno-omit-frame-pointer); fi
FLAGS=(-std=c++17 -O2 -fPIC -DPYBERT_CUDA_EMU -Icsrc/attention/emu/include -Icsrc -Wall
       -Wno-unknown-pragmas -fno-strict-aliasing "${SAN[@]}")
pids=()
objs=()
for f in csrc/attention/attention_{fwd_f16,bwd_f16,fwd_bf16,bwd_bf16,f32,cuda,capi}.cu; do
  name=$(basename "$f" .cu)
  "$CXX" "${FLAGS[@]}" -x c++ -c "$f" -o "$OUTDIR/$name.o" >"$OUTDIR/$name.log" 2>&1 &
  pids+=($!)
  objs+=("$OUTDIR/$name.o")
done
for f in cuda_emu emu_selftest; do  # the emulator and its own test kernels
  "$CXX" "${FLAGS[@]}" -c "csrc/attention/emu/$f.cc" -o "$OUTDIR/$f.o" >"$OUTDIR/$f.log" 2>&1 &
  pids+=($!)
  objs+=("$OUTDIR/$f.o")
done
# the CPU kernels as in the GPU build (the harness compares both backends)
"$CXX" -std=c++17 -O2 -ffp-contract=off -Wno-psabi -fPIC "${SAN[@]}" -Icsrc \
  -c csrc/attention/attention_cpu.cc \
  -o "$OUTDIR/attention_cpu.o" >"$OUTDIR/attention_cpu.log" 2>&1 &
pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
if [ "$status" != 0 ]; then cat "$OUTDIR"/*.log >&2; exit 1; fi
"$CXX" "${SAN[@]}" -shared -o "$OUTDIR/libpybert_attention_emu.so" "${objs[@]}" "$OUTDIR/attention_cpu.o" \
  -lpthread
echo "$OUTDIR/libpybert_attention_emu.so"
