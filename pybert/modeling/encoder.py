"""The BERT encoder in Keras 3: embeddings, transformer layers, pooler.

Inputs are the seed's dict of int32 [B, S] tensors: input_word_ids,
input_mask (1 = real token) and input_type_ids. Outputs: sequence_output
[B, S, D], pooled_output [B, D] and, with output_all_layers, encoder_outputs
(one [B, S, D] per layer). Legend: B batch, S sequence, D hidden size,
N heads, H head size (D = N * H).

Attention (attention_impl): "reference" is plain ops (works under XLA and mixed
precision; softmax, LayerNorm and the mask arithmetic run in float32 whatever
the compute dtype); "fused" is the PybertFusedAttention op (pybert.ops, CPU
kernels, not XLA-compilable); "auto" (the default) is decided when the layer is
traced: fused when the op library loaded, no GPU is visible to TensorFlow (the
op's GPU kernels are checked by their own harness, not yet inside TensorFlow),
the function being traced is not XLA-compiled and no `portable_attention()`
block is open (SavedModel exports use it, so they never need the op library);
otherwise the reference. Both have the same variables (checkpoints and dropout
seed generators), so a model trained with one runs with the other.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading

import keras
from keras import layers, ops

from pybert.configs import BertConfig


def gelu_tanh(x):
    """The tanh approximation of GELU (Google's BERT "gelu")."""
    return 0.5 * x * (1.0 + ops.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * ops.power(x, 3))))


def gelu_exact(x):
    """GELU with the Gaussian CDF through erf (HuggingFace's "gelu")."""
    return 0.5 * x * (1.0 + ops.erf(x / math.sqrt(2.0)))


def get_activation(name: str):
    table = {
        "gelu": gelu_tanh,
        "gelu_tanh": gelu_tanh,
        "gelu_exact": gelu_exact,
        "relu": ops.relu,
        "tanh": ops.tanh,
        "swish": ops.silu,
        "silu": ops.silu,
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}")
    return table[name]


_PORTABLE = threading.local()


@contextlib.contextmanager
def portable_attention():
    """Within this block attention_impl="auto" traces the reference attention (plain
    TensorFlow ops): for graphs saved to run where pybert's op library is absent."""
    depth = getattr(_PORTABLE, "depth", 0)
    _PORTABLE.depth = depth + 1
    try:
        yield
    finally:
        _PORTABLE.depth = depth


@functools.cache
def _fused_op_usable() -> bool:
    from pybert import ops as pybert_ops

    if not pybert_ops.available():
        return False
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


def _in_xla_context() -> bool:
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    if tf.executing_eagerly():
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def resolve_attention_impl(impl: str) -> str:
    """What attention_impl `impl` runs as in the function being traced now."""
    if impl != "auto":
        return impl
    if getattr(_PORTABLE, "depth", 0) or not _fused_op_usable() or _in_xla_context():
        return "reference"
    return "fused"


def _init(config: BertConfig):
    return keras.initializers.TruncatedNormal(stddev=config.initializer_range)


class TokenPacking:
    """The real tokens (mask != 0) of a [B, S] batch, packed row-major into [T, ...].

    unpad: [B, S, ...] -> [T, ...]; pad: [T, ...] -> [B, S, ...] with zeros at the
    masked positions. Gathers and scatters (each the other's gradient), TensorFlow only.
    """

    def __init__(self, mask):
        import tensorflow as tf

        self._tf = tf
        shape = tf.shape(mask)
        self.batch, self.seq = shape[0], shape[1]
        flat = tf.reshape(mask, [-1])
        self.indices = tf.where(tf.not_equal(flat, 0))  # [T, 1] int64, row-major
        self.positions = tf.cast(self.indices[:, 0] % tf.cast(self.seq, tf.int64), tf.int32)

    def unpad(self, t):
        tf = self._tf
        flat = tf.reshape(t, tf.concat([[self.batch * self.seq], tf.shape(t)[2:]], 0))
        return tf.gather_nd(flat, self.indices)

    def pad(self, t):
        tf = self._tf
        rest = tf.shape(t)[1:]
        flat = tf.scatter_nd(self.indices, t,
                             tf.concat([[tf.cast(self.batch * self.seq, tf.int64)],
                                        tf.cast(rest, tf.int64)], 0))
        return tf.reshape(flat, tf.concat([[self.batch, self.seq], rest], 0))


