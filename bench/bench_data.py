"""Data tools: pybert vs the seed's own scripts (tests/_oracle), same input, same run.

1. SQuAD v1.1 dev featurization for evaluation (10,570 questions, seq 384,
   stride 128, query 64): read JSON, featurize, write the TFRecord. The seed:
   squad_lib.read_squad_examples + convert_examples_to_features +
   FeatureWriter with its FullTokenizer. pybert: pybert.data.squad on all
   cores, which also writes the post-processing arrays (.features.npz).
1b. The same featurization into arrays in memory (no TFRecord), from the JSON
   file: pybert.data.squad.featurize vs HuggingFace's BertTokenizerFast (Rust)
   called as HuggingFace's question-answering example (run_qa.py) calls it for
   evaluation features (truncation="only_second", max_length 384, stride 128,
   overflowing windows, offsets, padded, NumPy), on 1 thread and on its default
   threads. Not quite the same windows: HF's stride is the overlap of two
   windows, the seed's doc_stride the step between their starts (and HF does
   not cut questions at 64 tokens), so HF gives 10,784 features to pybert's
   10,833; checked: on every question to which both give one window (about
   10,400), HF's input ids, attention mask and token type ids are pybert's.
2. Pre-training data from ../shared/data/english_prose (the first 40 kB of
   each of the 27 books: 27 documents, about 1 MB), seq 128, 20 predictions,
   dupe_factor 10: the seed's create_training_instances +
   write_instance_to_example_files vs pybert.data.pretraining (one worker and
   one chunk: the seed's exact output; and all cores with 0.25 MB chunks).
3. XTREME data: Tatoeba retrieval records from the real Chinese-English pairs
   (1000 lines a side, multilingual vocab), the seed's
   sentence_retrieval_lib vs pybert.data.retrieval; and tagging records in
   the PAN-X layout built from the English prose (the first 20 kB of each
   book, one word per line, a sentence per line of text, labels by word
   length), the seed's tagging_data_lib vs pybert.data.tagging. Both seeds
   run with the real TensorFlow writing their TFRecords.

Outputs are compared before anything is timed: in each group the sides run once,
untimed (the warm-up of every side), and pybert's records must be the seed's,
record for record (as tests/test_data_*.py compare them; for pre-training data
pybert on one worker and one chunk, whose claim is the seed's exact output; the
multi-worker run with 0.25 MB chunks must write the bytes of a one-worker run
with the same chunks); with the seed absent (PYBERT_BENCH_ALLOW_MISSING=1)
pybert on all threads must write the bytes of one thread. Then
the sides take turns for ROUNDS rounds (default 3; PYBERT_BENCH_ROUNDS) and
each row reports its best round (extra_info["interleaved_s"]). A missing seed
oracle fails the seed's rows (see conftest.py).

  .venv/bin/pytest bench/bench_data.py --benchmark-json=bench/data.json
  .venv/bin/python bench/report.py bench/data.json
"""

import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    ALLOW_MISSING,
    SEED_MISSING,
    SHARED_DATA,
    hf_parallelism,
    interleave,
    missing,
    report_interleaved,
    rounds,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from seed_oracle import (  # noqa: E402
    load_seed_pretraining,
    load_seed_squad_lib,
    load_seed_xtreme_libs,
)

# The seeds write their records with the real TensorFlow: without it this suite fails to
# collect, unless missing competitors are allowed (then it is skipped)
if ALLOW_MISSING:
    tf = pytest.importorskip("tensorflow")
else:
    import tensorflow as tf

from pybert.data import pretraining, retrieval, squad, tagging  # noqa: E402
from pybert.data.records import read_examples  # noqa: E402
from pybert.tokenization import FullTokenizer  # noqa: E402

ALL = os.cpu_count() or 1
THREADS = [1, ALL] if ALL > 1 else [1]
ROUNDS = rounds("3")  # the seed's SQuAD featurization takes ~25 s a round on a 2-core host
VOCAB = str(SHARED_DATA / "vocab/bert-base-uncased-vocab.txt")
SQUAD_DEV = str(SHARED_DATA / "squad/dev-v1.1.json")
PROSE = SHARED_DATA / "english_prose/gutenberg_27books_bert_format.txt"


