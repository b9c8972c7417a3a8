"""CUDA fused attention: the PYBERT_CUDA=ON build compiles for sm_80 and sm_90a
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
from cuda_op_checks import reference

ROOT = Path(__file__).resolve().parents[1]
NVCC = shutil.which("nvcc")

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")


def _tool(name):
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def _importable(name):
    return subprocess.run([sys.executable, "-c", f"import {name}"],
                          capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def cuda_build(tmp_path_factory):
    """A -DPYBERT_CUDA=ON build tree; with the Python parts (and so the
    TensorFlow op library with its GPU kernels) when TensorFlow and pybind11
    are importable."""
    cmake = _tool("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    build = tmp_path_factory.mktemp("cuda_build")
    cmd = [cmake, "-S", str(ROOT), "-B", str(build), "-DPYBERT_CUDA=ON",
           f"-DPython_EXECUTABLE={sys.executable}"]
    with_op = _importable("tensorflow") and _importable("pybind11")
    if with_op:
        import pybind11

        cmd += ["-DPYBERT_BUILD_PYTHON=ON", "-DPYBERT_TF_OPS=ON",
                f"-Dpybind11_DIR={pybind11.get_cmake_dir()}"]
    ninja = _tool("ninja")
    if ninja:
        cmd += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return cmake, build, with_op


def _build(cuda_build, target, path):
    cmake, build, _ = cuda_build
    res = subprocess.run([cmake, "--build", str(build), "--target", target, "-j", "2"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    lib = build / "csrc" / path
    assert lib.exists()
    return lib


@pytest.fixture(scope="module")
def cuda_lib_path(cuda_build):
    return _build(cuda_build, "pybert_attention_cuda", "libpybert_attention_cuda.so")


@pytest.fixture(scope="module")
def cuda_op_lib(cuda_build):
    if not cuda_build[2]:
        pytest.skip("TensorFlow or pybind11 is not importable: no op library")
    return _build(cuda_build, "_pybert_ops", "_pybert_ops.so")


def test_cuda_build_has_sm80_and_sm90a_code(cuda_lib_path):
    data = cuda_lib_path.read_bytes()
    assert b"sm_80" in data and b"sm_90a" in data


def test_sm90a_code_has_the_wgmma_kernels_and_sm80_code_does_not(tmp_path):
    """The forward variants 10-13 are wgmma code only where nvcc compiles
    for sm_90a; elsewhere their kernels are empty and the launcher's probe
    (g_wgmma_compiled, read on the device) says so."""
    src = ROOT / "csrc" / "attention" / "attention_fwd_f16.cu"
    ptx = {}
    for arch in ("90a", "80"):
        out = tmp_path / f"fwd_{arch}.ptx"
        res = subprocess.run(
            [NVCC, "-std=c++17", "-O3", f"-I{ROOT / 'csrc'}", "-ptx",
             "-gencode", f"arch=compute_{arch},code=compute_{arch}", str(src), "-o", str(out)],
            capture_output=True, text=True)  # fmt: skip
        assert res.returncode == 0, res.stderr[-4000:]
        ptx[arch] = out.read_text()
    # variants 10 and 11: 16 wgmma per key tile; 12 and 13: S of the first
    # tile (8), S and P V in the loop (16), P V of the last tile (8); each with
    # and without dropout
    assert ptx["90a"].count("wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16") == 2 * (
        16 + 16 + 2 * (8 + 16 + 8)
    )
    assert "fence.proxy.async.shared::cta" in ptx["90a"]
    assert "wgmma.mma_async" not in ptx["80"]
    probe = [ln for ln in ptx["90a"].splitlines() if "g_wgmma_compiled" in ln and ".global" in ln]
    assert len(probe) == 1 and probe[0].rstrip().endswith("= 1;"), probe
    probe80 = [ln for ln in ptx["80"].splitlines() if "g_wgmma_compiled" in ln and ".global" in ln]
    assert len(probe80) == 1 and "= 1" not in probe80[0], probe80


def test_wgmma_kernels_are_not_serialized_by_ptxas(tmp_path):
    """ptxas serializes wgmma (a wait after each one) where other instructions
    touch a wgmma's registers while it may be in flight, and says so (C7513,
    C7514, 'Potential Performance Loss'): forward variants 10-13 (12, 13 keep
    P V in flight during the softmax) and backward variant 5 must compile
    without it."""
    src = tmp_path / "wgmma_kernels.cu"
    src.write_text(
        '#include "attention/launch_impl.cuh"\n'
        "namespace pybert { namespace attention { namespace cuda {\n"
        "template std::string launch_fwd_wgmma<__half, 1, 2>(const ForwardParams&, cudaStream_t);\n"
        "template std::string launch_fwd_wgmma<__half, 1, 3>(const ForwardParams&, cudaStream_t);\n"
        "template std::string launch_fwd_wgmma<__nv_bfloat16, 2, 3>(const ForwardParams&,"
        " cudaStream_t);\n"
        "template std::string launch_fwd_wgmma<__nv_bfloat16, 2, 2>(const ForwardParams&,"
        " cudaStream_t);\n"
        "template std::string launch_bwd_wgmma<__half>(const BackwardParams&, cudaStream_t,"
        " float*, float*);\n"
        "}}}\n"
    )
    res = subprocess.run(
        [NVCC, "-std=c++17", "-O3", f"-I{ROOT / 'csrc'}", "-gencode",
         "arch=compute_90a,code=sm_90a", "-Xptxas", "-v", "-c", str(src),
         "-o", str(tmp_path / "wgmma_kernels.o")],
        capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    log = res.stdout + res.stderr
    assert log.count("Compiling entry function") >= 8, log[-2000:]
    assert "flash_fwd_wgmma_kernel" in log and "flash_bwd_wgmma_kernel" in log
    bad = [ln for ln in log.splitlines() if "C7513" in ln or "C7514" in ln or "serialized" in ln]
    assert not bad, bad


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
        (dict(H=-1), "heads must be in [0, 65535], got -1"),
        (dict(H=65536), "heads must be in [0, 65535], got 65536"),
        (dict(variant=14), "fwd_variant must be in [0, 13], got 14"),
        (dict(scale=float("nan")), "scale must be finite"),
    ],
)
def test_forward_rejects_bad_arguments(cuda_lib_path, kwargs, message):
    rc, err = _Api(cuda_lib_path).forward(**kwargs)
    assert rc == 1 and message in err, err


@pytest.mark.parametrize("kwargs", [dict(B=0), dict(H=0), dict(S=0)])
def test_forward_accepts_empty_shapes(cuda_lib_path, kwargs):
    """Nothing to compute: success with no kernel launched (none could run here)."""
    rc, err = _Api(cuda_lib_path).forward(**kwargs)
    assert rc == 0 and err == "", err


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lse=False), "lse: null pointer"),
        (dict(workspace=False), "workspace: null pointer"),
        (dict(variant=9), "bwd_variant must be in [0, 5], got 9"),
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


def _op_check(path, check, *args):
    """tests/cuda_op_checks.py CHECK in a subprocess (a second library registering
    the PybertFusedAttention ops cannot load into this process)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "cuda_op_checks.py"), check, str(path), *args],
        capture_output=True, text=True, timeout=600)


