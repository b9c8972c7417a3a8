"""TensorFlow custom ops: PybertFusedAttention (csrc/tf_ops) and its gradient.

    from pybert import ops
    if ops.available():
        out = ops.fused_attention(q, k, v, input_mask)   # q, k, v [B, S, N, H]

The op library (_pybert_ops.so) is built when TensorFlow is importable at build
time (see README, "Fused attention on CPU"); built with -DPYBERT_CUDA=ON it also
has GPU kernels (float16, bfloat16, float32; csrc/attention CUDA launchers).
Importing pybert never fails when it is missing: available() is False,
load_error() says why, and the encoder's attention_impl="auto" (the default)
uses the reference attention; with it, "auto" uses this op on CPUs outside XLA
(pybert.modeling.encoder.resolve_attention_impl).

Semantics (csrc/attention/params.h): softmax(scale * q.k) over the keys with
input_mask != 0 (int32 [B, S_k]), attention-probability dropout from a Philox
stream keyed by `seed` (the gradient regenerates the same mask), a row whose
keys are all masked gives zeros. The op saves only the per-row log-sum-exp for
the gradient; memory does not grow with S^2.
"""

from __future__ import annotations

import math
from pathlib import Path

_LIB = None
_ERROR: str | None = None
_TRIED = False
LIBRARY = Path(__file__).with_name("_pybert_ops.so")


def _load():
    global _LIB, _ERROR, _TRIED
    if _TRIED:
        return _LIB
    _TRIED = True
    path = _library_path()
    if path is None:
        _ERROR = (f"{LIBRARY} was not built (TensorFlow was not importable when pybert was "
                  "built; reinstall with --no-build-isolation after installing TensorFlow)")
        return None
    try:
        import tensorflow as tf

        _LIB = tf.load_op_library(str(path))
    except Exception as e:  # noqa: BLE001 - an ABI mismatch raises NotFoundError and others
        _ERROR = f"{path} does not load in this TensorFlow: {type(e).__name__}: {e}"
        return None
    _register_gradient(tf)
    return _LIB


def _library_path() -> Path | None:
    if LIBRARY.exists():
        return LIBRARY
    # editable installs keep built files outside the source tree; their import
    # hook still knows where (".so" is an extension suffix)
    import importlib.util

    try:
        spec = importlib.util.find_spec("pybert.ops._pybert_ops")
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def available() -> bool:
    """True when the op library loaded in this TensorFlow."""
    return _load() is not None


def load_error() -> str | None:
    """Why the op library is not available (None when it is)."""
    _load()
    return _ERROR


def _register_gradient(tf):
    @tf.RegisterGradient("PybertFusedAttention")
    def _grad(op, grad_output, grad_lse):  # noqa: ARG001 - lse is not differentiated
        q, k, v, mask, seed = op.inputs
        out, lse = op.outputs
        dq, dk, dv = _LIB.pybert_fused_attention_grad(
            q, k, v, mask, seed, out, lse, grad_output, scale=op.get_attr("scale"),
            dropout_rate=op.get_attr("dropout_rate"))
        return dq, dk, dv, None, None


def fused_attention(query, key, value, input_mask, scale: float | None = None,
                    dropout_rate: float = 0.0, seed=0, return_lse: bool = False):
    """Attention over [batch, seq, heads, head_dim] tensors (CPU: float32 or float64; GPU,
    in a library built with PYBERT_CUDA=ON: float16, bfloat16 or float32) with an
    int32 [batch, seq_k] padding mask (1 = keep). scale defaults to 1/sqrt(head_dim);
    `seed` (int64 scalar, a tensor is fine) keys the dropout mask. Returns the output
    [batch, seq_q, heads, head_dim] (and the log-sum-exp [batch, heads, seq_q])."""
    import tensorflow as tf

    lib = _load()
    if lib is None:
        raise RuntimeError(f"the fused attention op is not available: {_ERROR}")
    if scale is None:
        head_dim = query.shape[-1]
        if head_dim is None:
            raise ValueError("scale is required when head_dim is not static")
        scale = 1.0 / math.sqrt(head_dim)
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    out, lse = lib.pybert_fused_attention(
        query, key, value, tf.cast(input_mask, tf.int32), tf.cast(seed, tf.int64),
        scale=float(scale), dropout_rate=float(dropout_rate))
    return (out, lse) if return_lse else out
