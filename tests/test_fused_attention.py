"""The PybertFusedAttention TensorFlow op (csrc/tf_ops, CPU kernels of csrc/attention)
against attention written in plain TensorFlow ops: forward and gradients in float64
and float32 with random padding masks, tf.test.compute_gradient, the dropout mask
(keep rate, the gradient regenerating the forward's mask), thread-count
independence, argument errors, the encoder with attention_impl="fused" on the real
checkpoint, and a training run that follows the reference loss curve.

Skipped when the op library was not built, unless PYBERT_REQUIRE_OPS=1 (CI sets it)."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from pybert import ops  # noqa: E402

if not ops.available():
    if os.environ.get("PYBERT_REQUIRE_OPS") == "1":
        raise RuntimeError(f"PYBERT_REQUIRE_OPS=1 but: {ops.load_error()}")
    pytest.skip(f"op library not available: {ops.load_error()}", allow_module_level=True)


def _reference(q, k, v, mask, scale, keep=None, rate=0.0):
    """Attention in plain ops on [B, S, N, H]; masked keys excluded exactly."""
    s = tf.einsum("bind,bjnd->bnij", q, k) * scale
    m = tf.cast(mask[:, None, None, :], tf.bool)
    s = tf.where(m, s, tf.constant(-np.inf, s.dtype))
    p = tf.nn.softmax(s, axis=-1)
    p = tf.where(tf.reduce_any(m, axis=-1, keepdims=True), p, tf.zeros_like(p))  # all masked -> 0
    if keep is not None:
        p = p * keep / (1.0 - rate)
    return tf.einsum("bnij,bjnd->bind", p, v)


def _inputs(rng, b, s, n, h, dtype, full_mask_row=False):
    q, k, v = (tf.constant(rng.normal(size=(b, s, n, h)), dtype) for _ in range(3))
    lengths = rng.integers(1, s + 1, size=b)
    lengths[0] = s
    mask = (np.arange(s)[None, :] < lengths[:, None]).astype(np.int32)
    if full_mask_row and b > 1:
        mask[-1] = 0
    return q, k, v, tf.constant(mask)


SHAPES = [  # batch, seq, heads, head_dim
    (2, 1, 2, 32), (3, 7, 2, 64), (2, 128, 2, 32), (1, 129, 2, 64), (2, 64, 2, 128),
    (1, 384, 1, 64), (1, 512, 1, 32),
]


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_gradients_match_reference(shape, dtype):
    b, s, n, h = shape
    rng = np.random.default_rng(hash(shape) % 2**32)
    q, k, v, mask = _inputs(rng, b, s, n, h, dtype, full_mask_row=s > 1 and b > 1)
    scale = float(np.float32(1.0 / np.sqrt(h)))  # the op's scale attribute is a float32
    dout = tf.constant(rng.normal(size=(b, s, n, h)), dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([q, k, v])
        got = ops.fused_attention(q, k, v, mask, scale)
        want = _reference(q, k, v, mask, scale)
        lg, lw = tf.reduce_sum(got * dout), tf.reduce_sum(want * dout)
    tol = 1e-12 if dtype == tf.float64 else 1e-5
    assert got.dtype == dtype and got.shape == q.shape
    # scale omitted: 1/sqrt(head_dim), the same op call
    np.testing.assert_array_equal(ops.fused_attention(q, k, v, mask).numpy(), got.numpy())
    assert _rel(got, want) <= tol
    for g, w in zip(tape.gradient(lg, [q, k, v]), tape.gradient(lw, [q, k, v]), strict=True):
        assert _rel(g, w) <= (1e-10 if dtype == tf.float64 else 1e-5)
    if s > 1 and b > 1:  # the fully masked row: zeros
        assert np.all(got.numpy()[-1] == 0)


def test_compute_gradient_float64():
    rng = np.random.default_rng(5)
    q, k, v, mask = _inputs(rng, 2, 5, 2, 8, tf.float64)
    args = [q, k, v]
    for i in range(3):

        def f(x, i=i):
            a = list(args)
            a[i] = x
            return ops.fused_attention(a[0], a[1], a[2], mask, 0.35)

        theoretical, numerical = tf.test.compute_gradient(f, [args[i]])
        np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-7)


def _keep_mask(b, s, n, rate, seed):
    """Reads the op's dropout mask: q = k = 0 gives uniform probabilities 1/s over all
    keys, v = identity over keys, so output * s * (1 - rate) is the keep mask."""
    zeros = tf.zeros((b, s, n, s), tf.float64)
    eye = tf.tile(tf.eye(s, dtype=tf.float64)[None, :, None, :], (b, 1, n, 1))
    out = ops.fused_attention(zeros, zeros, eye, tf.ones((b, s), tf.int32), 1.0,
                              dropout_rate=rate, seed=seed)
    z = tf.transpose(out, (0, 2, 1, 3)).numpy() * s * (1.0 - rate)  # [B, N, i, j]
    assert np.allclose(z, np.round(z), atol=1e-9) and set(np.unique(np.round(z))) <= {0.0, 1.0}
    return np.round(z)


def test_dropout_keep_rate_and_backward_uses_the_same_mask():
    rate, b, s, n, h = 0.125, 2, 96, 2, 16  # 0.125: exact as the op's float32 attribute
    z = _keep_mask(b, s, n, rate, seed=1234)
    assert abs(z.mean() - (1 - rate)) < 0.01  # 36,864 draws
    assert not np.array_equal(z, _keep_mask(b, s, n, rate, seed=1235))
    assert np.array_equal(z, _keep_mask(b, s, n, rate, seed=1234))

    rng = np.random.default_rng(7)
    q, k, v, mask = _inputs(rng, b, s, n, h, tf.float64)
    dout = tf.constant(rng.normal(size=(b, s, n, h)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([q, k, v])
        got = ops.fused_attention(q, k, v, mask, 0.25, dropout_rate=rate, seed=1234)
        want = _reference(q, k, v, mask, 0.25, keep=tf.constant(z), rate=rate)
        lg, lw = tf.reduce_sum(got * dout), tf.reduce_sum(want * dout)
    assert _rel(got, want) <= 1e-12
    for g, w in zip(tape.gradient(lg, [q, k, v]), tape.gradient(lw, [q, k, v]), strict=True):
        assert _rel(g, w) <= 1e-10


_THREADS = r"""
import sys, json, hashlib, numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[1]))
from pybert import ops
rng = np.random.default_rng(0)
result = []
# head_dim 48 and 80: the AVX-512 products' 64-byte blocks with a 32-byte tail
for s, h, lengths in ((130, 64, [130, 77, 5]), (77, 48, [77, 40, 9]), (45, 80, [45, 33, 1])):
    q, k, v = (tf.constant(rng.normal(size=(3, s, 4, h)), tf.float32) for _ in range(3))
    mask = tf.constant((np.arange(s)[None] < np.array(lengths)[:, None]).astype(np.int32))
    with tf.GradientTape() as tape:
        tape.watch([q, k, v])
        out = ops.fused_attention(q, k, v, mask, 0.125, dropout_rate=0.1, seed=9)
        loss = tf.reduce_sum(out * out)
    grads = tape.gradient(loss, [q, k, v])
    result += [hashlib.sha256(x.numpy().tobytes()).hexdigest() for x in [out] + grads]
