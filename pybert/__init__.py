"""pybert: a TensorFlow 2 BERT toolkit with C++ hot paths.

This package holds the public Python API. The native core lives in the
compiled extension `pybert._C` (no TensorFlow needed to import it).
"""

from pybert.tokenization import BasicTokenizer, BatchEncoding, Encoding, FullTokenizer, Tokenizer

__version__ = "0.1.0"

__all__ = [
    "BasicTokenizer",
    "BatchEncoding",
    "Encoding",
    "FullTokenizer",
    "Tokenizer",
    "__version__",
]
