"""SQuAD post-processing (C++) and evaluation against the seed's own code.

The seed's squad_lib (tf-models-official==2.4.0, tests/_oracle) reads and
featurizes real SQuAD files; both implementations then post-process the same
random and adversarial logits, and must agree on predictions, n-best texts,
logits, probabilities (1e-6) and null odds.
"""

import collections
import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from seed_oracle import assert_same_squad_output as assert_same
from seed_oracle import load_seed_squad_evaluate, load_seed_squad_lib

import pybert
from pybert import squad

RawResult = collections.namedtuple("RawResult", ["unique_id", "start_logits", "end_logits"])
SEQ = 384


@pytest.fixture(scope="module")
def seed_squad():
    lib = load_seed_squad_lib()
    if lib is None:
        pytest.skip("seed oracle not unpacked (see tools/run_tests.sh)")
    return lib


def featurize(seed_squad, path, vocab, v2, limit, lower=True, max_seq_length=SEQ):
    examples = seed_squad.read_squad_examples(
        str(path), is_training=False, version_2_with_negative=v2
    )[:limit]
    features = []
    # pybert's FullTokenizer gives the seed's tokens (tests/test_tokenizer.py) much faster.
    tokenizer = pybert.FullTokenizer(vocab, do_lower_case=lower)
    seed_squad.convert_examples_to_features(
        examples,
        tokenizer,
        max_seq_length=max_seq_length,
        doc_stride=128,
        max_query_length=64,
        is_training=False,
        batch_size=1,
        output_fn=lambda feature, is_padding=False: is_padding or features.append(feature),
    )
    return examples, features


@pytest.fixture(scope="module")
def squad_v1(seed_squad, data_dir, vocab_path):
    return featurize(
        seed_squad, data_dir / "squad/dev-v1.1.json", vocab_path("uncased"), False, 600
    )


@pytest.fixture(scope="module")
def squad_v2(seed_squad, data_dir, vocab_path):
    return featurize(
        seed_squad, data_dir / "squad/haystack_small-v2.0.json", vocab_path("uncased"), True, 10_000
    )


def make_results(features, kind, seed):
    rng = np.random.default_rng(seed)
    out = []
    for f in features:
        if kind == "random":
            s, e = rng.normal(0, 3, SEQ), rng.normal(0, 3, SEQ)
        elif kind == "ties":  # few distinct values: many ties in top-k and in sums
            s, e = rng.integers(-2, 3, SEQ).astype(float), rng.integers(-2, 3, SEQ).astype(float)
        elif kind == "flat":  # mostly one value: hundreds of candidates tie at the bound
            s, e = np.zeros(SEQ), np.zeros(SEQ)
            s[rng.choice(SEQ, 5)] = 1.0
            e[rng.choice(SEQ, 5)] = 1.0
        elif kind == "extreme":  # huge but finite logits
            s, e = rng.choice([-1e30, 0.0, 1e30, 5e29], SEQ), rng.choice([-1e30, 1e30, 2.5], SEQ)
        elif kind == "null":  # the null answer dominates everywhere
            s, e = rng.normal(0, 1, SEQ), rng.normal(0, 1, SEQ)
            s[0] = e[0] = 50.0
        else:
            raise ValueError(kind)
        # float32 logits as a model gives them, passed on as Python floats
        out.append(
            RawResult(f.unique_id, s.astype(np.float32).tolist(), e.astype(np.float32).tolist())
        )
    return out


@pytest.mark.parametrize("kind", ["random", "ties", "flat", "extreme"])
@pytest.mark.parametrize("n_best,max_len", [(20, 30), (1, 30), (5, 3)])
def test_v1_matches_seed(seed_squad, squad_v1, kind, n_best, max_len):
    examples, features = squad_v1
    results = make_results(features, kind, seed=n_best * 7 + max_len)
    args = (examples, features, results, n_best, max_len, True)
    assert_same(
        squad.postprocess_output(*args, num_threads=2), seed_squad.postprocess_output(*args)
    )


