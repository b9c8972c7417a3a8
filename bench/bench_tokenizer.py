"""Tokenizer throughput: pybert vs HF `tokenizers`, TF Text FastBertTokenizer and
the pure-Python original, on the same text in the same run.

Python list of str in, int32 ids out, no special tokens. Run:
  .venv/bin/pytest bench/bench_tokenizer.py --benchmark-json=bench/tokenizer.json
  python bench/report.py bench/tokenizer.json
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import nbytes

import pybert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from seed_oracle import load_seed_tokenization  # noqa: E402

CORPORA = {
    "english": ("english_corpus", "uncased", True),
    "multilingual": ("multilingual_corpus", "multilingual-cased", False),
}
ALL = os.cpu_count() or 1
ROUNDS = int(os.environ.get("PYBERT_BENCH_ROUNDS", "5"))


def _setup(request, corpus):
    fixture, vocab, lower = CORPORA[corpus]
    lines = request.getfixturevalue(fixture)
    return lines, request.getfixturevalue("vocab_file")(vocab), lower


def _run(benchmark, fn, lines, group, name):
    benchmark.group = group
    benchmark.extra_info.update(bytes=nbytes(lines), name=name, anchor=name == "pybert 1 thread(s)")
    return benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("corpus", CORPORA)
@pytest.mark.parametrize("threads", [1, ALL] if ALL > 1 else [1])
def test_pybert(benchmark, request, corpus, threads):
    lines, vocab, lower = _setup(request, corpus)
    tok = pybert.Tokenizer(vocab, do_lower_case=lower)

    def run():
        return tok.encode_batch(
            lines, add_special_tokens=False, return_offsets=False, pad=False, num_threads=threads
        ).flat_ids

    ids = _run(benchmark, run, lines, f"tokenizer-{corpus}", f"pybert {threads} thread(s)")
    assert ids.dtype == np.int32


@pytest.mark.parametrize("corpus", CORPORA)
def test_pybert_with_offsets(benchmark, request, corpus):
    lines, vocab, lower = _setup(request, corpus)
    tok = pybert.Tokenizer(vocab, do_lower_case=lower)
    _run(
        benchmark,
        lambda: tok.encode_batch(lines, add_special_tokens=False, pad=False),
        lines,
        f"tokenizer-{corpus}",
        "pybert 1 thread + offsets",
    )


@pytest.mark.parametrize("corpus", CORPORA)
@pytest.mark.parametrize("parallel", [False, True])
def test_hf_tokenizers(benchmark, request, corpus, parallel):
    tokenizers = pytest.importorskip("tokenizers")
    lines, vocab, lower = _setup(request, corpus)
    hf = tokenizers.BertWordPieceTokenizer(vocab, lowercase=lower, strip_accents=lower)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"

    def run():
        encs = hf.encode_batch(lines, add_special_tokens=False)
        return np.concatenate([np.asarray(e.ids, dtype=np.int32) for e in encs])

    _run(
        benchmark,
        run,
        lines,
        f"tokenizer-{corpus}",
        "HF tokenizers default threads" if parallel else "HF tokenizers 1 thread",
    )


@pytest.mark.parametrize("corpus", CORPORA)
def test_tf_text_fast_bert(benchmark, request, corpus):
    tf = pytest.importorskip("tensorflow")
    tf_text = pytest.importorskip("tensorflow_text")
    lines, vocab, lower = _setup(request, corpus)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    with open(vocab, encoding="utf-8") as f:
        vocab_list = [line.strip() for line in f]
    tok = tf_text.FastBertTokenizer(
        vocab=vocab_list, token_out_type=tf.int32, lower_case_nfd_strip_accents=lower
    )
    inputs = tf.constant(lines)

    def run():
        return tok.tokenize(inputs).flat_values.numpy()

    _run(benchmark, run, lines, f"tokenizer-{corpus}", "TF Text FastBertTokenizer 1 thread")


@pytest.mark.parametrize("corpus", CORPORA)
def test_python_original(benchmark, request, corpus):
    """The seed's own pure-Python FullTokenizer (tests/_oracle)."""
    seed = load_seed_tokenization()
    if seed is None:
        pytest.skip("seed oracle not unpacked (run tools/run_tests.sh once)")
    lines, vocab, lower = _setup(request, corpus)
    lines = lines[: max(1, len(lines) // 20)]  # the original is slow: a 1/20 sample
    tok = seed.FullTokenizer(vocab, do_lower_case=lower)

    def run():
        return [
            np.asarray(tok.convert_tokens_to_ids(tok.tokenize(x)), dtype=np.int32) for x in lines
        ]

    benchmark.group = f"tokenizer-{corpus}"
    benchmark.extra_info.update(bytes=nbytes(lines), name="seed Python FullTokenizer (1/20 sample)")
    benchmark.pedantic(run, rounds=1, iterations=1)
