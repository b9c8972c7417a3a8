"""Fine-tuning data (GLUE classification/regression, SQuAD) against the seed, feature for feature.

The oracle is the seed's own classifier_data_lib / squad_lib (tf-models-official
2.4.0, unpacked into tests/_oracle by tools/run_tests.sh) running with the seed's
pure-Python FullTokenizer, on the real GLUE and SQuAD files in ../shared/data.
"""

import copy
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from seed_oracle import load_seed_classifier_data_lib, load_seed_squad_lib, required

from pybert.data import classification, squad
from pybert.data.classification import DataError
from pybert.squad.postprocess import SquadFeatureArrays
from pybert.tokenization import FullTokenizer


@pytest.fixture(scope="module")
def seed_cls():
    return required(load_seed_classifier_data_lib())


@pytest.fixture(scope="module")
def seed_squad():
    return required(load_seed_squad_lib())


@pytest.fixture(scope="module")
def uncased(vocab_path):
    return FullTokenizer(vocab_path("uncased"), do_lower_case=True)


@pytest.fixture(scope="module")
def seed_uncased(vocab_path, seed_tokenization):
    return seed_tokenization.FullTokenizer(str(vocab_path("uncased")), do_lower_case=True)


SEED_PROCESSORS = {
    "MRPC": "MrpcProcessor", "COLA": "ColaProcessor", "STS-B": "StsBProcessor",
    "SST-2": "SstProcessor", "RTE": "RteProcessor", "WNLI": "WnliProcessor",
    "QNLI": "QnliProcessor",
}
GLUE_DIRS = {"MRPC": "MRPC", "COLA": "CoLA", "STS-B": "STS-B", "SST-2": "SST-2", "RTE": "RTE",
             "WNLI": "WNLI", "QNLI": "QNLI"}


def _seed_features(seed_cls, seed_tok, processor, examples, max_seq_length):
    labels = processor.get_labels()
    feats = [seed_cls.convert_single_example(10, ex, labels, max_seq_length, seed_tok)
             for ex in examples]
    return {
        "input_ids": np.asarray([f.input_ids for f in feats]),
        "input_mask": np.asarray([f.input_mask for f in feats]),
        "segment_ids": np.asarray([f.segment_ids for f in feats]),
        "label_ids": np.asarray([f.label_id for f in feats]),
    }


