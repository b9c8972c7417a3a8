"""Model export: TF-Hub-style SavedModel (savedmodel) and ONNX for pybert-predict (onnx)."""

from pybert.export.savedmodel import export_encoder_savedmodel, load_encoder_savedmodel

__all__ = ["export_encoder_savedmodel", "load_encoder_savedmodel"]