@pytest.mark.parametrize("kind", ["random", "ties", "flat", "null"])
@pytest.mark.parametrize("threshold", [0.0, -2.0, 3.5])
def test_v2_matches_seed(seed_squad, squad_v2, kind, threshold):
    examples, features = squad_v2
    results = make_results(features, kind, seed=11)
    args = (examples, features, results, 20, 30, True, True, threshold)
    ours = squad.postprocess_output(*args)
    assert_same(ours, seed_squad.postprocess_output(*args))
    assert len(ours[2]) == len(examples)


def test_cased_and_chinese_match_seed(seed_squad, data_dir, vocab_path):
    examples, features = featurize(
        seed_squad,
        data_dir / "cmrc2018_zh/cmrc2018_trial.json",
        vocab_path("multi_cased"),
        False,
        300,
        lower=False,
    )
    results = make_results(features, "random", seed=3)
    args = (examples, features, results, 20, 30, False)
    assert_same(squad.postprocess_output(*args), seed_squad.postprocess_output(*args))


def test_get_final_text_matches_seed(seed_squad):
    cases = [
        ("steve smith", "Steve Smith's", True),
        ("smith", "Steve Smith's", True),
        ("hello", "Héllo!", True),
        ("hello", "Héllo!", False),
        ("denver broncos", "the Denver Broncos.", True),
        ("x", "abc", True),
        ("ab", "a b", True),
        ("", "abc", True),
        ("ς", "ΟΔΟΣ", True),
        ("1 , 000", "1,000", True),
    ]
    for pred, orig, lower in cases:
        want = seed_squad.get_final_text(pred, orig, lower)
        assert squad.get_final_text(pred, orig, lower) == want, (pred, orig, lower)