class BertEmbeddings(layers.Layer):
    """Word + position + token type embeddings, LayerNorm, dropout."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.layer_norm = layers.LayerNormalization(
            epsilon=config.layer_norm_eps, dtype="float32", name="layer_norm"
        )
        self.dropout = layers.Dropout(config.hidden_dropout_prob)

    def build(self, input_shape=None):
        c = self.config
        self.word_embeddings = self.add_weight(
            name="word_embeddings", shape=(c.vocab_size, c.hidden_size), initializer=_init(c)
        )
        self.position_embeddings = self.add_weight(
            name="position_embeddings",
            shape=(c.max_position_embeddings, c.hidden_size),
            initializer=_init(c),
        )
        self.type_embeddings = self.add_weight(
            name="type_embeddings", shape=(c.type_vocab_size, c.hidden_size), initializer=_init(c)
        )
        self.layer_norm.build((None, None, c.hidden_size))

    def call(self, word_ids, type_ids, training=False, positions=None):
        x = ops.take(self.word_embeddings, word_ids, axis=0)  # [B, S, D] (or [T, D] packed)
        x = x + ops.take(self.type_embeddings, type_ids, axis=0)
        if positions is None:
            seq_len = ops.shape(word_ids)[1]
            x = x + ops.expand_dims(self.position_embeddings[:seq_len], 0)
        else:  # packed tokens: each one's position in its row
            x = x + ops.take(self.position_embeddings, positions, axis=0)
        x = self.layer_norm(ops.cast(x, "float32"))
        return self.dropout(ops.cast(x, self.compute_dtype), training=training)


class SelfAttention(layers.Layer):
    """Multi-head self-attention with a padding mask, then output dense + residual + LayerNorm.

    impl "reference": plain ops; "fused": the PybertFusedAttention op (pybert.ops) on
    [B, S, N, H] directly, float32 (its own Philox dropout, seeded per call from the
    attention-dropout layer's Keras SeedGenerator, so a resumed run continues the same
    stream); "auto": one of them, decided per trace (resolve_attention_impl).
    """

    def __init__(self, config: BertConfig, impl: str = "reference", **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.impl = impl
        d = config.hidden_size
        # One initializer per weight: an unseeded Keras 3 initializer object returns
        # the same values on every call, so sharing one would make Q, K, V and the
        # output projection start identical.
        self.query = layers.Dense(d, kernel_initializer=_init(config), name="query")
        self.key = layers.Dense(d, kernel_initializer=_init(config), name="key")
        self.value = layers.Dense(d, kernel_initializer=_init(config), name="value")
        self.output_dense = layers.Dense(d, kernel_initializer=_init(config), name="output")
        self.attention_dropout = layers.Dropout(config.attention_probs_dropout_prob)
        self.dropout = layers.Dropout(config.hidden_dropout_prob)
        self.layer_norm = layers.LayerNormalization(
            epsilon=config.layer_norm_eps, dtype="float32", name="layer_norm"
        )

    def build(self, input_shape):
        d = self.config.hidden_size
        for dense in (self.query, self.key, self.value, self.output_dense):
            dense.build((None, None, d))
        self.layer_norm.build((None, None, d))

    def call(self, x, mask, training=False, packing=None):
        c = self.config
        n, h = c.num_attention_heads, c.head_size
        # packing (TokenPacking): x is [T, D], the batch's real tokens only; the dense
        # layers run on those, attention on the [B, S] layout they are scattered into.
        pad = packing.pad if packing is not None else (lambda t: t)
        unpad = packing.unpad if packing is not None else (lambda t: t)

        def heads(t):  # [B, S, D] -> [B, N, S, H]
            t = ops.reshape(t, (ops.shape(t)[0], ops.shape(t)[1], n, h))
            return ops.transpose(t, (0, 2, 1, 3))

        impl = resolve_attention_impl(self.impl)
        if impl == "fused":
            if self.impl == "fused" and _in_xla_context():
                raise ValueError(
                    "attention_impl='fused' cannot be XLA-compiled (jit_compile / "
                    "--enable_xla); use attention_impl='auto' or 'reference'"
                )
            context = unpad(self._fused(pad(self.query(x)), pad(self.key(x)), pad(self.value(x)),
                                        mask, training))
            out = self.dropout(self.output_dense(context), training=training)
            return ops.cast(
                self.layer_norm(ops.cast(out, "float32") + ops.cast(x, "float32")),
                self.compute_dtype,
            )
        q, k, v = heads(pad(self.query(x))), heads(pad(self.key(x))), heads(pad(self.value(x)))
        scores = ops.matmul(
            ops.cast(q, "float32"), ops.transpose(ops.cast(k, "float32"), (0, 1, 3, 2))
        )  # [B, N, S, S]
        scores = scores / math.sqrt(h)
        # mask [B, S] (1 = keep) -> additive bias [B, 1, 1, S]
        bias = (1.0 - ops.cast(mask, "float32")[:, None, None, :]) * -10000.0
        probs = ops.softmax(scores + bias, axis=-1)
        probs = self.attention_dropout(probs, training=training)
        context = ops.matmul(ops.cast(probs, self.compute_dtype), v)  # [B, N, S, H]
        b, s = ops.shape(q)[0], ops.shape(q)[2]
        context = unpad(
            ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (b, s, c.hidden_size))
        )  # [B, S, D] (or [T, D] packed)
        out = self.dropout(self.output_dense(context), training=training)
        return ops.cast(
            self.layer_norm(ops.cast(out, "float32") + ops.cast(x, "float32")), self.compute_dtype
        )

    def _fused(self, q, k, v, mask, training):
        from pybert import ops as pybert_ops

        c = self.config
        b, s = ops.shape(q)[0], ops.shape(q)[1]

        def split(t):  # [B, S, D] -> [B, S, N, H] float32, no transpose
            return ops.cast(ops.reshape(t, (b, s, c.num_attention_heads, c.head_size)), "float32")

        rate = c.attention_probs_dropout_prob if training else 0.0
        seed = 0
        if rate > 0:
            # the dropout layer's own generator: the same variables as the reference path
            seed = keras.random.randint(
                (), 0, 2**31 - 1, seed=self.attention_dropout.seed_generator, dtype="int32"
            )
        context = pybert_ops.fused_attention(
            split(q), split(k), split(v), mask,
            scale=1.0 / math.sqrt(c.head_size), dropout_rate=rate, seed=seed)
        return ops.cast(ops.reshape(context, (b, s, c.hidden_size)), self.compute_dtype)


class TransformerLayer(layers.Layer):
    """Self-attention block, then feed-forward (GELU) + residual + LayerNorm."""

    def __init__(self, config: BertConfig, attention_impl: str = "reference", **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.attention = SelfAttention(config, impl=attention_impl, name="attention")
        self.intermediate = layers.Dense(
            config.intermediate_size, kernel_initializer=_init(config), name="intermediate"
        )
        self.output_dense = layers.Dense(
            config.hidden_size, kernel_initializer=_init(config), name="output"
        )
        self.dropout = layers.Dropout(config.hidden_dropout_prob)
        self.layer_norm = layers.LayerNormalization(
            epsilon=config.layer_norm_eps, dtype="float32", name="layer_norm"
        )
        self.activation = get_activation(config.hidden_act)

    def build(self, input_shape):
        d = self.config.hidden_size
        self.attention.build(input_shape)
        self.intermediate.build((None, None, d))
        self.output_dense.build((None, None, self.config.intermediate_size))
        self.layer_norm.build((None, None, d))

    def call(self, x, mask, training=False, packing=None):
        x = self.attention(x, mask, training=training, packing=packing)
        y = self.output_dense(self.activation(self.intermediate(x)))
        y = self.dropout(y, training=training)
        return ops.cast(
            self.layer_norm(ops.cast(y, "float32") + ops.cast(x, "float32")), self.compute_dtype
        )


class BertEncoder(keras.Model):
    """BERT encoder. Example:

    encoder = BertEncoder(BertConfig.from_json_file("bert_config.json"))
    out = encoder({"input_word_ids": ids, "input_mask": mask, "input_type_ids": types})
    out["sequence_output"], out["pooled_output"]
    """

    def __init__(
        self,
        config: BertConfig,
        output_all_layers: bool = False,
        attention_impl: str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        # "reference": plain ops (XLA, mixed precision); "fused": the PybertFusedAttention
        # op (pybert.ops; not XLA-compilable); "auto": fused where it can run, decided
        # per trace (resolve_attention_impl; module docstring).
        if attention_impl not in ("auto", "reference", "fused"):
            raise ValueError(
                f"attention_impl must be 'auto', 'reference' or 'fused', got {attention_impl!r}"
            )
        if attention_impl == "fused":
            from pybert import ops as pybert_ops

            if not pybert_ops.available():
                raise ValueError(
                    "attention_impl='fused': the op library is not available: "
                    f"{pybert_ops.load_error()}"
                )
        self.attention_impl = attention_impl
        self.config = config
        self.output_all_layers = output_all_layers
        self.embeddings = BertEmbeddings(config, name="embeddings")
        # One attribute per layer: tf.train.Checkpoint does not see into the
        # lists Keras 3 tracks, so a list attribute would leave them unsaved.
        for i in range(config.num_hidden_layers):
            setattr(
                self,
                f"transformer_layer_{i}",
                TransformerLayer(
                    config, attention_impl=self.attention_impl, name=f"transformer_layer_{i}"
                ),
            )
        self.pooler = layers.Dense(
            config.hidden_size, activation="tanh", kernel_initializer=_init(config), name="pooler"
        )

    @property
    def transformer_layers(self) -> list:
        return [
            getattr(self, f"transformer_layer_{i}") for i in range(self.config.num_hidden_layers)
        ]

    def build(self, input_shape=None):
        if self.built:
            return
        d = self.config.hidden_size
        self.embeddings.build()
        for layer in self.transformer_layers:
            layer.build((None, None, d))
        self.pooler.build((None, d))
        self.built = True

    def call(self, inputs, training=False, pack_tokens=False):
        """pack_tokens=True: embeddings, dense layers, LayerNorms and dropout run on the
        real tokens only (input_mask != 0), packed into [T, D]; attention scatters them
        back into [B, S]. The outputs at real positions and the pooled output are those
        of the padded computation up to float rounding; sequence_output (and
        encoder_outputs) are zero at padded positions. For heads that read real
        positions only (classification, masked LM); not under XLA (dynamic shapes),
        where it is ignored."""
        word_ids = ops.cast(inputs["input_word_ids"], "int32")
        mask = ops.cast(inputs["input_mask"], "int32")
        type_ids = ops.cast(inputs["input_type_ids"], "int32")
        packing = TokenPacking(mask) if pack_tokens and not _in_xla_context() else None
        if packing is None:
            x = self.embeddings(word_ids, type_ids, training=training)
        else:
            x = self.embeddings(packing.unpad(word_ids), packing.unpad(type_ids),
                                training=training, positions=packing.positions)
        all_layers = []
        for layer in self.transformer_layers:
            x = layer(x, mask, training=training, packing=packing)
            all_layers.append(x)
        if packing is not None:
            x = packing.pad(x)
            all_layers = [packing.pad(t) for t in all_layers]
        pooled = self.pooler(x[:, 0])
        out = {"sequence_output": x, "pooled_output": pooled}
        if self.output_all_layers:
            out["encoder_outputs"] = all_layers
        return out
