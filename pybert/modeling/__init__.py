"""Keras 3 (TensorFlow backend) BERT: the encoder and the task models.

The fused attention op is not here yet (open issue): attention is the
reference implementation in plain ops.
"""

from pybert.modeling.encoder import BertEncoder, get_activation
from pybert.modeling.models import BertClassifier, BertPretrainer, BertSpanLabeler

__all__ = ["BertClassifier", "BertEncoder", "BertPretrainer", "BertSpanLabeler", "get_activation"]
