"""Data tools: pybert vs the seed's own scripts (tests/_oracle), same input, same run.

1. SQuAD v1.1 dev featurization for evaluation (10,570 questions, seq 384,
   stride 128, query 64): read JSON, featurize, write the TFRecord. The seed:
   squad_lib.read_squad_examples + convert_examples_to_features +
   FeatureWriter with its FullTokenizer. pybert: pybert.data.squad on all
   cores, which also writes the post-processing arrays (.features.npz).
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

  .venv/bin/pytest bench/bench_data.py --benchmark-json=bench/data.json
  .venv/bin/python bench/report.py bench/data.json
"""

import os
import random
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from seed_oracle import (  # noqa: E402
    load_seed_pretraining,
    load_seed_squad_lib,
    load_seed_xtreme_libs,
    required,
)

tf = pytest.importorskip("tensorflow")

from pybert.data import pretraining, retrieval, squad, tagging  # noqa: E402
from pybert.tokenization import FullTokenizer  # noqa: E402

ALL = os.cpu_count() or 1
VOCAB = str(SHARED_DATA / "vocab/bert-base-uncased-vocab.txt")
SQUAD_DEV = str(SHARED_DATA / "squad/dev-v1.1.json")
PROSE = SHARED_DATA / "english_prose/gutenberg_27books_bert_format.txt"


@pytest.fixture(scope="module")
def seed_squad():
    lib = required(load_seed_squad_lib())
    lib.tf = tf  # the real TensorFlow for the seed's FeatureWriter
    return lib


def _squad_info(benchmark, name, anchor=False):
    benchmark.group = "squad-v1.1-dev-featurize-eval"
    benchmark.extra_info.update(items=10570, unit="questions", name=name, anchor=anchor)


def test_squad_featurize_seed(benchmark, seed_squad, tmp_path):
    _squad_info(benchmark, "seed squad_lib (Python, 1 thread)")
    tok = seed_squad.tokenization.FullTokenizer(VOCAB, do_lower_case=True)

    def run():
        examples = seed_squad.read_squad_examples(SQUAD_DEV, False, False)
        writer = seed_squad.FeatureWriter(str(tmp_path / "seed_eval.tf_record"), False)
        n = seed_squad.convert_examples_to_features(
            examples, tok, 384, 128, 64, False,
            lambda f, is_padding=False: writer.process_feature(f), batch_size=1)
        writer.close()
        return n

    n = benchmark.pedantic(run, rounds=1, iterations=1)
    assert n == 10833


@pytest.mark.parametrize("threads", [1, ALL] if ALL > 1 else [1])
def test_squad_featurize_pybert(benchmark, tmp_path, threads):
    _squad_info(benchmark, f"pybert {threads} thread(s)", anchor=threads == 1)
    tok = FullTokenizer(VOCAB, do_lower_case=True)

    def run():
        data = squad.read_squad(SQUAD_DEV, False)
        feats = squad.featurize(data, tok, 384, 128, 64, False, num_threads=threads)
        return squad.write_features(str(tmp_path / "eval.tf_record"), feats, is_training=False)

    n = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert n == 10833


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


def _pre_info(benchmark, name, corpus, anchor=False):
    benchmark.group = "pretraining-data-english-prose-1MB-dupe10"
    benchmark.extra_info.update(bytes=corpus.stat().st_size, name=name, anchor=anchor)


def test_pretraining_seed(benchmark, prose_corpus, tmp_path):
    seed = required(load_seed_pretraining())
    seed.tf = tf
    seed.FLAGS(["create_pretraining_data"])  # parse defaults (use_v2_feature_names=False)
    _pre_info(benchmark, "seed create_pretraining_data (Python, 1 process)", prose_corpus)
    tok = seed.tokenization.FullTokenizer(VOCAB, do_lower_case=True)

    def run():
        instances = seed.create_training_instances(
            [str(prose_corpus)], tok, 128, OPTS.dupe_factor, OPTS.short_seq_prob,
            OPTS.masked_lm_prob, 20, random.Random(OPTS.random_seed))
        seed.write_instance_to_example_files(instances, tok, 128, 20,
                                             [str(tmp_path / "seed.tfrecord")], False)
        return len(instances)

    benchmark.extra_info["instances"] = benchmark.pedantic(run, rounds=1, iterations=1)


