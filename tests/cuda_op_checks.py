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


def gpu_kernels(lib, dtype, tol):
    """Forward and gradients of the GPU kernels against the float64 CPU kernel;
    exit status 3 when TensorFlow sees no GPU."""
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        sys.exit(3)
    tol = float(tol)
    rng = np.random.default_rng(1)
    q, k, v, dout = (rng.standard_normal((3, 130, 4, 64)) for _ in range(4))
    mask = (np.arange(130)[None, :] < np.array([[130], [77], [1]])).astype(np.int32)
    seed = tf.constant(0, tf.int64)

    def run(device, cast):
        with tf.device(device):
            tq, tk, tv = (tf.constant(x, cast) for x in (q, k, v))
            out, lse = lib.pybert_fused_attention(tq, tk, tv, mask, seed, scale=0.125)
            grads = lib.pybert_fused_attention_grad(
                tq, tk, tv, mask, seed, out, lse, tf.constant(dout, cast), scale=0.125)
        return [np.asarray(tf.cast(t, tf.float64)) for t in (out, *grads)]

    want = run("/CPU:0", tf.float64)
    got = run("/GPU:0", getattr(tf, dtype))
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert np.isfinite(g).all(), name
        err = np.abs(g - w).max() / max(np.abs(w).max(), 1e-6)
        assert err < tol, (name, err)


if __name__ == "__main__":
    check, path, *args = sys.argv[1:]
    import tensorflow as tf

    globals()[check](tf.load_op_library(path), *args)
    print("ok")
