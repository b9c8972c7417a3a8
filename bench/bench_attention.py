"""Attention on CPU: the PybertFusedAttention op vs the reference attention in TF ops,
the same reference compiled by XLA, and PyTorch's scaled_dot_product_attention.

Batch 32, 12 heads, head_dim 64, float32, seq 128 / 384 / 512, a padding mask
(rows of 50-100% length), all cores; forward, forward + backward, and forward +
backward with dropout 0.1 on the probabilities (as in training). The rows:

  reference TF ops: the encoder's attention_impl="reference" math (transpose to
      [B, N, S, H], matmul, scale, additive mask, softmax, matmul, transpose back)
      in a tf.function like the fused op, without XLA - the anchor;
  reference TF ops, XLA: the same tf.function with jit_compile=True (XLA fuses the
      scale, mask and softmax);
  PyTorch SDPA: torch.nn.functional.scaled_dot_product_attention on CPU with the same
      boolean padding mask (inputs and output in the op's [B, S, N, H] layout, so
      the transposes are included as in the reference; skipped without torch);
  pybert fused op.

Before timing, each row is checked against the fused op on the same q/k/v/mask
(once per shape): the forward output, and where the backward is timed, the
gradients (a random output gradient; the fused op's against the TF reference's
through tf.GradientTape, the XLA and PyTorch rows' against the fused op's). With
dropout the masks come from different random streams (Keras's Dropout, the op's
Philox stream, PyTorch's generator), so those rows are not compared. No query row
is fully padded here (every row keeps at least half its keys), and padded query
rows attend to the real keys in all four, so whole outputs are compared.

Peak memory: the growth of the process's peak RSS (sampled every 0.5 ms from
/proc/self/statm) over one call after a warm-up call, in a fresh subprocess per
case; it includes the outputs (and gradients). Also the whole BERT-Base encoder
forward (random weights, batch 32, seq 384) with each attention implementation.

  .venv/bin/pytest bench/bench_attention.py --benchmark-json=bench/results/attention.json
  .venv/bin/python bench/report.py bench/results/attention.json
"""

import json
import math
import subprocess
import sys
import tempfile

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from conftest import QUICK, need  # noqa: E402

from pybert import ops  # noqa: E402

if not ops.available():
    pytest.skip(f"op library not available: {ops.load_error()}", allow_module_level=True)

B, N, H = 32, 12, 64
SEQS = [128, 384] if QUICK else [128, 384, 512]


