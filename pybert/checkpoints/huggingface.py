"""HuggingFace BERT safetensors -> pybert BertEncoder.

Reads model.safetensors with safetensors' NumPy API (no PyTorch, no pickle),
maps every tensor to an encoder weight (torch Linear weights [out, in] are
transposed to Keras kernels [in, out]) and fails on any mismatch, listing the
missing, unexpected and wrong-shaped variables: never a partial load. A
pytorch_model.bin is refused (it is a pickle).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pybert.configs import BertConfig


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the model; the message lists every problem."""


def check_fit(source, config: BertConfig, missing, unexpected=(), wrong=()) -> None:
    """Raises CheckpointMismatchError listing every missing, unexpected and
    wrong-shaped variable of checkpoint `source`; returns when all three are empty."""
    if not (missing or unexpected or wrong):
        return
    lines = [f"{source} does not fit the BERT config ({config.source}):"]
    if missing:
        lines.append(f"  missing ({len(missing)}): " + ", ".join(missing))
    if unexpected:
        lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(unexpected))
    if wrong:
        lines.append(f"  wrong shape ({len(wrong)}): " + "; ".join(wrong))
    raise CheckpointMismatchError("\n".join(lines))


def _encoder_names(config: BertConfig):
    """(HF name without prefix, pybert path, transpose) for every encoder weight."""
    names = [
        ("embeddings.word_embeddings.weight", "embeddings/word_embeddings", False),
        ("embeddings.position_embeddings.weight", "embeddings/position_embeddings", False),
        ("embeddings.token_type_embeddings.weight", "embeddings/type_embeddings", False),
        ("embeddings.LayerNorm.weight", "embeddings/layer_norm/gamma", False),
        ("embeddings.LayerNorm.bias", "embeddings/layer_norm/beta", False),
    ]
    for i in range(config.num_hidden_layers):
        hf, ours = f"encoder.layer.{i}.", f"transformer_layer_{i}/"
        for part in ("query", "key", "value"):
            names.append(
                (f"{hf}attention.self.{part}.weight", f"{ours}attention/{part}/kernel", True)
            )
            names.append((f"{hf}attention.self.{part}.bias", f"{ours}attention/{part}/bias", False))
        names += [
            (f"{hf}attention.output.dense.weight", f"{ours}attention/output/kernel", True),
            (f"{hf}attention.output.dense.bias", f"{ours}attention/output/bias", False),
            (f"{hf}attention.output.LayerNorm.weight", f"{ours}attention/layer_norm/gamma", False),
            (f"{hf}attention.output.LayerNorm.bias", f"{ours}attention/layer_norm/beta", False),
            (f"{hf}intermediate.dense.weight", f"{ours}intermediate/kernel", True),
            (f"{hf}intermediate.dense.bias", f"{ours}intermediate/bias", False),
            (f"{hf}output.dense.weight", f"{ours}output/kernel", True),
            (f"{hf}output.dense.bias", f"{ours}output/bias", False),
            (f"{hf}output.LayerNorm.weight", f"{ours}layer_norm/gamma", False),
            (f"{hf}output.LayerNorm.bias", f"{ours}layer_norm/beta", False),
        ]
    names += [
        ("pooler.dense.weight", "pooler/kernel", True),
        ("pooler.dense.bias", "pooler/bias", False),
    ]
    return names


# Heads and buffers of HF checkpoints that an encoder does not use.
_IGNORED_PREFIXES = ("cls.", "embeddings.position_ids")


