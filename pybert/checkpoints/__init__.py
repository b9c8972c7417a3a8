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

__all__ = [
    "CheckpointMismatchError",
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
