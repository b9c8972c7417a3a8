"""The C++ pre-training instance core against the seed's own script.

The seed's create_pretraining_data.py (tf-models-official==2.4.0,
tests/_oracle) reads and tokenizes the text files itself and draws with
random.Random(seed); _C.create_pretraining_instances gets the same documents
as token ids and the same seed and must give the same instances, in the same
order: tokens, segment ids, masked positions, labels and next-sentence labels.
Then: tf.train.Example encoding checked by TensorFlow's parser, and the
argument checks.
"""

import collections
import itertools
import random
import subprocess
import sys
import tempfile
import types

import numpy as np
import pytest
from seed_oracle import ORACLE_DIR, load_seed_pretraining

import pybert
from pybert import _C
from pybert.data.pretraining import serialize_instances

KEYS = (
    "input_ids",
    "input_mask",
    "segment_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "masked_lm_weights",
    "next_sentence_labels",
)
PROSE_LINES = 2000


@pytest.fixture(scope="module")
def seed_pretraining():
    module = load_seed_pretraining()
    if module is None:
        pytest.skip(f"seed oracle not unpacked at {ORACLE_DIR} (see tools/run_tests.sh)")
    return module


@pytest.fixture(scope="module")
def tokenizer(vocab_path):
    return pybert.FullTokenizer(vocab_path("uncased"), do_lower_case=True)


@pytest.fixture(scope="module")
def corpora(data_dir, tmp_path_factory):
    """name -> text file: the BERT sample text and a slice of English prose."""
    prose = tmp_path_factory.mktemp("pretraining") / "prose.txt"
    with open(data_dir / "english_prose/gutenberg_27books_bert_format.txt", "rb") as f:
        prose.write_bytes(b"".join(itertools.islice(f, PROSE_LINES)))
    return {"sample": data_dir / "bert_sample_text/sample_text.txt", "prose": prose}


def read_documents(path, tokenizer):
    """(sentence_ids, sentence_splits, document_splits) as the seed's
    create_training_instances reads `path`: one sentence per stripped line,
    blank line = new document, lines without tokens and empty documents dropped."""
    lines = []
    with open(path, "rb") as f:
        for raw in f:  # splits on b"\n" like the seed's readline()
            line = raw.decode("utf-8", "ignore")  # the seed's convert_to_unicode
            if not line:
                break
            lines.append(line.strip())
    enc = tokenizer.encode_batch(
        lines, add_special_tokens=False, return_offsets=False, pad=False, num_threads=0
    )
    docs = [[]]
    for text, ids in zip(lines, enc.ids, strict=True):
        if not text:
            docs.append([])
        if len(ids):
            docs[-1].append(ids)
    docs = [d for d in docs if d]
    sentences = [s for d in docs for s in d]
    return (
        np.concatenate(sentences).astype(np.int32),
        np.cumsum([0] + [len(s) for s in sentences], dtype=np.int64),
        np.cumsum([0] + [len(d) for d in docs], dtype=np.int64),
    )


def core_args(tokenizer):
    vocab = tokenizer.vocab
    is_subword = np.array([t.startswith("##") for t in vocab], dtype=np.uint8)
    return dict(
        is_subword=is_subword,
        cls_id=vocab["[CLS]"],
        sep_id=vocab["[SEP]"],
        mask_id=vocab["[MASK]"],
    )


def run_core(path, tokenizer, seed, settings):
    ids, sentence_splits, document_splits = read_documents(path, tokenizer)
    return _C.create_pretraining_instances(
        ids,
        sentence_splits,
        document_splits,
        seed=seed,
        max_seq_length=settings["max_seq_length"],
        max_predictions_per_seq=settings["max_predictions_per_seq"],
        masked_lm_prob=settings["masked_lm_prob"],
        short_seq_prob=settings["short_seq_prob"],
        dupe_factor=settings["dupe_factor"],
        do_whole_word_mask=settings["do_whole_word_mask"],
        max_ngram_size=settings["max_ngram_size"] or 0,
        **core_args(tokenizer),
    )


