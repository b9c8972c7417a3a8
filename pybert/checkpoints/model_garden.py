"""The seed's TF2 checkpoints (Model Garden networks.BertEncoder, written with
tf.train.Checkpoint(encoder=...) or (model=...)) -> pybert BertEncoder weights.

The seed's encoder is a functional Keras model, so its checkpoint keys are
positional: <root>/layer_with_weights-K/... with K = 0 word, 1 position, 2 type
embeddings, 3 embedding LayerNorm, 4 .. 4+L-1 the transformer layers, 4+L the
pooler. Attention kernels are EinsumDense: query/key/value [D, N, H] (bias
[N, H]) and output [N, H, D]; they are reshaped to dense [D, D] / [D].
"""

from __future__ import annotations

import numpy as np

from pybert.checkpoints.huggingface import CheckpointMismatchError, check_fit
from pybert.configs import BertConfig

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def _names(config: BertConfig, root: str):
    """(checkpoint key, pybert weight path, target shape) for every encoder weight."""
    d, inter, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    w = lambda k, rest: f"{root}layer_with_weights-{k}/{rest}{_SUFFIX}"  # noqa: E731
    names = [
        (w(0, "embeddings"), "embeddings/word_embeddings", (config.vocab_size, d)),
        (w(1, "embeddings"), "embeddings/position_embeddings", (config.max_position_embeddings, d)),
        (w(2, "embeddings"), "embeddings/type_embeddings", (config.type_vocab_size, d)),
        (w(3, "gamma"), "embeddings/layer_norm/gamma", (d,)),
        (w(3, "beta"), "embeddings/layer_norm/beta", (d,)),
    ]
    for i in range(L):
        k, ours = 4 + i, f"transformer_layer_{i}/"
        for part in ("query", "key", "value"):
            names.append(
                (
                    w(k, f"_attention_layer/_{part}_dense/kernel"),
                    f"{ours}attention/{part}/kernel",
                    (d, d),
                )
            )
            names.append(
                (w(k, f"_attention_layer/_{part}_dense/bias"), f"{ours}attention/{part}/bias", (d,))
            )
        names += [
            (
                w(k, "_attention_layer/_output_dense/kernel"),
                f"{ours}attention/output/kernel",
                (d, d),
            ),
            (w(k, "_attention_layer/_output_dense/bias"), f"{ours}attention/output/bias", (d,)),
            (w(k, "_attention_layer_norm/gamma"), f"{ours}attention/layer_norm/gamma", (d,)),
            (w(k, "_attention_layer_norm/beta"), f"{ours}attention/layer_norm/beta", (d,)),
            (w(k, "_intermediate_dense/kernel"), f"{ours}intermediate/kernel", (d, inter)),
            (w(k, "_intermediate_dense/bias"), f"{ours}intermediate/bias", (inter,)),
            (w(k, "_output_dense/kernel"), f"{ours}output/kernel", (inter, d)),
            (w(k, "_output_dense/bias"), f"{ours}output/bias", (d,)),
            (w(k, "_output_layer_norm/gamma"), f"{ours}layer_norm/gamma", (d,)),
            (w(k, "_output_layer_norm/beta"), f"{ours}layer_norm/beta", (d,)),
        ]
    names += [
        (w(4 + L, "kernel"), "pooler/kernel", (d, d)),
        (w(4 + L, "bias"), "pooler/bias", (d,)),
    ]
    return names


def encoder_roots(keys) -> list[str]:
    """The prefixes ("encoder/", "model/", "" for a SavedModel of the encoder, ...) under
    which checkpoint `keys` hold a Model Garden encoder (its word embeddings)."""
    marker = "layer_with_weights-0/embeddings/"
    return sorted({k[: k.index(marker)] for k in keys if marker in k
                   and (k.index(marker) == 0 or k[k.index(marker) - 1] == "/")})


def encoder_weights_from_model_garden(checkpoint: str, config: BertConfig) -> dict[str, np.ndarray]:
    """Reads a seed TF2 encoder checkpoint (prefix, e.g. .../bert_model.ckpt)."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(checkpoint))
    except (tf.errors.NotFoundError, ValueError) as e:
        raise FileNotFoundError(f"cannot read TF2 checkpoint {checkpoint}: {e}") from None
    shapes = reader.get_variable_to_shape_map()
    roots = encoder_roots(shapes)
    if len(roots) != 1:
        raise CheckpointMismatchError(
            f"{checkpoint}: expected one Model Garden encoder (a key like "
            f"'encoder/layer_with_weights-0/embeddings'), found roots {roots}"
        )
    root = roots[0]
    expected = _names(config, root)
    missing = [key for key, _, _ in expected if key not in shapes]
    used = {key for key, _, _ in expected}
    unexpected = sorted(
        k
        for k in shapes
        if k.startswith(root) and k[len(root):].startswith("layer_with_weights-")
        and k not in used and "OPTIMIZER_SLOT" not in k
    )
    out, wrong = {}, []
    for key, ours, shape in expected:
        if key in missing:
            continue
        value = reader.get_tensor(key).astype(np.float32)
        if value.size != int(np.prod(shape)):
            wrong.append(f"{key}: checkpoint {value.shape}, model {shape}")
            continue
        # EinsumDense [D, N, H] / [N, H] / [N, H, D] -> dense: a row-major reshape
        out[ours] = value.reshape(shape)
    check_fit(checkpoint, config, missing, unexpected, wrong)
    return out


def load_model_garden_encoder(checkpoint: str, config: BertConfig, **encoder_kwargs):
    """BertEncoder with the weights of a seed TF2 encoder checkpoint."""
    from pybert.checkpoints.huggingface import assign_encoder_weights
    from pybert.modeling import BertEncoder

    weights = encoder_weights_from_model_garden(checkpoint, config)
    encoder = BertEncoder(config, **encoder_kwargs)
    encoder.build()
    assign_encoder_weights(encoder, weights)
    return encoder
