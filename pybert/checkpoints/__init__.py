"""Checkpoint converters into pybert encoders.

Encoders from HuggingFace BertModel / BertForPreTraining safetensors,
google-research TF1 checkpoints and the seed's TF2 (Model Garden BertEncoder)
checkpoints; pre-trainers (masked-LM + next-sentence heads) from HuggingFace
BertForPreTraining and TF1 pre-training checkpoints.
"""

from pybert.checkpoints.huggingface import (
    CheckpointMismatchError,
    encoder_weights_from_huggingface,
    load_huggingface_encoder,
    load_huggingface_pretrainer,
    save_encoder_checkpoint,
)
from pybert.checkpoints.model_garden import (
    encoder_weights_from_model_garden,
    load_model_garden_encoder,
)
from pybert.checkpoints.tf1 import encoder_weights_from_tf1, load_tf1_encoder, load_tf1_pretrainer


def checkpoint_format(checkpoint: str) -> str:
    """"pybert" (tf.train.Checkpoint(encoder=BertEncoder)), "model_garden" (the seed's TF2
    encoder checkpoints, under any root) or "tf1" (google-research BERT), from the keys of
    the checkpoint at prefix `checkpoint`."""
    import tensorflow as tf

    keys = tf.train.load_checkpoint(str(checkpoint)).get_variable_to_shape_map()
    if "bert/embeddings/word_embeddings" in keys:
        return "tf1"
    if any(k.startswith("encoder/embeddings/word_embeddings/") for k in keys):
        return "pybert"
    from pybert.checkpoints.model_garden import encoder_roots

    return "model_garden" if encoder_roots(keys) else "pybert"


__all__ = [
    "CheckpointMismatchError",
    "checkpoint_format",
    "encoder_weights_from_huggingface",
    "encoder_weights_from_model_garden",
    "encoder_weights_from_tf1",
    "load_model_garden_encoder",
    "load_tf1_encoder",
    "load_tf1_pretrainer",
    "load_huggingface_encoder",
    "load_huggingface_pretrainer",
    "save_encoder_checkpoint",
]
