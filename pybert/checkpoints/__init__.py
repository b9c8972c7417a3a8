"""Checkpoint converters into pybert encoders.

Done (encoder weights): HuggingFace BertModel / BertForPreTraining in
safetensors, google-research TF1 checkpoints, the seed's TF2 (Model Garden
BertEncoder) checkpoints. Not yet (open issue): pre-training head weights.
"""

from pybert.checkpoints.huggingface import (
    CheckpointMismatchError,
    encoder_weights_from_huggingface,
    load_huggingface_encoder,
    save_encoder_checkpoint,
)
from pybert.checkpoints.model_garden import (
    encoder_weights_from_model_garden,
    load_model_garden_encoder,
)
from pybert.checkpoints.tf1 import encoder_weights_from_tf1, load_tf1_encoder

__all__ = [
    "CheckpointMismatchError",
    "encoder_weights_from_huggingface",
    "encoder_weights_from_model_garden",
    "encoder_weights_from_tf1",
    "load_model_garden_encoder",
    "load_tf1_encoder",
    "load_huggingface_encoder",
    "save_encoder_checkpoint",
]
