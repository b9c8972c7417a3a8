"""Checkpoint converters into pybert encoders.

Done: HuggingFace BertModel / BertForPreTraining weights in safetensors.
Not yet (open issue): google-research TF1 checkpoints, the seed's TF2
checkpoints, SavedModel export, the convert_checkpoint tool.
"""

from pybert.checkpoints.huggingface import (
    CheckpointMismatchError,
    encoder_weights_from_huggingface,
    load_huggingface_encoder,
    save_encoder_checkpoint,
)

__all__ = [
    "CheckpointMismatchError",
    "encoder_weights_from_huggingface",
    "load_huggingface_encoder",
    "save_encoder_checkpoint",
]
