"""Shared benchmark corpora (real text from ../shared/data) and reporting helpers.

Every benchmark records the bytes of input it processes in extra_info so
bench/report.py can turn pytest-benchmark's JSON into MB/s and ratios against
the anchors measured in the same run.
"""

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# bench/run_all.py --quick: fewer rounds and shapes (the whole run under 5 minutes)
QUICK = os.environ.get("PYBERT_BENCH_QUICK") == "1"
SHARED_DATA = Path(os.environ.get("PYBERT_SHARED_DATA", REPO.parent / "shared" / "data"))


def _lines(rel, limit_bytes):
    out, total = [], 0
    path = SHARED_DATA / rel
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        text = []
        for article in data["data"]:
            for para in article["paragraphs"]:
                text.append(para["context"])
                text += [qa["question"] for qa in para["qas"]]
    else:
        text = path.read_text(encoding="utf-8").split("\n")
    for line in text:
        if not line.strip():
            continue
        out.append(line)
        total += len(line.encode("utf-8"))
        if total >= limit_bytes:
            break
    return out


ENGLISH = (
    "glue/MRPC/train.tsv",
    "glue/SST-2/train.tsv",
    "glue/CoLA/train.tsv",
    "squad/dev-v1.1.json",
)


def english_lines():
    """About 3.4 MB of English: GLUE sentences, SQuAD contexts and questions."""
    return [line for rel in ENGLISH for line in _lines(rel, 1_000_000)]


@pytest.fixture(scope="session")
def english_corpus():
    return english_lines()


@pytest.fixture(scope="session")
def multilingual_corpus():
    """About 2 MB in 24 languages plus classical Chinese."""
    return _lines("multilingual/tatoeba_mixed_24langs_bert_format.txt", 1_200_000) + _lines(
        "chinese/gutenberg_25558_shen_yin_yu_classical_zh.txt", 800_000
    )


@pytest.fixture(scope="session")
def vocab_file():
    def get(name):
        return str(SHARED_DATA / "vocab" / f"bert-base-{name}-vocab.txt")

    return get


def nbytes(lines):
    return sum(len(s.encode("utf-8")) for s in lines)
