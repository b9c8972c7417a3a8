"""XTREME retrieval (Tatoeba, BUCC) and tagging (PAN-X, UDPOS) data against the seed.

The oracle is the seed's own sentence_retrieval_lib / tagging_data_lib
(tf-models-official 2.4.0, tests/_oracle) with its pure-Python FullTokenizer
and the real TensorFlow: it writes its TFRecords and meta data, and ours must
hold the same features, record for record.

Data: Tatoeba's real Chinese-English pairs (../shared/data/chinese, 1000
lines a side) under the XTREME names (zh-en.zh, zh-en.en). No BUCC, PAN-X or
UDPOS file is in ../shared/data, so those layouts are built here from the same
real sentences: BUCC rows get ids "zh-<n>", and tagging files take the
sentences' whitespace-separated words (Chinese: one character a word) with
labels assigned by word length, which exercises the label mapping but is not
a real annotation.
"""

import json
import logging
import shutil

import numpy as np
import pytest
from seed_oracle import load_seed_input_pipeline, load_seed_xtreme_libs, required

tf = pytest.importorskip("tensorflow")

from pybert.data import pipelines, retrieval, tagging  # noqa: E402
from pybert.data.classification import DataError  # noqa: E402
from pybert.data.records import read_examples  # noqa: E402
from pybert.tokenization import FullTokenizer  # noqa: E402


@pytest.fixture(scope="module")
def seed_libs():
    return required(load_seed_xtreme_libs())


@pytest.fixture(scope="module", params=["uncased", "multi_cased"])
def tokenizers(request, vocab_path, seed_tokenization):
    from conftest import VOCABS

    path, lower = str(vocab_path(request.param)), VOCABS[request.param][1]
    return (FullTokenizer(path, do_lower_case=lower),
            seed_tokenization.FullTokenizer(path, do_lower_case=lower))


@pytest.fixture(scope="module")
def sentences(data_dir):
    base = data_dir / "chinese"
    zh = (base / "tatoeba.cmn-eng.cmn.txt").read_text(encoding="utf-8").split("\n")[:1000]
    en = (base / "tatoeba.cmn-eng.eng.txt").read_text(encoding="utf-8").split("\n")[:1000]
    assert len(zh) == len(en) == 1000 and all(zh) and all(en)
    return zh, en


@pytest.fixture(scope="module")
def tatoeba_dir(tmp_path_factory, data_dir):
    d = tmp_path_factory.mktemp("tatoeba")
    shutil.copy(data_dir / "chinese" / "tatoeba.cmn-eng.cmn.txt", d / "zh-en.zh")
    shutil.copy(data_dir / "chinese" / "tatoeba.cmn-eng.eng.txt", d / "zh-en.en")
    return d


def _records(path):
    rows = read_examples(str(path))
    if not rows:
        return {}
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def _assert_same_records(ours, seed):
    a, b = _records(ours), _records(seed)
    assert sorted(a) == sorted(b)
    for k in b:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    return a


# -- retrieval -----------------------------------------------------------------

def test_tatoeba_equals_seed(tmp_path, tatoeba_dir, tokenizers, seed_libs):
    seed_lib = seed_libs[0]
    ours_tok, seed_tok = tokenizers
    processor = seed_lib.TatoebaProcessor()
    processor.languages = ["zh"]  # the seed loops over all 36 and needs every file
    seed_meta = seed_lib.generate_sentence_retrevial_tf_record(
        processor, str(tatoeba_dir), seed_tok, test_data_output_path=str(tmp_path / "seed"),
        max_seq_length=32)
    meta = retrieval.generate_retrieval_tf_record(
        "tatoeba", str(tatoeba_dir), ours_tok, test_data_output_path=str(tmp_path / "ours"),
        max_seq_length=32)
    assert meta == seed_meta and list(meta) == list(seed_meta)  # the JSON's key order too
    assert meta["number_test_data"] == {"zh-en.zh": 1000, "zh-en.en": 1000}
    for side in ("zh", "en"):
        name = f"zh-en-{side}.test.tfrecords"
        got = _assert_same_records(tmp_path / "ours" / name, tmp_path / "seed" / name)
        assert got["example_id"][:, 0].tolist() == list(range(1000))
        # Long sentences are truncated: the limit is reached somewhere.
        assert got["input_mask"].sum(axis=1).max() == 32 or side == "zh"