def _same_records(ours, seed):
    """Record for record: the same features, dtypes and values (tests/test_data_*.py)."""
    a, b = read_examples(str(ours)), read_examples(str(seed))
    assert len(a) == len(b) > 0, f"{ours}: {len(a)} records, the seed's {len(b)}"
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.keys() == y.keys(), f"{ours} record {i}: features {sorted(x)} vs {sorted(y)}"
        for k in x:
            assert np.asarray(x[k]).dtype == np.asarray(y[k]).dtype, f"{ours} record {i}: {k}"
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"{ours} record {i}: {k}")


def _eq(a, b):
    assert a == b, f"{a} != {b}"


def _more(a, b):
    assert a > b, f"{a} <= {b}"


def _same_bytes(ours, other):
    assert Path(ours).read_bytes() == Path(other).read_bytes(), f"{ours} differs from {other}"


def _timed_group(impls, checks, summary=None):
    """Interleaved rounds of impls (name -> fn); checks(outputs) -> name -> (what was
    compared, a function that raises AssertionError when it is not so); summary(output) ->
    extra_info of the row."""
    checked, info = {}, {}

    def check(outputs):
        for name, out in outputs.items():
            info[name] = summary(out) if summary else {}
        for name, (what, fn) in checks(outputs).items():
            try:
                fn()
                checked[name] = (None, what)
            except AssertionError as e:
                checked[name] = (f"{name}: not {what}: {e}", what)

    times = interleave(impls, ROUNDS, check)
    return {name: (times[name], fn, checked[name], info[name]) for name, fn in impls.items()}


def _row(request, label, group, name, **info):
    """Reports row `name` of a group's timings (or fails/skips when its side is missing)."""
    if name not in group:
        missing(f"{name}: {SEED_MISSING}")
    times, fn, (problem, checked), summary = group[name]
    assert problem is None, problem
    report_interleaved(request, label, fn, times, name=name, checked=checked, **summary, **info)


def _seed_check(seed_name, seed_path, pybert_names, pybert_path):
    """Checks: each pybert side's records are the seed's (or, without the seed, those of
    pybert on one thread)."""

    def checks(outputs):
        out = {}
        ref = seed_name if seed_name in outputs else None
        for name in pybert_names:
            if ref is not None:
                out[name] = ("the seed's records", lambda name=name: [
                    _same_records(p, s) for p, s in zip(pybert_path(name), seed_path, strict=True)])
            elif name != pybert_names[0]:
                out[name] = ("the bytes of pybert on one thread", lambda name=name: [
                    _same_bytes(p, q) for p, q in zip(pybert_path(name),
                                                      pybert_path(pybert_names[0]), strict=True)])
            else:
                out[name] = (f"not compared with the seed: {SEED_MISSING}", lambda: None)
        if ref is not None:
            out[ref] = ("the reference", lambda: None)
        return out

    return checks


# -- SQuAD featurization ------------------------------------------------------------------

SQUAD_SEED = "seed squad_lib (Python, 1 thread)"
SQUAD_NAMES = [SQUAD_SEED] + [f"pybert {t} thread(s)" for t in THREADS]


@pytest.fixture(scope="module")
def squad_timings(tmp_path_factory):
    d = tmp_path_factory.mktemp("squad")
    impls = {}
    seed = load_seed_squad_lib()
    if seed is not None:
        seed.tf = tf  # the real TensorFlow for the seed's FeatureWriter
        seed_tok = seed.tokenization.FullTokenizer(VOCAB, do_lower_case=True)

        def run_seed():
            examples = seed.read_squad_examples(SQUAD_DEV, False, False)
            writer = seed.FeatureWriter(str(d / "seed_eval.tf_record"), False)
            n = seed.convert_examples_to_features(
                examples, seed_tok, 384, 128, 64, False,
                lambda f, is_padding=False: writer.process_feature(f), batch_size=1)
            writer.close()
            return n

        impls[SQUAD_SEED] = run_seed
    tok = FullTokenizer(VOCAB, do_lower_case=True)

    def path(name):
        return [d / f"{name.split()[1]}_eval.tf_record"]

    for threads in THREADS:
        def run(threads=threads):
            data = squad.read_squad(SQUAD_DEV, False)
            feats = squad.featurize(data, tok, 384, 128, 64, False, num_threads=threads)
            return squad.write_features(str(path(f"pybert {threads}")[0]), feats,
                                        is_training=False)

        impls[f"pybert {threads} thread(s)"] = run

    seed_checks = _seed_check(SQUAD_SEED, [d / "seed_eval.tf_record"], SQUAD_NAMES[1:], path)

    def checks(outputs):
        out = seed_checks(outputs)
        for name, n in outputs.items():  # and the count of features
            what, fn = out[name]
            out[name] = (what + ", 10,833 features", lambda fn=fn, n=n: (fn(), _eq(n, 10833)))
        return out

    return _timed_group(impls, checks)


