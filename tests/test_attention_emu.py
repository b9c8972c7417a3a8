"""The CUDA attention kernels, run on the CPU through the CUDA emulation
(csrc/attention/emu/cuda_emu.h): the same kernel and launcher source as the
GPU build, compiled with g++ (bench/gpu/build_emu.sh), with every CUDA thread
a fiber and the warp-collective instructions (ldmatrix, mma.sync, shuffles)
emulated. The kernels are checked by the GPU check script's own checks
(bench/gpu/check_attention.py: float64 reference, PyTorch SDPA's error as the
yardstick), so kernel changes are tested here before a device session.

The TensorFlow op library built with -DPYBERT_CUDA_EMU=ON runs its GPU code
path (GpuBackend: dtype mapping, workspace, launchers, kernels) on the CPU
device for float16/bfloat16, checked against the float64 CPU kernel.

The emulation is tested too: tensor-core fragments (mma.sync, and wgmma from
128-byte-swizzled shared memory, its results appearing at the wait) against a
matrix product,
a missing barrier between warps is visible, and the bugs it must report
(divergent warps, lanes exiting mid-collective, out-of-range ldmatrix, shared
memory over the limit, bad launch configurations) are reported.

Built with ThreadSanitizer (TSAN=1), the kernels are checked for data races
between CUDA threads (emu_racecheck: every kernel configuration, no numerics),
and the checker is shown to report a missing barrier.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu" / "check_attention.py"


@pytest.fixture(scope="module")
def emu_path(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("the CUDA emulation build needs g++")
    out = tmp_path_factory.mktemp("emu")
    r = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu" / "build_emu.sh"), str(out)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return r.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def ca(check_attention):
    return check_attention


@pytest.fixture(scope="module")
def lib(ca, emu_path):
    lib = ca.CudaLib(emu_path, emulated=True)
    lib.set_emu_mode("forward,late,warps")
    return lib


@pytest.fixture
def raw(lib):
    c = lib.lib
    i, vp, cp = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
    c.pybert_emu_selftest_mma.argtypes = [i, vp, vp, i, vp, vp, cp, i]
    c.pybert_emu_selftest_wgmma.argtypes = [i, vp, vp, i, vp, vp, vp, i, cp, i]
    c.pybert_emu_selftest_neighbour.argtypes = [i, i, i, vp, cp, i]
    c.pybert_emu_selftest_failure.argtypes = [i, vp, cp, i]
    return c


# -- the emulation itself ---------------------------------------------------


def _operands(n, dtype, b_kn, seed):
    """A [m][k], B [k][n] (16-bit), C (float32), n x n each; and A, B as 16-bit
    patterns, B given as [k][n] (b_kn) or [n][k]."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn((n, n), generator=gen).to(dtype)
    b = torch.randn((n, n), generator=gen).to(dtype)
    c = torch.randn((n, n), generator=gen)
    b_in = b if b_kn else b.t().contiguous()
    bits = [x.contiguous().view(torch.int16) for x in (a, b_in)]
    return a, b, c, bits


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("b_kn", [True, False])
def test_tensor_core_fragments_compute_a_matrix_product(raw, dtype, b_kn):
    a, b, c, bits = _operands(16, dtype, b_kn, seed=3)
    d = torch.full((16, 16), float("nan"))
    err = ctypes.create_string_buffer(512)
    rc = raw.pybert_emu_selftest_mma(
        int(dtype == torch.bfloat16),
        bits[0].data_ptr(),
        bits[1].data_ptr(),
        int(b_kn),
        c.data_ptr(),
        d.data_ptr(),
        err,
        512,
    )
    assert rc == 0, err.value
    want = a.double() @ b.double() + c.double()
    np.testing.assert_allclose(d.double().numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def _wgmma(raw, dtype, b_kn, mode, seed=5):
    # B's rows are k (the V tile) or n (the K tile)
    a, b, c, bits = _operands(64, dtype, b_kn, seed)
    d = torch.full((64, 64), float("nan"))
    early = torch.full((64, 64), float("nan"))
    err = ctypes.create_string_buffer(1024)
    rc = raw.pybert_emu_selftest_wgmma(
        int(dtype == torch.bfloat16),
        bits[0].data_ptr(),
        bits[1].data_ptr(),
        int(b_kn),
        c.data_ptr(),
        d.data_ptr(),
        early.data_ptr(),
        mode,
        err,
        1024,
    )
    return rc, err.value.decode(), a, b, c, d, early


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("b_kn", [True, False])
def test_warpgroup_mma_computes_a_matrix_product_from_swizzled_tiles(raw, dtype, b_kn):
    rc, err, a, b, c, d, _ = _wgmma(raw, dtype, b_kn, mode=0)
    assert rc == 0, err
    want = a.double() @ b.double() + c.double()
    np.testing.assert_allclose(d.double().numpy(), want.numpy(), rtol=1e-5, atol=1e-4)


def test_warpgroup_mma_results_appear_at_the_wait(raw):
    # mode 1: the accumulators read between issue and wait still hold C
    rc, err, a, b, c, d, early = _wgmma(raw, torch.float16, True, mode=1)
    assert rc == 0, err
    assert torch.equal(early, c)
    want = a.double() @ b.double() + c.double()
    np.testing.assert_allclose(d.double().numpy(), want.numpy(), rtol=1e-5, atol=1e-4)
    # mode 2: shared memory is read at the wait, so B zeroed before it gives C
    rc, err, *_, d, _ = _wgmma(raw, torch.float16, False, mode=2)
    assert rc == 0, err
    assert torch.equal(d, c)


def test_warpgroup_mma_without_a_fence_is_reported(raw):
    rc, err, *_ = _wgmma(raw, torch.bfloat16, False, mode=3)
    assert rc == 1
    assert "wgmma.mma_async without a wgmma.fence" in err, err


def test_warpgroup_mma_reads_only_what_a_proxy_fence_made_visible(raw):
    # mode 8: B stored with st.shared and a barrier but no fence.proxy.async
    rc, err, *_ = _wgmma(raw, torch.float16, False, mode=8)
    assert rc == 1
    assert "no fence.proxy.async, then a barrier, has made visible" in err, err


def test_warpgroup_mma_a_registers_changed_before_the_wait_are_reported(raw):
    # PTX: the A registers of a wgmma must hold their values until its wait
    rc, err, *_ = _wgmma(raw, torch.float16, True, mode=4)
    assert rc == 1
    assert "changed an A register of a wgmma.mma_async" in err, err


@pytest.mark.parametrize(
    "mode, message",
    [
        (6, "warp 1 issued 3 wgmma and warp 0 of its warpgroup 4"),
        (7, "wgmma 0 of warpgroup 0: warp 2 gives other descriptors"),
    ],
)
def test_warps_of_a_warpgroup_that_issue_different_wgmma_are_reported(raw, mode, message):
    # wgmma is .aligned: the four warps of a warpgroup issue each one together
    rc, err, *_ = _wgmma(raw, torch.float16, False, mode=mode)
    assert rc == 1
    assert message in err, err


@pytest.mark.parametrize("b_kn", [True, False])
def test_warpgroup_mma_swizzle_follows_the_shared_window_address(raw, b_kn):
    # mode 5: B stored swizzled by its row in the tile, at a tile that starts 128
    # bytes past a 1024-byte boundary: the 128-byte swizzle is a function of the
    # address, so the product reads B's 16-byte chunks permuted (the attention
    # kernels align their tiles for this reason)
    rc, err, a, b, c, d, _ = _wgmma(raw, torch.float16, b_kn, mode=5)
    assert rc == 0, err
    want = a.double() @ b.double() + c.double()
    assert not np.allclose(d.double().numpy(), want.numpy(), rtol=1e-3, atol=1e-2)
    rc, err, a, b, c, d, _ = _wgmma(raw, torch.float16, b_kn, mode=0)
    np.testing.assert_allclose(d.double().numpy(), want.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_a_missing_barrier_between_warps_is_visible(lib, raw, order):
    warps, err = 4, ctypes.create_string_buffer(512)
    want = [1000 * (t + 1) + (w + 1) % warps for t in range(2) for w in range(warps)]
    got = []
    try:
        lib.set_emu_mode(f"{order},late,warps")
        for tag, barrier in ((1000, 1), (2000, 0)):
            out = (ctypes.c_int * warps)()
            assert raw.pybert_emu_selftest_neighbour(warps, tag, barrier, out, err, 512) == 0
            got += list(out)
    finally:
        lib.set_emu_mode("forward,late,warps")
    assert got[:warps] == want[:warps]  # with the barrier: each warp sees its neighbour's write
    assert got[warps:] != want[warps:]  # without it, some warp reads before the write


@pytest.mark.parametrize(
    "kind, message",
    [
        (0, ("__syncthreads while other lanes", "deadlock")),
        (1, ("exited while other lanes of its warp wait at __shfl_xor_sync",)),
        (2, ("ldmatrix: lane 0's row address outside shared memory",)),
        (3, ("65536 bytes of dynamic shared memory over the kernel's limit of 49152",)),
        (5, ("invalid launch configuration",)),
        (6, ("static shared memory over 48 KiB",)),
    ],
)
def test_kernel_bugs_are_reported(raw, kind, message):
    out = torch.zeros(64)
    err = ctypes.create_string_buffer(1024)
    assert raw.pybert_emu_selftest_failure(kind, out.data_ptr(), err, 1024) == 1
    assert any(m in err.value.decode() for m in message), err.value


def test_shared_memory_attribute_raises_the_limit(raw):
    out = torch.zeros(64)
    err = ctypes.create_string_buffer(1024)
    assert raw.pybert_emu_selftest_failure(4, out.data_ptr(), err, 1024) == 0, err.value
    assert out[0].item() == 255.0  # dynamic shared memory starts as 0xff bytes


def test_bad_emulation_mode_is_refused(lib):
    with pytest.raises(ValueError, match="emulation mode"):
        lib.set_emu_mode("sideways,late,warps")


# -- the attention kernels ----------------------------------------------------


def test_kernels_pass_the_gpu_checks(ca, lib):
    """The device script's --quick checks (262: fp16/bf16/fp32, head dims
    32/64/128, every forward and backward variant, dropout with the CPU
    kernels' Philox mask, fully masked rows, no queries, strided views, bad input)."""
    checker = ca.run_checks(lib, torch.device("cpu"), quick=True)
    assert len(checker.rows) >= 200
    assert not checker.failures, checker.failures
    names = "\n".join(r["name"] for r in checker.rows)
    for v in range(1, ca.FWD_VARIANTS + 1):
        assert f"D64 bshd random v{v}/" in names, v
    for v in range(1, ca.BWD_VARIANTS + 1):
        assert f"S300 bwd v{v} fully masked" in names, v
    assert names.count("seq_q 0, seq_k 50 -> dK = dV = 0") == 3


@pytest.mark.slow
def test_kernels_pass_the_full_gpu_checks(ca, lib):
    """All the device script's checks (sequence lengths up to 512, every variant
    at head dims 32/64/128, CPU vs GPU kernels)."""
    checker = ca.run_checks(lib, torch.device("cpu"), quick=False)
    assert len(checker.rows) >= 240
    assert not checker.failures, checker.failures


@pytest.mark.slow
def test_kernels_under_address_sanitizer(tmp_path):
    """The quick checks with the emulated kernels built with AddressSanitizer:
    no kernel reads or writes outside its tensors or its shared memory."""
    libasan = subprocess.run(["g++", "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    if shutil.which("g++") is None or not Path(libasan).exists():
        pytest.skip("needs g++ with AddressSanitizer")
    build = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu" / "build_emu.sh"), str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "ASAN": "1"})
    assert build.returncode == 0, build.stderr[-4000:]
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--emu", "--lib", build.stdout.strip().splitlines()[-1],
         "--quick"],
        capture_output=True, text=True, timeout=1800,
        env={**os.environ, "LD_PRELOAD": libasan, "ASAN_OPTIONS": "detect_leaks=0"})
    assert "AddressSanitizer" not in res.stderr, res.stderr[-4000:]
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "failures: []" in res.stdout


@pytest.mark.parametrize(
    "mode", ["reverse,late,warps", "forward,early,warps", "reverse,early,lockstep"]
)
def test_kernels_under_other_schedules(ca, lib, mode):
    """Every variant under the other thread orders and cp.async timings (a
    missing barrier or wait shows up under some of them)."""
    checker = ca.Checker(lib, torch.device("cpu"))
    try:
        lib.set_emu_mode(mode)
        for fv in range(1, ca.FWD_VARIANTS + 1):
            bv = 1 + (fv - 1) % ca.BWD_VARIANTS
            checker.check_case("fp16", 2, 2, 131, 300, 64, variant=fv, bwd_variant=bv)
        checker.check_case("bf16", 2, 2, 131, 300, 128, variant=3, bwd_variant=1)
        checker.check_case("fp32", 2, 2, 70, 70, 64)
        checker.check_dropout("bf16", 64, bwd_variant=3, S=200)
    finally:
        lib.set_emu_mode("forward,late,warps")
    assert not checker.failures, checker.failures


# -- data races, with ThreadSanitizer ---------------------------------------------


@pytest.fixture(scope="module")
def racecheck(tmp_path_factory):
    """bench/gpu/build_emu.sh with TSAN=1: the kernels instrumented by
    ThreadSanitizer, the emulator telling it what orders the CUDA threads, and
    emu_racecheck, which runs every kernel configuration."""
    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    out = tmp_path_factory.mktemp("emu_tsan")
    probe = subprocess.run(["g++", "-fsanitize=thread", "-x", "c++", "-", "-o", str(out / "probe")],
                           input="int main() { return 0; }", capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("needs g++ with ThreadSanitizer: " + probe.stderr[-300:])
    run = subprocess.run([str(out / "probe")], capture_output=True, text=True)
    if run.returncode != 0:  # e.g. a kernel memory layout this ThreadSanitizer cannot map
        pytest.skip("ThreadSanitizer programs do not run here: " + run.stderr[-300:])
    build = subprocess.run(["bash", str(REPO / "bench" / "gpu" / "build_emu.sh"), str(out)],
                           capture_output=True, text=True, env={**os.environ, "TSAN": "1"})
    assert build.returncode == 0, build.stderr[-4000:]
    return out / "emu_racecheck"


def _run_racecheck(exe, *args, timeout=1800):
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TSAN_OPTIONS": "exitcode=66"})


def test_race_checker_reports_a_missing_barrier(racecheck):
    """Two warps each write a shared-memory slot and read the other's: without
    the barrier in between ThreadSanitizer reports the race (exit status 66),
    with it nothing."""
    bad = _run_racecheck(racecheck, "--selftest-race")
    assert bad.returncode == 66, bad.stdout + bad.stderr[-3000:]
    assert "WARNING: ThreadSanitizer: data race" in bad.stderr
    assert "neighbour_kernel" in bad.stderr
    good = _run_racecheck(racecheck, "--selftest-race", "--barrier")
    assert good.returncode == 0, good.stdout + good.stderr[-3000:]
    assert "ThreadSanitizer" not in good.stderr
    assert "ok selftest (barrier 1): 8 7" in good.stdout  # each warp saw the other's slot


def test_kernels_have_no_data_race(racecheck):
    """The default forward and backward kernels of every dtype and head dim
    (padded masks, masks with holes and a fully masked batch, dropout, one and
    several key CTAs per head), the wgmma kernels (forward 11 and 13, backward
    5, fp16), and the CPU kernels on 4 threads, under ThreadSanitizer: no race."""
    res = _run_racecheck(racecheck, "--quick")
    assert "ThreadSanitizer" not in res.stderr, res.stderr[-6000:]
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "41 cases, 0 failed launches" in res.stdout


@pytest.mark.slow
def test_every_kernel_variant_has_no_data_race(racecheck):
    """Every forward variant (1-13) and backward variant (1-5) under
    ThreadSanitizer."""
    res = _run_racecheck(racecheck)
    assert "ThreadSanitizer" not in res.stderr, res.stderr[-6000:]
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert ", 0 failed launches" in res.stdout


# -- the TensorFlow op's GPU code path ------------------------------------------


def _tool(name):
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def _importable(name):
    probe = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def emu_op_lib(tmp_path_factory):
    cmake = _tool("cmake")
    if cmake is None or not (_importable("tensorflow") and _importable("pybind11")):
        pytest.skip("needs cmake, TensorFlow and pybind11")
    import pybind11

    build = tmp_path_factory.mktemp("emu_op_build")
    # Debug (-O0): half the build time of -O3, and the checks below are small
    cmd = [cmake, "-S", str(REPO), "-B", str(build), "-DPYBERT_CUDA_EMU=ON",
           "-DPYBERT_BUILD_PYTHON=ON", "-DPYBERT_TF_OPS=ON", "-DCMAKE_BUILD_TYPE=Debug",
           f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}"]
    ninja = _tool("ninja")
    if ninja:
        cmd += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    for step in (cmd, [cmake, "--build", str(build), "--target", "_pybert_ops", "-j", "2"]):
        res = subprocess.run(step, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return build / "csrc" / "_pybert_ops.so"


@pytest.mark.parametrize("dtype, tol", [("float16", 2e-3), ("bfloat16", 2e-2)])
def test_op_gpu_path_matches_float64(emu_op_lib, dtype, tol):
    """tests/cuda_op_checks.py emulated_gpu_kernels (in a subprocess: the op
    names are registered once per process): forward and gradients, without and
    with dropout, max error / max value under tol."""
    res = subprocess.run(
        [sys.executable, str(REPO / "tests" / "cuda_op_checks.py"), "emulated_gpu_kernels",
         str(emu_op_lib), dtype, str(tol)],
        capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]