@pytest.mark.parametrize("kind", ["random", "ties", "extreme"])
def test_compact_arrays_roundtrip_and_array_results(tmp_path, seed_squad, squad_v1, kind):
    """float32 result arrays (read as float32 in C++) and float64 ones give the seed's output."""
    examples, features = squad_v1
    results = make_results(features, kind, seed=5)
    arrays = squad.SquadFeatureArrays.from_seed(examples, features)
    arrays.save(str(tmp_path / "meta.npz"))
    loaded = squad.SquadFeatureArrays.load(str(tmp_path / "meta.npz"))
    if kind == "random":  # a cut file, or another file: an error naming it
        data = (tmp_path / "meta.npz").read_bytes()
        for name, content in (("cut.npz", data[: len(data) // 2]), ("other.npz", b"\x93NUMPY")):
            (tmp_path / name).write_bytes(content)
            with pytest.raises(ValueError, match=f"{name}: not SQuAD feature arrays"):
                squad.SquadFeatureArrays.load(str(tmp_path / name))
    ids = np.array([r.unique_id for r in results])
    start = np.array([r.start_logits for r in results], dtype=np.float32)
    end = np.array([r.end_logits for r in results], dtype=np.float32)
    perm = np.random.default_rng(0).permutation(len(ids))  # results in any order
    ours = squad.postprocess_output(loaded, None, (ids[perm], start[perm], end[perm]), 20, 30, True)
    theirs = seed_squad.postprocess_output(examples, features, results, 20, 30, True)
    assert_same(ours, theirs)
    wide = (ids, start.astype(np.float64), end.astype(np.float64))
    assert_same(squad.postprocess_output(loaded, None, wide, 20, 30, True), theirs)


def test_write_predictions_files(tmp_path, seed_squad, squad_v2):
    examples, features = squad_v2
    results = make_results(features, "random", seed=8)
    paths = [str(tmp_path / n) for n in ("predictions.json", "nbest.json", "null_odds.json")]
    squad.write_predictions(
        examples, features, results, 20, 30, True, *paths, version_2_with_negative=True
    )
    preds, nbest, odds = seed_squad.postprocess_output(
        examples, features, results, 20, 30, True, True
    )
    with open(paths[0]) as f:
        assert json.load(f) == preds
    with open(paths[2]) as f:
        np.testing.assert_allclose(list(json.load(f).values()), list(odds.values()), rtol=1e-12)
    with open(paths[1]) as f:
        text = f.read()
    assert text == json.dumps(json.loads(text), indent=4) + "\n"  # the seed's layout
    assert not list(tmp_path.glob("*.tmp"))
    # The three files are replaced as a set: when the last cannot be written, the
    # earlier ones keep the previous run's contents.
    before = {p: Path(p).read_bytes() for p in paths}
    other = make_results(features, "random", seed=9)
    with pytest.raises(OSError):
        squad.write_predictions(examples, features, other, 20, 30, True, *paths[:2],
                                str(tmp_path / "missing" / "null_odds.json"),
                                version_2_with_negative=True)
    assert {p: Path(p).read_bytes() for p in paths} == before
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("v2", [False, True])
def test_context_without_words_matches_seed(tmp_path, seed_squad, vocab_path, v2):
    """A paragraph whose context is empty or blank has no features; its questions get the
    seed's v1.1 fallback prediction ("empty"). In v2.0 the seed raises IndexError there;
    pybert predicts "" (no answer) with null odds 1e6, and the other questions as the seed."""
    from pybert.data import squad as squad_data

    path = tmp_path / "blank.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [
        {"context": " \t ", "qas": [{"id": "blank", "question": "what is it?", "answers": []}]},
        {"context": "Paris is the capital of France.",
         "qas": [{"id": "paris", "question": "where is paris?", "answers": []}]},
        {"context": "", "qas": [{"id": "empty", "question": "who?", "answers": []}]}]}]}))
    vocab = vocab_path("uncased")
    examples, features = featurize(seed_squad, path, vocab, v2, 10, max_seq_length=64)
    assert len(examples) == 3 and len(features) == 1
    ours = squad_data.featurize(squad_data.read_squad(str(path), False, v2),
                                pybert.FullTokenizer(vocab), 64, 128, 64, False)
    assert len(ours) == 1
    np.testing.assert_array_equal(ours.arrays["input_ids"][0], features[0].input_ids)
    rng = np.random.default_rng(4)
    s, e = rng.normal(0, 3, (1, 64)).astype(np.float32), rng.normal(0, 3, (1, 64)).astype(
        np.float32)
    results = [RawResult(features[0].unique_id, s[0].tolist(), e[0].tolist())]
    mine = squad.postprocess_output(ours.post, None, (ours.arrays["unique_ids"], s, e), 20, 30,
                                    True, v2)
    if not v2:
        theirs = seed_squad.postprocess_output(examples, features, results, 20, 30, True)
        assert_same(mine, theirs)
        assert theirs[0]["blank"] == theirs[0]["empty"] == "empty"
        return
    with pytest.raises(IndexError):
        seed_squad.postprocess_output(examples, features, results, 20, 30, True, True)
    alone = copy.copy(features[0])
    alone.example_index = 0  # the "paris" question on its own
    theirs = seed_squad.postprocess_output(examples[1:2], [alone], results, 20, 30, True, True)
    assert mine[0] == {"blank": "", "paris": theirs[0]["paris"], "empty": ""}
    assert mine[2]["blank"] == mine[2]["empty"] == 1e6
    assert mine[2]["paris"] == pytest.approx(theirs[2]["paris"], rel=1e-12)
    assert mine[1]["paris"] == [dict(x) for x in theirs[1]["paris"]]


def test_verbose_logging(caplog, seed_squad):
    from types import SimpleNamespace as NS

    # "ab\u200bcd": the zero-width space is removed by basic tokenization, so
    # the character alignment fails and the whole original span is returned.
    example = NS(qas_id="q1", doc_tokens=["foo", "ab\u200bcd"])
    feature = NS(
        unique_id=7,
        example_index=0,
        tokens=["[CLS]", "q", "[SEP]", "foo", "abcd", "[SEP]"],
        token_to_orig_map={3: 0, 4: 1},
        token_is_max_context={3: True, 4: True},
    )
    start = [0.0] * 6
    start[4] = 9.0
    result = RawResult(7, start, start)
    with caplog.at_level(logging.INFO, logger="pybert.squad"):
        preds, _, _ = squad.postprocess_output(
            [example], [feature], [result], 20, 30, True, verbose=True
        )
    assert preds == seed_squad.postprocess_output([example], [feature], [result], 20, 30, True)[0]
    assert preds["q1"] == "ab\u200bcd"
    assert any("Length not equal after stripping spaces" in m for m in caplog.messages)