def _find_weights(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        if (path / "model.safetensors").exists():
            return path / "model.safetensors"
        if (path / "pytorch_model.bin").exists():
            path = path / "pytorch_model.bin"
        else:
            raise FileNotFoundError(f"no model.safetensors in {path}")
    if path.suffix == ".bin":
        raise ValueError(
            f"{path}: PyTorch pickles are not loaded (unsafe). Convert it to safetensors first, "
            "e.g. with transformers: BertModel.from_pretrained(DIR).save_pretrained(OUT, "
            "safe_serialization=True)"
        )
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    return path


def encoder_weights_from_huggingface(path, config: BertConfig) -> dict[str, np.ndarray]:
    """Reads the safetensors file and returns {pybert weight path: array}, checked."""
    from safetensors.numpy import load_file

    weights_path = _find_weights(path)
    try:
        tensors = load_file(str(weights_path))
    except OSError:
        raise
    except Exception as e:  # safetensors' SafetensorError: a cut or corrupt file
        raise ValueError(f"{weights_path}: not a readable safetensors file ({e})") from None
    # BertForPreTraining and friends prefix the encoder with "bert."
    if any(k.startswith("bert.") for k in tensors):
        tensors = {k[len("bert.") :] if k.startswith("bert.") else k: v for k, v in tensors.items()}
    # Old checkpoints name LayerNorm parameters gamma/beta.
    tensors = {
        k.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias"
        ): v
        for k, v in tensors.items()
    }
    expected = _encoder_names(config)
    out, missing, wrong = {}, [], []
    d, inter = config.hidden_size, config.intermediate_size
    for hf_name, ours, transpose in expected:
        if hf_name not in tensors:
            missing.append(hf_name)
            continue
        value = tensors[hf_name].astype(np.float32)
        if transpose:
            value = value.T
        out[ours] = value
    used = {n for n, _, _ in expected}
    unexpected = sorted(k for k in tensors if k not in used and not k.startswith(_IGNORED_PREFIXES))
    shapes = {
        "embeddings/word_embeddings": (config.vocab_size, d),
        "embeddings/position_embeddings": (config.max_position_embeddings, d),
        "embeddings/type_embeddings": (config.type_vocab_size, d),
    }
    for name, value in out.items():
        if name in shapes:
            want = shapes[name]
        elif name.endswith("intermediate/kernel"):
            want = (d, inter)
        elif name.endswith("intermediate/bias"):
            want = (inter,)
        elif name.endswith("/output/kernel") and "attention" not in name:
            want = (inter, d)
        elif name.endswith("kernel"):
            want = (d, d)
        else:
            want = (d,)
        if tuple(value.shape) != want:
            wrong.append(f"{name}: checkpoint {tuple(value.shape)}, model {want}")
    check_fit(weights_path, config, missing, unexpected, wrong)
    return out


def load_huggingface_encoder(model_dir, config: BertConfig | None = None, **encoder_kwargs):
    """BertEncoder with the weights of a HuggingFace BERT directory (config.json +
    model.safetensors). Returns (encoder, config)."""
    from pybert.modeling import BertEncoder

    model_dir = Path(model_dir)
    if config is None:
        config = BertConfig.from_hf_json_file(model_dir / "config.json")
    weights = encoder_weights_from_huggingface(model_dir, config)
    encoder = BertEncoder(config, **encoder_kwargs)
    encoder.build()
    assign_encoder_weights(encoder, weights)
    return encoder, config


def assign_encoder_weights(encoder, weights: dict[str, np.ndarray]) -> None:
    """Assigns {pybert weight path: array}; every encoder variable must be given."""
    variables = {_path_of(v, encoder.name): v for v in encoder.weights}
    missing = sorted(set(variables) - set(weights))
    unexpected = sorted(set(weights) - set(variables))
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"weights do not match the encoder: missing {missing}, unexpected {unexpected}"
        )
    for name, var in variables.items():
        if tuple(var.shape) != tuple(weights[name].shape):
            raise CheckpointMismatchError(
                f"{name}: weights {weights[name].shape}, encoder {tuple(var.shape)}"
            )
        var.assign(weights[name])


def encoder_weights_to_huggingface(encoder) -> dict[str, np.ndarray]:
    """The inverse of encoder_weights_from_huggingface: {HuggingFace BertModel name:
    array} of a pybert encoder (kernels transposed back), e.g. to load its weights into
    transformers' BertModel for a side-by-side comparison."""
    ours = {_path_of(v, encoder.name): v.numpy() for v in encoder.weights}
    return {name: np.ascontiguousarray(ours[path].T if transpose else ours[path])
            for name, path, transpose in _encoder_names(encoder.config)}