def seed_arrays(instances, vocab, max_seq_length, max_predictions):
    """The seed's TrainingInstances padded as its write_instance_to_example_files does."""
    n = len(instances)
    out = {k: np.zeros((n, max_seq_length), np.int32) for k in KEYS[:3]}
    out.update({k: np.zeros((n, max_predictions), np.int32) for k in KEYS[3:5]})
    out["masked_lm_weights"] = np.zeros((n, max_predictions), np.float32)
    out["next_sentence_labels"] = np.zeros(n, np.int32)
    for i, inst in enumerate(instances):
        length, num_masked = len(inst.tokens), len(inst.masked_lm_positions)
        out["input_ids"][i, :length] = [vocab[t] for t in inst.tokens]
        out["input_mask"][i, :length] = 1
        out["segment_ids"][i, :length] = inst.segment_ids
        out["masked_lm_positions"][i, :num_masked] = inst.masked_lm_positions
        out["masked_lm_ids"][i, :num_masked] = [vocab[t] for t in inst.masked_lm_labels]
        out["masked_lm_weights"][i, :num_masked] = 1.0
        out["next_sentence_labels"][i] = int(inst.is_random_next)
    return out


def run_seed(seed_module, path, tokenizer, seed, settings):
    rng = random.Random(seed)
    module_random = seed_module.random
    if (settings["max_ngram_size"] or 0) > 1:
        # The seed draws n-gram sizes from the global, unseeded generator;
        # pybert draws them from rng with random.choices' rule. Let the seed do so too.
        seed_module.random = types.SimpleNamespace(choices=rng.choices)
    try:
        instances = seed_module.create_training_instances(
            [str(path)],
            tokenizer,
            settings["max_seq_length"],
            settings["dupe_factor"],
            settings["short_seq_prob"],
            settings["masked_lm_prob"],
            settings["max_predictions_per_seq"],
            rng,
            settings["do_whole_word_mask"],
            settings["max_ngram_size"],
        )
    finally:
        seed_module.random = module_random
    return seed_arrays(
        instances, tokenizer.vocab, settings["max_seq_length"], settings["max_predictions_per_seq"]
    )


def assert_same(got, want, what):
    assert set(got) == set(KEYS)
    n = len(want["input_ids"])
    assert got["input_ids"].shape[0] == n, (
        f"{what}: {got['input_ids'].shape[0]} instances, seed {n}"
    )
    for key in KEYS:
        assert got[key].dtype == want[key].dtype, f"{what}: {key} dtype"
        assert got[key].shape == want[key].shape, f"{what}: {key} shape"
        bad = np.flatnonzero((got[key] != want[key]).reshape(n, -1).any(axis=1))
        assert not len(bad), f"{what}: {key} differs in {len(bad)} rows, first row {bad[0]}"


DEFAULTS = dict(
    max_seq_length=128,
    max_predictions_per_seq=20,
    masked_lm_prob=0.15,
    short_seq_prob=0.1,
    dupe_factor=2,
    do_whole_word_mask=False,
    max_ngram_size=None,
)
SETTINGS = {
    "defaults": ({}, 12345),
    "whole_word": ({"do_whole_word_mask": True}, 7),
    "short_seq_64": ({"short_seq_prob": 0.5, "max_seq_length": 64}, 2**40 + 7),
    "masked_lm_prob_0.3": ({"masked_lm_prob": 0.3}, 0),
    # max_ngram_size 1 is plain whole-word masking: no draws for the n-gram size.
    "whole_word_ngram_1": ({"do_whole_word_mask": True, "max_ngram_size": 1}, 99),
    # max_ngram_size > 1: the seed made reproducible (see run_seed).
    "ngram_3": (
        {"do_whole_word_mask": True, "max_ngram_size": 3, "masked_lm_prob": 0.2},
        31337,
    ),
}