@pytest.mark.parametrize("name", SQUAD_NAMES)
def test_squad_featurize(request, squad_timings, name):
    _row(request, "squad-v1.1-dev-featurize-eval", squad_timings, name, items=10570,
         unit="questions", anchor=name == "pybert 1 thread(s)")


# -- SQuAD featurization in memory: pybert vs HuggingFace's fast tokenizer -----------------

SQUAD_MEM_ANCHOR = "pybert 1 thread(s), arrays"
SQUAD_HF = ("HF BertTokenizerFast, run_qa.py's call, 1 thread",
            "HF BertTokenizerFast, run_qa.py's call, default threads")
SQUAD_MEM_NAMES = [f"pybert {t} thread(s), arrays" for t in THREADS] + list(SQUAD_HF)


def _squad_lists(path):
    """Questions (left-stripped, as run_qa.py) and contexts of a SQuAD JSON, one per question."""
    with open(path, encoding="utf-8") as f:
        articles = json.load(f)["data"]
    questions, contexts = [], []
    for article in articles:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                questions.append(qa["question"].lstrip())
                contexts.append(para["context"])
    return questions, contexts


@pytest.fixture(scope="module")
def squad_memory_timings(tmp_path_factory):
    """Featurizing the dev set for evaluation into arrays in memory (no TFRecord), from the
    JSON file: pybert.data.squad.featurize (the seed's windows, and the post-processing
    arrays) vs HuggingFace's BertTokenizerFast called as the HuggingFace question-answering
    example (run_qa.py) calls it for evaluation features: truncation="only_second",
    max_length=384, stride=128, return_overflowing_tokens, return_offsets_mapping,
    padding="max_length", NumPy tensors."""
    tok = FullTokenizer(VOCAB, do_lower_case=True)
    impls = {}
    for threads in THREADS:
        impls[f"pybert {threads} thread(s), arrays"] = (
            lambda threads=threads: squad.featurize(squad.read_squad(SQUAD_DEV, False), tok,
                                                    384, 128, 64, False, num_threads=threads))
    hf = None
    try:
        import transformers

        vocab_dir = tmp_path_factory.mktemp("hf_vocab")
        (vocab_dir / "vocab.txt").write_bytes(Path(VOCAB).read_bytes())
        hf = transformers.BertTokenizerFast.from_pretrained(str(vocab_dir), do_lower_case=True)
    except ImportError as e:
        hf_absent = f"transformers not installed ({e})"

    if hf is not None:
        def run_hf(parallel):
            with hf_parallelism(parallel):
                questions, contexts = _squad_lists(SQUAD_DEV)
                return hf(questions, contexts, truncation="only_second", max_length=384,
                          stride=128, return_overflowing_tokens=True,
                          return_offsets_mapping=True, padding="max_length",
                          return_tensors="np")

        impls[SQUAD_HF[0]] = lambda: run_hf(False)
        impls[SQUAD_HF[1]] = lambda: run_hf(True)

    def checks(outputs):
        anchor = outputs[SQUAD_MEM_ANCHOR]
        n = anchor.num_examples
        out = {SQUAD_MEM_ANCHOR: ("the anchor; 10,833 features (the seed's count, see above)",
                                  lambda: _eq(len(anchor), 10833))}
        for name in outputs:
            if name.startswith("pybert") and name != SQUAD_MEM_ANCHOR:
                out[name] = ("pybert 1 thread's arrays, exactly", lambda name=name: [
                    np.testing.assert_array_equal(outputs[name].arrays[k], anchor.arrays[k])
                    for k in anchor.arrays])
            elif name.startswith("HF"):
                rows = _single_window_pairs(outputs[name], anchor)
                out[name] = (f"on every question both give one window ({len(rows[0]):,} of "
                             f"{n:,}): pybert's input ids, mask and segment ids",
                             lambda name=name, rows=rows: _same_single_windows(
                                 outputs[name], anchor, *rows))
        return out

    def summary(out):  # the number of features (windows): the two sides' strides differ
        return {"features": len(out) if isinstance(out, squad.SquadFeatures)
                else len(out["input_ids"])}

    return _timed_group(impls, checks, summary), None if hf is not None else hf_absent