def test_op_library_registers_gpu_kernels(cuda_op_lib):
    """The PYBERT_CUDA=ON op library has float16/bfloat16/float32 GPU kernels
    (seed read on the host, input_mask on the device) next to the CPU ones."""
    res = _op_check(cuda_op_lib, "registrations")
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]


def test_op_library_cpu_kernels_unchanged_by_cuda_build(cuda_op_lib):
    """The same library loads in a CPU-only TensorFlow (static CUDA runtime)
    and its CPU kernels still compute attention."""
    res = _op_check(cuda_op_lib, "cpu_kernels")
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", [("float16", 2e-3), ("bfloat16", 2e-2),
                                        ("float32", 1e-5)])
def test_op_gpu_kernels_match_cpu(cuda_op_lib, dtype, tol):
    """Forward and gradients of the GPU kernel (TensorFlow with a GPU) against
    the float64 CPU kernel on the same inputs."""
    res = _op_check(cuda_op_lib, "gpu_kernels", dtype, str(tol))
    if res.returncode == 3:
        pytest.skip("TensorFlow sees no GPU")
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]


def test_harness_cpu_entry_point(cuda_lib_path):
    """The harness library's CPU entry point (used on the GPU machine to check
    that CPU and GPU kernels agree, dropout mask included) computes attention."""
    lib = ctypes.CDLL(str(cuda_lib_path))
    vp, i, f, u64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_ulonglong
    lib.pybert_attn_cpu_forward.argtypes = [i] * 6 + [vp] * 6 + [vp, f, f, u64, u64, i,
                                                                 ctypes.c_char_p, i]
    rng = np.random.default_rng(3)
    B, S, H, D = 2, 9, 3, 32
    q, k, v = (rng.standard_normal((B, S, H, D)).astype(np.float32) for _ in range(3))
    mask = np.ones((B, S), np.int32)
    mask[0, 4:] = 0
    out = np.full_like(q, np.nan)
    lse = np.full((B, H, S), np.nan, np.float32)
    strides = (ctypes.c_longlong * 12)(*([S * H * D, H * D, D] * 4))
    err = ctypes.create_string_buffer(512)
    rc = lib.pybert_attn_cpu_forward(0, B, H, S, S, D, *(x.ctypes.data for x in (q, k, v, mask,
                                                                               out, lse)),
                                     strides, 0.2, 0.0, 0, 0, 2, err, 512)
    assert rc == 0, err.value
    np.testing.assert_allclose(out, reference(q.astype(np.float64), k, v, mask, 0.2),
                               rtol=1e-5, atol=1e-6)
    rc = lib.pybert_attn_cpu_forward(0, B, H, S, S, D, *(x.ctypes.data for x in (q, k, v, mask,
                                                                               out, lse)),
                                     strides, 0.2, 1.5, 0, 0, 2, err, 512)
    assert rc == 1 and "dropout_rate" in err.value.decode()