def test_bad_inputs(squad_v1):
    examples, features = squad_v1
    results = make_results(features, "random", seed=2)
    args = (examples, features)
    # A result without a feature (the seed's padding features have some) is ignored, as the
    # seed does.
    extra = RawResult(123, results[0].start_logits, results[0].end_logits)
    assert squad.postprocess_output(*args, [extra] + results, 20, 30, True) == \
        squad.postprocess_output(*args, results, 20, 30, True)
    with pytest.raises(
        ValueError, match=f"no result for feature unique_id {features[0].unique_id}"
    ):
        squad.postprocess_output(*args, results[1:], 20, 30, True)
    short = RawResult(results[3].unique_id, results[3].start_logits[:10], results[3].end_logits)
    with pytest.raises(ValueError, match=f"result {results[3].unique_id}: logits of length 10"):
        squad.postprocess_output(*args, results[:3] + [short] + results[4:], 20, 30, True)
    nan = RawResult(results[5].unique_id, [float("nan")] * SEQ, results[5].end_logits)
    with pytest.raises(ValueError, match=f"result unique_id {results[5].unique_id}: .*NaN"):
        squad.postprocess_output(*args, results[:5] + [nan] + results[6:], 20, 30, True)
    with pytest.raises(ValueError, match="n_best_size must be an int >= 1"):
        squad.postprocess_output(*args, results, 0, 30, True)
    with pytest.raises(ValueError, match="max_answer_length must be an int >= 1"):
        squad.postprocess_output(*args, results, 20, 0, True)
    ids = np.array([f.unique_id for f in features], dtype=np.int64)
    empty = np.zeros((len(features), 0), dtype=np.float32)
    with pytest.raises(ValueError, match="seq_len >= 1"):  # before: read past the logits
        squad.postprocess_output(*args, (ids, empty, empty), 20, 30, True,
                                 version_2_with_negative=True)
    # Sizes beyond the C++ int mean "all candidates" (as in the seed), not a TypeError;
    # n_best_size 384 = the sequence length already keeps every start and end.
    few = sum(1 for f in features if f.example_index < 5)
    small = (examples[:5], features[:few], results[:few])
    assert squad.postprocess_output(*small, 2**40, 2**40, True)[0] == \
        squad.postprocess_output(*small, SEQ, SEQ, True)[0]
    with pytest.raises(ValueError, match=r"num_threads must be in \[0, 4096\]"):
        squad.postprocess_output(*small, 20, 30, True, num_threads=2**40)
    # Not truncated or read as 1: a bool, a float
    with pytest.raises(ValueError, match="n_best_size must be an int >= 1, got True"):
        squad.postprocess_output(*small, True, 30, True)
    with pytest.raises(ValueError, match="num_threads must be in"):
        squad.postprocess_output(*small, 20, 30, True, num_threads=1.5)
    ids = np.array([f.unique_id for f in features[:few]], dtype=np.float64)
    starts = np.asarray([r.start_logits for r in results[:few]], np.float32)
    with pytest.raises(ValueError, match="result unique_ids must be integers, got dtype float64"):
        squad.postprocess_output(examples[:5], features[:few], (ids, starts, starts), 20, 30,
                                 True)
    floats = [RawResult(float(r.unique_id), r.start_logits, r.end_logits) for r in results[:few]]
    with pytest.raises(ValueError, match=r"result unique_ids must be integers, got \d+\.0"):
        squad.postprocess_output(examples[:5], features[:few], floats, 20, 30, True)
    # No results at all; qas_ids that do not cover the examples; a NaN threshold: errors
    # naming them (before: numpy's reshape error, zip()'s, and NaN taken as a threshold)
    first = features[0].unique_id
    with pytest.raises(ValueError, match=f"no result for feature unique_id {first}"):
        squad.postprocess_output(*small[:2], [], 20, 30, True)
    arrays = squad.SquadFeatureArrays.from_seed(*small[:2])
    arrays.qas_ids = arrays.qas_ids[:-1]
    with pytest.raises(ValueError, match=r"qas_ids: 4 ids for 5 examples"):
        squad.postprocess_output(arrays, None, small[2], 20, 30, True)
    with pytest.raises(ValueError, match="null_score_diff_threshold is NaN"):
        squad.postprocess_output(*small, 20, 30, True, version_2_with_negative=True,
                                 null_score_diff_threshold=float("nan"))