print(json.dumps(result))
"""


def test_same_results_with_one_and_two_threads_and_without_avx2():
    """Bit-identical outputs and gradients for 1 and 2 threads, with the AVX-512 entry
    points switched off (PYBERT_ATTENTION_NO_AVX512: the AVX2 ones), and with AVX2 and
    AVX-512 off (PYBERT_ATTENTION_BASELINE: the baseline x86-64 code). On a CPU without
    AVX-512 (or AVX2) the runs take the same path and the comparison is weaker."""
    outs = []
    for threads, switch in ((1, None), (2, None), (2, "PYBERT_ATTENTION_NO_AVX512"),
                            (2, "PYBERT_ATTENTION_BASELINE")):
        env = dict(os.environ)
        if switch:
            env[switch] = "1"
        proc = subprocess.run([sys.executable, "-c", _THREADS, str(threads)], capture_output=True,
                              text=True, timeout=300, cwd=tempfile.gettempdir(), env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert outs[0] == outs[1] == outs[2] == outs[3]


def test_bad_arguments_name_the_argument():
    q = tf.zeros((2, 5, 2, 8))
    mask = tf.ones((2, 5), tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="input_mask must be"):
        ops.fused_attention(q, q, q, tf.ones((2, 4), tf.int32), 0.3)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="query|rank"):
        ops.fused_attention(tf.zeros((2, 5, 16)), q, q, mask, 0.3)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="key|Dimension"):
        ops.fused_attention(q, tf.zeros((2, 5, 2, 4)), tf.zeros((2, 5, 2, 4)), mask, 0.3)
    with pytest.raises((TypeError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError)):
        ops.fused_attention(tf.zeros((2, 5, 2, 8), tf.int32), q, q, mask, 0.3)
    with pytest.raises(ValueError, match="dropout_rate"):
        ops.fused_attention(q, q, q, mask, 0.3, dropout_rate=1.0)
    empty = tf.zeros((2, 5, 2, 0))  # the default scale 1/sqrt(head_dim): was ZeroDivisionError
    with pytest.raises(ValueError, match=r"head_dim must be >= 1, got 0"):
        ops.fused_attention(empty, empty, empty, mask)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_no_queries_give_zero_key_gradients(dtype):
    """seq_q = 0 against seq_k keys: dK and dV are exactly 0 (before, the backward returned
    early and left the uninitialized outputs: whatever the allocator last held there)."""
    rng = np.random.default_rng(5)
    b, sk, n, h = 2, 300, 2, 64
    q = tf.zeros((b, 0, n, h), dtype)
    k, v = (tf.constant(rng.normal(size=(b, sk, n, h)), dtype) for _ in range(2))
    mask = tf.ones((b, sk), tf.int32)
    for _ in range(3):
        junk = tf.fill((b, sk, n, h), tf.constant(5.0, dtype)) + 1.0  # leaves 6.0 behind
        del junk
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            loss = tf.reduce_sum(ops.fused_attention(q, k, v, mask, 0.125))
        dq, dk, dv = tape.gradient(loss, [q, k, v])
        assert dq.shape == q.shape
        assert not np.any(dk.numpy()) and not np.any(dv.numpy())


@pytest.mark.parametrize("b,sq,sk,n", [(0, 5, 5, 2), (2, 5, 5, 0), (2, 0, 0, 2), (2, 5, 0, 2)])
def test_empty_dimensions(b, sq, sk, n):
    """Any dimension 0 but head_dim gives empty (or, with no keys, zero) outputs and
    gradients of the inputs' shapes, as the reference does; before, heads = 0 was an
    error where batch = 0 was not."""
    rng = np.random.default_rng(6)
    q = tf.constant(rng.normal(size=(b, sq, n, 8)), tf.float32)
    k, v = (tf.constant(rng.normal(size=(b, sk, n, 8)), tf.float32) for _ in range(2))
    mask = tf.ones((b, sk), tf.int32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([q, k, v])
        out = ops.fused_attention(q, k, v, mask, 0.3)
        ref = _reference(q, k, v, mask, 0.3)
        loss, ref_loss = tf.reduce_sum(out * 2.0), tf.reduce_sum(ref * 2.0)
    assert out.shape == q.shape
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
    for g, r, x in zip(tape.gradient(loss, [q, k, v]), tape.gradient(ref_loss, [q, k, v]),
                       [q, k, v], strict=True):
        assert g.shape == x.shape
        np.testing.assert_array_equal(g.numpy(), r.numpy())


def test_lse_and_its_gradient_match_reference():
    """return_lse: the log-sum-exp of the scaled scores over the kept keys, differentiable
    (before: its gradient was silently dropped), with and without dropout."""
    rng = np.random.default_rng(31)
    q, k, v, mask = _inputs(rng, 3, 9, 2, 16, tf.float64, full_mask_row=False)
    scale = float(np.float32(0.3))
    w_out = tf.constant(rng.normal(size=(3, 9, 2, 16)))
    w_lse = tf.constant(rng.normal(size=(3, 2, 9)), tf.float32)  # lse is float32
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([q, k, v])
        s = tf.einsum("bind,bjnd->bnij", q, k) * scale
        s = tf.where(tf.cast(mask[:, None, None, :], tf.bool), s, tf.constant(-np.inf, s.dtype))
        ref_lse = tf.cast(tf.reduce_logsumexp(s, axis=-1), tf.float32)
        ref_loss = tf.reduce_sum(_reference(q, k, v, mask, scale) * w_out) + tf.cast(
            tf.reduce_sum(ref_lse * w_lse), tf.float64)
        out, lse = ops.fused_attention(q, k, v, mask, scale, return_lse=True)
        loss = tf.reduce_sum(out * w_out) + tf.cast(tf.reduce_sum(lse * w_lse), tf.float64)
        lse_only = tf.reduce_sum(lse * w_lse)
        ref_lse_only = tf.reduce_sum(ref_lse * w_lse)
    assert _rel(lse, ref_lse) < 1e-6
    grads = tape.gradient(loss, [q, k, v]), tape.gradient(ref_loss, [q, k, v])
    for got, want in zip(*grads, strict=True):
        assert _rel(got, want) < 1e-5
    got = tape.gradient(lse_only, [q, k])
    want = tape.gradient(ref_lse_only, [q, k])
    assert np.abs(want[0]).max() > 0.1
    for g, w in zip(got, want, strict=True):
        assert _rel(g, w) < 1e-5
    # with dropout the lse (and its gradient) are those of the scores before dropout
    with tf.GradientTape() as tape:
        tape.watch(q)
        _, lse_d = ops.fused_attention(q, k, v, mask, scale, dropout_rate=0.3, seed=5,
                                       return_lse=True)
        d_loss = tf.reduce_sum(lse_d * w_lse)
    assert _rel(tape.gradient(d_loss, q), want[0]) < 1e-5
    # tf.Variable inputs: the same values and gradients
    qv, kv, vv = tf.Variable(q), tf.Variable(k), tf.Variable(v)
    with tf.GradientTape() as tape:
        out_v, lse_v = ops.fused_attention(qv, kv, vv, mask, scale, return_lse=True)
        loss_v = tf.reduce_sum(out_v * w_out) + tf.cast(tf.reduce_sum(lse_v * w_lse),
                                                        tf.float64)
    for got, want_g in zip(tape.gradient(loss_v, [qv, kv, vv]), grads[1], strict=True):
        assert _rel(got, want_g) < 1e-5


def test_mask_dtypes():
    """Any integer/bool mask means nonzero = keep (int64 2**32 is not cast to 0); a float
    mask must be 0/1 (0.5 keeps), and an additive bias (negative values) is an error, not
    silently the opposite mask."""
    rng = np.random.default_rng(4)
    q, k, v, _ = _inputs(rng, 2, 6, 2, 8, tf.float64)
    m = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], np.int32)
    want = ops.fused_attention(q, k, v, tf.constant(m), 0.5)
    assert np.abs(want.numpy() - ops.fused_attention(q, k, v, tf.ones_like(m), 0.5)).max() > 0.01
    for other in (tf.constant(m.astype(np.int64) * 2**32), tf.constant(m.astype(bool)),
                  tf.constant(m * 0.5, tf.float32), tf.constant(m, tf.float64)):
        np.testing.assert_array_equal(ops.fused_attention(q, k, v, other, 0.5), want)
    bias = tf.constant((1.0 - m) * -10000.0, tf.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not an additive bias"):
        ops.fused_attention(q, k, v, bias, 0.5)
    with pytest.raises(TypeError, match="input_mask must be"):
        ops.fused_attention(q, k, v, tf.constant(m.astype(str)), 0.5)


_OOM = """
import os, resource, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
from pybert import ops
x = tf.ones((1, 4, 1, 8))
ops.fused_attention(x, x, x, tf.ones((1, 4), tf.int32))
sk = 2**22  # head_dim 1: the kernels' scratch (16-float rows) is ~16x K's 16 MB
q, k, m = tf.ones((2, 1, 1, 1)), tf.ones((2, sk, 1, 1)), tf.ones((2, sk), tf.int32)
vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (300 << 20),) * 2)
try:
    ops.fused_attention(q, k, k, m, scale=1.0)
    print("no error")
