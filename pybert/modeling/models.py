"""BERT task models on top of BertEncoder: pre-training, classification, SQuAD spans.

  BertPretrainer: masked-LM head (dense + GELU + LayerNorm, decoder tied to the
    word embeddings, output bias) at masked_lm_positions, and the
    next-sentence head on the pooled output.
  BertClassifier: dropout + dense on the pooled output (num_labels = 1: regression).
  Both take trim_padding=True to run each batch at its longest real row
  (trim_to_longest) and the encoder's dense layers on its real tokens only
  (BertEncoder pack_tokens); the span labeler's outputs are per position,
  padding included (the seed's SQuAD loss normalizes over them), so it does not.
  BertSpanLabeler: start/end logits per token (SQuAD).
Each takes the encoder's input dict (plus masked_lm_positions for the
pretrainer) and keeps the encoder as `.encoder`, so an init_checkpoint
restores an encoder into any head (tf.train.Checkpoint(encoder=...)).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from pybert.configs import BertConfig
from pybert.modeling.encoder import BertEncoder, get_activation


def _init(config: BertConfig):
    return keras.initializers.TruncatedNormal(stddev=config.initializer_range)


_SEQ_INPUTS = ("input_word_ids", "input_mask", "input_type_ids")


def trim_to_longest(inputs: dict) -> dict:
    """Cuts the [B, S] inputs to the batch's longest real row (sum of input_mask).

    Padding keys are masked out of every softmax, so the outputs at real
    positions, the pooled output and anything gathered at real positions (the
    masked-LM positions) are unchanged up to float rounding, and a batch of
    short rows costs what their length costs. Shapes become dynamic: for
    XLA-compiled steps leave it off.
    """
    longest = ops.maximum(ops.max(ops.sum(ops.cast(inputs["input_mask"], "int32"), axis=1)), 1)
    out = dict(inputs)
    for key in _SEQ_INPUTS:
        out[key] = inputs[key][:, :longest]
    return out


class BertPretrainer(keras.Model):
    """Returns {"masked_lm_logits": [B, P, V] float32, "next_sentence_logits": [B, 2] float32}."""

    def __init__(self, config: BertConfig, encoder: BertEncoder | None = None,
                 trim_padding: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.trim_padding = trim_padding
        self.encoder = encoder or BertEncoder(config, name="bert_encoder")
        self.lm_dense = layers.Dense(
            config.hidden_size, kernel_initializer=_init(config), name="lm_transform"
        )
        self.lm_layer_norm = layers.LayerNormalization(
            epsilon=config.layer_norm_eps, dtype="float32", name="lm_layer_norm"
        )
        self.nsp = layers.Dense(2, kernel_initializer=_init(config), name="next_sentence")
        self.activation = get_activation(config.hidden_act)

    def build(self, input_shape=None):
        d = self.config.hidden_size
        if not self.encoder.built:
            self.encoder.build()
        self.lm_dense.build((None, None, d))
        self.lm_layer_norm.build((None, None, d))
        self.lm_bias = self.add_weight(
            name="lm_output_bias", shape=(self.config.vocab_size,), initializer="zeros"
        )
        self.nsp.build((None, d))
        self.built = True

    def call(self, inputs, training=False):
        if self.trim_padding:
            inputs = trim_to_longest(inputs)
        out = self.encoder(inputs, training=training, pack_tokens=self.trim_padding)
        positions = ops.cast(inputs["masked_lm_positions"], "int32")  # [B, P]
        seq = out["sequence_output"]  # [B, S, D]
        picked = ops.take_along_axis(seq, positions[:, :, None], axis=1)  # [B, P, D]
        x = self.activation(self.lm_dense(picked))
        x = self.lm_layer_norm(ops.cast(x, "float32"))
        table = ops.cast(self.encoder.embeddings.word_embeddings, "float32")  # [V, D], tied
        logits = ops.matmul(x, ops.transpose(table)) + ops.cast(self.lm_bias, "float32")
        return {
            "masked_lm_logits": logits,
            "next_sentence_logits": ops.cast(self.nsp(out["pooled_output"]), "float32"),
        }


class BertClassifier(keras.Model):
    """Returns logits [B, num_labels] float32 (num_labels = 1 for regression such as STS-B)."""

    def __init__(
        self,
        config: BertConfig,
        num_labels: int,
        encoder: BertEncoder | None = None,
        dropout_rate: float | None = None,
        trim_padding: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.config = config
        self.num_labels = num_labels
        self.trim_padding = trim_padding
        self.encoder = encoder or BertEncoder(config, name="bert_encoder")
        rate = config.hidden_dropout_prob if dropout_rate is None else dropout_rate
        self.dropout = layers.Dropout(rate)
        self.classifier = layers.Dense(
            num_labels, kernel_initializer=_init(config), name="classifier"
        )

    def build(self, input_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        self.classifier.build((None, self.config.hidden_size))
        self.built = True

    def call(self, inputs, training=False):
        if self.trim_padding:
            inputs = trim_to_longest(inputs)
        # a frozen encoder runs in inference mode (no dropout), as a frozen hub.KerasLayer
        pooled = self.encoder(inputs, training=training and self.encoder.trainable,
                              pack_tokens=self.trim_padding)["pooled_output"]
        return ops.cast(self.classifier(self.dropout(pooled, training=training)), "float32")


class BertSpanLabeler(keras.Model):
    """Returns {"start_logits": [B, S], "end_logits": [B, S]} float32."""

    def __init__(self, config: BertConfig, encoder: BertEncoder | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.encoder = encoder or BertEncoder(config, name="bert_encoder")
        self.span = layers.Dense(2, kernel_initializer=_init(config), name="span_logits")

    def build(self, input_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        self.span.build((None, None, self.config.hidden_size))
        self.built = True

    def call(self, inputs, training=False):
        seq = self.encoder(inputs, training=training and self.encoder.trainable)[
            "sequence_output"]
        logits = ops.cast(self.span(seq), "float32")  # [B, S, 2]
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}