def _path_of(variable, encoder_name: str) -> str:
    # Keras 3 variable paths look like "bert_encoder/transformer_layer_0/attention/query/kernel"
    # ("bert_classifier/bert_encoder/..." inside a model): the part after the encoder's name
    path = variable.path
    head = encoder_name + "/"
    if path.startswith(head):
        return path[len(head):]
    if "/" + head in path:
        return path[path.index("/" + head) + 1 + len(head):]
    return path.split("/", 1)[1]


# What save_encoder_checkpoint writes in its directory (which it replaces as a whole).
ENCODER_CHECKPOINT_FILES = ("bert_config.json", "vocab.txt", "bert_model.ckpt*", "checkpoint")


def save_encoder_checkpoint(encoder, config: BertConfig, output_dir, vocab_file=None) -> str:
    """Writes a pybert checkpoint directory: bert_config.json, a tf.train.Checkpoint
    (encoder=...) and vocab.txt. Written under a temporary name, renamed when complete."""
    import shutil

    import tensorflow as tf

    from pybert._outputs import fresh_tmp_dir, replace_dir

    own = ENCODER_CHECKPOINT_FILES
    output_dir = Path(output_dir)
    tmp = fresh_tmp_dir(output_dir, own, "converted checkpoint")
    config.to_json_file(tmp / "bert_config.json")
    if vocab_file is not None:
        shutil.copyfile(vocab_file, tmp / "vocab.txt")
    tf.train.Checkpoint(encoder=encoder).write(str(tmp / "bert_model.ckpt"))
    replace_dir(tmp, output_dir, own, "converted checkpoint")
    return str(output_dir / "bert_model.ckpt")


def _assign_pretrainer_heads(pretrainer, heads: dict[str, np.ndarray], source: str) -> None:
    """Assigns lm_transform/{kernel,bias}, lm_layer_norm/{gamma,beta}, lm_output_bias,
    next_sentence/{kernel,bias}, checking every shape."""
    targets = {
        "lm_transform/kernel": pretrainer.lm_dense.kernel,
        "lm_transform/bias": pretrainer.lm_dense.bias,
        "lm_layer_norm/gamma": pretrainer.lm_layer_norm.gamma,
        "lm_layer_norm/beta": pretrainer.lm_layer_norm.beta,
        "lm_output_bias": pretrainer.lm_bias,
        "next_sentence/kernel": pretrainer.nsp.kernel,
        "next_sentence/bias": pretrainer.nsp.bias,
    }
    missing = sorted(set(targets) - set(heads))
    wrong = [
        f"{k}: checkpoint {heads[k].shape}, model {tuple(v.shape)}"
        for k, v in targets.items()
        if k in heads and tuple(heads[k].shape) != tuple(v.shape)
    ]
    if missing or wrong:
        raise CheckpointMismatchError(
            f"{source}: pre-training heads do not fit: missing {missing}, wrong shape {wrong}"
        )
    for name, var in targets.items():
        var.assign(heads[name])


def load_huggingface_pretrainer(model_dir, config: BertConfig | None = None):
    """BertPretrainer (encoder + masked-LM and next-sentence heads) from a HuggingFace
    BertForPreTraining directory. Returns (pretrainer, config)."""
    from safetensors.numpy import load_file

    from pybert.modeling import BertPretrainer

    encoder, config = load_huggingface_encoder(model_dir, config)
    tensors = load_file(str(_find_weights(model_dir)))
    required = {
        "lm_transform/kernel": ("cls.predictions.transform.dense.weight", True),
        "lm_transform/bias": ("cls.predictions.transform.dense.bias", False),
        "lm_layer_norm/gamma": ("cls.predictions.transform.LayerNorm.weight", False),
        "lm_layer_norm/beta": ("cls.predictions.transform.LayerNorm.bias", False),
        "lm_output_bias": ("cls.predictions.bias", False),
        "next_sentence/kernel": ("cls.seq_relationship.weight", True),
        "next_sentence/bias": ("cls.seq_relationship.bias", False),
    }
    heads = {}
    for ours, (hf, transpose) in required.items():
        if hf in tensors:
            value = tensors[hf].astype(np.float32)
            heads[ours] = value.T if transpose else value
    pretrainer = BertPretrainer(config, encoder=encoder)
    pretrainer.build()
    _assign_pretrainer_heads(pretrainer, heads, str(model_dir))
    return pretrainer, config
