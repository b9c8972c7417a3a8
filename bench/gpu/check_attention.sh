#!/usr/bin/env bash
# GPU check of the fused attention CUDA kernels (issue: CUDA kernels for the
# PybertFusedAttention op). For a machine with an NVIDIA GPU, nvcc and PyTorch
# (no TensorFlow needed): builds the ctypes harness with nvcc, checks forward
# and backward against PyTorch (float64 reference math, PyTorch's own SDPA
# error as the yardstick), then times them against
# torch.nn.functional.scaled_dot_product_attention with the same boolean
# padding mask, and prints a table. Results: $OUT/check_attention.json.
#   bash bench/gpu/check_attention.sh [--quick] [--skip-timing] [--skip-checks]
#     [--shapes "B,S[,D];..."] [--profile B,S,VARIANTS]   (see check_attention.py --help)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/pybert_gpu_out}
BUILD=${BUILD_DIR:-build/gpu}
ARCH=${CUDA_ARCH:-90a}  # sm_90a: the wgmma kernels (forward 10-13; backward 5) need it
mkdir -p "$OUT" "$BUILD"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
nvcc --version | tail -1
t0=$(date +%s)
pids=()
mapfile -t SRCS < <(grep -v -E "^(#|$)" csrc/attention/cuda_sources.txt)  # the CMake list
for f in "${SRCS[@]/#/csrc/}" csrc/attention/attention_capi.cu; do
  name=$(basename "$f" .cu)
  nvcc -std=c++17 -O3 -Icsrc -gencode "arch=compute_${ARCH},code=sm_${ARCH}" -Xcompiler -fPIC \
    -Xptxas -v -c "$f" -o "$BUILD/$name.o" >"$BUILD/$name.log" 2>&1 &
  pids+=($!)
done
# the CPU kernels too: the harness checks that both backends agree (dropout included)
g++ -std=c++17 -O3 -ffp-contract=off -fPIC -Icsrc -c csrc/attention/attention_cpu.cc \
  -o "$BUILD/cpu_attention_cpu.o" >"$BUILD/attention_cpu.log" 2>&1 &
pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
if [ "$status" != 0 ]; then grep -h -B2 -A5 error "$BUILD"/*.log; exit 1; fi
nvcc -shared -o "$BUILD/libpybert_attention_cuda.so" "$BUILD"/attention_*.o "$BUILD/cpu_attention_cpu.o" -lpthread
cat "$BUILD"/*.log > "$OUT/ptxas.log"
echo "build: $(( $(date +%s) - t0 )) s"
# The Hopper wgmma kernels (forward 10-13; backward 5): first in a process of
# their own (and a time limit), since a fault or a hang there would end the
# main run; left out of the main run if they fail.
SKIP=()
if ! PYTHONUNBUFFERED=1 timeout 180 python3 bench/gpu/check_attention.py \
    --lib "$BUILD/libpybert_attention_cuda.so" --smoke-wgmma; then
  echo "wgmma kernels failed their smoke test: the main run leaves them out"
  SKIP=(--skip-variants "fwd:10,11,12,13;bwd:5")
fi
PYTHONUNBUFFERED=1 python3 bench/gpu/check_attention.py \
  --lib "$BUILD/libpybert_attention_cuda.so" --out "$OUT/check_attention.json" "${SKIP[@]}" "$@"
