"""Attention on CPU: the PybertFusedAttention op vs the reference attention in TF ops.

Batch 32, 12 heads, head_dim 64, float32, seq 128 / 384 / 512, a padding mask
(rows of 50-100% length), all cores; forward, forward + backward, and forward +
backward with dropout 0.1 on the probabilities (as in training). The
reference is the encoder's attention_impl="reference" math (transpose to
[B, N, S, H], matmul, scale, additive mask, softmax, matmul, transpose back), in
a tf.function like the fused op. Peak memory: the growth of the process's peak
RSS (sampled every 0.5 ms from /proc/self/statm) over one call after a warm-up
call, in a fresh subprocess per case; it includes the outputs (and gradients). Also the whole
BERT-Base encoder forward (random weights, batch 32, seq 384) with each
attention implementation.

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

from conftest import QUICK  # noqa: E402

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


IMPLS = {"reference TF ops": _reference, "pybert fused op": _fused}
DROPOUT = 0.1
# forward; forward + backward; forward + backward with dropout 0.1 on the
# probabilities, as in training (the reference draws its mask with Keras's
# Dropout, the fused op with its Philox stream)
MODES = ["forward", "forward+backward", f"forward+backward+dropout{DROPOUT}"]


def _functions(impl, dropout=False):
    import keras

    layer = keras.layers.Dropout(DROPOUT, seed=7) if dropout else None

    def fn(q, k, v, mask):
        return IMPLS[impl](q, k, v, mask, layer)

    fwd = tf.function(fn)

    @tf.function
    def fwd_bwd(q, k, v, mask, dout):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            out = fn(q, k, v, mask)
        return tape.gradient(out, [q, k, v], output_gradients=dout)

    return fwd, fwd_bwd


_PEAK = r"""
import json, os, sys, threading, time
sys.path.insert(0, sys.argv[4])
import bench_attention as b
impl, seq, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
q, k, v, mask = b._inputs(seq)
dout = b.tf.ones_like(q)
fwd, fwd_bwd = b._functions(impl, dropout="dropout" in mode)
run = (lambda: fwd(q, k, v, mask).numpy()) if mode == "forward" else \
    (lambda: [g.numpy() for g in fwd_bwd(q, k, v, mask, dout)])
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


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seq", SEQS)
def test_attention(benchmark, impl, mode, seq):
    q, k, v, mask = _inputs(seq)
    dout = tf.ones_like(q)
    fwd, fwd_bwd = _functions(impl, dropout="dropout" in mode)
    call = (lambda: fwd(q, k, v, mask).numpy()) if mode == "forward" else \
        (lambda: [g.numpy() for g in fwd_bwd(q, k, v, mask, dout)])
    if impl == "pybert fused op" and mode == "forward":  # same numbers first
        np.testing.assert_allclose(call(), _functions("reference TF ops")[0](q, k, v, mask)
                                   .numpy(), atol=2e-5)
    benchmark.group = f"attention-cpu-{mode}-b{B}-n{N}-h{H}-seq{seq}"
    benchmark.extra_info.update(items=B, unit="sequences", name=impl,
                                anchor=impl == "reference TF ops",
                                peak_rss_growth_mb=None if QUICK else _peak_mb(impl, seq, mode))
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