def _single_window_pairs(enc, feats):
    """The questions to which both sides give exactly one window; the row of that window
    on HuggingFace's side and on pybert's."""
    n = feats.num_examples
    hf_example = np.asarray(enc["overflow_to_sample_mapping"])
    both = np.flatnonzero((np.bincount(hf_example, minlength=n) == 1)
                          & (np.bincount(feats.feature_example, minlength=n) == 1))
    # both mappings are sorted by question: the first row of a question is its window
    return both, np.searchsorted(hf_example, both), np.searchsorted(feats.feature_example, both)


def _same_single_windows(enc, feats, both, row_hf, row_pb):
    n = feats.num_examples
    assert len(both) > 0.9 * n, f"only {len(both)} of {n} questions have one window on both sides"
    for theirs, ours in (("input_ids", "input_ids"), ("attention_mask", "input_mask"),
                         ("token_type_ids", "segment_ids")):
        a = np.asarray(enc[theirs])[row_hf]
        b = feats.arrays[ours][row_pb]
        bad = np.flatnonzero((a != b).any(axis=1))
        assert not len(bad), (f"{theirs} differ on {len(bad)} of {len(both)} questions, first: "
                              f"question {both[bad[0]]}")


@pytest.mark.parametrize("name", SQUAD_MEM_NAMES)
def test_squad_featurize_in_memory(request, squad_memory_timings, name):
    group, absent = squad_memory_timings
    if name not in group:
        missing(f"{name}: {absent}")
    _row(request, "squad-v1.1-dev-featurize-eval-in-memory", group, name,
         items=10570, unit="questions", anchor=name == SQUAD_MEM_ANCHOR)


# -- pre-training data --------------------------------------------------------------------


@pytest.fixture(scope="module")
def prose_corpus(tmp_path_factory):
    """The first 40 kB of each book (whole lines), documents separated by blank lines."""
    docs, cur, size = [], [], 0
    for line in PROSE.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            if cur:
                docs.append(cur)
            cur, size = [], 0
            continue
        if size < 40_000:
            cur.append(line)
            size += len(line.encode("utf-8"))
    if cur:
        docs.append(cur)
    path = tmp_path_factory.mktemp("prose") / "prose_27x40k.txt"
    path.write_text("\n\n".join("\n".join(d) for d in docs) + "\n", encoding="utf-8")
    return path


OPTS = pretraining.PretrainingOptions(max_seq_length=128, max_predictions_per_seq=20,
                                      dupe_factor=10)
PRE_SEED = "seed create_pretraining_data (Python, 1 process)"


def _pre_name(workers):
    return f"pybert {workers} worker(s), chunk {100.0 if workers == 1 else 0.25:g} MB"


PRE_NAMES = [PRE_SEED] + [_pre_name(w) for w in THREADS]


