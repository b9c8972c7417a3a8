"""Loads the seed's own modules (tf-models-official==2.4.0) from the test-only
oracle folder that tools/run_tests.sh unpacks, for tests and benchmarks.

Modules are loaded from their files with light stubs: tensorflow (only
tf.io.gfile.GFile is used by the loaded code paths), sentencepiece and six.
"""

import importlib.util
import os
import sys
import types
from pathlib import Path

ORACLE_DIR = Path(os.environ.get("PYBERT_ORACLE_DIR", Path(__file__).resolve().parent / "_oracle"))


def _stubs(extra=None):
    six = types.SimpleNamespace(PY2=False, PY3=True, iteritems=lambda d: iter(d.items()))
    stubs = {
        "tensorflow": types.SimpleNamespace(
            io=types.SimpleNamespace(
                gfile=types.SimpleNamespace(
                    GFile=lambda p, mode="r": open(p, mode, encoding="utf-8")
                )
            )
        ),
        "sentencepiece": types.ModuleType("sentencepiece"),
        "six": six,
    }
    stubs.update(extra or {})
    return stubs


def _load(rel_path, name, extra_stubs=None):
    path = ORACLE_DIR / rel_path
    if not path.exists():
        return None
    stubs = _stubs(extra_stubs)
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


def load_seed_tokenization():
    """The seed's official/nlp/bert/tokenization.py, or None when the oracle is absent."""
    return _load("official/nlp/bert/tokenization.py", "seed_tokenization")


def load_seed_squad_lib():
    """The seed's official/nlp/data/squad_lib.py (read, featurize, post-process)."""
    tokenization = load_seed_tokenization()
    if tokenization is None:
        return None
    official = types.ModuleType("official")
    nlp = types.ModuleType("official.nlp")
    bert = types.ModuleType("official.nlp.bert")
    bert.tokenization = tokenization
    official.nlp = nlp
    nlp.bert = bert
    return _load(
        "official/nlp/data/squad_lib.py",
        "seed_squad_lib",
        {
            "official": official,
            "official.nlp": nlp,
            "official.nlp.bert": bert,
            "official.nlp.bert.tokenization": tokenization,
        },
    )


def load_seed_squad_evaluate(version):
    """The seed's official/nlp/bert/squad_evaluate_v1_1.py or _v2_0.py."""
    name = "squad_evaluate_v1_1" if version == "1.1" else "squad_evaluate_v2_0"
    return _load(f"official/nlp/bert/{name}.py", f"seed_{name}")