@pytest.mark.parametrize(
    "task,split,seq",
    [("MRPC", "dev", 128), ("MRPC", "test", 64), ("COLA", "dev", 128), ("COLA", "test", 32),
     ("STS-B", "dev", 128), ("SST-2", "dev", 48), ("SST-2", "test", 128), ("RTE", "dev", 128),
     ("WNLI", "train", 128)],
)
def test_glue_features_equal_seed(task, split, seq, data_dir, uncased, seed_uncased, seed_cls):
    task_dir = str(data_dir / "glue" / GLUE_DIRS[task])
    processor = getattr(seed_cls, SEED_PROCESSORS[task])()
    seed_examples = getattr(processor, f"get_{split}_examples")(task_dir)
    spec = classification.get_task(task)
    ours = classification.read_examples(spec, task_dir, split)
    assert len(ours) == len(seed_examples) > 0
    for a, b in zip(ours, seed_examples, strict=True):
        assert (a.text_a, a.text_b, a.label) == (b.text_a, b.text_b, b.label)
    got = classification.featurize(ours, uncased, seq, spec)
    want = _seed_features(seed_cls, seed_uncased, processor, seed_examples, seq)
    for key in ("input_ids", "input_mask", "segment_ids"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    # Float labels go into a FloatList (float32) in the seed's TFRecord too.
    want_labels = want["label_ids"].astype(got["label_ids"].dtype)
    np.testing.assert_array_equal(got["label_ids"], want_labels)
    assert got["label_ids"].dtype == (np.float32 if task == "STS-B" else np.int64)
    np.testing.assert_array_equal(got["example_id"], np.arange(len(ours)))
    # Truncation happened somewhere for the short settings (the seed's rule is exercised).
    if seq <= 64 or task == "RTE":
        assert (got["input_mask"].sum(axis=1) == seq).any()


@pytest.mark.parametrize("seq", [3, 4, 5, 6, 9, 16])
def test_mixed_single_and_empty_pairs_equal_seed(seq, uncased, seed_uncased, seed_cls):
    """One batch mixing real pairs, a None / empty / blank / zero-width-space text_b and
    long first texts (and a few empty ones): every row is the seed's
    convert_single_example (a text_b without word pieces is a single text, truncated to
    seq - 2), at tight sequence lengths; at 3 and 4 (which the seed takes for pairs too)
    its pair truncation empties text_b, and the row is a single text."""
    rng = np.random.default_rng(seq)
    words = "the quick brown fox jumps over a lazy dog unaffable".split()
    seconds = [None, "", "  ", "\u200b", "\x00"]
    ours, theirs = [], []
    for i in range(200):
        a = "" if i % 20 == 3 else " ".join(rng.choice(words, rng.integers(1, 12)))
        b = (seconds[i % 5] if i % 2 == 0
             else " ".join(rng.choice(words, rng.integers(1, 12))))
        ours.append(classification.InputExample(f"t-{i}", a, b, "0"))
        theirs.append(seed_cls.InputExample(f"t-{i}", a, b, "0"))
    spec = classification.get_task("MRPC")
    got = classification.featurize(ours, uncased, seq, spec)
    feats = [seed_cls.convert_single_example(10, ex, ["0", "1"], seq, seed_uncased)
             for ex in theirs]
    for key in ("input_ids", "input_mask", "segment_ids"):
        np.testing.assert_array_equal(got[key], np.asarray([getattr(f, key) for f in feats]),
                                      err_msg=key)
    singles = (got["segment_ids"].sum(axis=1) == 0).sum()
    if seq >= 5:
        assert singles == 100  # the empty pairs: single
    else:  # and the pairs whose text_b the truncation emptied
        assert singles > 100


def test_glue_line_breaks_read_as_the_seed(tmp_path, data_dir, seed_cls):
    """The seed reads TSVs through tf.io.gfile.GFile: rows end at "\\n" only and every
    "\\r" is dropped (CRLF files, a stray CR mid-text); form feed, U+0085 and U+2028 stay
    inside the text."""
    src = (data_dir / "glue" / GLUE_DIRS["MRPC"] / "dev.tsv").read_text(encoding="utf-8")
    lines = src.split("\n")[:9]
    rows = [line.split("\t") for line in lines[1:]]
    for row, odd in zip(rows, ["\r", "\x0c", "\x85", "\u2028", "\r\r", "\x0b", "\x1c"],
                        strict=False):
        row[3] = row[3][:10] + odd + row[3][10:]
    text = "\r\n".join([lines[0]] + ["\t".join(r) for r in rows]) + "\r\n"
    (tmp_path / "dev.tsv").write_bytes(text.encode("utf-8"))
    seed_examples = seed_cls.MrpcProcessor().get_dev_examples(str(tmp_path))
    ours = classification.read_examples(classification.get_task("MRPC"), str(tmp_path), "dev")
    assert [(a.text_a, a.text_b, a.label) for a in ours] == \
        [(b.text_a, b.text_b, b.label) for b in seed_examples]
    assert len(ours) == 8 and "\r" not in ours[0].text_a and "\x85" in ours[2].text_a


def test_glue_tfrecords_and_meta_data(tmp_path, data_dir, uncased):
    spec = classification.get_task("STS-B")
    out = tmp_path / "out"
    meta = classification.generate_tf_record_from_data_file(
        spec, str(data_dir / "glue" / "STS-B"), uncased,
        train_data_output_path=str(out / "train.tf_record"),
        eval_data_output_path=str(out / "eval.tf_record"),
        test_data_output_path=str(out / "test.tf_record"), max_seq_length=64)
    assert meta == {
        "processor_type": "STS-B", "train_data_size": 5749, "max_seq_length": 64,
        "test_data_size": 1379, "task_type": "bert_regression", "label_type": "float",
        "eval_data_size": 1500,
    }
    from pybert.data.records import read_examples

    rows = read_examples(str(out / "eval.tf_record"))
    assert len(rows) == 1500
    assert set(rows[0]) == {"input_ids", "input_mask", "segment_ids", "label_ids",
                            "is_real_example", "example_id"}
    assert rows[0]["input_ids"].dtype == np.int64 and rows[0]["input_ids"].shape == (64,)
    assert rows[0]["label_ids"].dtype == np.float32
    ex = classification.read_examples(spec, str(data_dir / "glue" / "STS-B"), "dev")
    assert rows[3]["label_ids"][0] == np.float32(ex[3].label)
    assert [r["example_id"][0] for r in rows[:3]] == [0, 1, 2]
    assert not list(out.glob("*.incomplete"))


def _write(path, text, mode="w"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_glue_bad_input_names_file_and_line(tmp_path, uncased):
    spec = classification.get_task("MRPC")
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    _write(tmp_path / "a" / "train.tsv", header + "1\t1\t2\tx y\tz\n0\t3\t4\tonly four\n")
    with pytest.raises(DataError, match=r"a/train\.tsv:3: missing column 4 \(text_b\)"):
        classification.read_examples(spec, str(tmp_path / "a"), "train")
    _write(tmp_path / "b" / "train.tsv", header + "1\t1\t2\tx\ty\n2\t3\t4\tu\tv\n")
    with pytest.raises(DataError, match=r"b/train\.tsv:3: label '2' is not one of \['0', '1'\]"):
        classification.read_examples(spec, str(tmp_path / "b"), "train")
    _write(tmp_path / "c" / "train.tsv", (header + "1\t1\t2\tok\tfine\n").encode() +
           b"0\t3\t4\tbad \xff byte\tz\n", mode="wb")
    with pytest.raises(DataError, match=r"c/train\.tsv:3: invalid UTF-8"):
        classification.read_examples(spec, str(tmp_path / "c"), "train")
    _write(tmp_path / "d" / "train.tsv", header)
    with pytest.raises(DataError, match=r"d/train\.tsv: no examples"):
        classification.generate_tf_record_from_data_file(
            spec, str(tmp_path / "d"), uncased, str(tmp_path / "d" / "train.tf_record"))
    assert not list((tmp_path / "d").glob("*.tf_record*"))
    with pytest.raises(DataError, match=r"e/train\.tsv: file not found"):
        classification.read_examples(spec, str(tmp_path / "e"), "train")
    stsb = classification.get_task("STS-B")
    row = "\t".join(["x"] * 7 + ["a", "b", "high"])
    _write(tmp_path / "f" / "train.tsv", "h\n" + row + "\n")
    with pytest.raises(DataError, match=r"f/train\.tsv:2: label 'high' is not a finite number"):
        classification.read_examples(stsb, str(tmp_path / "f"), "train")
    for label in ("nan", "-inf"):  # float() reads them; a TFRecord of them trains nothing
        _write(tmp_path / "f" / "train.tsv", "h\n" + row.replace("high", label) + "\n")
        with pytest.raises(DataError, match=rf"train\.tsv:2: label '{label}' is not a finite"):
            classification.read_examples(stsb, str(tmp_path / "f"), "train")


def test_per_language_test_path_is_checked_first(tmp_path, uncased):
    spec = classification.get_task("XTREME-PAWS-X")
    for bad in ("test_{}_{x}.tfr", "test_{}_{}.tfr", "test.tfr"):
        with pytest.raises(ValueError, match=r"test_data_output_path .*'\{\}'"):
            classification.generate_tf_record_from_data_file(
                spec, str(tmp_path / "no_data"), uncased, str(tmp_path / "train.tfr"),
                test_data_output_path=str(tmp_path / bad))
    assert not list(tmp_path.iterdir())


def test_staged_outputs_replace_all_or_none(tmp_path, data_dir, uncased):
    from pybert.data import records

    path = _subset(data_dir, tmp_path, "dev-v1.1.json", 1)
    src = Path(path).name
    feats = squad.featurize(squad.read_squad(path, False), uncased, 128, 64, 64, False)
    out, meta = tmp_path / "eval.tf_record", tmp_path / "meta"
    with records.staged_outputs():
        squad.write_features(str(out), feats, is_training=False)
        # Nothing under the final names until the block ends.
        assert not out.exists() and not Path(squad.features_path(str(out))).exists()
        records.write_json_atomic(str(meta), {"n": 1})
        assert not meta.exists()
    first = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != src}
    assert sorted(first) == ["eval.tf_record", "eval.tf_record.features.npz", "meta"]
    smaller = squad.featurize(squad.read_squad(path, False), uncased, 64, 32, 16, False)
    with pytest.raises(RuntimeError, match="late failure"), records.staged_outputs():
        squad.write_features(str(out), smaller, is_training=False)
        records.write_json_atomic(str(meta), {"n": 2})
        raise RuntimeError("late failure")
    # The earlier set is intact and no temporary file is left.
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()
            if p.name != src} == first
    with pytest.raises(ValueError, match="meta: written twice in one run"), \
            records.staged_outputs():
        records.write_json_atomic(str(meta), {"n": 3})
        records.write_json_atomic(str(meta), {"n": 4})
    assert json.loads(meta.read_text()) == {"n": 1}
    # A final name that is a directory fails the whole set before the first rename.
    (tmp_path / "meta2").mkdir()
    with pytest.raises(IsADirectoryError, match="meta2: is a directory"), \
            records.staged_outputs():
        squad.write_features(str(out), smaller, is_training=False)
        records.write_json_atomic(str(tmp_path / "meta2"), {"n": 5})
    (tmp_path / "meta2").rmdir()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != src} == first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*first, src])


