"""google-research/bert TF1 checkpoints -> pybert BertEncoder weights.

Variables are read by name (tf.train.load_checkpoint): bert/embeddings/...,
bert/encoder/layer_N/attention/self/query/kernel, ..., bert/pooler/dense/...
TF1 dense kernels are already [in, out]. Optimizer slots (adam_m, adam_v),
global_step and the pre-training heads (cls/...) are skipped; anything else
left over, missing or of the wrong shape is an error that lists it.
"""

from __future__ import annotations

import numpy as np

from pybert.checkpoints.huggingface import check_fit
from pybert.configs import BertConfig


def _names(config: BertConfig):
    """(TF1 name, pybert weight path) for every encoder weight."""
    names = [
        ("bert/embeddings/word_embeddings", "embeddings/word_embeddings"),
        ("bert/embeddings/position_embeddings", "embeddings/position_embeddings"),
        ("bert/embeddings/token_type_embeddings", "embeddings/type_embeddings"),
        ("bert/embeddings/LayerNorm/gamma", "embeddings/layer_norm/gamma"),
        ("bert/embeddings/LayerNorm/beta", "embeddings/layer_norm/beta"),
    ]
    for i in range(config.num_hidden_layers):
        tf1, ours = f"bert/encoder/layer_{i}/", f"transformer_layer_{i}/"
        for part in ("query", "key", "value"):
            for kind in ("kernel", "bias"):
                names.append(
                    (f"{tf1}attention/self/{part}/{kind}", f"{ours}attention/{part}/{kind}")
                )
        for kind in ("kernel", "bias"):
            names += [
                (f"{tf1}attention/output/dense/{kind}", f"{ours}attention/output/{kind}"),
                (f"{tf1}intermediate/dense/{kind}", f"{ours}intermediate/{kind}"),
                (f"{tf1}output/dense/{kind}", f"{ours}output/{kind}"),
            ]
        for kind in ("gamma", "beta"):
            names += [
                (f"{tf1}attention/output/LayerNorm/{kind}", f"{ours}attention/layer_norm/{kind}"),
                (f"{tf1}output/LayerNorm/{kind}", f"{ours}layer_norm/{kind}"),
            ]
    names += [
        ("bert/pooler/dense/kernel", "pooler/kernel"),
        ("bert/pooler/dense/bias", "pooler/bias"),
    ]
    return names


def _skipped(name: str) -> bool:
    return name == "global_step" or name.endswith(("/adam_m", "/adam_v")) or name.startswith("cls/")


def encoder_weights_from_tf1(checkpoint: str, config: BertConfig) -> dict[str, np.ndarray]:
    """Reads a TF1 BERT checkpoint (prefix, e.g. .../bert_model.ckpt)."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(checkpoint))
    except (tf.errors.NotFoundError, ValueError) as e:
        raise FileNotFoundError(f"cannot read TF1 checkpoint {checkpoint}: {e}") from None
    shapes = reader.get_variable_to_shape_map()
    expected = _names(config)
    missing = [tf1 for tf1, _ in expected if tf1 not in shapes]
    used = {tf1 for tf1, _ in expected}
    unexpected = sorted(n for n in shapes if n not in used and not _skipped(n))
    check_fit(checkpoint, config, missing, unexpected)
    return {ours: reader.get_tensor(tf1).astype(np.float32) for tf1, ours in expected}


def load_tf1_encoder(checkpoint: str, config: BertConfig, **encoder_kwargs):
    """BertEncoder with the weights of a google-research TF1 checkpoint."""
    from pybert.checkpoints.huggingface import assign_encoder_weights
    from pybert.modeling import BertEncoder

    weights = encoder_weights_from_tf1(checkpoint, config)
    encoder = BertEncoder(config, **encoder_kwargs)
    encoder.build()
    assign_encoder_weights(encoder, weights)  # checks every shape, names the variable
    return encoder


def load_tf1_pretrainer(checkpoint: str, config: BertConfig):
    """BertPretrainer with the encoder and the cls/predictions, cls/seq_relationship
    heads of a google-research TF1 pre-training checkpoint."""
    import tensorflow as tf

    from pybert.checkpoints.huggingface import _assign_pretrainer_heads
    from pybert.modeling import BertPretrainer

    encoder = load_tf1_encoder(checkpoint, config)
    reader = tf.train.load_checkpoint(str(checkpoint))
    names = {
        "lm_transform/kernel": ("cls/predictions/transform/dense/kernel", False),
        "lm_transform/bias": ("cls/predictions/transform/dense/bias", False),
        "lm_layer_norm/gamma": ("cls/predictions/transform/LayerNorm/gamma", False),
        "lm_layer_norm/beta": ("cls/predictions/transform/LayerNorm/beta", False),
        "lm_output_bias": ("cls/predictions/output_bias", False),
        # output_weights are [2, D] in TF1 (a matmul with transpose_b)
        "next_sentence/kernel": ("cls/seq_relationship/output_weights", True),
        "next_sentence/bias": ("cls/seq_relationship/output_bias", False),
    }
    available = reader.get_variable_to_shape_map()
    heads = {}
    for ours, (name, transpose) in names.items():
        if name in available:
            value = reader.get_tensor(name).astype(np.float32)
            heads[ours] = value.T if transpose else value
    pretrainer = BertPretrainer(config, encoder=encoder)
    pretrainer.build()
    _assign_pretrainer_heads(pretrainer, heads, str(checkpoint))
    return pretrainer
