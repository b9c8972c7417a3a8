"""Shared fixtures: real data from ../shared/data, vocab files, the seed oracle."""

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PYBERT_SHARED_DATA", REPO.parent / "shared" / "data"))
ORACLE_DIR = Path(os.environ.get("PYBERT_ORACLE_DIR", REPO / "tests" / "_oracle"))

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test data missing: {path} (set PYBERT_SHARED_DATA to ../shared/data)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _need(SHARED_DATA)


VOCABS = {
    "uncased": ("bert-base-uncased-vocab.txt", True),
    "cased": ("bert-base-cased-vocab.txt", False),
    "multi_cased": ("bert-base-multilingual-cased-vocab.txt", False),
}


@pytest.fixture(scope="session")
def vocab_path(data_dir):
    def get(name: str) -> Path:
        return _need(data_dir / "vocab" / VOCABS[name][0])

    return get


@pytest.fixture(scope="session")
def seed_tokenization():
    """The seed's official/nlp/bert/tokenization.py (tf-models-official==2.4.0).

    Loaded from the test-only oracle folder that .ci/run unpacks; its imports
    of tensorflow (only tf.io.gfile.GFile), sentencepiece and six are stubbed.
    """
    path = ORACLE_DIR / "official" / "nlp" / "bert" / "tokenization.py"
    if not path.exists():
        pytest.skip(f"seed oracle not unpacked at {ORACLE_DIR} (see .ci/run)")
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
