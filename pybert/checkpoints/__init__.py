"""Checkpoint converters into pybert encoders.

Done: HuggingFace BertModel / BertForPreTraining weights in safetensors and
google-research TF1 checkpoints (encoder weights). Not yet (open issue): the
seed's TF2 checkpoints, pre-training head weights, SavedModel export.
"""

from pybert.checkpoints.huggingface import (
    CheckpointMismatchError,
    encoder_weights_from_huggingface,
    load_huggingface_encoder,
    save_encoder_checkpoint,
)
from pybert.checkpoints.tf1 import encoder_weights_from_tf1, load_tf1_encoder

__all__ = [
    "CheckpointMismatchError",
    "encoder_weights_from_huggingface",
    "encoder_weights_from_tf1",
    "load_tf1_encoder",
    "load_huggingface_encoder",
    "save_encoder_checkpoint",
]