@pytest.mark.parametrize("corpus", ["sample", "prose"])
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_instances_match_seed(
    seed_pretraining, seed_tokenization, tokenizer, corpora, corpus, setting
):
    overrides, seed = SETTINGS[setting]
    settings = {**DEFAULTS, **overrides}
    path = corpora[corpus]
    # The seed tokenizes with its own FullTokenizer on the small sample and
    # with pybert's (identical tokens, tests/test_tokenizer.py; much faster) on the prose.
    seed_tok = (
        seed_tokenization.FullTokenizer(str(tokenizer.vocab_file), do_lower_case=True)
        if corpus == "sample"
        else tokenizer
    )
    want = run_seed(seed_pretraining, path, seed_tok, seed, settings)
    got = run_core(path, tokenizer, seed, settings)
    assert len(want["input_ids"]) > 10
    assert_same(got, want, f"{corpus}/{setting}")
    # The masks and the random next sentences actually happen.
    assert got["next_sentence_labels"].min() == 0 and got["next_sentence_labels"].max() == 1
    mask_id = tokenizer.vocab["[MASK]"]
    assert (got["input_ids"] == mask_id).sum() > 0


@pytest.mark.parametrize("seed", [1, 2**32 - 1, 2**32, 2**64 - 1])
def test_seeds_like_python(seed_pretraining, tokenizer, corpora, seed):
    """Python ints up to 2**64 - 1 seed like random.Random(seed) (one or two key words)."""
    settings = {**DEFAULTS, "dupe_factor": 1}
    want = run_seed(seed_pretraining, corpora["sample"], tokenizer, seed, settings)
    assert_same(run_core(corpora["sample"], tokenizer, seed, settings), want, f"seed {seed}")


def test_seed_types():
    """Integer-like seeds (operator.index) are taken; others are a TypeError."""
    call = valid_call()
    out = _C.create_pretraining_instances(**call)
    same = _C.create_pretraining_instances(**{**call, "seed": np.uint64(call["seed"])})
    assert all(np.array_equal(out[k], same[k]) for k in KEYS)
    with pytest.raises(TypeError, match="seed"):
        _C.create_pretraining_instances(**{**call, "seed": 1.0})


def test_serialize_matches_tf_example(tokenizer, corpora):
    tf = pytest.importorskip("tensorflow")
    settings = {**DEFAULTS, "dupe_factor": 1}
    arrays = run_core(corpora["sample"], tokenizer, 12345, settings)
    n = len(arrays["input_ids"])
    for v2 in (False, True):
        names = {
            "input_ids": "input_word_ids" if v2 else "input_ids",
            "segment_ids": "input_type_ids" if v2 else "segment_ids",
        }
        serialized = serialize_instances(arrays, use_v2_feature_names=v2)
        assert isinstance(serialized, list) and len(serialized) == n
        for i, data in enumerate(serialized):
            assert isinstance(data, bytes)
            example = tf.train.Example.FromString(data)
            features = example.features.feature
            assert set(features) == {names.get(k, k) for k in KEYS}
            # As the seed builds it (write_instance_to_example_files).
            want = collections.OrderedDict()
            for key in KEYS:
                values = arrays[key][i].reshape(-1).tolist()
                feature = features[names.get(key, key)]
                if key == "masked_lm_weights":
                    assert feature.WhichOneof("kind") == "float_list"
                    assert list(feature.float_list.value) == values
                    want[names.get(key, key)] = tf.train.Feature(
                        float_list=tf.train.FloatList(value=values)
                    )
                else:
                    assert feature.WhichOneof("kind") == "int64_list"
                    assert list(feature.int64_list.value) == values
                    want[names.get(key, key)] = tf.train.Feature(
                        int64_list=tf.train.Int64List(value=values)
                    )
            seed_example = tf.train.Example(features=tf.train.Features(feature=want))
            # Keys are written sorted: protobuf's deterministic serialization, byte for byte.
            assert data == seed_example.SerializeToString(deterministic=True)


