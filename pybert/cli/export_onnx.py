"""export_onnx: a pybert model (checkpoint or SavedModel export) -> ONNX for pybert-predict.

  pybert-export-onnx --bert_config_file=minilm/bert_config.json \\
    --model_dir=out/mrpc --input_meta_data_path=mrpc_meta \\
    --vocab_file=minilm/vocab.txt --output_dir=out/mrpc_onnx --int8

The model comes from --checkpoint (a checkpoint prefix, or a SavedModel directory
written by --model_export_path / export_only) or the latest checkpoint of
--model_dir. --task: classifier / regression (run_classifier), span (run_squad)
or encoder (a converted checkpoint, bert_model.ckpt); by default taken from
--input_meta_data_path. Output: model.onnx (fp32, fused by ONNX Runtime's
transformer optimizer), model_int8.onnx (--int8) and model_fp16.onnx (--fp16),
vocab.txt and pybert_model.json (task, labels, do_lower_case, max_seq_length,
fusions, validation numbers). The export fails when the fp32 model differs from
TensorFlow by more than 1e-4 on real padded inputs, or when an expected fusion
(EmbedLayerNormalization, Attention, SkipLayerNormalization, Gelu) did not happen.
A classifier's or regression model's last layer is computed for the [CLS] row
only (all its head reads; about 1/num_layers less work, same outputs).
"""

from __future__ import annotations

import os

from absl import flags

from pybert.cli import common_flags
from pybert.cli._runner import run_tool

FLAGS = flags.FLAGS

flags.DEFINE_string("bert_config_file", None, "bert_config.json of the encoder.")
flags.DEFINE_string("checkpoint", None,
                    "Checkpoint prefix or SavedModel directory (default: latest in --model_dir).")
flags.DEFINE_string("model_dir", None, "Training model_dir whose latest checkpoint is exported.")
flags.DEFINE_enum("task", None, ["classifier", "regression", "span", "encoder"],
                  "Model head (default: from --input_meta_data_path).")
flags.DEFINE_string("input_meta_data_path", None,
                    "Meta data JSON of create_finetuning_data (task, labels, max_seq_length).")
flags.DEFINE_integer("num_labels", None, "Classifier outputs (default: from the meta data).",
                     lower_bound=1)
flags.DEFINE_list("labels", None,
                  "Label names in output order (default: the task's labels, else 0..n-1).")
flags.DEFINE_string("vocab_file", None, "The model's vocabulary (copied beside the model).")
flags.DEFINE_bool("do_lower_case", None,
                  "Lower-case the input (uncased models); default: true, as the data tool's "
                  "(with a warning when the vocab looks cased). Give what the data tool was "
                  "given.")
flags.DEFINE_integer("max_seq_length", None,
                     "Longest input in word pieces (default: meta data, else 128).",
                     lower_bound=3)
flags.DEFINE_integer("doc_stride", None, "span: window stride (default: meta data, else 128).",
                     lower_bound=1)
flags.DEFINE_integer("max_query_length", None,
                     "span: longest question (default: meta data, else 64).", lower_bound=1)
flags.DEFINE_string("output_dir", None, "Where the ONNX model directory is written.")
flags.DEFINE_bool("int8", False, "Also write a dynamically quantized int8 model (CPU; "
                  "weights per output column, activations per batch).")
flags.DEFINE_bool("fp16", False, "Also write a float16 model (GPU).")
flags.DEFINE_integer("opset", 17, "ONNX opset (>= 17).", lower_bound=17)
flags.DEFINE_bool("require_fusions", True,
                  "Refuse a graph that ONNX Runtime's optimizer did not fuse as a BERT graph "
                  "(attention, LayerNorms, GELU); false exports it unfused, slower.")


