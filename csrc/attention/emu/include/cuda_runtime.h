// Stand-in for CUDA's cuda_runtime.h in the CPU emulation build (see ../cuda_emu.h).
#pragma once
#include "attention/emu/cuda_emu.h"