def test_serialize_int64_range():
    """Negative and large values are int64 varints (negative: 10 bytes), floats fixed32."""
    tf = pytest.importorskip("tensorflow")
    big = np.array([[-1, 2**63 - 1, -(2**63), 0, 300]], dtype=np.int64)
    arrays = {
        "input_ids": big,
        "input_mask": big,
        "segment_ids": big,
        "masked_lm_positions": big[:, :2],
        "masked_lm_ids": big[:, 2:],
        "masked_lm_weights": np.array([[0.5, -2.25]], np.float32),
        "next_sentence_labels": np.array([-7], np.int64),
    }
    (data,) = serialize_instances(arrays)
    f = tf.train.Example.FromString(data).features.feature
    assert list(f["input_ids"].int64_list.value) == big[0].tolist()
    assert list(f["masked_lm_ids"].int64_list.value) == big[0, 2:].tolist()
    assert list(f["masked_lm_weights"].float_list.value) == [0.5, -2.25]
    assert list(f["next_sentence_labels"].int64_list.value) == [-7]


def valid_call():
    """A small valid argument set for create_pretraining_instances."""
    is_subword = np.zeros(20, np.uint8)
    is_subword[15:] = 1
    return dict(
        sentence_ids=np.array([5, 6, 7, 15, 8, 9, 10, 11], np.int32),
        sentence_splits=np.array([0, 2, 4, 6, 8], np.int64),
        document_splits=np.array([0, 2, 4], np.int64),
        is_subword=is_subword,
        seed=1,
        max_seq_length=16,
        max_predictions_per_seq=3,
        masked_lm_prob=0.15,
        short_seq_prob=0.1,
        dupe_factor=2,
        do_whole_word_mask=False,
        max_ngram_size=0,
        cls_id=1,
        sep_id=2,
        mask_id=3,
    )


def test_small_call_shapes():
    out = _C.create_pretraining_instances(**valid_call())
    n = out["input_ids"].shape[0]
    assert n > 0
    assert {k: (v.dtype.name, v.shape) for k, v in out.items()} == {
        "input_ids": ("int32", (n, 16)),
        "input_mask": ("int32", (n, 16)),
        "segment_ids": ("int32", (n, 16)),
        "masked_lm_positions": ("int32", (n, 3)),
        "masked_lm_ids": ("int32", (n, 3)),
        "masked_lm_weights": ("float32", (n, 3)),
        "next_sentence_labels": ("int32", (n,)),
    }
    assert (out["input_ids"][:, 0] == 1).all()
    # Other integer dtypes are accepted (converted).
    call = valid_call()
    call["sentence_ids"] = call["sentence_ids"].astype(np.int64)
    call["sentence_splits"] = call["sentence_splits"].astype(np.int32)
    call["is_subword"] = call["is_subword"].astype(bool)
    again = _C.create_pretraining_instances(**call)
    assert all(np.array_equal(out[k], again[k]) for k in KEYS)