def test_native_decoder_takes_integer_arrays_exactly():
    """_C.squad_postprocess: an integer array whose values its C++ type cannot hold is an
    error naming it (before: int64 2**32 wrapped to 0 in int32, 256 to 0 in uint8, and the
    decoder answered from the wrong tokens); floats where integers belong and complex
    logits are errors too. In-range values of any integer dtype are taken as before."""
    from pybert import _C

    def call(**change):
        args = dict(
            doc_data=b"Thecatsat", doc_offsets=np.array([0, 3, 6, 9]), doc_splits=np.array([0, 3]),
            feature_example=np.array([0]), token_data=b"[CLS]q[SEP]thecatsat[SEP]",
            token_offsets=np.array([0, 5, 6, 11, 14, 17, 20, 25]), token_splits=np.array([0, 7]),
            token_to_orig=np.array([-1, -1, -1, 0, 1, 2, -1], np.int32),
            max_context=np.array([0, 0, 0, 1, 1, 1, 0], np.uint8),
            start_logits=np.array([[0, 0, 0, 1, 5, 2, 0]], np.float32),
            end_logits=np.array([[0, 0, 0, 1, 2, 5, 0]], np.float32), n_best_size=20,
            max_answer_length=30, do_lower_case=True, version_2_with_negative=False,
            null_score_diff_threshold=0.0, verbose=False, num_threads=1)
        args.update(change)
        return _C.squad_postprocess(**args)

    best = call()[0][1][0]["text"]
    assert best == "cat sat"
    wide = np.array([-1, -1, -1, 0, 1, 2, -1], np.int64)
    assert call(token_to_orig=wide, max_context=np.array([0, 0, 0, 1, 1, 1, 0]))[0][1][0][
        "text"] == best
    with pytest.raises(ValueError, match="token_to_orig has values outside the range of int32"):
        call(token_to_orig=wide + np.array([0, 0, 0, 2**32, 2**32, 2**32, 0]))
    with pytest.raises(ValueError, match="max_context has values outside the range of uint8"):
        call(max_context=np.array([0, 0, 0, 256, 256, 256, 0]))
    with pytest.raises(ValueError, match="doc_offsets must be an integer array, got dtype float"):
        call(doc_offsets=np.array([0, 3.7, 6.2, 9.0]))
    with pytest.raises(ValueError, match="start_logits must be a real numeric array"):
        call(start_logits=np.array([[0, 0, 0, 1, 5, 2, 0]]) + 1j)


# -- evaluation ---------------------------------------------------------------


def test_metrics_on_constructed_cases():
    data = {
        "data": [
            {
                "paragraphs": [
                    {
                        "qas": [
                            {"id": "a", "answers": [{"text": "a cat sat on"}, {"text": "the dog"}]},
                            {"id": "b", "answers": [{"text": "Paris!"}]},
                            {"id": "c", "answers": [{"text": "42"}]},
                            {"id": "d", "answers": []},
                        ]
                    }
                ]
            }
        ]
    }
    # a: pred tokens [cat, sat] vs gold [cat, sat, on]: P = 1, R = 2/3, F1 = 0.8
    preds = {"a": "The cat sat", "b": "paris", "c": "41", "d": ""}
    with pytest.raises(ValueError, match="question d has no answers"):
        squad.evaluate_v1(data, preds)  # the official v1.1 script fails on it too
    data_v1 = {"data": [{"paragraphs": [{"qas": data["data"][0]["paragraphs"][0]["qas"][:3]}]}]}
    v1 = squad.evaluate_v1(data_v1, preds)
    assert v1["exact_match"] == pytest.approx(100 / 3)
    assert v1["f1"] == pytest.approx(100 * (0.8 + 1 + 0) / 3)
    v2 = squad.evaluate_v2(data, preds, na_probs={"a": 0.1, "b": 0.2, "c": 0.9, "d": 0.8})
    assert v2["exact"] == pytest.approx(100 * 2 / 4) and v2["f1"] == pytest.approx(100 * 2.8 / 4)
    assert v2["HasAns_total"] == 3 and v2["NoAns_total"] == 1 and v2["NoAns_exact"] == 100.0
    # d answered wrongly ("x" for an unanswerable question): F1 (0.8 + 1 + 0 + 0) / 4.
    # With a no-answer threshold of 0.2, c and d become "no answer": d turns right,
    # c stays wrong: (0.8 + 1 + 0 + 1) / 4.
    v2 = squad.evaluate_v2(
        data, preds | {"d": "x"}, na_probs={"a": 0.1, "b": 0.2, "c": 0.9, "d": 0.8}
    )
    assert v2["f1"] == pytest.approx(100 * 1.8 / 4)
    assert v2["best_f1"] == pytest.approx(100 * 2.8 / 4) and v2["best_f1_thresh"] == 0.2