def test_bucc_equals_seed(tmp_path, sentences, tokenizers, seed_libs):
    seed_lib = seed_libs[0]
    ours_tok, seed_tok = tokenizers
    zh, en = sentences
    rng = np.random.default_rng(0)
    data = tmp_path / "bucc"
    data.mkdir()
    for split, rows in (("dev", slice(0, 400)), ("test", slice(400, 1000))):
        for lang, texts in (("zh", zh[rows]), ("en", en[rows])):
            ids = rng.choice(900000, size=len(texts), replace=False)
            lines = [f"{lang}-{i:06d}\t{t}" for i, t in zip(ids, texts, strict=True)]
            (data / f"zh-en.{split}.{lang}").write_text("\n".join(lines) + "\n",
                                                        encoding="utf-8")
    processor = seed_lib.BuccProcessor()
    processor.languages = ["zh"]
    seed_meta = seed_lib.generate_sentence_retrevial_tf_record(
        processor, str(data), seed_tok, str(tmp_path / "seed"), str(tmp_path / "seed"), 48)
    meta = retrieval.generate_retrieval_tf_record(
        "bucc", str(data), ours_tok, str(tmp_path / "ours"), str(tmp_path / "ours"), 48)
    assert meta == seed_meta and list(meta) == list(seed_meta)
    assert list(meta["number_test_data"]) == list(seed_meta["number_test_data"])
    assert meta["number_eval_data"] == {"zh-en.zh": 400, "zh-en.en": 400}
    files = sorted(p.name for p in (tmp_path / "seed").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "ours").iterdir()) and len(files) == 4
    for name in files:
        got = _assert_same_records(tmp_path / "ours" / name, tmp_path / "seed" / name)
        assert len(set(got["example_id"][:, 0].tolist())) == len(got["example_id"]) > 1


def test_retrieval_outputs_and_pipeline(tmp_path, tatoeba_dir, vocab_path, caplog):
    tok = FullTokenizer(str(vocab_path("multi_cased")), do_lower_case=False)
    with caplog.at_level(logging.WARNING, logger="pybert.data"):
        retrieval.generate_retrieval_tf_record("tatoeba", str(tatoeba_dir), tok,
                                               test_data_output_path=str(tmp_path / "o"))
    assert "no TATOEBA files for af, ar," in caplog.text and "writing zh only" in caplog.text
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == \
        ["zh-en-en.test.tfrecords", "zh-en-zh.test.tfrecords"]
    ds = pipelines.create_retrieval_dataset(str(tmp_path / "o" / "zh-en-zh.test.tfrecords"),
                                            128, 300)
    batches = list(ds)
    # The seed's padding of the last batch: zero features, example_id -1.
    assert [int(y.shape[0]) for _, y in batches] == [300] * 4
    x, y = batches[3]
    assert y[99, 0] == 999 and (y[100:, 0].numpy() == -1).all()
    assert not x["input_word_ids"][100:].numpy().any() and x["input_mask"][99].numpy().any()
    x, y = batches[1]
    assert x["input_word_ids"].dtype == tf.int32 and x["input_word_ids"].shape == (300, 128)
    assert y.shape == (300, 1) and y[0, 0] == 300
    seed_pipeline = load_seed_input_pipeline()
    if seed_pipeline is not None:  # the seed's own create_retrieval_dataset, batch for batch
        seed_batches = list(seed_pipeline.create_retrieval_dataset(
            str(tmp_path / "o" / "zh-en-zh.test.tfrecords"), 128, 300))
        assert len(seed_batches) == len(batches)
        for (sx, sy), (ox, oy) in zip(seed_batches, batches, strict=True):
            np.testing.assert_array_equal(sy.numpy(), oy.numpy())
            for key in sx:
                np.testing.assert_array_equal(sx[key].numpy(), ox[key].numpy(), err_msg=key)
    texts, ids = retrieval.read_sentences("tatoeba", str(tatoeba_dir / "zh-en.zh"))
    want = retrieval.featurize(texts[300:600], ids[300:600], tok, 128)
    np.testing.assert_array_equal(x["input_word_ids"].numpy(), want["input_ids"])