@pytest.mark.parametrize("workers", [1, ALL] if ALL > 1 else [1])
def test_pretraining_pybert(benchmark, prose_corpus, tmp_path, workers):
    chunk_mb = 100.0 if workers == 1 else 0.25
    _pre_info(benchmark, f"pybert {workers} worker(s), chunk {chunk_mb:g} MB", prose_corpus,
              anchor=workers == 1)

    def run():
        return pretraining.create_pretraining_data(
            [str(prose_corpus)], [str(tmp_path / "out.tfrecord")], VOCAB, OPTS,
            num_workers=workers, chunk_mb=chunk_mb, progress=False)

    stats = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["instances"] = stats.instances
    assert stats.instances > 10000


MULTI_VOCAB = str(SHARED_DATA / "vocab/bert-base-multilingual-cased-vocab.txt")


@pytest.fixture(scope="module")
def seed_xtreme():
    return required(load_seed_xtreme_libs())


@pytest.fixture(scope="module")
def tatoeba_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tatoeba")
    for side, name in (("zh", "cmn"), ("en", "eng")):
        src = SHARED_DATA / f"chinese/tatoeba.cmn-eng.{name}.txt"
        (d / f"zh-en.{side}").write_bytes(src.read_bytes())
    return d


def _tatoeba_info(benchmark, name, anchor=False):
    benchmark.group = "tatoeba-zh-en-retrieval-records"
    benchmark.extra_info.update(items=2000, unit="sentences", name=name, anchor=anchor)


def test_tatoeba_seed(benchmark, seed_xtreme, tatoeba_dir, tmp_path):
    _tatoeba_info(benchmark, "seed sentence_retrieval_lib (Python, 1 thread)")
    seed_lib = seed_xtreme[0]
    tok = seed_lib.tokenization.FullTokenizer(MULTI_VOCAB, do_lower_case=False)
    processor = seed_lib.TatoebaProcessor()
    processor.languages = ["zh"]

    def run():
        return seed_lib.generate_sentence_retrevial_tf_record(
            processor, str(tatoeba_dir), tok, test_data_output_path=str(tmp_path / "seed"))

    meta = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert meta["number_test_data"] == {"zh-en.zh": 1000, "zh-en.en": 1000}


@pytest.mark.parametrize("threads", [1, ALL] if ALL > 1 else [1])
def test_tatoeba_pybert(benchmark, tatoeba_dir, tmp_path, threads):
    _tatoeba_info(benchmark, f"pybert {threads} thread(s)", anchor=threads == 1)
    tok = FullTokenizer(MULTI_VOCAB, do_lower_case=False)

    def run():
        return retrieval.generate_retrieval_tf_record(
            "tatoeba", str(tatoeba_dir), tok, test_data_output_path=str(tmp_path / "out"),
            num_threads=threads)

    meta = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert meta["number_test_data"] == {"zh-en.zh": 1000, "zh-en.en": 1000}


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


def _panx_info(benchmark, name, words, anchor=False):
    benchmark.group = "tagging-panx-layout-english-prose-records"
    benchmark.extra_info.update(items=words, unit="words", name=name, anchor=anchor)


def test_tagging_seed(benchmark, seed_xtreme, panx_dir, tmp_path):
    d, words = panx_dir
    _panx_info(benchmark, "seed tagging_data_lib (Python, 1 thread)", words)
    seed_lib = seed_xtreme[1]
    tok = seed_xtreme[0].tokenization.FullTokenizer(VOCAB, do_lower_case=True)
    processor = seed_lib.PanxProcessor()
    processor.supported_languages = ["en"]

    def run():
        return seed_lib.generate_tf_record_from_data_file(
            processor, str(d), tok, 128, str(tmp_path / "train"), str(tmp_path / "eval"),
            str(tmp_path / "test_{}"), lambda w: w)

    meta = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["examples"] = meta["train_data_size"]


@pytest.mark.parametrize("threads", [1, ALL] if ALL > 1 else [1])
def test_tagging_pybert(benchmark, panx_dir, tmp_path, threads):
    d, words = panx_dir
    _panx_info(benchmark, f"pybert {threads} thread(s)", words, anchor=threads == 1)
    tok = FullTokenizer(VOCAB, do_lower_case=True)

    def run():
        return tagging.generate_tagging_tf_record(
            "panx", str(d), tok, 128, str(tmp_path / "train"), str(tmp_path / "eval"),
            str(tmp_path / "test_{}"), num_threads=threads)

    meta = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["examples"] = meta["train_data_size"]