@pytest.fixture(scope="module")
def pretraining_timings(prose_corpus, tmp_path_factory):
    d = tmp_path_factory.mktemp("pretraining")
    impls = {}
    seed = load_seed_pretraining()
    if seed is not None:
        seed.tf = tf
        seed.FLAGS(["create_pretraining_data"])  # parse defaults (use_v2_feature_names=False)
        seed_tok = seed.tokenization.FullTokenizer(VOCAB, do_lower_case=True)

        def run_seed():
            instances = seed.create_training_instances(
                [str(prose_corpus)], seed_tok, 128, OPTS.dupe_factor, OPTS.short_seq_prob,
                OPTS.masked_lm_prob, 20, random.Random(OPTS.random_seed))
            seed.write_instance_to_example_files(instances, seed_tok, 128, 20,
                                                 [str(d / "seed.tfrecord")], False)
            return len(instances)

        impls[PRE_SEED] = run_seed

    def run(workers, chunk_mb, out):
        return pretraining.create_pretraining_data(
            [str(prose_corpus)], [str(out)], VOCAB, OPTS, num_workers=workers,
            chunk_mb=chunk_mb, progress=False).instances

    for workers in THREADS:
        impls[_pre_name(workers)] = (
            lambda w=workers: run(w, 100.0 if w == 1 else 0.25, d / f"w{w}.tfrecord"))

    def checks(outputs):
        out = {}
        one = _pre_name(1)
        if PRE_SEED in outputs:
            out[PRE_SEED] = ("the reference", lambda: None)
            out[one] = ("the seed's records", lambda: (
                _eq(outputs[one], outputs[PRE_SEED]),
                _same_records(d / "w1.tfrecord", d / "seed.tfrecord")))
        else:
            out[one] = (f"not compared with the seed: {SEED_MISSING}", lambda: None)
        for w in THREADS[1:]:
            # not the seed's output (other chunks): the bytes of one worker, same chunks
            def same_as_one_worker(w=w):
                _eq(run(1, 0.25, d / "w1_chunks.tfrecord"), outputs[_pre_name(w)])
                _same_bytes(d / f"w{w}.tfrecord", d / "w1_chunks.tfrecord")

            out[_pre_name(w)] = ("the bytes of 1 worker with 0.25 MB chunks", same_as_one_worker)
        for name, n in outputs.items():
            what, fn = out[name]
            out[name] = (what + ", over 10,000 instances",
                         lambda fn=fn, n=n: (fn(), _more(n, 10000)))
        return out

    group = _timed_group(impls, checks, lambda n: {"instances": n})
    return group, prose_corpus.stat().st_size


@pytest.mark.parametrize("name", PRE_NAMES)
def test_pretraining(request, pretraining_timings, name):
    group, size = pretraining_timings
    _row(request, "pretraining-data-english-prose-1MB-dupe10", group, name, bytes=size,
         anchor=name == _pre_name(1))


# -- XTREME data --------------------------------------------------------------------------

MULTI_VOCAB = str(SHARED_DATA / "vocab/bert-base-multilingual-cased-vocab.txt")


@pytest.fixture(scope="module")
def seed_xtreme():
    return load_seed_xtreme_libs()  # (None, None) without the oracle


@pytest.fixture(scope="module")
def tatoeba_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tatoeba")
    for side, name in (("zh", "cmn"), ("en", "eng")):
        src = SHARED_DATA / f"chinese/tatoeba.cmn-eng.{name}.txt"
        (d / f"zh-en.{side}").write_bytes(src.read_bytes())
    return d


TATOEBA_SEED = "seed sentence_retrieval_lib (Python, 1 thread)"
TATOEBA_NAMES = [TATOEBA_SEED] + [f"pybert {t} thread(s)" for t in THREADS]
TATOEBA_FILES = ("zh-en-zh.test.tfrecords", "zh-en-en.test.tfrecords")


def _meta_checks(seed_checks, meta_ok):
    """seed_checks plus: each side's meta data passes meta_ok, pybert's is the seed's."""

    def checks(outputs):
        out = seed_checks(outputs)
        ref = next(iter(outputs.values()))  # the seed's, when it ran (it runs first)
        for name, meta in outputs.items():
            what, fn = out[name]

            def both(fn=fn, meta=meta):
                fn()
                meta_ok(meta)
                _eq(list(meta.items()), list(ref.items()))  # the key order too

            out[name] = (what + ", the same meta data", both)
        return out

    return checks


