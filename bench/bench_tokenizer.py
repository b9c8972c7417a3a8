"""Tokenizer throughput: pybert vs HF `tokenizers`, TF Text FastBertTokenizer and
the pure-Python original, on the same text in the same run.

Python list of str in, int32 ids out, no special tokens.

This host is shared and its speed drifts by 2x over minutes, so the
implementations of one corpus take turns: a module fixture runs every
implementation once per round, ROUNDS rounds, and keeps each one's best
round; every test then reports that time (extra_info["interleaved_s"]),
which bench/report.py prefers over pytest-benchmark's own single timing.

Run:
  .venv/bin/pytest bench/bench_tokenizer.py --benchmark-json=bench/tokenizer.json
  python bench/report.py bench/tokenizer.json
"""

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import QUICK, nbytes

import pybert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from seed_oracle import load_seed_tokenization  # noqa: E402

CORPORA = {
    "english": ("english_corpus", "uncased", True),
    "multilingual": ("multilingual_corpus", "multilingual-cased", False),
}
ALL = os.cpu_count() or 1
ROUNDS = int(os.environ.get("PYBERT_BENCH_ROUNDS", "3" if QUICK else "10"))
SEED_SAMPLE = 20  # the seed's tokenizer is slow: it gets 1/20 of the corpus


def _implementations(lines, vocab, lower):
    """name -> (function, lines it processes)."""
    impls = {}
    tok = pybert.Tokenizer(vocab, do_lower_case=lower)
    threads = [1, ALL] if ALL > 1 else [1]
    for n in threads:
        impls[f"pybert {n} thread(s)"] = (
            lambda n=n: (
                tok.encode_batch(
                    lines, add_special_tokens=False, return_offsets=False, pad=False, num_threads=n
                ).flat_ids
            ),
            lines,
        )
    impls["pybert 1 thread + offsets"] = (
        lambda: tok.encode_batch(lines, add_special_tokens=False, pad=False).flat_offsets,
        lines,
    )
    try:
        import tokenizers

        hf = tokenizers.BertWordPieceTokenizer(vocab, lowercase=lower, strip_accents=lower)

        def run_hf(parallel):
            os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
            encs = hf.encode_batch(lines, add_special_tokens=False)
            return np.concatenate([np.asarray(e.ids, dtype=np.int32) for e in encs])

        impls["HF tokenizers 1 thread"] = (lambda: run_hf(False), lines)
        impls["HF tokenizers default threads"] = (lambda: run_hf(True), lines)
    except ImportError:
        pass
    try:
        import tensorflow as tf
        import tensorflow_text as tf_text

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        with open(vocab, encoding="utf-8") as f:
            vocab_list = [line.strip() for line in f]
        fast = tf_text.FastBertTokenizer(
            vocab=vocab_list, token_out_type=tf.int32, lower_case_nfd_strip_accents=lower
        )
        inputs = tf.constant(lines)
        impls["TF Text FastBertTokenizer 1 thread"] = (
            lambda: fast.tokenize(inputs).flat_values.numpy(),
            lines,
        )
    except (ImportError, RuntimeError):
        pass
    seed = load_seed_tokenization()
    if seed is not None:
        sample = lines[: max(1, len(lines) // SEED_SAMPLE)]
        seed_tok = seed.FullTokenizer(vocab, do_lower_case=lower)
        impls[f"seed Python FullTokenizer (1/{SEED_SAMPLE} sample)"] = (
            lambda: [seed_tok.convert_tokens_to_ids(seed_tok.tokenize(x)) for x in sample],
            sample,
        )
    return impls


_TIMINGS = {}


def _interleaved(request, corpus):
    """Best time of each implementation over ROUNDS rounds in which all take turns."""
    if corpus not in _TIMINGS:
        fixture, vocab_name, lower = CORPORA[corpus]
        lines = request.getfixturevalue(fixture)
        impls = _implementations(lines, request.getfixturevalue("vocab_file")(vocab_name), lower)
        best = {name: float("inf") for name in impls}
        for r in range(ROUNDS + 1):  # round 0 warms up
            for name, (fn, _) in impls.items():
                if name.startswith("seed") and r not in (1,):
                    continue  # one timed round for the slow seed
                start = time.perf_counter()
                fn()
                if r > 0:
                    best[name] = min(best[name], time.perf_counter() - start)
        _TIMINGS[corpus] = {
            name: (best[name], nbytes(impls[name][1]), impls[name][0]) for name in impls
        }
    return _TIMINGS[corpus]


def _report(benchmark, request, corpus, name):
    timings = _interleaved(request, corpus)
    if name not in timings:
        pytest.skip(f"{name}: not installed")
    seconds, size, fn = timings[name]
    benchmark.group = f"tokenizer-{corpus}"
    benchmark.extra_info.update(
        bytes=size, name=name, interleaved_s=seconds, anchor=name == "pybert 1 thread(s)"
    )
    benchmark.pedantic(fn, rounds=1, iterations=1)


NAMES = [f"pybert {n} thread(s)" for n in ([1, ALL] if ALL > 1 else [1])] + [
    "pybert 1 thread + offsets",
    "HF tokenizers 1 thread",
    "HF tokenizers default threads",
    "TF Text FastBertTokenizer 1 thread",
    f"seed Python FullTokenizer (1/{SEED_SAMPLE} sample)",
]


@pytest.mark.parametrize("corpus", CORPORA)
@pytest.mark.parametrize("name", NAMES)
def test_tokenizer(benchmark, request, corpus, name):
    _report(benchmark, request, corpus, name)


def test_pybert_ids_are_the_seed_ids(request, english_corpus, vocab_file):
    """The benchmark compares equal work: pybert's ids are the seed's on a sample."""
    seed = load_seed_tokenization()
    if seed is None:
        pytest.skip("seed oracle not unpacked")
    sample = english_corpus[:500]
    tok = pybert.Tokenizer(vocab_file("uncased"))
    seed_tok = seed.FullTokenizer(vocab_file("uncased"))
    got = tok.encode_batch(sample, add_special_tokens=False, pad=False).ids
    for text, ids in zip(sample, got, strict=True):
        assert ids.tolist() == seed_tok.convert_tokens_to_ids(seed_tok.tokenize(text))
