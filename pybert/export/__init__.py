"""Model export. Done: TF-Hub-style SavedModel of the encoder. Not yet: ONNX (open issue)."""

from pybert.export.savedmodel import export_encoder_savedmodel, load_encoder_savedmodel

__all__ = ["export_encoder_savedmodel", "load_encoder_savedmodel"]
