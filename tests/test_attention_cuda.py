"""CUDA fused attention: the PYBERT_CUDA=ON build compiles for sm_80 and sm_90
and its launcher rejects bad arguments with a message naming them (no GPU
needed: validation runs before any CUDA call). Skipped where nvcc is absent.

With an NVIDIA GPU and PyTorch, the `gpu` test runs the correctness part of
bench/gpu/check_attention.py (forward/backward against float64 math and
PyTorch's SDPA); the timings are taken by bench/gpu/check_attention.sh.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
NVCC = shutil.which("nvcc")

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")


def _tool(name):
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


@pytest.fixture(scope="module")
def cuda_lib_path(tmp_path_factory):
    cmake = _tool("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    build = tmp_path_factory.mktemp("cuda_build")
    cmd = [cmake, "-S", str(ROOT), "-B", str(build), "-DPYBERT_CUDA=ON"]
    ninja = _tool("ninja")
    if ninja:
        cmd += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    res = subprocess.run(
        [cmake, "--build", str(build), "--target", "pybert_attention_cuda", "-j", "2"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    lib = build / "csrc" / "libpybert_attention_cuda.so"
    assert lib.exists()
    return lib


def test_cuda_build_has_sm80_and_sm90_code(cuda_lib_path):
    data = cuda_lib_path.read_bytes()
    assert b"sm_80" in data and b"sm_90" in data


class _Api:
    def __init__(self, path):
        lib = ctypes.CDLL(str(path))
        vp, i, f, u64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_ulonglong
        lib.pybert_attn_forward.argtypes = (
            [i] * 6 + [vp] * 6 + [vp, f, f, u64, u64, i, vp, ctypes.c_char_p, i]
        )
        lib.pybert_attn_backward.argtypes = (
            [i] * 6 + [vp] * 11 + [vp, f, f, u64, u64, i, vp, ctypes.c_char_p, i]
        )
        self.lib = lib
        # Host buffers: validation never dereferences them, and every call
        # below fails validation before a kernel could be launched.
        self.buf = np.zeros(1 << 16, dtype=np.float32)
        self.base = self.buf.ctypes.data

    def forward(self, dtype=1, B=2, H=2, S=8, D=64, q_off=0, rate=0.0, variant=0, scale=0.125):
        strides = (ctypes.c_longlong * 12)(*([S * H * D, H * D, D] * 4))
        p = ctypes.c_void_p(self.base)
        err = ctypes.create_string_buffer(512)
        rc = self.lib.pybert_attn_forward(
            dtype, B, H, S, S, D, ctypes.c_void_p(self.base + q_off), p, p, None, p, None,
            strides, scale, rate, 0, 0, variant, None, err, 512,
        )  # fmt: skip
        return rc, err.value.decode()

    def backward(self, lse=True, workspace=True, variant=0, D=64):
        B, H, S = 2, 2, 8
        strides = (ctypes.c_longlong * 24)(*([S * H * D, H * D, D] * 8))
        p = ctypes.c_void_p(self.base)
        err = ctypes.create_string_buffer(512)
        rc = self.lib.pybert_attn_backward(
            1, B, H, S, S, D, p, p, p, None, p, p if lse else None, p, p, p, p,
            p if workspace else None, strides, 0.125, 0.0, 0, 0, variant, None, err, 512,
        )  # fmt: skip
        return rc, err.value.decode()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(D=48), "head_dim must be 32, 64 or 128, got 48"),
        (dict(dtype=7), "dtype: unsupported value 7"),
        (dict(dtype=3), "dtype: float64 is supported by the CPU kernels only"),
        (dict(q_off=2), "q: the float16 kernels need 16-byte aligned rows"),
        (dict(dtype=2, q_off=8), "q: the bfloat16 kernels need 16-byte aligned rows"),
        (dict(rate=1.0), "dropout_rate must be in [0, 1)"),
        (dict(rate=-0.5), "dropout_rate must be in [0, 1)"),
        (dict(B=-1), "batch must be in [0, 65535], got -1"),
        (dict(H=0), "heads must be in [1, 65535], got 0"),
        (dict(variant=9), "fwd_variant must be in [0, 3], got 9"),
        (dict(scale=float("nan")), "scale must be finite"),
    ],
)
def test_forward_rejects_bad_arguments(cuda_lib_path, kwargs, message):
    rc, err = _Api(cuda_lib_path).forward(**kwargs)
    assert rc == 1 and message in err, err


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lse=False), "lse: null pointer"),
        (dict(workspace=False), "workspace: null pointer"),
        (dict(variant=5), "bwd_variant must be in [0, 2], got 5"),
        (dict(D=96), "head_dim must be 32, 64 or 128, got 96"),
    ],
)
def test_backward_rejects_bad_arguments(cuda_lib_path, kwargs, message):
    rc, err = _Api(cuda_lib_path).backward(**kwargs)
    assert rc == 1 and message in err, err


@pytest.mark.gpu
def test_gpu_kernels_match_reference(cuda_lib_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    sys.path.insert(0, str(ROOT / "bench" / "gpu"))
    import check_attention

    assert check_attention.main(["--lib", str(cuda_lib_path), "--quick", "--skip-timing"]) == 0
