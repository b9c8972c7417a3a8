"""Training-step speed of a MiniLM-shaped classifier (6 layers, hidden 384, 12
heads of 32) in four configurations, in one run: attention "reference" (TF
ops) or "fused" (the PybertFusedAttention op's CPU kernels), each with the
batch trimmed to its longest row (run_classifier's --trim_padding before token
packing; the anchor is reference + trimmed) or trimmed and packed (the
encoder's pack_tokens: dense layers on the real tokens only; what
run_classifier does now). Batch 32, seq 128 with MRPC-like lengths (30-99 real
tokens), dropout on, Keras AdamW, random weights. After 3 warm-up steps each,
the four take turns for 4 rounds of 5 steps; prints each one's best round
(seconds per step, examples/s) and its speed-up over the anchor.

  .venv/bin/python bench/train_step_attention.py
"""

import json
import time

import keras
import numpy as np
import tensorflow as tf

from pybert.configs import BertConfig
from pybert.modeling.encoder import BertEncoder
from pybert.modeling.models import BertClassifier, trim_to_longest

BATCH, SEQ, ROUNDS, STEPS = 32, 128, 4, 5


def _train_step(config, impl, pack):
    model = BertClassifier(
        config, 2, encoder=BertEncoder(config, attention_impl=impl, name="bert_encoder")
    )
    model.build()
    opt = keras.optimizers.AdamW(1e-5)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            pooled = model.encoder(trim_to_longest(x), training=True, pack_tokens=pack)
            logits = model.classifier(model.dropout(pooled["pooled_output"], training=True))
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return step


def main() -> None:
    config = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    rng = np.random.default_rng(0)
    lengths = rng.integers(30, 100, size=BATCH)
    mask = (np.arange(SEQ)[None] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(1000, 30000, size=(BATCH, SEQ)).astype(np.int32) * mask
    x = {
        "input_word_ids": tf.constant(ids),
        "input_mask": tf.constant(mask),
        "input_type_ids": tf.zeros((BATCH, SEQ), tf.int32),
    }
    y = tf.constant(rng.integers(0, 2, size=BATCH))
    steps = {
        f"{impl}, {'packed' if pack else 'trimmed'}": _train_step(config, impl, pack)
        for impl in ("reference", "fused")
        for pack in (False, True)
    }
    for step in steps.values():
        for _ in range(3):
            step(x, y)
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(ROUNDS):
        for impl, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(STEPS):
                step(x, y).numpy()
            best[impl] = min(best[impl], (time.perf_counter() - t0) / STEPS)
    result = {
        impl: {"s_per_step": round(t, 4), "examples_per_s": round(BATCH / t, 2)}
        for impl, t in best.items()
    }
    for name, t in best.items():
        result[name]["speedup_vs_reference_trimmed"] = round(best["reference, trimmed"] / t, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