def test_glue_task_names_and_languages():
    assert len(classification.TASK_NAMES) == 14
    for name in classification.TASK_NAMES:
        spec = classification.get_task(name)
        assert spec.train and spec.dev and spec.test
    assert classification.get_task("mnli", mnli_type="mismatched").dev[0].path == \
        "dev_mismatched.tsv"
    assert [s.path for s in classification.get_task("XNLI", xnli_language="all").train][:2] == \
        ["multinli/multinli.train.ar.tsv", "multinli/multinli.train.bg.tsv"]
    with pytest.raises(ValueError, match="xnli_language='xx' is not supported"):
        classification.get_task("XNLI", xnli_language="xx")
    with pytest.raises(ValueError, match="unknown classification task 'FOO'"):
        classification.get_task("FOO")


def test_xnli_reader_on_synthetic_layout(tmp_path, uncased):
    """XNLI's files have the seed's layout; check the language split and label alias."""
    d = tmp_path / "xnli"
    _write(d / "multinli" / "multinli.train.en.tsv",
           "premise\thypo\tlabel\nA man.\tA person.\tcontradictory\nB.\tC.\tneutral\n")
    dev_header = "language\tgold_label\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\n"
    _write(d / "xnli.dev.tsv", dev_header + "en\tentailment\t-\t-\t-\t-\tHi.\tHello.\n")
    _write(d / "xnli.test.tsv", dev_header + "de\tneutral\t-\t-\t-\t-\tHallo.\tJa.\n"
           "en\tentailment\t-\t-\t-\t-\tHi.\tHello.\n")
    spec = classification.get_task("XNLI")
    train = classification.read_examples(spec, str(d), "train")
    assert [e.label for e in train] == ["contradiction", "neutral"]
    meta = classification.generate_tf_record_from_data_file(
        spec, str(d), uncased, str(tmp_path / "o" / "train"), str(tmp_path / "o" / "eval"),
        str(tmp_path / "o" / "test_{}.tf_record"), max_seq_length=16)
    assert meta["test_de_data_size"] == 1 and meta["test_en_data_size"] == 1
    assert meta["test_fr_data_size"] == 0 and meta["num_labels"] == 3
    assert (tmp_path / "o" / "test_de.tf_record").exists()