except tf.errors.ResourceExhaustedError as e:
    print("ResourceExhausted:", e.message)
"""


def test_out_of_memory_is_an_error_not_a_crash():
    """Scratch buffers that cannot be allocated (here under an address-space limit) give
    ResourceExhaustedError; before, std::bad_alloc escaped the kernel and killed the
    process."""
    proc = subprocess.run([sys.executable, "-c", _OOM], capture_output=True, text=True,
                          timeout=300, cwd=tempfile.gettempdir())
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert "ResourceExhausted:" in proc.stdout and "out of memory" in proc.stdout, proc.stdout


_FIRST_USE_TRACED = """
import numpy as np, tensorflow as tf
from pybert import ops
q = tf.constant(np.random.default_rng(0).normal(size=(2, 8, 2, 16)).astype(np.float32))
m = tf.constant([[1] * 8, [1] * 5 + [0] * 3], tf.int32)
for name in ("first", "second"):
    @tf.function  # autograph converts ops' loader here: the op is first loaded in a trace
    def step(q):
        with tf.GradientTape() as tape:
            tape.watch(q)
            loss = tf.reduce_sum(ops.fused_attention(q, q, q, m) ** 2)
        return loss, tape.gradient(loss, q)
    loss, grad = step(q)
    print(name, float(loss), float(tf.reduce_sum(tf.abs(grad))))
