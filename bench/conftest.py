"""Shared benchmark corpora (real text from ../shared/data) and reporting helpers.

Every benchmark records the bytes of input it processes in extra_info so
bench/report.py can turn pytest-benchmark's JSON into MB/s and ratios against
the anchors measured in the same run.

A competitor or anchor that cannot run (not installed, the seed oracle not
unpacked) fails its benchmark: a report without it would not be the
comparison it claims. PYBERT_BENCH_ALLOW_MISSING=1 turns that into a skip
with the reason (bench/run_all.py then also accepts a suite that ran nothing).
"""

import contextlib
import json
import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# bench/run_all.py --quick: fewer rounds and shapes (the whole run under 5 minutes)
QUICK = os.environ.get("PYBERT_BENCH_QUICK") == "1"
SHARED_DATA = Path(os.environ.get("PYBERT_SHARED_DATA", REPO.parent / "shared" / "data"))
ALLOW_MISSING = os.environ.get("PYBERT_BENCH_ALLOW_MISSING") == "1"


def rounds(default):
    """Timed rounds per implementation: PYBERT_BENCH_ROUNDS, else `default`."""
    return int(os.environ.get("PYBERT_BENCH_ROUNDS", default))


def missing(reason):
    """A competitor or anchor that cannot run: fails the calling benchmark, or skips it with
    the reason when PYBERT_BENCH_ALLOW_MISSING=1."""
    if ALLOW_MISSING:
        pytest.skip(f"{reason} (PYBERT_BENCH_ALLOW_MISSING=1)")
    pytest.fail(f"{reason}; set PYBERT_BENCH_ALLOW_MISSING=1 to skip it instead", pytrace=False)


def need(module: str, why: str = ""):
    """The module imported, or missing() naming it (a competitor that is not installed)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing(f"{module} is not installed ({e}){': ' + why if why else ''}")


SEED_MISSING = "seed oracle not unpacked (tests/_oracle: run tools/run_tests.sh once)"


def require_seed(loaded):
    """`loaded` (what a tests/seed_oracle.py load_seed_* function returned), or missing()
    when the oracle is absent (None, or a tuple of Nones)."""
    if (loaded[0] if isinstance(loaded, tuple) else loaded) is None:
        missing(SEED_MISSING)
    return loaded


@contextlib.contextmanager
def hf_parallelism(parallel: bool):
    """HuggingFace tokenizers on all cores (its default) or on one, for the calls inside
    (TOKENIZERS_PARALLELISM, read at each call); the variable is restored after."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def interleave(impls, n_rounds, check=None):
    """Times implementations that take turns: {name: [seconds of each timed round]}.

    Round 0 runs each implementation once, untimed: a warm-up for every side alike, and its
    outputs go to check(outputs) (the equality checks, before anything is timed). Then
    n_rounds rounds in which every implementation runs once, in turn, so that the drift of
    this shared host's speed hits all of them alike. An output is dropped after its timer
    stops: freeing it is not timed, for any side.
    """
    outputs = {name: fn() for name, fn in impls.items()}
    if check is not None:
        check(outputs)
    del outputs
    times = {name: [] for name in impls}
    for _ in range(n_rounds):
        for name, fn in impls.items():
            start = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - start)
            del out
    return times


def report_interleaved(request, group, fn, times, **info):
    """Records the best interleaved round (the statistic bench/report.py uses for every side
    of a group) and every round, then lets pytest-benchmark time one more call of fn.

    The benchmark fixture is requested here, after the caller's checks: a row that failed
    or was skipped before leaves no "fixture not used" warning (an error in this project).
    """
    benchmark = request.getfixturevalue("benchmark")
    benchmark.group = group
    benchmark.extra_info.update(info, interleaved_s=min(times),
                                interleaved_rounds_s=[round(t, 6) for t in times])
    benchmark.pedantic(fn, rounds=1, iterations=1)


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