def _task_and_labels(meta: dict) -> tuple[str, list[str] | None, int | None]:
    task = FLAGS.task
    if task is None:
        kind = meta.get("task_type")
        if kind == "bert_classification":
            task = "classifier"
        elif kind == "bert_regression":
            task = "regression"
        elif "doc_stride" in meta:
            task = "span"
        else:
            raise ValueError("--task is required (no --input_meta_data_path with a task_type)")
    labels, num_labels = FLAGS.labels, FLAGS.num_labels
    if task == "classifier":
        if num_labels is None:
            num_labels = meta.get("num_labels") or (len(labels) if labels else None)
        if not num_labels:
            raise ValueError("classifier: give --num_labels, --labels or --input_meta_data_path")
        if not labels and meta.get("processor_type"):
            from pybert.data.classification import get_task

            try:
                spec_labels = get_task(meta["processor_type"]).labels
            except ValueError:
                spec_labels = None
            if spec_labels and len(spec_labels) == num_labels:
                labels = list(spec_labels)
    return task, labels, num_labels


def _restore(model, root: str) -> str:
    """Restores `model` under checkpoint root `root` ("model" or "encoder")."""
    import tensorflow as tf

    path = FLAGS.checkpoint
    if path and os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise FileNotFoundError(f"--checkpoint {path}: a directory without saved_model.pb")
        path = os.path.join(path, "variables", "variables")
    elif not path:
        if not FLAGS.model_dir:
            raise ValueError("give --checkpoint or --model_dir")
        path = tf.train.latest_checkpoint(FLAGS.model_dir)
        if not path:
            raise FileNotFoundError(f"--model_dir {FLAGS.model_dir}: no checkpoint")
    elif not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"--checkpoint {path}: no {path}.index")
    model.build()
    status = tf.train.Checkpoint(**{root: model}).read(path).expect_partial()
    try:
        # Fails for any weight of `model` without a value in the checkpoint.
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise ValueError(f"checkpoint {path} does not fit a {type(model).__name__} "
                         f"(wrong --task or --bert_config_file?): {str(e)[:300]}") from None
    return path


def run() -> dict:
    from pybert.configs import BertConfig
    from pybert.export.onnx import export_onnx
    from pybert.modeling import BertClassifier, BertEncoder, BertSpanLabeler

    meta = (common_flags.read_meta_data(FLAGS.input_meta_data_path)
            if FLAGS.input_meta_data_path else {})
    config = BertConfig.from_json_file(
        common_flags.require_file("bert_config_file", FLAGS.bert_config_file))
    common_flags.require_file("vocab_file", FLAGS.vocab_file)
    if not FLAGS.output_dir:
        raise ValueError("--output_dir is required")
    task, labels, num_labels = _task_and_labels(meta)
    seq = FLAGS.max_seq_length or int(meta.get("max_seq_length", 128))
    if task in ("classifier", "regression"):
        model = BertClassifier(config, 1 if task == "regression" else int(num_labels),
                               name="bert_classifier")
        root = "model"
    elif task == "span":
        model = BertSpanLabeler(config, name="bert_span_labeler")
        root = "model"
    else:
        model = BertEncoder(config, name="bert_encoder")
        root = "encoder"
    source = _restore(model, root)
    extra = None
    if task == "span":  # what pybert-predict needs to window SQuAD passages as training did
        extra = {
            "doc_stride": FLAGS.doc_stride or int(meta.get("doc_stride", 128)),
            "max_query_length": FLAGS.max_query_length or int(meta.get("max_query_length", 64)),
            "version_2_with_negative": bool(meta.get("version_2_with_negative", False)),
        }
    from pybert.export.onnx import lower_case_for

    lower = lower_case_for(FLAGS.vocab_file, FLAGS.do_lower_case)
    result = export_onnx(model, task, FLAGS.output_dir, FLAGS.vocab_file, lower,
                         seq, labels=labels, int8=FLAGS.int8, fp16=FLAGS.fp16,
                         opset=FLAGS.opset, require_fusions=FLAGS.require_fusions,
                         source=source, extra_metadata=extra)
    return result.metadata


def _report(meta: dict, seconds: float) -> None:
    v = meta["validation"]
    print(f"exported {meta['task']} to {FLAGS.output_dir} in {seconds:.1f} s: "
          f"{', '.join(meta['models'].values())}")
    print(f"fused: {meta['fusions']}")
    for name in meta["models"]:
        print(f"{name}: " + ", ".join(f"{k} {val:.3g}" if isinstance(val, float) else f"{k} {val}"
                                      for k, val in v.get(name, {}).items()))



def main(argv=None):
    run_tool("export_onnx", run, report=_report, argv=argv)


if __name__ == "__main__":
    main()
