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
input_mask != 0 ([B, S_k]), attention-probability dropout from a Philox
stream keyed by `seed` (the gradient regenerates the same mask), a row whose
keys are all masked gives zeros. The op saves only the per-row log-sum-exp for
the gradient; memory does not grow with S^2.
"""

from __future__ import annotations

import math
from pathlib import Path

# {"lib": the loaded library or None, "error": why not} once a load was tried. A dict
# written in place, not module globals: under tf.function, autograph converts
# _load, and the global assignments of its converted branches did not reach the
# module (a second traced function then saw a library "not available: None").
_STATE: dict = {}
LIBRARY = Path(__file__).with_name("_pybert_ops.so")


def _load():
    if "lib" not in _STATE:
        _STATE.update(_try_load())
    return _STATE["lib"]


def _try_load() -> dict:
    path = _library_path()
    if path is None:
        return {"lib": None,
                "error": (f"{LIBRARY} was not built (TensorFlow was not importable when pybert "
                          "was built; reinstall with --no-build-isolation after installing "
                          "TensorFlow)")}
    try:
        import tensorflow as tf

        lib = tf.load_op_library(str(path))
    except Exception as e:  # noqa: BLE001 - an ABI mismatch raises NotFoundError and others
        return {"lib": None,
                "error": f"{path} does not load in this TensorFlow: {type(e).__name__}: {e}"}
    _register_gradient(tf, lib)
    return {"lib": lib, "error": None}


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
    return _STATE["error"]


def _register_gradient(tf, lib):
    @tf.RegisterGradient("PybertFusedAttention")
    def _grad(op, grad_output, grad_lse):  # noqa: ARG001 - see below
        # lse's gradient is left out here: fused_attention exposes lse only through
        # _attention_with_lse, whose own gradient adds it.
        q, k, v, mask, seed = op.inputs
        out, lse = op.outputs
        dq, dk, dv = lib.pybert_fused_attention_grad(
            q, k, v, mask, seed, out, lse, grad_output, scale=op.get_attr("scale"),
            dropout_rate=op.get_attr("dropout_rate"))
        return dq, dk, dv, None, None


def _keep_mask(tf, input_mask):
    """input_mask as the op's int32 keep mask (nonzero = keep). Any integer or bool dtype is
    compared with 0 rather than cast (int64 2**32 would cast to 0); a float mask is a
    padding mask too (positive = keep, 0 = padding), not an additive bias (0 / -10000),
    which would silently mean the opposite: negative values are an error."""
    mask = tf.convert_to_tensor(input_mask)
    if mask.dtype == tf.int32:
        return mask
    if mask.dtype.is_floating:
        check = tf.debugging.assert_non_negative(
            mask, message="fused_attention: input_mask must be a padding mask (1 = keep, "
                          "0 = padding), not an additive bias with negative values")
        with tf.control_dependencies([check]):
            return tf.cast(mask > 0, tf.int32)
    if mask.dtype == tf.bool:
        return tf.cast(mask, tf.int32)
    if mask.dtype.is_integer:
        return tf.cast(tf.not_equal(mask, 0), tf.int32)
    raise TypeError(f"fused_attention: input_mask must be an integer, bool or float tensor, "
                    f"got {mask.dtype.name}")


def _attention_with_lse(tf, lib, q, k, v, mask, seed, scale, rate):
    """The op with its log-sum-exp as a differentiable output. lse_i = log sum_j exp(scale
    q_i.k_j) over the kept keys, so with P the attention probabilities before dropout,
    d lse_i / d q_i = scale (P K)_i and d lse_i / d k_j = scale P_ij q_i: a forward with
    V = K gives the first, the gradient op's dV for dO = g * Q (dropout 0) the second."""

    @tf.custom_gradient
    def attend(q, k, v):
        out, lse = lib.pybert_fused_attention(q, k, v, mask, seed, scale=scale,
                                              dropout_rate=rate)

        def grad(d_out, d_lse):
            dq, dk, dv = lib.pybert_fused_attention_grad(
                q, k, v, mask, seed, out, lse, d_out, scale=scale, dropout_rate=rate)
            if d_lse is not None:
                g = tf.cast(tf.transpose(d_lse, [0, 2, 1])[..., None], q.dtype)  # [B, Sq, N, 1]
                pk, _ = lib.pybert_fused_attention(q, k, k, mask, seed, scale=scale,
                                                   dropout_rate=0.0)
                _, _, pt_gq = lib.pybert_fused_attention_grad(
                    q, k, k, mask, seed, pk, lse, g * q, scale=scale, dropout_rate=0.0)
                dq += scale * g * pk
                dk += scale * pt_gq
            return dq, dk, dv

        return (out, lse), grad

    # tensors, not tf.Variables: custom_gradient would take a variable argument for one the
    # function captures (and want a `variables` argument in grad); the read is differentiable
    return attend(*(tf.convert_to_tensor(x) for x in (q, k, v)))


def fused_attention(query, key, value, input_mask, scale: float | None = None,
                    dropout_rate: float = 0.0, seed=0, return_lse: bool = False):
    """Attention over [batch, seq, heads, head_dim] tensors (CPU: float32 or float64; GPU,
    in a library built with PYBERT_CUDA=ON: float16, bfloat16 or float32) with a
    [batch, seq_k] padding mask (nonzero = keep; int32 is used as is, other integer and
    bool dtypes are compared with 0; a float mask keeps its positive entries and must have
    no negative ones: not an additive bias).
    scale defaults to 1/sqrt(head_dim); `seed` (int64 scalar, a tensor is fine) keys the
    dropout mask. Returns the output [batch, seq_q, heads, head_dim] (and, with
    return_lse, the log-sum-exp [batch, heads, seq_q] of the scaled scores before
    dropout, +inf for a row whose keys are all masked; both are differentiable)."""
    import tensorflow as tf

    lib = _load()
    if lib is None:
        raise RuntimeError(f"the fused attention op is not available: {load_error()}")
    if scale is None:
        head_dim = query.shape[-1]
        if head_dim is None:
            raise ValueError("scale is required when head_dim is not static")
        if head_dim < 1:
            raise ValueError(f"head_dim must be >= 1, got {head_dim} (query shape "
                             f"{query.shape})")
        scale = 1.0 / math.sqrt(head_dim)
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    mask = _keep_mask(tf, input_mask)
    seed = tf.cast(seed, tf.int64)
    if return_lse:
        return _attention_with_lse(tf, lib, query, key, value, mask, seed, float(scale),
                                   float(dropout_rate))
    out, _ = lib.pybert_fused_attention(query, key, value, mask, seed, scale=float(scale),
                                        dropout_rate=float(dropout_rate))
    return out