BAD_ARGS = [
    ({"max_seq_length": 4}, "max_seq_length"),
    ({"max_predictions_per_seq": 0}, "max_predictions_per_seq"),
    ({"masked_lm_prob": 1.5}, "masked_lm_prob"),
    ({"masked_lm_prob": float("nan")}, "masked_lm_prob"),
    ({"short_seq_prob": -0.5}, "short_seq_prob"),
    ({"dupe_factor": 0}, "dupe_factor"),
    ({"max_ngram_size": 2}, "max_ngram_size"),  # needs do_whole_word_mask
    ({"max_ngram_size": -1}, "max_ngram_size"),
    ({"cls_id": 20}, "cls_id"),
    ({"sep_id": -1}, "sep_id"),
    ({"mask_id": 99}, "mask_id"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**64}, "seed"),
    ({"sentence_ids": np.array([5, 6, 7, 15, 8, 9, 10, 20], np.int32)}, "sentence_ids"),
    ({"sentence_ids": np.array([5, 6, 7, 15, 8, 9, 10, -1], np.int64)}, "sentence_ids"),
    ({"sentence_ids": np.array([5, 6, 7, 15, 8, 9, 10, 2**40], np.int64)}, "sentence_ids"),
    ({"sentence_ids": np.zeros(8, np.float32)}, "sentence_ids"),
    ({"sentence_ids": np.zeros((2, 4), np.int32)}, "sentence_ids"),
    ({"sentence_splits": np.array([0, 2, 4, 6, 9])}, "sentence_splits"),
    ({"sentence_splits": np.array([0, 4, 2, 6, 8])}, "sentence_splits"),
    ({"sentence_splits": np.array([1, 2, 4, 6, 8])}, "sentence_splits"),
    ({"document_splits": np.array([0, 0, 4])}, "document_splits"),
    ({"document_splits": np.array([0, 2, 5])}, "document_splits"),
    ({"document_splits": np.array([0])}, "document_splits"),
    ({"is_subword": np.zeros(0, np.uint8)}, "is_subword"),
    ({"is_subword": np.zeros((4, 5), np.uint8)}, "is_subword"),
    ({"is_subword": np.full(20, 256, np.int64)}, "is_subword has values outside"),  # no wrap to 0
    ({"is_subword": np.full(20, -1, np.int64)}, "is_subword has values outside"),
    ({"max_seq_length": 2**28}, "max_seq_length must be <= 65536"),
    ({"max_predictions_per_seq": 2**20}, "max_predictions_per_seq must be in"),
]


@pytest.mark.parametrize(
    "change,name", BAD_ARGS, ids=[f"{n}-{i}" for i, (_, n) in enumerate(BAD_ARGS)]
)
def test_bad_arguments(change, name):
    call = {**valid_call(), **change}
    with pytest.raises(ValueError, match=name):
        _C.create_pretraining_instances(**call)


def test_serialize_bad_arguments():
    arrays = _C.create_pretraining_instances(**valid_call())
    with pytest.raises(ValueError, match="masked_lm_ids repeats"):
        _C.serialize_examples([("masked_lm_ids", arrays["masked_lm_ids"])] * 2)
    short = {**arrays, "segment_ids": arrays["segment_ids"][:-1]}
    with pytest.raises(ValueError, match="segment_ids"):
        serialize_instances(short)
    flat = {**arrays, "input_mask": arrays["input_mask"].reshape(-1)}
    with pytest.raises(ValueError, match="input_mask"):
        serialize_instances(flat)
    text = {**arrays, "masked_lm_positions": arrays["masked_lm_positions"].astype(str)}
    with pytest.raises(ValueError, match="masked_lm_positions: dtype <U.* is not an integer"):
        serialize_instances(text)
    with pytest.raises(TypeError, match="a feature name must be a str, got int"):
        _C.serialize_examples([(1, arrays["input_ids"])])
    with pytest.raises(UnicodeEncodeError):
        _C.serialize_examples([("\ud800", arrays["input_ids"])])
    with pytest.raises(ValueError, match=r"columns must be \(name, array\) pairs"):
        _C.serialize_examples(["ab"])


def test_serialize_survives_a_column_list_changed_while_read():
    """An item's __array__ that empties the caller's list while C++ walks it: the call
    works on a snapshot (it read freed memory and crashed before)."""
    code = """if True:
        import numpy as np
        from pybert import _C
        class Shrinks:
            def __array__(self, dtype=None, copy=None):
                del cols[1:]
                return np.arange(3)
        cols = [("a", Shrinks())] + [(f"b{i}", np.arange(3)) for i in range(50)]
        out = _C.serialize_examples(cols)
        print(len(out), len(cols))
    """
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["3", "1"]
