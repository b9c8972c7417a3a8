"""Keras 3 (TensorFlow backend) BERT: encoder layers and the encoder model.

Heads (pretrainer, classifier, span labeler) and the fused attention op are
not here yet: they are parts of open issues.
"""

from pybert.modeling.encoder import BertEncoder, get_activation

__all__ = ["BertEncoder", "get_activation"]
