"""Loads the seed's own modules (tf-models-official==2.4.0) from the test-only
oracle folder that tools/run_tests.sh unpacks, for tests and benchmarks.

Only tokenization.py is loaded here: its imports of tensorflow (for
tf.io.gfile.GFile alone), sentencepiece and six are stubbed.
"""

import importlib.util
import os
import sys
import types
from pathlib import Path

ORACLE_DIR = Path(os.environ.get("PYBERT_ORACLE_DIR", Path(__file__).resolve().parent / "_oracle"))


def load_seed_tokenization():
    """Returns the seed's tokenization module, or None when the oracle is absent."""
    path = ORACLE_DIR / "official" / "nlp" / "bert" / "tokenization.py"
    if not path.exists():
        return None
    stubs = {
        "tensorflow": types.SimpleNamespace(
            io=types.SimpleNamespace(
                gfile=types.SimpleNamespace(
                    GFile=lambda p, mode="r": open(p, mode, encoding="utf-8")
                )
            )
        ),
        "sentencepiece": types.ModuleType("sentencepiece"),
        "six": types.SimpleNamespace(PY2=False, PY3=True),
    }
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location("seed_tokenization", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module