@pytest.fixture(scope="module")
def tatoeba_timings(seed_xtreme, tatoeba_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("tatoeba_out")
    impls = {}
    seed_lib = seed_xtreme[0]
    if seed_lib is not None:
        seed_tok = seed_lib.tokenization.FullTokenizer(MULTI_VOCAB, do_lower_case=False)
        processor = seed_lib.TatoebaProcessor()
        processor.languages = ["zh"]
        impls[TATOEBA_SEED] = lambda: seed_lib.generate_sentence_retrevial_tf_record(
            processor, str(tatoeba_dir), seed_tok, test_data_output_path=str(d / "seed"))
    tok = FullTokenizer(MULTI_VOCAB, do_lower_case=False)
    for threads in THREADS:
        impls[f"pybert {threads} thread(s)"] = (
            lambda t=threads: retrieval.generate_retrieval_tf_record(
                "tatoeba", str(tatoeba_dir), tok, test_data_output_path=str(d / f"t{t}"),
                num_threads=t))

    def path(name):
        return [d / f"t{name.split()[1]}" / f for f in TATOEBA_FILES]

    def meta_ok(meta):
        _eq(meta["number_test_data"], {"zh-en.zh": 1000, "zh-en.en": 1000})

    seed_checks = _seed_check(TATOEBA_SEED, [d / "seed" / f for f in TATOEBA_FILES],
                              TATOEBA_NAMES[1:], path)
    return _timed_group(impls, _meta_checks(seed_checks, meta_ok))


@pytest.mark.parametrize("name", TATOEBA_NAMES)
def test_tatoeba(request, tatoeba_timings, name):
    _row(request, "tatoeba-zh-en-retrieval-records", tatoeba_timings, name, items=2000,
         unit="sentences", anchor=name == "pybert 1 thread(s)")


@pytest.fixture(scope="module")
def panx_dir(tmp_path_factory):
    """train-en.tsv (and dev-en/test-en, small) in the PAN-X layout from the prose: the
    first 20 kB of each book, a sentence per line of text, a word per line."""
    labels = tagging.PANX_LABELS
    sentences, size, book = [], 0, []
    for line in PROSE.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            sentences += book
            book, size = [], 0
            continue
        if size < 20_000:
            book.append(line.split())
            size += len(line.encode("utf-8"))
    sentences += book
    d = tmp_path_factory.mktemp("panx")
    block = "\n".join("".join(f"{w}\t{labels[len(w) % len(labels)]}\n" for w in s)
                      for s in sentences if s)
    (d / "train-en.tsv").write_text(block, encoding="utf-8")
    small = "\n".join(block.split("\n\n")[:50])
    for name in ("dev-en.tsv", "test-en.tsv"):
        (d / name).write_text(small, encoding="utf-8")
    return d, sum(len(s) for s in sentences)


TAGGING_SEED = "seed tagging_data_lib (Python, 1 thread)"
TAGGING_NAMES = [TAGGING_SEED] + [f"pybert {t} thread(s)" for t in THREADS]
TAGGING_FILES = ("train", "eval", "test_en")


@pytest.fixture(scope="module")
def tagging_timings(seed_xtreme, panx_dir, tmp_path_factory):
    d, _ = panx_dir
    out = tmp_path_factory.mktemp("panx_out")
    impls = {}
    seed_lib = seed_xtreme[1]
    if seed_lib is not None:
        seed_tok = seed_xtreme[0].tokenization.FullTokenizer(VOCAB, do_lower_case=True)
        processor = seed_lib.PanxProcessor()
        processor.supported_languages = ["en"]
        s = out / "seed"
        impls[TAGGING_SEED] = lambda: seed_lib.generate_tf_record_from_data_file(
            processor, str(d), seed_tok, 128, str(s / "train"), str(s / "eval"),
            str(s / "test_{}"), lambda w: w)
    tok = FullTokenizer(VOCAB, do_lower_case=True)
    for threads in THREADS:
        o = out / f"t{threads}"
        impls[f"pybert {threads} thread(s)"] = (
            lambda t=threads, o=o: tagging.generate_tagging_tf_record(
                "panx", str(d), tok, 128, str(o / "train"), str(o / "eval"),
                str(o / "test_{}"), num_threads=t))

    def path(name):
        return [out / f"t{name.split()[1]}" / f for f in TAGGING_FILES]

    def meta_ok(meta):
        _more(meta["train_data_size"], 1000)

    seed_checks = _seed_check(TAGGING_SEED, [out / "seed" / f for f in TAGGING_FILES],
                              TAGGING_NAMES[1:], path)
    return _timed_group(impls, _meta_checks(seed_checks, meta_ok),
                        lambda meta: {"examples": meta["train_data_size"]})


@pytest.mark.parametrize("name", TAGGING_NAMES)
def test_tagging(request, tagging_timings, panx_dir, name):
    _row(request, "tagging-panx-layout-english-prose-records", tagging_timings, name,
         items=panx_dir[1], unit="words", anchor=name == "pybert 1 thread(s)")
