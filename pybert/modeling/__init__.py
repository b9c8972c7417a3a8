"""Keras 3 (TensorFlow backend) BERT: the encoder and the task models.

Attention runs as the PybertFusedAttention op where it can (attention_impl="auto",
pybert.modeling.encoder), else as the reference implementation in plain ops.
"""

from pybert.modeling.encoder import (
    BertEncoder,
    get_activation,
    portable_attention,
    resolve_attention_impl,
)
from pybert.modeling.models import BertClassifier, BertPretrainer, BertSpanLabeler

__all__ = [
    "BertClassifier",
    "BertEncoder",
    "BertPretrainer",
    "BertSpanLabeler",
    "get_activation",
    "portable_attention",
    "resolve_attention_impl",
]