# -- SQuAD ---------------------------------------------------------------------


def _seed_squad_features(seed_squad, path, seed_tok, is_training, v2, seq=384, stride=128,
                         query=64):
    examples = seed_squad.read_squad_examples(path, is_training, v2)
    feats = []

    def out(f, is_padding=False):
        if not is_padding:
            feats.append(copy.copy(f))

    seed_squad.convert_examples_to_features(examples, seed_tok, seq, stride, query, is_training,
                                            out, batch_size=1)
    return examples, feats


def _subset(data_dir, tmp_path, name, articles, first_answer_only=False):
    with open(data_dir / "squad" / name, encoding="utf-8") as f:
        obj = json.load(f)
    obj["data"] = obj["data"][:articles]
    if first_answer_only:
        for art in obj["data"]:
            for par in art["paragraphs"]:
                for qa in par["qas"]:
                    qa["answers"] = qa["answers"][:1]
    path = tmp_path / f"sub_{articles}_{first_answer_only}_{name}"
    path.write_text(json.dumps(obj), encoding="utf-8")
    return str(path)


def _compare_squad(ours, seed_examples, seed_feats, is_training):
    assert len(ours) == len(seed_feats) > 0
    for key, attr in (("input_ids", "input_ids"), ("input_mask", "input_mask"),
                      ("segment_ids", "segment_ids"), ("unique_ids", "unique_id")):
        np.testing.assert_array_equal(ours.arrays[key], np.asarray(
            [getattr(f, attr) for f in seed_feats]), err_msg=key)
    np.testing.assert_array_equal(ours.feature_example, [f.example_index for f in seed_feats])
    if is_training:
        for key, attr in (("start_positions", "start_position"),
                          ("end_positions", "end_position")):
            np.testing.assert_array_equal(ours.arrays[key], [getattr(f, attr) for f in seed_feats])
        np.testing.assert_array_equal(ours.arrays["is_impossible"],
                                      [int(bool(f.is_impossible)) for f in seed_feats])
    else:
        want = SquadFeatureArrays.from_seed(seed_examples, seed_feats)
        got = ours.post
        assert got.qas_ids == want.qas_ids
        assert got.doc_data == want.doc_data and got.token_data == want.token_data
        for k in ("doc_offsets", "doc_splits", "unique_ids", "feature_example", "token_offsets",
                  "token_splits", "token_to_orig", "max_context"):
            np.testing.assert_array_equal(getattr(got, k), getattr(want, k), err_msg=k)