def test_retrieval_bad_input(tmp_path, tatoeba_dir, vocab_path):
    tok = FullTokenizer(str(vocab_path("uncased")))
    with pytest.raises(ValueError, match="Tatoeba has test data only"):
        retrieval.generate_retrieval_tf_record("tatoeba", str(tatoeba_dir), tok,
                                               str(tmp_path / "e"), str(tmp_path / "t"))
    with pytest.raises(ValueError, match="needs --eval_data_output_path and/or"):
        retrieval.generate_retrieval_tf_record("tatoeba", str(tatoeba_dir), tok)
    with pytest.raises(DataError, match=r"no BUCC files \(<lang>-en\.<split>\.<lang\|en>"):
        retrieval.generate_retrieval_tf_record("bucc", str(tatoeba_dir), tok,
                                               str(tmp_path / "e"))
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(tatoeba_dir / "zh-en.zh", half / "zh-en.zh")
    shutil.copy(tatoeba_dir / "zh-en.zh", half / "de-en.de")
    with pytest.raises(DataError, match=r"language 'de' is incomplete: de-en\.en not found"):
        retrieval.generate_retrieval_tf_record("tatoeba", str(half), tok,
                                               test_data_output_path=str(tmp_path / "t"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--test_data_output_path .*file: is a file"):
        retrieval.generate_retrieval_tf_record("tatoeba", str(tatoeba_dir), tok,
                                               test_data_output_path=str(tmp_path / "file"))
    bucc = tmp_path / "bucc"
    bucc.mkdir()
    for side in ("de", "en"):
        (bucc / f"de-en.dev.{side}").write_text(f"{side}-000001\tgut\n{side}-x2\tschlecht\n")
    with pytest.raises(DataError, match=r"de-en\.dev\.de:2: id 'de-x2' is not <language>-"):
        retrieval.generate_retrieval_tf_record("bucc", str(bucc), tok, str(tmp_path / "b"))
    (bucc / "de-en.dev.de").write_text("de-000001\tgut\nde-99999999999999999999\tzu groß\n")
    with pytest.raises(DataError, match=r"de-en\.dev\.de:2: id 'de-9+': the number does not fit"):
        retrieval.generate_retrieval_tf_record("bucc", str(bucc), tok, str(tmp_path / "b"))
    (bucc / "de-en.dev.de").write_text("de-000001\tgut\nde-000002\n")
    with pytest.raises(DataError, match=r"de-en\.dev\.de:2: missing column 1 \(sentence\)"):
        retrieval.generate_retrieval_tf_record("bucc", str(bucc), tok, str(tmp_path / "b"))
    assert not (tmp_path / "b").exists() and not (tmp_path / "t").exists()


def test_tatoeba_sides_of_different_length_warn(tmp_path, tatoeba_dir, vocab_path, caplog):
    """Written as the seed writes them, with a warning (before: silently)."""
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(tatoeba_dir / "zh-en.zh", cut / "zh-en.zh")
    lines = (tatoeba_dir / "zh-en.en").read_text(encoding="utf-8").splitlines(keepends=True)
    (cut / "zh-en.en").write_text("".join(lines[:100]), encoding="utf-8")
    tok = FullTokenizer(str(vocab_path("uncased")))
    with caplog.at_level(logging.WARNING, logger="pybert.data"):
        meta = retrieval.generate_retrieval_tf_record(
            "tatoeba", str(cut), tok, test_data_output_path=str(tmp_path / "t"))
    assert meta["number_test_data"]["zh-en.en"] == 100
    assert f"zh-en.zh has {meta['number_test_data']['zh-en.zh']} sentences, zh-en.en 100" \
        in caplog.text


# -- tagging -------------------------------------------------------------------

def _tagging_files(d, sentences, labels, long_text):
    """train-en.tsv, dev-en.tsv, test-en.tsv (labeled) and test-zh.tsv (words only) from real
    sentences, plus the format's corner cases: CRLF, padded words, a word of control
    characters only ([UNK]), an empty word (its label dropped), a 300-character word and a
    long sentence (split into several examples)."""
    zh, en = sentences
    d.mkdir()

    def block(words, with_labels=True):
        if not with_labels:
            return "".join(f"{w}\n" for w in words)
        return "".join(f"{w}\t{labels[len(w) % len(labels)]}\n" for w in words)

    english = [s.split() for s in en]
    chinese = [list(s.replace(" ", "")) for s in zh]
    odd = ["  Padded ", "\x00\x01", "", "x" * 300, "naïve", "U.S.A.", "3.14", "co-op"]
    train = [block(w) for w in english[:600]] + [block(odd), block(long_text.split())]
    (d / "train-en.tsv").write_bytes("\n".join(train).replace("\n", "\r\n").encode())
    (d / "dev-en.tsv").write_text("\n\n".join(block(w) for w in english[600:800]) + "\n\n",
                                  encoding="utf-8")
    (d / "test-en.tsv").write_text("\n".join(block(w) for w in english[800:]), encoding="utf-8")
    (d / "test-zh.tsv").write_text("\n".join(block(w, False) for w in chinese[:300]),
                                   encoding="utf-8")


@pytest.mark.parametrize("task,seq", [("panx", 32), ("udpos", 128)])
def test_tagging_equals_seed(tmp_path, task, seq, sentences, data_dir, tokenizers, seed_libs):
    seed_lib = seed_libs[1]
    ours_tok, seed_tok = tokenizers
    prose = (data_dir / "english_prose" / "gutenberg_27books_bert_format.txt")
    with open(prose, encoding="utf-8") as f:
        long_text = " ".join(next(f) for _ in range(40)).replace("\t", " ")
    labels = tagging.TASKS[task][1]
    _tagging_files(tmp_path / "in", sentences, labels, long_text)
    processor = {"panx": seed_lib.PanxProcessor, "udpos": seed_lib.UdposProcessor}[task]()
    assert tuple(processor.get_labels()) == labels
    processor.supported_languages = ["en", "zh"]
    seed_out, ours_out = tmp_path / "seed", tmp_path / "ours"
    seed_meta = seed_lib.generate_tf_record_from_data_file(
        processor, str(tmp_path / "in"), seed_tok, seq, str(seed_out / "train"),
        str(seed_out / "eval"), str(seed_out / "test_{}"), lambda w: w)
    meta = tagging.generate_tagging_tf_record(
        task, str(tmp_path / "in"), ours_tok, seq, str(ours_out / "train"),
        str(ours_out / "eval"), str(ours_out / "test_{}"))
    assert meta == seed_meta and list(meta) == list(seed_meta)
    assert meta["test_data_size"]["zh"] >= 300 and meta["task_type"] == "tagging"
    for name in ("train", "eval", "test_en", "test_zh"):
        got = _assert_same_records(ours_out / name, seed_out / name)
    got = _records(ours_out / "train")
    # The long sentence became several examples of one sentence id.
    last = got["sentence_id"][:, 0] == got["sentence_id"][-1, 0]
    assert got["sub_sentence_id"][last, 0].tolist() == list(range(int(last.sum())))
    assert last.sum() > 1
    assert (got["label_ids"] >= -1).all() and (got["label_ids"] < len(labels)).all()


@pytest.mark.parametrize("seq", [3, 5, 16])
def test_tagging_splits_equal_seed_on_random_sentences(tmp_path, seq, sentences, tokenizers,
                                                       seed_libs):
    """Short sequences and odd words (empty, control characters only, 300 characters, CJK,
    punctuation) in random sentences: the seed's sub-sentence splitting, [UNK] rule and
    label placement, record for record."""
    seed_lib = seed_libs[1]
    ours_tok, seed_tok = tokenizers
    zh, en = sentences
    pool = ["", "\x00\x01", "x" * 300, "U.S.A.", "naïve", "co-op", "...", "[CLS]",
            *en[5].split(), *zh[5]]
    rng = np.random.default_rng(seq)
    ours, theirs = [], []
    for i in range(200):
        words = [pool[j] for j in rng.integers(0, len(pool), rng.integers(1, 12))]
        labels = rng.integers(0, 7, len(words)).tolist()
        ours.append(tagging.Sentence(i, words, labels))
        theirs.append(seed_lib.InputExample(i, words=list(words), label_ids=list(labels)))
    n = seed_lib.write_example_to_file(theirs, seed_tok, seq, str(tmp_path / "seed"))
    assert tagging.write_features(str(tmp_path / "ours"),
                                  tagging.featurize(ours, ours_tok, seq)) == n > 200
    _assert_same_records(tmp_path / "ours", tmp_path / "seed")


def test_tagging_pipeline_and_bad_input(tmp_path, sentences, vocab_path, caplog):
    tok = FullTokenizer(str(vocab_path("uncased")))
    _tagging_files(tmp_path / "in", sentences, tagging.PANX_LABELS, "a " * 100)
    with caplog.at_level(logging.WARNING, logger="pybert.data"):
        meta = tagging.generate_tagging_tf_record(
            "panx", str(tmp_path / "in"), tok, 64, str(tmp_path / "train"),
            str(tmp_path / "eval"), str(tmp_path / "test_{}.tfr"))
    assert "no test-<lang>.tsv for ar, he," in caplog.text
    assert sorted(meta["test_data_size"]) == ["en", "zh"]
    ds = pipelines.create_tagging_dataset(str(tmp_path / "eval"), 64, 50, is_training=False,
                                          include_sentence_id=True)
    x, y = next(iter(ds))
    assert y.shape == (50, 64) and y.dtype == tf.int32
    assert x["sentence_id"].shape == (50,) and x["sentence_id"][7] == 7
    first = tagging.featurize(tagging.read_file(str(tmp_path / "in" / "dev-en.tsv"),
                                                tagging.PANX_LABELS)[:50], tok, 64)
    np.testing.assert_array_equal(y.numpy(), first["label_ids"])

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train-en.tsv").write_text("Hello\tO\nworld\tB-XYZ\n")
    with pytest.raises(DataError, match=r"train-en\.tsv:2: label 'B-XYZ' is not one of"):
        tagging.read_file(str(bad / "train-en.tsv"), tagging.PANX_LABELS)
    (bad / "train-en.tsv").write_text("Hello\tO\n\nworld\tO\textra\n")
    with pytest.raises(DataError, match=r"train-en\.tsv:3: 3 tab-separated fields"):
        tagging.read_file(str(bad / "train-en.tsv"), tagging.PANX_LABELS)
    with pytest.raises(DataError, match=r"no test-<lang>\.tsv for any of ar, he"):
        tagging.generate_tagging_tf_record("panx", str(bad), tok, 64, "a", "b", "c_{}")
    for path in ("test.tfr", "test_{}_{x}.tfr"):
        with pytest.raises(ValueError, match=r"--test_data_output_path .*needs one '\{\}'"):
            tagging.generate_tagging_tf_record("panx", str(bad), tok, 64, "a", "b", path)
    with pytest.raises(ValueError, match="sentence 4 .*: 2 words but 1 labels"):
        tagging.featurize([tagging.Sentence(4, ["a", "b"], [0])], tok, 16)
    with pytest.raises(ValueError, match="sentence 5 .*: negative label id -1"):  # as the seed
        tagging.featurize([tagging.Sentence(5, ["a", "b"], [1, -1])], tok, 16)
    # An empty word drops its label whether it is str or bytes (the seed tests `word`).
    got = tagging.featurize([tagging.Sentence(0, [b"", b"ab", "c"], [1, 2, 3])], tok, 8)
    want = tagging.featurize([tagging.Sentence(0, ["ab", "c"], [2, 3])], tok, 8)
    np.testing.assert_array_equal(got["label_ids"], want["label_ids"])
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
    good = tmp_path / "in"
    with pytest.raises(ValueError, match=r"--train_data_output_path and --test_data_output_"
                                         r"path for en are the same file"):
        tagging.generate_tagging_tf_record("panx", str(good), tok, 64, str(tmp_path / "t_en"),
                                           str(tmp_path / "e"), str(tmp_path / "t_{}"))
    with pytest.raises(ValueError, match="--eval_data_output_path is required"):
        tagging.generate_tagging_tf_record("panx", str(bad), tok, 64, "a", None, "c_{}")
    empty = tmp_path / "empty"  # an empty training file (was: train_data_size 0, exit 0)
    shutil.copytree(good, empty)
    (empty / "train-en.tsv").write_text("")
    with pytest.raises(DataError, match=r"empty/train-en\.tsv: no sentences to train on"):
        tagging.generate_tagging_tf_record("panx", str(empty), tok, 64, str(tmp_path / "et"),
                                           str(tmp_path / "ee"), str(tmp_path / "et_{}"))
    assert not list(tmp_path.glob("et*")) and not list(tmp_path.glob("ee*"))


def test_finetuning_cli_retrieval_and_tagging(tmp_path, tatoeba_dir, sentences, vocab_path):
    from tool_runner import run_tool

    vocab = f"--vocab_file={vocab_path('multi_cased')}"
    run_tool(
        "create_finetuning_data", "--fine_tuning_task_type=retrieval",
        "--retrieval_task_name=tatoeba", f"--input_data_dir={tatoeba_dir}", vocab,
        "--do_lower_case=false", f"--test_data_output_path={tmp_path}/tatoeba",
        f"--meta_data_file_path={tmp_path}/tatoeba_meta", "--max_seq_length=64")
    meta = json.loads((tmp_path / "tatoeba_meta").read_text())
    assert meta == {"processor_type": "TATOEBA", "max_seq_length": 64, "number_eval_data": {},
                    "number_test_data": {"zh-en.zh": 1000, "zh-en.en": 1000}}
    assert len(read_examples(str(tmp_path / "tatoeba" / "zh-en-en.test.tfrecords"))) == 1000

    _tagging_files(tmp_path / "panx", sentences, tagging.PANX_LABELS, "b " * 10)
    run_tool(
        "create_finetuning_data", "--fine_tuning_task_type=tagging", "--tagging_task_name=panx",
        f"--input_data_dir={tmp_path / 'panx'}", vocab, f"--train_data_output_path={tmp_path}/tr",
        f"--eval_data_output_path={tmp_path}/ev", f"--test_data_output_path={tmp_path}/te_{{}}",
        f"--meta_data_file_path={tmp_path}/panx_meta", "--max_seq_length=64")
    meta = json.loads((tmp_path / "panx_meta").read_text())
    assert meta["label_list"] == list(tagging.PANX_LABELS) and meta["processor_type"] == "panx"
    assert (tmp_path / "te_zh").exists() and (tmp_path / "te_en").exists()

    proc = run_tool(
        "create_finetuning_data", "--fine_tuning_task_type=retrieval",
        "--retrieval_task_name=tatoeba", f"--input_data_dir={tatoeba_dir}", vocab,
        f"--eval_data_output_path={tmp_path}/x", f"--meta_data_file_path={tmp_path}/m",
        check=False)
    assert proc.returncode == 1 and "Tatoeba has test data only" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "m").exists()