def _inputs(seq, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (tf.constant(rng.normal(size=(B, seq, N, H)).astype(np.float32)) for _ in range(3))
    lengths = rng.integers(seq // 2, seq + 1, size=B)
    mask = tf.constant((np.arange(seq)[None] < lengths[:, None]).astype(np.int32))
    return q, k, v, mask


def _reference(q, k, v, mask, dropout=None):
    qt, kt, vt = (tf.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))
    scores = tf.matmul(qt, kt, transpose_b=True) / math.sqrt(H)
    scores += (1.0 - tf.cast(mask[:, None, None, :], tf.float32)) * -10000.0
    probs = tf.nn.softmax(scores, -1)
    if dropout is not None:  # the encoder's attention_impl="reference": a Keras Dropout layer
        probs = dropout(probs, training=True)
    return tf.transpose(tf.matmul(probs, vt), (0, 2, 1, 3))


def _fused(q, k, v, mask, dropout=None):
    return ops.fused_attention(q, k, v, mask, 1.0 / math.sqrt(H),
                               dropout_rate=DROPOUT if dropout is not None else 0.0, seed=7)


REFERENCE, XLA, TORCH, FUSED = ("reference TF ops", "reference TF ops, XLA (jit_compile)",
                                "PyTorch SDPA (CPU)", "pybert fused op")
IMPLS = {REFERENCE: _reference, XLA: _reference, FUSED: _fused, TORCH: None}
DROPOUT = 0.1
# forward; forward + backward; forward + backward with dropout 0.1 on the
# probabilities, as in training (the reference draws its mask with Keras's
# Dropout, the fused op with its Philox stream, PyTorch with its generator)
MODES = ["forward", "forward+backward", f"forward+backward+dropout{DROPOUT}"]


def _functions(impl, dropout=False):
    import keras

    layer = keras.layers.Dropout(DROPOUT, seed=7) if dropout else None

    def fn(q, k, v, mask):
        return IMPLS[impl](q, k, v, mask, layer)

    jit = {"jit_compile": True} if impl == XLA else {}
    fwd = tf.function(fn, **jit)

    @tf.function(**jit)
    def fwd_bwd(q, k, v, mask, dout):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            out = fn(q, k, v, mask)
        return tape.gradient(out, [q, k, v], output_gradients=dout)

    return fwd, fwd_bwd


def _torch_call(mode, q, k, v, mask, dout):
    """PyTorch's SDPA on [B, S, N, H] tensors (transposed to its [B, N, S, H] and back, as
    the reference does) with the boolean padding mask (True = attend) over the keys."""
    import torch
    import torch.nn.functional as F

    def t(x, grad=False):
        return torch.from_numpy(x.numpy().copy()).requires_grad_(grad)

    backward = mode != "forward"
    tq, tk, tv = (t(x, backward) for x in (q, k, v))
    tmask = torch.from_numpy(mask.numpy() != 0)[:, None, None, :]  # [B, 1, 1, S_k]
    tdout = t(dout)
    p = DROPOUT if "dropout" in mode else 0.0

    def fwd():
        out = F.scaled_dot_product_attention(tq.transpose(1, 2), tk.transpose(1, 2),
                                             tv.transpose(1, 2), attn_mask=tmask,
                                             dropout_p=p, scale=1.0 / math.sqrt(H))
        return out.transpose(1, 2).contiguous()

    if not backward:
        def call():
            with torch.inference_mode():
                return fwd().numpy()
        return call
    return lambda: [g.numpy() for g in torch.autograd.grad(fwd(), (tq, tk, tv), tdout)]


def _call(impl, mode, q, k, v, mask, dout):
    """The timed work: the forward output, or the gradients for q, k, v, as numpy."""
    if impl == TORCH:
        return _torch_call(mode, q, k, v, mask, dout)
    fwd, fwd_bwd = _functions(impl, dropout="dropout" in mode)
    if mode == "forward":
        return lambda: fwd(q, k, v, mask).numpy()
    return lambda: [g.numpy() for g in fwd_bwd(q, k, v, mask, dout)]


_PEAK = r"""
import json, os, sys, threading, time
sys.path.insert(0, sys.argv[4])
import bench_attention as b
impl, seq, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
q, k, v, mask = b._inputs(seq)
run = b._call(impl, mode, q, k, v, mask, b.tf.ones_like(q))
run()  # trace and warm up; then measure a second call
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
base, peak, done = rss(), [0], [False]
def sample():
    while not done[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.0005)
t = threading.Thread(target=sample)
t.start()
run()
done[0] = True
t.join()
print(json.dumps({"peak_mb": max(peak[0] - base, 0) / 2**20}))
"""


def _peak_mb(impl, seq, mode):
    import os

    proc = subprocess.run([sys.executable, "-c", _PEAK, impl, str(seq), mode,
                           os.path.dirname(os.path.abspath(__file__))],
                          capture_output=True, text=True, timeout=600,
                          cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


# Tolerances of the checks against the fused op (float32; seeds fixed): the forward
# output, and the gradients for q, k, v under a random output gradient.
FWD_ATOL = 2e-5
GRAD_ATOL, GRAD_RTOL = 1e-4, 1e-4
_EXPECTED: dict = {}  # (impl, kind, seq) -> forward output or [dq, dk, dv], computed once


def _expected(impl, kind, seq):
    key = (impl, kind, seq)
    if key not in _EXPECTED:
        for other in [x for x in _EXPECTED if x[2] != seq]:  # bound the memory held
            del _EXPECTED[other]
        q, k, v, mask = _inputs(seq)
        dout = tf.constant(np.random.default_rng(seed=3).normal(size=tuple(q.shape))
                           .astype(np.float32))
        _EXPECTED[key] = _call(impl, kind, q, k, v, mask, dout)()
    return _EXPECTED[key]


def check_against_fused(impl, mode, seq):
    """Asserts that impl's forward output (mode "forward") or gradients ("forward+backward")
    match the fused op's on the same inputs; the fused op itself against the TF reference
    (its gradients through tf.GradientTape). Returns what was checked, for extra_info."""
    if "dropout" in mode:
        return "not checked (each implementation draws its own dropout mask)"
    base = REFERENCE if impl == FUSED else FUSED
    if impl == REFERENCE:
        return f"the {FUSED} row checks against this one"
    got, want = _expected(impl, mode, seq), _expected(base, mode, seq)
    if mode == "forward":
        np.testing.assert_allclose(got, want, atol=FWD_ATOL, rtol=0,
                                   err_msg=f"{impl} vs {base}: forward output, seq {seq}")
        return f"forward output vs {base} (atol {FWD_ATOL})"
    for name, g, w in zip(("dq", "dk", "dv"), got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=GRAD_ATOL, rtol=GRAD_RTOL,
                                   err_msg=f"{impl} vs {base}: {name}, seq {seq}")
    return f"dq, dk, dv vs {base} (atol {GRAD_ATOL}, rtol {GRAD_RTOL})"


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seq", SEQS)
def test_attention(benchmark, impl, mode, seq):
    threads = None
    if impl == TORCH:
        torch = need("torch", "no scaled_dot_product_attention row")
        threads = torch.get_num_threads()
    q, k, v, mask = _inputs(seq)
    call = _call(impl, mode, q, k, v, mask, tf.ones_like(q))
    checked = check_against_fused(impl, mode, seq)  # same numbers first
    benchmark.group = f"attention-cpu-{mode}-b{B}-n{N}-h{H}-seq{seq}"
    benchmark.extra_info.update(items=B, unit="sequences", name=impl,
                                anchor=impl == REFERENCE, checked=checked,
                                peak_rss_growth_mb=None if QUICK else _peak_mb(impl, seq, mode))
    if threads is not None:
        benchmark.extra_info["torch_threads"] = threads
    benchmark.pedantic(call, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.skipif(QUICK, reason="--quick")
@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_bert_base_encoder_forward(benchmark, impl):
    import keras

    from pybert.configs import BertConfig
    from pybert.modeling import BertEncoder

    config = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                        num_attention_heads=12, intermediate_size=3072)
    keras.utils.set_random_seed(0)
    encoder = BertEncoder(config, attention_impl=impl)
    encoder.build()
    seq = 384
    rng = np.random.default_rng(1)
    lengths = rng.integers(seq // 2, seq + 1, size=B)
    x = {"input_word_ids": tf.constant(rng.integers(1000, 30000, size=(B, seq)), tf.int32),
         "input_mask": tf.constant((np.arange(seq)[None] < lengths[:, None]).astype(np.int32)),
         "input_type_ids": tf.zeros((B, seq), tf.int32)}
    fn = tf.function(lambda x: encoder(x, training=False)["pooled_output"])
    benchmark.group = f"bert-base-encoder-forward-b{B}-seq{seq}"
    benchmark.extra_info.update(items=B, unit="sequences", name=f"attention_impl={impl}",
                                anchor=impl == "reference")
    benchmark.pedantic(lambda: fn(x).numpy(), rounds=2, iterations=1, warmup_rounds=1)
