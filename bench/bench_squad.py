"""SQuAD post-processing: the full v1.1 dev set (10,570 questions) with random
logits, pybert's C++ decoder vs the seed's Python (tests/_oracle), same run.

  .venv/bin/pytest bench/bench_squad.py --benchmark-json=bench/squad.json
"""

import collections
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

import pybert
from pybert import squad

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from seed_oracle import load_seed_squad_lib  # noqa: E402

RawResult = collections.namedtuple("RawResult", ["unique_id", "start_logits", "end_logits"])
ALL = os.cpu_count() or 1
SEQ = 384


@pytest.fixture(scope="module")
def dev_set():
    lib = load_seed_squad_lib()
    if lib is None:
        pytest.skip("seed oracle not unpacked (run tools/run_tests.sh once)")
    examples = lib.read_squad_examples(str(SHARED_DATA / "squad/dev-v1.1.json"), False, False)
    features = []
    lib.convert_examples_to_features(
        examples,
        pybert.FullTokenizer(str(SHARED_DATA / "vocab/bert-base-uncased-vocab.txt")),
        max_seq_length=SEQ,
        doc_stride=128,
        max_query_length=64,
        is_training=False,
        output_fn=lambda f, is_padding=False: is_padding or features.append(f),
        batch_size=1,
    )
    rng = np.random.default_rng(0)
    start = rng.normal(0, 3, (len(features), SEQ)).astype(np.float32)
    end = rng.normal(0, 3, (len(features), SEQ)).astype(np.float32)
    ids = np.array([f.unique_id for f in features])
    results = [
        RawResult(u, s.tolist(), e.tolist())
        for u, s, e in zip(ids.tolist(), start, end, strict=True)
    ]
    arrays = squad.SquadFeatureArrays.from_seed(examples, features)
    return lib, examples, features, results, arrays, (ids, start, end)


def _info(benchmark, name, examples, anchor=False):
    benchmark.group = "squad-postprocess-v1.1-dev"
    benchmark.extra_info.update(items=len(examples), unit="questions", name=name, anchor=anchor)


@pytest.mark.parametrize("threads", [1, ALL] if ALL > 1 else [1])
def test_pybert_arrays(benchmark, dev_set, threads):
    _, examples, _, _, arrays, results = dev_set
    _info(benchmark, f"pybert {threads} thread(s)", examples, anchor=threads == 1)
    # The whole output is returned (as in the seed's case below), so that freeing the
    # ~211,000 n-best dicts happens after the timer for both, not inside one of them.
    preds, nbest, _ = benchmark.pedantic(
        lambda: squad.postprocess_output(arrays, None, results, 20, 30, True, num_threads=threads),
        rounds=5,
        iterations=1,
        warmup_rounds=1,
    )
    assert len(preds) == len(examples) == len(nbest)


def test_pybert_seed_objects(benchmark, dev_set):
    _, examples, features, results, _, _ = dev_set
    _info(benchmark, "pybert 1 thread, from the seed's objects", examples)
    benchmark.pedantic(
        lambda: squad.postprocess_output(examples, features, results, 20, 30, True),
        rounds=3,
        iterations=1,
    )


def test_seed_python(benchmark, dev_set):
    lib, examples, features, results, _, _ = dev_set
    _info(benchmark, "seed squad_lib.postprocess_output (Python)", examples)
    benchmark.pedantic(
        lambda: lib.postprocess_output(examples, features, results, 20, 30, True),
        rounds=1,
        iterations=1,
    )
