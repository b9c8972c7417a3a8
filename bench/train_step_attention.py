"""Training-step speed of a MiniLM-shaped classifier (6 layers, hidden 384, 12
heads of 32) with attention_impl="reference" vs "fused" (the PybertFusedAttention
op's CPU kernels), on CPU: batch 32, seq 128 with MRPC-like lengths (30-99 real
tokens, padded), dropout on, Keras AdamW, random weights. Prints seconds per step
(best of 3 rounds of 5 steps after 3 warm-up steps) for the implementation named.

  .venv/bin/python bench/train_step_attention.py reference
  .venv/bin/python bench/train_step_attention.py fused
"""

import json
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from pybert.configs import BertConfig
from pybert.modeling.encoder import BertEncoder
from pybert.modeling.models import BertClassifier


def main(impl: str) -> None:
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    model = BertClassifier(
        cfg, 2, encoder=BertEncoder(cfg, attention_impl=impl, name="bert_encoder")
    )
    model.build()
    opt = keras.optimizers.AdamW(1e-5)
    rng = np.random.default_rng(0)
    b, s = 32, 128
    lengths = rng.integers(30, 100, size=b)
    mask = (np.arange(s)[None] < lengths[:, None]).astype(np.int32)
    x = {
        "input_word_ids": tf.constant(
            rng.integers(1000, 30000, size=(b, s)).astype(np.int32) * mask
        ),
        "input_mask": tf.constant(mask),
        "input_type_ids": tf.zeros((b, s), tf.int32),
    }
    y = tf.constant(rng.integers(0, 2, size=b))

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    for _ in range(3):
        step(x, y)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(5):
            step(x, y).numpy()
        best = min(best, (time.perf_counter() - t0) / 5)
    print(
        json.dumps(
            {"impl": impl, "s_per_step": round(best, 4), "examples_per_s": round(b / best, 2)}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reference")