def test_squad_v1_eval_features_equal_seed(data_dir, tmp_path, uncased, seed_uncased, seed_squad):
    path = _subset(data_dir, tmp_path, "dev-v1.1.json", 3)
    seed_examples, seed_feats = _seed_squad_features(seed_squad, path, seed_uncased, False, False)
    data = squad.read_squad(path, is_training=False)
    ours = squad.featurize(data, uncased, 384, 128, 64, is_training=False)
    _compare_squad(ours, seed_examples, seed_feats, False)


@pytest.mark.parametrize("seq,stride,query", [(384, 128, 64), (128, 32, 24), (64, 16, 64)])
def test_squad_v1_train_features_equal_seed(seq, stride, query, data_dir, tmp_path, uncased,
                                            seed_uncased, seed_squad):
    path = _subset(data_dir, tmp_path, "dev-v1.1.json", 4, first_answer_only=True)
    seed_examples, seed_feats = _seed_squad_features(seed_squad, path, seed_uncased, True, False,
                                                     seq, stride, query)
    data = squad.read_squad(path, is_training=True)
    ours = squad.featurize(data, uncased, seq, stride, query, is_training=True)
    _compare_squad(ours, seed_examples, seed_feats, True)
    # most windows hold the answer (a third of the 64-token ones)
    assert (ours.arrays["start_positions"] > 0).mean() > (0.5 if seq > 64 else 0.25)


def test_squad_v2_train_and_eval_equal_seed(data_dir, tmp_path, uncased, seed_uncased,
                                            seed_squad):
    # Training needs one answer per question: keep the first of the dev set's answers.
    path = _subset(data_dir, tmp_path, "haystack_small-v2.0.json", 2, first_answer_only=True)
    for is_training in (True, False):
        seed_examples, seed_feats = _seed_squad_features(seed_squad, path, seed_uncased,
                                                         is_training, True)
        data = squad.read_squad(path, is_training, version_2_with_negative=True)
        ours = squad.featurize(data, uncased, 384, 128, 64, is_training)
        _compare_squad(ours, seed_examples, seed_feats, is_training)
        if is_training:
            assert 0 < ours.arrays["is_impossible"].mean() < 1


@pytest.mark.slow
def test_squad_v1_full_dev_eval_equal_seed(data_dir, uncased, seed_uncased, seed_squad):
    path = str(data_dir / "squad" / "dev-v1.1.json")
    seed_examples, seed_feats = _seed_squad_features(seed_squad, path, seed_uncased, False, False)
    ours = squad.featurize(squad.read_squad(path, False), uncased, 384, 128, 64, False)
    assert len(ours) == 10833  # the seed pads this to 10,840 for batches of 8 at predict time
    _compare_squad(ours, seed_examples, seed_feats, False)


