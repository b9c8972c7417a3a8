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
# TSAN=1: with ThreadSanitizer on the kernels (data races between CUDA threads,
# see cuda_emu.h), and OUTDIR/emu_racecheck, which runs every kernel
# configuration (csrc/attention/emu/emu_racecheck.cc; exit status 66 on a race).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUTDIR=${1:-build/emu}
CXX=${CXX:-g++}
mkdir -p "$OUTDIR"
SAN=()
if [ "${ASAN:-0}" = 1 ]; then SAN=(-fsanitize=address -fno-omit-frame-pointer); fi
if [ "${TSAN:-0}" = 1 ]; then
  if [ "${ASAN:-0}" = 1 ]; then echo "build_emu.sh: ASAN=1 and TSAN=1 exclude each other" >&2; exit 2; fi
  SAN=(-fsanitize=thread -g)
fi
BASE=(-std=c++17 -O2 -fPIC -DPYBERT_CUDA_EMU -Icsrc/attention/emu/include -Icsrc -Wall
      -Wno-unknown-pragmas -fno-strict-aliasing)
FLAGS=("${BASE[@]}" "${SAN[@]}")
EMU_FLAGS=("${FLAGS[@]}")  # the emulator itself (cuda_emu.cc)
# with TSAN the "hardware" is not instrumented; it annotates what orders the CUDA threads
if [ "${TSAN:-0}" = 1 ]; then EMU_FLAGS=("${BASE[@]}" -DPYBERT_EMU_TSAN=1 -g); fi
pids=()
objs=()
mapfile -t SRCS < <(grep -v -E "^(#|$)" csrc/attention/cuda_sources.txt)  # the CMake list
for f in "${SRCS[@]/#/csrc/}" csrc/attention/attention_capi.cu; do
  name=$(basename "$f" .cu)
  "$CXX" "${FLAGS[@]}" -x c++ -c "$f" -o "$OUTDIR/$name.o" >"$OUTDIR/$name.log" 2>&1 &
  pids+=($!)
  objs+=("$OUTDIR/$name.o")
done
"$CXX" "${EMU_FLAGS[@]}" -c csrc/attention/emu/cuda_emu.cc -o "$OUTDIR/cuda_emu.o" \
  >"$OUTDIR/cuda_emu.log" 2>&1 &
pids+=($!)
objs+=("$OUTDIR/cuda_emu.o")
# the emulator's own test kernels
"$CXX" "${FLAGS[@]}" -c csrc/attention/emu/emu_selftest.cc -o "$OUTDIR/emu_selftest.o" \
  >"$OUTDIR/emu_selftest.log" 2>&1 &
pids+=($!)
objs+=("$OUTDIR/emu_selftest.o")
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
if [ "${TSAN:-0}" = 1 ]; then
  "$CXX" "${FLAGS[@]}" -fPIE -pie csrc/attention/emu/emu_racecheck.cc "${objs[@]}" \
    "$OUTDIR/attention_cpu.o" -lpthread -o "$OUTDIR/emu_racecheck"
fi
echo "$OUTDIR/libpybert_attention_emu.so"
