"""SQuAD post-processing: the full v1.1 dev set (10,570 questions) with random
logits, pybert's C++ decoder vs the seed's Python (tests/_oracle), same run.

pybert's rows featurize the dev set with pybert.data.squad (as
`pybert-finetuning-data` and run_squad do) and need no oracle; the seed's row
and "pybert from the seed's objects" use the seed's squad_lib to read and
featurize, and the same logits (matched by unique id).

The sides take turns (conftest.interleave): one untimed run of each, whose
outputs are checked, then ROUNDS rounds (default 3; PYBERT_BENCH_ROUNDS) in
which each runs once; every row reports its best round
(extra_info["interleaved_s"]). Checks: pybert on all threads gives the
1-thread output exactly, and pybert (from its arrays and from the seed's
objects) gives the seed's output as tests/test_squad.py defines it:
predictions, n-best texts and logits equal, probabilities within 1e-6. A
missing seed oracle fails the seed's rows (see conftest.py).

  .venv/bin/pytest bench/bench_squad.py --benchmark-json=bench/squad.json
"""

import collections
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SEED_MISSING, SHARED_DATA, interleave, missing, report_interleaved, rounds

import pybert
from pybert import squad
from pybert.data import squad as squad_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from seed_oracle import assert_same_squad_output as assert_same  # noqa: E402
from seed_oracle import load_seed_squad_lib  # noqa: E402

RawResult = collections.namedtuple("RawResult", ["unique_id", "start_logits", "end_logits"])
ALL = os.cpu_count() or 1
SEQ = 384
ROUNDS = rounds("3")  # the seed takes ~10 s a round on a 2-core host
DEV = str(SHARED_DATA / "squad/dev-v1.1.json")
VOCAB = str(SHARED_DATA / "vocab/bert-base-uncased-vocab.txt")
THREADS = [1, ALL] if ALL > 1 else [1]
ANCHOR = "pybert 1 thread(s)"
SEED_OBJECTS = "pybert 1 thread, from the seed's objects"
SEED = "seed squad_lib.postprocess_output (Python)"
ARGS = (20, 30, True)  # n_best_size, max_answer_length, do_lower_case


def _pybert_dev():
    """pybert's features and the logits: (arrays for post-processing, (ids, start, end))."""
    feats = squad_data.featurize(squad_data.read_squad(DEV, False), pybert.FullTokenizer(VOCAB),
                                 SEQ, 128, 64, False)
    rng = np.random.default_rng(0)
    start = rng.normal(0, 3, (len(feats), SEQ)).astype(np.float32)
    end = rng.normal(0, 3, (len(feats), SEQ)).astype(np.float32)
    return feats.post, (feats.arrays["unique_ids"], start, end)


def _seed_dev(lib, logits):
    """The seed's examples, features and results (the same logits, by unique id)."""
    examples = lib.read_squad_examples(DEV, False, False)
    features = []
    lib.convert_examples_to_features(
        examples,
        # pybert's FullTokenizer gives the seed's tokens (tests/test_tokenizer.py), faster;
        # featurizing is not timed here
        pybert.FullTokenizer(VOCAB),
        max_seq_length=SEQ,
        doc_stride=128,
        max_query_length=64,
        is_training=False,
        output_fn=lambda f, is_padding=False: is_padding or features.append(f),
        batch_size=1,
    )
    ids, start, end = logits
    row = {u: i for i, u in enumerate(ids.tolist())}
    assert sorted(row) == sorted(f.unique_id for f in features), "other features than pybert's"
    results = [
        RawResult(f.unique_id, start[row[f.unique_id]].tolist(), end[row[f.unique_id]].tolist())
        for f in features
    ]
    return examples, features, results


def _check(outputs, results):
    """Round 0's outputs: name -> failure message or None, and what was compared."""
    anchor = outputs[ANCHOR]
    assert len(anchor[0]) == len(anchor[1]) == 10570

    def compare(name, fn, want, what):
        try:
            fn(outputs[name], want)
            results[name] = (None, what)
        except AssertionError as e:
            results[name] = (f"{name}: output differs from {what}: {e}", what)

    for name in outputs:
        if name == ANCHOR and SEED not in outputs:
            results[name] = (None, f"not compared with the seed: {SEED_MISSING}")
        elif name == ANCHOR or name == SEED_OBJECTS:
            compare(name, assert_same, outputs[SEED], "the seed's output (as tests/test_squad.py)")
        elif name == SEED:
            results[name] = (None, "the reference")
        else:  # pybert on more threads
            compare(name, _assert_equal, anchor, "pybert 1 thread's output, exactly")


def _assert_equal(a, b):
    assert a == b


@pytest.fixture(scope="module")
def timings():
    arrays, logits = _pybert_dev()
    impls = {}
    for threads in THREADS:
        impls[f"pybert {threads} thread(s)"] = (
            # The whole output is returned (as in the seed's case below), so that freeing the
            # ~211,000 n-best dicts happens after the timer for both, not inside one of them.
            lambda threads=threads: squad.postprocess_output(arrays, None, logits, *ARGS,
                                                             num_threads=threads)
        )
    lib = load_seed_squad_lib()
    if lib is not None:
        examples, features, results = _seed_dev(lib, logits)
        impls[SEED_OBJECTS] = lambda: squad.postprocess_output(examples, features, results, *ARGS)
        impls[SEED] = lambda: lib.postprocess_output(examples, features, results, *ARGS)
    checked = {}
    times = interleave(impls, ROUNDS, lambda outputs: _check(outputs, checked))
    return {name: (times[name], fn, checked[name]) for name, fn in impls.items()}


NAMES = [f"pybert {t} thread(s)" for t in THREADS] + [SEED_OBJECTS, SEED]


@pytest.mark.parametrize("name", NAMES)
def test_squad_postprocess(request, timings, name):
    if name not in timings:
        missing(f"{name}: {SEED_MISSING}")
    times, fn, (problem, checked) = timings[name]
    assert problem is None, problem
    report_interleaved(request, "squad-postprocess-v1.1-dev", fn, times, items=10570,
                       unit="questions", name=name, anchor=name == ANCHOR, checked=checked)