def test_squad_tfrecords_and_bad_input(data_dir, tmp_path, uncased, caplog):
    path = _subset(data_dir, tmp_path, "dev-v1.1.json", 1, first_answer_only=True)
    obj = json.loads(Path(path).read_text(encoding="utf-8"))
    qa = obj["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["text"] = "certainly not in the passage"
    bad_path = tmp_path / "mismatch.json"
    bad_path.write_text(json.dumps(obj), encoding="utf-8")
    out = tmp_path / "train.tf_record"
    with caplog.at_level(logging.WARNING, logger="pybert.data"):
        meta = squad.generate_tf_record_from_json_file(str(bad_path), uncased, str(out))
    assert "could not find answer" in caplog.text and qa["id"] in caplog.text
    data = squad.read_squad(str(bad_path), True)
    assert data.skipped_mismatch == [qa["id"]]
    assert meta["task_type"] == "bert_squad" and meta["train_data_size"] > 0
    from pybert.data.records import read_examples

    rows = read_examples(str(out))
    assert len(rows) == meta["train_data_size"]
    assert set(rows[0]) == set(squad.TRAIN_FEATURES)
    # Offsets outside the context, missing fields, broken JSON: errors naming where.
    qa["answers"][0].update(text="x", answer_start=10**6)
    bad_path.write_text(json.dumps(obj), encoding="utf-8")
    with pytest.raises(DataError, match=rf"qas\[0\] \(id {qa['id']}\): answer_start 1000000"):
        squad.read_squad(str(bad_path), True)
    for field, value, message in (("answer_start", 3.0, "answer_start must be an integer, got 3.0"),
                                  ("text", 5, "text must be a non-empty string, got 5")):
        qa["answers"][0].update({"text": "x", "answer_start": 0, field: value})
        bad_path.write_text(json.dumps(obj), encoding="utf-8")
        with pytest.raises(DataError, match=rf"\(id {qa['id']}\)\.answers\[0\]\.{message}"):
            squad.read_squad(str(bad_path), True)
    del obj["data"][0]["paragraphs"][0]["context"]
    bad_path.write_text(json.dumps(obj), encoding="utf-8")
    with pytest.raises(DataError, match=r"data\[0\]\.paragraphs\[0\]: missing field 'context'"):
        squad.read_squad(str(bad_path), False)
    bad_path.write_text('{"data": [{"paragraphs": []}]}', encoding="utf-8")
    with pytest.raises(DataError, match=r"mismatch\.json: no questions"):
        squad.read_squad(str(bad_path), False)
    bad_path.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(DataError, match=r"mismatch\.json:1:\d+: invalid JSON"):
        squad.read_squad(str(bad_path), False)
    bad_path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(DataError, match=r"mismatch\.json: JSON nested too deeply"):
        squad.read_squad(str(bad_path), False)
    # Wrong types name where they are; so does a question id seen twice when predicting
    # (predictions are keyed by id: one of the two would be lost).
    good = {"context": "a b c", "qas": [{"id": "q1", "question": "x?", "answers": [
        {"text": "b", "answer_start": 2}]}]}
    for paragraphs, is_training, message in [
            (None, False, r"data\[0\]: 'paragraphs' must be a list, got NoneType"),
            ([{**good, "qas": {"id": "q"}}], False, r"paragraphs\[0\]: 'qas' must be a list"),
            ([{**good, "qas": [{**good["qas"][0], "answers": 5}]}], True,
             r"qas\[0\] \(id q1\): 'answers' must be a list, got int"),
            ([{**good, "qas": [{**good["qas"][0], "id": [1]}]}], False,
             r"qas\[0\]: 'id' must be a string \(or integer\), got \[1\]"),
            ([good, {**good, "qas": [{**good["qas"][0], "id": 1}]},
              {**good, "qas": [{**good["qas"][0], "id": "1"}]}], False,
             r"paragraphs\[2\]\.qas\[0\]: question id '1' again"),
            ([good, good], False, r"paragraphs\[1\]\.qas\[0\]: question id 'q1' again \(first "
                                  r"at .*paragraphs\[0\]\.qas\[0\]\)")]:
        bad_path.write_text(json.dumps({"data": [{"paragraphs": paragraphs}]}), encoding="utf-8")
        with pytest.raises(DataError, match=message):
            squad.read_squad(str(bad_path), is_training)
    bad_path.write_text(json.dumps({"data": [{"paragraphs": [good, good]}]}), encoding="utf-8")
    assert len(squad.read_squad(str(bad_path), True).qas_ids) == 2  # training: no matter
    # max_query_length is a cap, not a reservation (as in the seed): 64-token features
    # with the default cap of 64 are fine while every question leaves room for the passage...
    data = squad.read_squad(path, False)
    short = squad.featurize(data, uncased, 64, 32, 64)
    n_q = [len(uncased.tokenize(q)) for q in data.questions]
    assert max(n_q) <= 60 and short.arrays["input_ids"].shape[1] == 64
    assert (short.arrays["input_mask"].sum(axis=1) <= 64).all()
    # ...and a question that does not is refused by id (the seed would loop forever).
    data.questions[1] = " ".join(["word"] * 70)
    with pytest.raises(ValueError, match=rf"question '{data.qas_ids[1]}' .*max_seq_length=64 "
                                         r"leaves no room .* its 64 tokens"):
        squad.featurize(data, uncased, 64, 32, 64)
    with pytest.raises(ValueError, match="max_seq_length=3 leaves no room"):
        squad.featurize(data, uncased, 3, 32, 64)


def test_squad_eval_features_file_round_trip(data_dir, tmp_path, uncased):
    path = _subset(data_dir, tmp_path, "dev-v1.1.json", 1)
    feats = squad.featurize(squad.read_squad(path, False), uncased, 384, 128, 64, False)
    out = tmp_path / "eval.tf_record"
    n = squad.write_features(str(out), feats, is_training=False)
    assert n == len(feats)
    path = squad.features_path(str(out))
    loaded = SquadFeatureArrays.load(path)
    _assert_same_arrays(loaded, feats.post)
    np.testing.assert_array_equal(loaded.unique_ids, feats.arrays["unique_ids"])
    # On disk each paragraph's passage is stored once (its questions share it) and offsets
    # are lengths: smaller than the arrays as they are in memory.
    with np.load(path) as z:
        assert len(z["doc_words"]) < len(z["example_doc"]) == len(feats.post.qas_ids)
        on_disk = sum(z[k].nbytes for k in z.files)
    in_memory = sum(len(v) if isinstance(v, bytes) else v.nbytes
                    for v in vars(feats.post).values() if isinstance(v, bytes | np.ndarray))
    assert on_disk < 0.6 * in_memory
    # The layout written before (offsets, one passage per question) still loads.
    post = feats.post
    np.savez(tmp_path / "old.npz", qas_ids=np.asarray(json.dumps(post.qas_ids)),
             doc_data=np.frombuffer(post.doc_data, np.uint8),
             token_data=np.frombuffer(post.token_data, np.uint8),
             **{k: getattr(post, k) for k in ("doc_offsets", "doc_splits", "unique_ids",
                                              "feature_example", "token_offsets", "token_splits",
                                              "token_to_orig", "max_context")})
    _assert_same_arrays(SquadFeatureArrays.load(str(tmp_path / "old.npz")), post)
    # Malformed arrays are an error naming the file and the array, not a crash.
    with np.load(path) as z:
        good = {k: z[k] for k in z.files}
    for change, message in (
            (dict(example_doc=good["example_doc"] + len(good["doc_words"])), "out of range"),
            (dict(layout=np.array([2])), "layout: a 1-D"),
            (dict(layout=np.array(3)), "layout 3, this pybert reads 2"),
            (dict(doc_lengths=np.array(5, np.uint8)), "doc_lengths: a 0-D"),
            (dict(qas_ids=np.frombuffer(b"5", np.uint8)), "qas_ids: a JSON int"),
            (dict(max_context=good["max_context"][:-1]), "array sizes disagree"),
            (dict(token_to_orig=good["token_to_orig"].astype(np.uint64) + 2**32),
             "token_to_orig past the int32 range")):
        np.savez(tmp_path / "bad.npz", **{**good, **change})
        with pytest.raises(ValueError, match=rf"bad\.npz: not SQuAD feature arrays .*{message}"):
            SquadFeatureArrays.load(str(tmp_path / "bad.npz"))
    # Offsets need not start at 0 (arrays cut from larger ones): the same strings come back.
    post = feats.post
    shifted = dataclasses.replace(
        post, doc_data=b"xyz" + post.doc_data, doc_offsets=post.doc_offsets + 3,
        token_data=b"ab" + post.token_data + b"cd", token_offsets=post.token_offsets + 2)
    shifted.save(str(tmp_path / "shifted.npz"))
    _assert_same_arrays(SquadFeatureArrays.load(str(tmp_path / "shifted.npz")), post)


def _assert_same_arrays(got, want):
    for name in vars(want):
        a, b = getattr(got, name), getattr(want, name)
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert a == b, name
