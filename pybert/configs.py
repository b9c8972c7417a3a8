"""BERT model configuration: the seed's bert_config.json and HuggingFace config.json.

`BertConfig` is a frozen dataclass that reads and writes the seed's
bert_config.json and reads a HuggingFace BERT config.json. Every problem is a
`ConfigError` (a ValueError) naming the file and the field:

    >>> BertConfig.from_json_file("bert_config.json").hidden_size
    768

GELU: Google's original checkpoints (and the seed) mean the tanh approximation
by "gelu"; HuggingFace's "gelu" is the exact (erf) form. So "gelu" read from a
bert_config.json keeps the seed's meaning, HuggingFace's "gelu" is read as
"gelu_exact", and converters write the explicit "gelu_tanh" / "gelu_exact".
What this module leaves out: ALBERT-style factorized embeddings (the seed's
`embedding_size` is accepted only when null).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass

# hidden_act values: "gelu" is the seed's name for the tanh approximation.
ACTIVATIONS = ("gelu", "gelu_tanh", "gelu_exact", "relu", "tanh", "swish", "silu")

# HuggingFace activation names -> ours (explicit GELU form).
_HF_ACTIVATIONS = {
    "gelu": "gelu_exact",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
    "tanh": "tanh",
    "swish": "swish",
    "silu": "silu",
}

# HuggingFace config.json keys that carry no model shape (ignored when read).
_HF_METADATA = {
    "_name_or_path",
    "architectures",
    "model_type",
    "gradient_checkpointing",
    "pad_token_id",
    "transformers_version",
    "use_cache",
    "torch_dtype",
    "classifier_dropout",
    "bos_token_id",
    "eos_token_id",
    "id2label",
    "label2id",
    "output_past",
    "is_decoder",
    "add_cross_attention",
    "tie_word_embeddings",
    "chunk_size_feed_forward",
    "problem_type",
    "finetuning_task",
    "tokenizer_class",
    "directionality",
    "pooler_fc_size",
    "pooler_num_attention_heads",
    "pooler_num_fc_layers",
    "pooler_size_per_head",
    "pooler_type",
    "dtype",
}


class ConfigError(ValueError):
    """An unusable configuration; the message names the source and the field."""


@dataclass(frozen=True)
class BertConfig:
    """Shape and hyper-parameters of a BERT encoder (the seed's bert_config.json fields)."""

    vocab_size: int  # rows of the word embedding table
    hidden_size: int = 768  # width of every layer and of the pooler
    num_hidden_layers: int = 12  # transformer layers
    num_attention_heads: int = 12  # heads per attention layer; divides hidden_size
    intermediate_size: int = 3072  # width of the feed-forward inner layer
    hidden_act: str = "gelu"  # one of ACTIVATIONS ("gelu" = tanh approximation, as the seed)
    hidden_dropout_prob: float = 0.1  # dropout on embeddings and every dense output
    attention_probs_dropout_prob: float = 0.1  # dropout on attention probabilities
    max_position_embeddings: int = 512  # longest sequence
    type_vocab_size: int = 16  # segment (token type) ids
    initializer_range: float = 0.02  # stddev of the truncated normal initializer
    layer_norm_eps: float = 1e-12  # addition: LayerNorm epsilon (BERT: 1e-12)
    source: str = dataclasses.field(default="<BertConfig>", compare=False, repr=False)

    def __post_init__(self):
        def fail(name, problem):
            raise ConfigError(f"{self.source}: field '{name}': {problem}")

        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                fail(name, f"must be an integer, got {value!r}")
            if value <= 0:
                fail(name, f"must be positive, got {value}")
        if self.hidden_size % self.num_attention_heads:
            fail(
                "hidden_size",
                f"{self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}",
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                fail(name, f"must be a number, got {value!r}")
            if not 0.0 <= value < 1.0:
                fail(name, f"must be in [0, 1), got {value}")
        for name in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not 0 < value < math.inf):
                fail(name, f"must be a positive finite number, got {value!r}")
        if self.hidden_act not in ACTIVATIONS:
            fail("hidden_act", f"unknown activation {self.hidden_act!r}; one of {ACTIVATIONS}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # -- the seed's bert_config.json -------------------------------------------
    @classmethod
    def from_dict(cls, values: dict, source: str = "<dict>") -> BertConfig:
        """From the seed's bert_config.json fields. Unknown or missing fields are errors."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(values).__name__}")
        values = dict(values)
        # Written by the seed's BertConfig.to_json_string; meaningful only at these values.
        if values.pop("embedding_size", None) is not None:
            raise ConfigError(
                f"{source}: field 'embedding_size': factorized embeddings "
                "(ALBERT) are not supported; must be null"
            )
        values.pop("backward_compatible", None)
        fields = {f.name for f in dataclasses.fields(cls)} - {"source"}
        unknown = sorted(set(values) - fields)
        if unknown:
            hint = ""
            # a HuggingFace config.json given as the seed's (from_hf_dict drops these)
            if set(unknown) & (_HF_METADATA | {"position_embedding_type"}):
                hint = ("; this looks like a HuggingFace config.json: read it with "
                        "BertConfig.from_hf_json_file / from_hf_dict (or convert the "
                        "checkpoint with pybert-convert-checkpoint "
                        "--source_format=huggingface)")
            raise ConfigError(
                f"{source}: field '{unknown[0]}': unknown field "
                f"(known: {', '.join(sorted(fields))}){hint}"
            )
        required = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
        )
        missing = [k for k in required if k not in values]
        if missing:
            raise ConfigError(f"{source}: field '{missing[0]}': missing")
        return cls(**values, source=source)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> BertConfig:
        return cls.from_dict(_read_json(path), source=str(path))

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("source")
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        """Writes bert_config.json (to a temporary name, renamed when complete)."""
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_json_string())
        os.replace(tmp, path)

    # -- HuggingFace config.json ---------------------------------------------
    @classmethod
    def from_hf_dict(cls, values: dict, source: str = "<dict>") -> BertConfig:
        """From a HuggingFace BERT config.json; its "gelu" becomes "gelu_exact"."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(values).__name__}")
        model_type = values.get("model_type", "bert")
        if model_type != "bert":
            raise ConfigError(f"{source}: field 'model_type': {model_type!r} is not a BERT model")
        position = values.get("position_embedding_type", "absolute")
        if position != "absolute":
            raise ConfigError(
                f"{source}: field 'position_embedding_type': only 'absolute' "
                f"is supported, got {position!r}"
            )
        core = {
            k: v
            for k, v in values.items()
            if k not in _HF_METADATA and k != "position_embedding_type"
        }
        act = core.get("hidden_act", "gelu")
        if act not in _HF_ACTIVATIONS:
            raise ConfigError(f"{source}: field 'hidden_act': unknown activation {act!r}")
        core["hidden_act"] = _HF_ACTIVATIONS[act]
        return cls.from_dict(core, source=source)

    @classmethod
    def from_hf_json_file(cls, path: str | os.PathLike) -> BertConfig:
        return cls.from_hf_dict(_read_json(path), source=str(path))


def _read_json(path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