def test_evaluate_matches_seed_scripts(seed_squad, squad_v1, squad_v2, data_dir):
    seed_v1 = load_seed_squad_evaluate("1.1")
    seed_v2 = load_seed_squad_evaluate("2.0")
    examples, features = squad_v1
    preds, _, _ = squad.postprocess_output(
        examples, features, make_results(features, "random", 4), 20, 30, True
    )
    with open(data_dir / "squad/dev-v1.1.json") as f:
        dataset = json.load(f)
    # a known prediction file: the gold answers themselves score 100
    gold = {
        qa["id"]: qa["answers"][0]["text"]
        for a in dataset["data"]
        for p in a["paragraphs"]
        for qa in p["qas"]
    }
    assert squad.evaluate_v1(dataset, gold) == {"exact_match": 100.0, "f1": 100.0}
    # decoded predictions for 600 questions, gold for every third; the rest unanswered.
    # The seed's copy of the v1.1 script returns fractions where the official one
    # (and pybert) print percentages.
    mixed = dict(preds) | {k: v for i, (k, v) in enumerate(gold.items()) if i % 3 == 0}
    ours = squad.evaluate_v1(dataset, mixed)
    theirs = seed_v1.evaluate(dataset["data"], mixed)
    assert ours["exact_match"] == pytest.approx(100 * theirs["exact_match"], rel=1e-12)
    assert ours["f1"] == pytest.approx(100 * theirs["final_f1"], rel=1e-12)
    assert 30 < ours["exact_match"] < 40
    examples, features = squad_v2
    preds, _, odds = squad.postprocess_output(
        examples, features, make_results(features, "random", 9), 20, 30, True, True
    )
    with open(data_dir / "squad/haystack_small-v2.0.json") as f:
        dataset2 = json.load(f)
    ours = squad.evaluate_v2(dataset2, preds, na_probs=odds)
    theirs = seed_v2.evaluate(dataset2["data"], preds, odds)
    for key in ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key
    assert ours["best_exact"] == pytest.approx(theirs["final_exact"])
    assert ours["best_f1"] == pytest.approx(theirs["final_f1"])
    # run_squad's eval_metrics.json: the seed's keys, order and scales, value for value.
    some = {k: v for i, (k, v) in enumerate(preds.items()) if i % 4}  # the rest unanswered
    for data, p, o, v2 in ((dataset, mixed, None, False), (dataset2, preds, odds, True),
                           (dataset2, some, {k: odds[k] for k in some}, True)):
        mine = squad.run_squad_metrics(data, p, o, v2)
        seed = (seed_v2.evaluate(data["data"], p, o) if v2 else
                seed_v1.evaluate(data["data"], p))
        assert list(mine) == list(seed)
        for key, value in seed.items():
            assert mine[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    assert "pr_oracle_ap" in mine and 0 < mine["pr_f1_ap"] < 100


def test_squad_evaluate_tool(tmp_path, data_dir):
    import subprocess
    import sys

    with open(data_dir / "squad/haystack_small-v2.0.json") as f:
        dataset = json.load(f)
    qas = [qa for a in dataset["data"] for p in a["paragraphs"] for qa in p["qas"]]
    preds = {qa["id"]: (qa["answers"][0]["text"] if qa["answers"] else "") for qa in qas}
    preds[qas[0]["id"]] = "something else"
    pred_file = tmp_path / "predictions.json"
    pred_file.write_text(json.dumps(preds))
    odds = tmp_path / "null_odds.json"
    odds.write_text(json.dumps({k: 0.0 for k in preds}))
    from conftest import REPO

    tool = [sys.executable, str(REPO / "tools" / "squad_evaluate.py")]
    out = subprocess.run(
        tool
        + [
            str(data_dir / "squad/haystack_small-v2.0.json"),
            str(pred_file),
            "--na_prob_file",
            str(odds),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    metrics = json.loads(out.stdout)
    want = squad.evaluate_v2(dataset, preds, {k: 0.0 for k in preds})
    assert metrics == pytest.approx(dict(want))
    assert metrics["total"] == len(qas) and metrics["exact"] < 100.0
    bad = subprocess.run(
        tool + [str(tmp_path / "missing.json"), str(pred_file)], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "data file not found" in bad.stderr
    # Answers that are not strings, scores that are not numbers: the file and the id.
    data_arg = str(data_dir / "squad/haystack_small-v2.0.json")
    pred_file.write_text(json.dumps({**preds, qas[1]["id"]: 5}))
    bad = subprocess.run(tool + [data_arg, str(pred_file)], capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert f"{pred_file}: the value for '{qas[1]['id']}' is 5, not a string" in bad.stderr
    pred_file.write_text(json.dumps(preds))
    odds.write_text(json.dumps({**{k: 0.0 for k in preds}, qas[2]["id"]: None}))
    bad = subprocess.run(tool + [data_arg, str(pred_file), "--na_prob_file", str(odds)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert f"the value for '{qas[2]['id']}' is null, not a finite number" in bad.stderr
    odds.write_text(json.dumps({k: 0.0 for k in preds}).replace("0.0", "NaN", 1))
    bad = subprocess.run(tool + [data_arg, str(pred_file), "--na_prob_file", str(odds)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "is NaN, not a finite number" in bad.stderr
    # Data that is not SQuAD, a directory, an --out_file that cannot be written: one line.
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"data": [{"paragraphs": [{"qas": [{"question": "q"}]}]}]}))
    out_file = tmp_path / "metrics.json"
    for args, message in [
            ([str(broken), str(pred_file)], f"{broken} is not SQuAD data"),
            ([str(tmp_path), str(pred_file)], f"data file {tmp_path}: cannot read it"),
            ([data_arg, str(pred_file), "-o", str(tmp_path)],
             f"--out_file {tmp_path}: cannot write it")]:
        bad = subprocess.run(tool + args, capture_output=True, text=True)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
        assert message in bad.stderr and not bad.stdout
    odds.write_text(json.dumps({k: 0.0 for k in preds}))
    ok = subprocess.run(tool + [data_arg, str(pred_file), "-n", str(odds),
                                "-t", "0.5", "-o", str(out_file)],
                        capture_output=True, text=True, check=True)
    assert json.loads(out_file.read_text()) == json.loads(ok.stdout)
    assert not list(tmp_path.glob("*.tmp"))


def test_squad_evaluate_precision_recall_plots(tmp_path, data_dir):
    """-p/--out_image_dir (the official v2.0 script's): pr_exact_ap, pr_f1_ap, pr_oracle_ap
    equal the seed's copy of that script on the same files (tied scores included), and the
    five plots are PNG files; without -n nothing is plotted, v1.1 refuses -p."""
    import subprocess
    import sys

    pytest.importorskip("matplotlib")
    from conftest import REPO

    data_arg = str(data_dir / "squad/haystack_small-v2.0.json")
    with open(data_arg) as f:
        dataset = json.load(f)
    qas = [qa for a in dataset["data"] for p in a["paragraphs"] for qa in p["qas"]]
    rng = np.random.default_rng(5)
    preds = {qa["id"]: (qa["answers"][0]["text"] if qa["answers"] and rng.random() < 0.6
                        else ["", "the", qa["question"].split()[0]][rng.integers(3)])
             for qa in qas}
    tool = [sys.executable, str(REPO / "tools" / "squad_evaluate.py")]
    pred_file = tmp_path / "predictions.json"
    pred_file.write_text(json.dumps(preds))
    seed = load_seed_squad_evaluate("2.0")
    for odds, images in (({k: float(rng.integers(0, 10)) / 10 for k in preds}, "probs"),
                         ({k: float(rng.normal(0, 4)) for k in preds}, "null_odds")):
        odds_file = tmp_path / f"{images}.json"
        odds_file.write_text(json.dumps(odds))
        out = subprocess.run(tool + [data_arg, str(pred_file), "-n", str(odds_file),
                                     "-p", str(tmp_path / images), "-v"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        metrics = json.loads(out.stdout)
        want = seed.evaluate(dataset["data"], preds, odds)
        for key in ("pr_exact_ap", "pr_f1_ap", "pr_oracle_ap"):
            assert metrics[key] == pytest.approx(want[key], rel=1e-12), key
        assert 0 < metrics["pr_f1_ap"] < metrics["pr_oracle_ap"] <= 100
        names = sorted(p.name for p in (tmp_path / images).iterdir())
        assert names == ["na_prob_hist_hasAns.png", "na_prob_hist_noAns.png", "pr_exact.png",
                         "pr_f1.png", "pr_oracle.png"]
        for name in names:
            data = (tmp_path / images / name).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    # Questions without a prediction are left out here too, as the seed's copy of the script
    # (it evaluates the predicted questions only) and every other number: with a third of the
    # questions unanswered, the same values as the seed on the predicted ones.
    some = {k: v for i, (k, v) in enumerate(preds.items()) if i % 3}
    pred_file.write_text(json.dumps(some))
    odds_file.write_text(json.dumps({k: odds[k] for k in some}))
    out = subprocess.run(tool + [data_arg, str(pred_file), "-n", str(odds_file),
                                 "-p", str(tmp_path / "some")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads(out.stdout)
    predicted = [{"paragraphs": [{"qas": [qa]}]} for qa in qas if qa["id"] in some]
    want = seed.evaluate(predicted, some, {k: odds[k] for k in some})
    for ours, theirs in (("pr_exact_ap", "pr_exact_ap"), ("pr_f1_ap", "pr_f1_ap"),
                         ("pr_oracle_ap", "pr_oracle_ap"), ("best_exact", "final_exact"),
                         ("best_f1", "final_f1"), ("exact", "exact")):
        assert metrics[ours] == pytest.approx(want[theirs], rel=1e-12), ours
    assert metrics["total"] == len(some) < len(qas)
    # each unanswered question is reported once (the metrics and the curves share a scoring)
    reported = [line for line in out.stderr.splitlines() if "Missing prediction for" in line]
    assert sorted(line.split()[-1] for line in reported) == sorted(
        qa["id"] for qa in qas if qa["id"] not in some)
    pred_file.write_text(json.dumps(preds))
    out = subprocess.run(tool + [data_arg, str(pred_file), "-p", str(tmp_path / "none")],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "without --na_prob_file: no plots" in out.stderr
    assert "pr_f1_ap" not in json.loads(out.stdout) and not (tmp_path / "none").exists()
    out = subprocess.run(tool + [data_arg, str(pred_file), "--version", "1.1", "-p",
                                 str(tmp_path / "v1")], capture_output=True, text=True)
    assert out.returncode == 1 and "--out_image_dir needs --version 2.0" in out.stderr


def test_get_final_text_random_spans_match_seed(seed_squad, squad_v1, data_dir):
    """Random original spans of real passages (ASCII and not) and random predictions."""
    rng = np.random.default_rng(12)
    examples, _ = squad_v1
    zh, _ = featurize(
        seed_squad,
        data_dir / "cmrc2018_zh/cmrc2018_trial.json",
        data_dir / "vocab/bert-base-multilingual-cased-vocab.txt",
        False,
        40,
        lower=False,
    )
    basic = {
        True: seed_squad.tokenization.BasicTokenizer(do_lower_case=True),
        False: seed_squad.tokenization.BasicTokenizer(do_lower_case=False),
    }
    for i in range(600):
        ex = (examples if i % 3 else zh)[rng.integers(0, 40)]
        lower = bool(i % 2)
        a = int(rng.integers(0, len(ex.doc_tokens)))
        b = min(len(ex.doc_tokens), a + int(rng.integers(1, 12)))
        orig = " ".join(ex.doc_tokens[a:b])
        words = basic[lower].tokenize(orig) or ["x"]
        s = int(rng.integers(0, len(words)))
        pred = " ".join(words[s : s + int(rng.integers(1, 4))])
        if i % 7 == 0:
            pred = pred.upper()  # not found
        want = seed_squad.get_final_text(pred, orig, lower)
        assert squad.get_final_text(pred, orig, lower) == want, (pred, orig, lower)