"""


def test_op_first_loaded_inside_tf_function(tmp_path):
    """The op library loaded for the first time inside a tf.function, then used again:
    before, autograph's conversion of the loader lost the loaded library (the gradient
    failed on None, a second trace raised "the fused attention op is not available: None").
    A fresh process, so that the library is not loaded yet, and a script file: autograph
    converts only functions whose source it can read (not those of `python -c`)."""
    script = tmp_path / "first_use.py"
    script.write_text(_FIRST_USE_TRACED)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True,
                          text=True, timeout=300, cwd=tempfile.gettempdir())
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln.split() for ln in proc.stdout.splitlines() if ln.startswith(("first", "second"))]
    assert [ln[0] for ln in lines] == ["first", "second"]
    assert lines[0][1:] == lines[1][1:] and float(lines[0][2]) > 0


def test_encoder_with_fused_attention_equals_reference(minilm_dir, data_dir):
    import pybert
    from pybert.checkpoints import load_huggingface_encoder

    lines = (data_dir / "glue/MRPC/dev.tsv").read_text(encoding="utf-8").split("\n")[1:17]
    rows = [x.split("\t") for x in lines if x]
    tok = pybert.Tokenizer(minilm_dir / "vocab.txt")
    batch = tok.encode_batch([r[3] for r in rows], [r[4] for r in rows],
                             max_seq_length=128).model_inputs()
    assert batch["input_mask"].sum(1).min() < batch["input_mask"].shape[1]
    ref, _ = load_huggingface_encoder(minilm_dir, attention_impl="reference")
    fused, _ = load_huggingface_encoder(minilm_dir, attention_impl="fused")
    a, b = ref(batch), fused(batch)
    real = batch["input_mask"].astype(bool)
    np.testing.assert_allclose(b["sequence_output"].numpy()[real],
                               a["sequence_output"].numpy()[real], atol=2e-5, rtol=0)
    np.testing.assert_allclose(b["pooled_output"].numpy(), a["pooled_output"].numpy(), atol=2e-5)


def test_training_follows_the_reference_loss_curve(minilm_dir, data_dir):
    """A small BERT (2 layers, random init, dropout off) trained 200 steps on MRPC pairs
    with each attention implementation from the same weights: the same loss curve."""
    import keras

    import pybert
    from pybert.configs import BertConfig
    from pybert.modeling import BertClassifier, BertEncoder

    config = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=128,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    lines = (data_dir / "glue/MRPC/train.tsv").read_text(encoding="utf-8").split("\n")[1:257]
    rows = [x.split("\t") for x in lines if x]
    tok = pybert.Tokenizer(minilm_dir / "vocab.txt")
    x = tok.encode_batch([r[3] for r in rows], [r[4] for r in rows], max_seq_length=64)
    x = x.model_inputs()
    y = np.array([int(r[0]) for r in rows])

    def curve(impl, weights=None):
        keras.utils.set_random_seed(0)
        model = BertClassifier(config, 2, encoder=BertEncoder(config, attention_impl=impl))
        model.build()
        if weights is not None:
            for var, w in zip(model.weights, weights, strict=True):
                var.assign(w)
        opt = keras.optimizers.Adam(2e-4)
        sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function
        def step(xb, yb):
            with tf.GradientTape() as tape:
                loss = sce(yb, model(xb, training=True))
            grads = tape.gradient(loss, model.trainable_weights)
            opt.apply_gradients(zip(grads, model.trainable_weights, strict=True))
            return loss

        losses = []
        for i in range(200):
            sl = slice((i * 16) % 256, (i * 16) % 256 + 16)
            losses.append(float(step({k: v[sl] for k, v in x.items()}, y[sl])))
        return np.array(losses), [w.numpy() for w in model.weights]

    keras.utils.set_random_seed(0)
    init = BertClassifier(config, 2, encoder=BertEncoder(config))
    init.build()
    ref, _ = curve("reference", [w.numpy() for w in init.weights])
    fused, _ = curve("fused", [w.numpy() for w in init.weights])
    assert ref[-20:].mean() < ref[:20].mean()  # it learns
    print("max |fused - reference| loss per 50 steps:",
          [float(np.abs(fused - ref)[i:i + 50].max()) for i in range(0, 200, 50)])
    np.testing.assert_allclose(fused, ref, rtol=1e-3, atol=1e-4)


def test_fused_model_exports_to_onnx_multiheadattention(minilm_dir, tmp_path):
    """The encoder's own graph with the fused op, converted by tf2onnx with pybert's
    handler: one com.microsoft.MultiHeadAttention per layer, outputs equal to TF."""
    pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    import onnx

    import pybert
    from pybert.checkpoints import load_huggingface_encoder
    from pybert.export.onnx import INPUT_NAMES, convert_traced

    encoder, _ = load_huggingface_encoder(minilm_dir, attention_impl="fused")
    spec = [tf.TensorSpec([None, None], tf.int32, name=n) for n in INPUT_NAMES]

    @tf.function(input_signature=spec)
    def fn(input_word_ids, input_mask, input_type_ids):
        out = encoder({"input_word_ids": input_word_ids, "input_mask": input_mask,
                       "input_type_ids": input_type_ids}, training=False)
        return {"sequence_output": out["sequence_output"], "pooled_output": out["pooled_output"]}

    convert_traced(fn, tmp_path / "fused.onnx")
    kinds = [n.op_type for n in onnx.load(str(tmp_path / "fused.onnx")).graph.node]
    assert kinds.count("MultiHeadAttention") == 6 and "PybertFusedAttention" not in kinds
    tok = pybert.Tokenizer(minilm_dir / "vocab.txt")
    x = tok.encode_batch(["The cat sat on the mat.", "Short."],
                         ["A second sentence of the pair, longer.", "Tiny."]).model_inputs()
    sess = ort.InferenceSession(str(tmp_path / "fused.onnx"), providers=["CPUExecutionProvider"])
    seq, pooled = sess.run(["sequence_output", "pooled_output"], x)
    want = fn(*[tf.constant(x[k]) for k in INPUT_NAMES])
    real = x["input_mask"].astype(bool)
    assert x["input_mask"].sum(1).min() < x["input_mask"].shape[1]
    np.testing.assert_allclose(seq[real], want["sequence_output"].numpy()[real], atol=1e-4)
    np.testing.assert_allclose(pooled, want["pooled_output"].numpy(), atol=1e-4)
