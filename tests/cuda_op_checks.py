"""Checks of the PYBERT_CUDA=ON TensorFlow op library, run by
tests/test_attention_cuda.py in a subprocess each: that library registers the
same op names as pybert's installed one, and TensorFlow refuses a second
registration in one process.

    python tests/cuda_op_checks.py CHECK LIBRARY [ARGS...]
"""

from __future__ import annotations

import sys

import numpy as np


def registrations(lib):
    """float16/bfloat16/float32 GPU kernels (seed on the host, input_mask on the
    device) next to the float32/float64 CPU ones."""
    import tensorflow as tf
    from tensorflow.python.framework import kernels

    for op in ("PybertFusedAttention", "PybertFusedAttentionGrad"):
        found = {}
        for k in kernels.get_registered_kernels_for_op(op).kernel:
            dtype = tf.dtypes.as_dtype(k.constraint[0].allowed_values.list.type[0]).name
            found[(k.device_type, dtype)] = tuple(k.host_memory_arg)
        assert found == {
            ("CPU", "float32"): (), ("CPU", "float64"): (),
            ("GPU", "float16"): ("seed",), ("GPU", "bfloat16"): ("seed",),
            ("GPU", "float32"): ("seed",),
        }, (op, found)


def reference(q, k, v, mask, scale):
    """Masked softmax attention in float64 NumPy; q, k, v [B, S, H, D], mask [B, S_k]."""
    s = np.einsum("bihd,bjhd->bhij", q, k) * scale
    s = np.where(mask[:, None, None, :] != 0, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhij,bjhd->bihd", p, v)


def cpu_kernels(lib):
    """The library loads in a CPU-only TensorFlow (static CUDA runtime) and its
    CPU kernels compute attention."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 9, 3, 32)) for _ in range(3))
    mask = np.ones((2, 9), np.int32)
    mask[1, 5:] = 0
    with tf.device("/CPU:0"):
        out, _ = lib.pybert_fused_attention(q, k, v, mask, tf.constant(0, tf.int64), scale=0.25)
    np.testing.assert_allclose(out.numpy(), reference(q, k, v, mask, 0.25), rtol=1e-10,
                               atol=1e-12)


def against_float64(lib, device, dtype, tol):
    """Forward and gradients of the kernels on `device` in `dtype` against the
    float64 CPU kernel on the same (rounded) inputs, without and with dropout
    (one Philox mask on every backend). The batch row with one kept key is left
    out of the dropout pass: its exact dq and dk are 0 (P = 1) and what the
    kernels give there is the rounding of the output to `dtype` (the backward
    pass takes rowsum(dO * O) from the rounded O, as flash attention does)."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    q, k, v, dout = (rng.standard_normal((3, 130, 4, 64)) for _ in range(4))
    seed = tf.constant(20261127, tf.int64)

    def run(device, cast, rate):
        lengths = [[130], [77], [1 if rate == 0 else 40]]
        mask = (np.arange(130)[None, :] < np.array(lengths)).astype(np.int32)
        with tf.device(device):  # the float64 run gets the inputs rounded to `dtype` too
            tq, tk, tv = (tf.cast(tf.constant(x, dtype), cast) for x in (q, k, v))
            out, lse = lib.pybert_fused_attention(tq, tk, tv, mask, seed, scale=0.125,
                                                  dropout_rate=rate)
            grads = lib.pybert_fused_attention_grad(
                tq, tk, tv, mask, seed, out, lse, tf.cast(tf.constant(dout, dtype), cast),
                scale=0.125, dropout_rate=rate)
        return [np.asarray(tf.cast(t, tf.float64)) for t in (out, *grads)]

    for rate in (0.0, 0.1):
        want = run("/CPU:0", tf.float64, rate)
        got = run(device, getattr(tf, dtype), rate)
        for name, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
            assert np.isfinite(g).all(), (rate, name)
            err = np.abs(g - w).max() / max(np.abs(w).max(), 1e-6)
            print(f"{dtype} rate {rate} {name}: max error / max {err:.2e}")
            assert err < float(tol), (rate, name, err)


def gpu_kernels(lib, dtype, tol):
    """The GPU kernels against the float64 CPU kernel; exit status 3 when
    TensorFlow sees no GPU."""
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        sys.exit(3)
    against_float64(lib, "/GPU:0", dtype, tol)


def emulated_gpu_kernels(lib, dtype, tol):
    """A -DPYBERT_CUDA_EMU=ON library: its GPU code path (GpuBackend, the CUDA
    launchers and kernels under the CPU emulation of CUDA) is registered on the
    CPU for float16/bfloat16; checked like the GPU kernels."""
    import tensorflow as tf
    from tensorflow.python.framework import kernels

    cpu = {tf.dtypes.as_dtype(k.constraint[0].allowed_values.list.type[0]).name
           for k in kernels.get_registered_kernels_for_op("PybertFusedAttention").kernel
           if k.device_type == "CPU"}
    assert cpu == {"float16", "bfloat16", "float32", "float64"}, cpu
    against_float64(lib, "/CPU:0", dtype, tol)


if __name__ == "__main__":
    check, path, *args = sys.argv[1:]
    import tensorflow as tf

    globals()[check](tf.load_op_library(path), *args)
    print("ok")
