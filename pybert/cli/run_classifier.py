"""run_classifier: fine-tune BERT on a GLUE-style task (the seed's run_classifier.py flags).

  run_classifier --mode=train_and_eval --input_meta_data_path=mrpc_meta_data \\
    --train_data_path=mrpc_train.tf_record --eval_data_path=mrpc_eval.tf_record \\
    --bert_config_file=bert/bert_config.json --init_checkpoint=bert/bert_model.ckpt \\
    --train_batch_size=32 --eval_batch_size=32 --learning_rate=2e-5 --num_train_epochs=3 \\
    --model_dir=out/mrpc --distribution_strategy=mirrored

Modes: train_and_eval (evaluates after every epoch: accuracy, or for regression
the seed's mean squared error and the Pearson and Spearman correlations; warm-up
10% of the steps, as the seed computes it), predict (softmax probabilities of --eval_data_path,
one tab-separated line per example, to model_dir/test_results.tsv; the raw
value for regression), export_only (SavedModel of the latest checkpoint to
--model_export_path). A rerun of an interrupted train_and_eval resumes from
its last checkpoint. Errors before the first step: missing files, meta data
that contradicts the TFRecords (sequence length, label type, labels outside
num_labels), an init_checkpoint that does not fit bert_config.
"""

from __future__ import annotations

import logging
import math
import os

from absl import flags

from pybert.cli import common_flags
from pybert.cli._runner import run_tool

FLAGS = flags.FLAGS

flags.DEFINE_enum("mode", "train_and_eval", ["train_and_eval", "export_only", "predict"],
                  "train_and_eval, export_only or predict.")
flags.DEFINE_string("train_data_path", None, "Training TFRecord (create_finetuning_data).")
flags.DEFINE_string("eval_data_path", None, "Evaluation (or, for predict, test) TFRecord.")
flags.DEFINE_string("input_meta_data_path", None, "Meta data JSON of create_finetuning_data.")
flags.DEFINE_integer("train_data_size", None, "Use at most this many training examples.",
                     lower_bound=1)
flags.DEFINE_string("predict_checkpoint_path", None, "Checkpoint for predict (default: latest).")
flags.DEFINE_integer("num_eval_per_epoch", 1, "Evaluations (and checkpoints) per epoch.",
                     lower_bound=1)
flags.DEFINE_integer("train_batch_size", 32, "Global training batch size.", lower_bound=1)
flags.DEFINE_integer("eval_batch_size", 32, "Evaluation / prediction batch size.", lower_bound=1)
common_flags.define_common_bert_flags()
common_flags.define_prediction_flags()

logger = logging.getLogger("pybert.training")


def _first_record(path: str, seq_length: int, float_label: bool):
    """Checks the first record of each file against the meta data (errors before training)."""
    import tensorflow as tf

    from pybert.data.pipelines import check_first_records, classifier_spec

    spec = classifier_spec(seq_length, tf.float32 if float_label else tf.int64)
    task = "regression (float labels)" if float_label else "classification (int labels)"
    check_first_records(path, spec, f"the meta data {FLAGS.input_meta_data_path} says "
                                    f"max_seq_length={seq_length}, {task}")


def _scan_train(path: str, seq_length: int, num_labels: int, is_regression: bool) -> int:
    """Reads the training records once: classification labels must be in [0, num_labels).
    Returns how many records there are."""
    import numpy as np
    import tensorflow as tf

    from pybert.data.pipelines import create_classifier_dataset

    ds = create_classifier_dataset(path, seq_length, 1024, is_training=False,
                                   label_type=tf.float32 if is_regression else tf.int64)
    count = 0
    for _, y in ds:
        y = y.numpy()
        count += len(y)
        if is_regression:
            continue
        bad = (y < 0) | (y >= num_labels)
        if bad.any():
            raise ValueError(f"{path}: label {int(y[np.argmax(bad)])} outside [0, {num_labels}) "
                             f"(num_labels in the meta data)")
    return count


def _loss_fn(is_regression: bool):
    import tensorflow as tf

    def loss(labels, logits):
        if is_regression:
            return tf.reduce_mean(tf.square(tf.cast(labels, tf.float32) - logits[:, 0]))
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        labels = tf.cast(labels, tf.int32)
        return -tf.reduce_mean(tf.gather(log_probs, labels, axis=1, batch_dims=1))

    return loss


def _predict(model, dataset, is_regression: bool, partial=None):
    """(predictions [N, C] or [N], labels [N]) over a finite dataset, in order. With a
    pybert._outputs.PartialResults, the dataset holds the rows after those it has already,
    and what is computed is kept there as it goes."""
    import numpy as np
    import tensorflow as tf

    from pybert._outputs import PartialResults

    @tf.function
    def step(x):
        logits = model(x, training=False)
        return logits[:, 0] if is_regression else tf.nn.softmax(logits, axis=-1)

    rows = partial or PartialResults(None, {}, float("inf"), "run_classifier")
    try:
        for x, y in dataset:
            rows.add(predictions=step(x).numpy(), labels=y.numpy())
    except BaseException:
        if partial is not None:
            partial.save()  # what was computed is kept for a rerun (Ctrl-C, an error)
        raise
    out = rows.arrays()
    if not out:
        return np.zeros((0,)), np.zeros((0,))
    return out["predictions"], out["labels"]


def run() -> dict | str:
    import numpy as np
    import tensorflow as tf

    from pybert.metrics import regression_metrics

    if FLAGS.model_export_path:  # refused now rather than after the training
        from pybert._outputs import check_replaceable
        from pybert.export.savedmodel import SAVED_MODEL_FILES

        check_replaceable(FLAGS.model_export_path, SAVED_MODEL_FILES, "SavedModel")

    from pybert.configs import BertConfig
    from pybert.data.pipelines import create_classifier_dataset
    from pybert.modeling import BertClassifier
    from pybert.training.loop import Trainer, TrainerConfig

    meta = common_flags.read_meta_data(FLAGS.input_meta_data_path)
    for key in ("max_seq_length",):
        if key not in meta:
            raise ValueError(f"{FLAGS.input_meta_data_path}: missing {key!r}")
    seq = int(meta["max_seq_length"])
    is_regression = meta.get("task_type") == "bert_regression" or meta.get("label_type") == "float"
    num_labels = 1 if is_regression else int(meta.get("num_labels", 0))
    if num_labels < 1:
        raise ValueError(f"{FLAGS.input_meta_data_path}: num_labels missing or < 1")
    config = BertConfig.from_json_file(common_flags.require_file("bert_config_file",
                                                                 FLAGS.bert_config_file))
    common_flags.check_sequence_length(seq, config)
    if not FLAGS.model_dir:
        raise ValueError("--model_dir is required")
    common_flags.setup_runtime()
    label_type = tf.float32 if is_regression else tf.int64

    def model_fn():
        return common_flags.fine_tuning_model(
            BertClassifier(config, num_labels, trim_padding=common_flags.trim_padding(),
                           name="bert_classifier"))

    if FLAGS.mode == "export_only":
        return common_flags.export_only(model_fn)

    eval_path = FLAGS.eval_data_path
    if FLAGS.mode == "predict":
        common_flags.require_file("eval_data_path", eval_path)
        _first_record(eval_path, seq, is_regression)
        model = model_fn()
        checkpoint = common_flags.restore_model(model, FLAGS.predict_checkpoint_path)
        from pybert._outputs import PartialResults, file_identity
        from pybert.data.pipelines import expand_patterns

        # A killed run continues after the batches it saved (--predict_progress_seconds).
        partial = PartialResults(
            os.path.join(FLAGS.model_dir, "test_results.partial"),
            {"eval_data": [file_identity(p) for p in expand_patterns(eval_path)],
             "checkpoint": common_flags.checkpoint_identity(checkpoint),
             "bert_config_file": file_identity(FLAGS.bert_config_file), "dtype": FLAGS.dtype,
             "max_seq_length": seq, "regression": is_regression,
             "eval_batch_size": FLAGS.eval_batch_size},
            FLAGS.predict_progress_seconds, "run_classifier")
        done = partial.resume()
        ds = create_classifier_dataset(eval_path, seq, FLAGS.eval_batch_size, is_training=False,
                                       label_type=label_type)
        if done:
            logger.info("continuing the prediction of %s after %d examples", eval_path, done)
            ds = ds.skip(-(-done // FLAGS.eval_batch_size))  # parts end at batch boundaries
        preds, _ = _predict(model, ds, is_regression, partial)
        partial.save()  # the rows of this run too, should writing the output fail
        from pybert.data.records import write_text, write_then_commit

        out = os.path.join(FLAGS.model_dir, "test_results.tsv")
        # as the seed: str() of the Python floats of float32 values (tolist())
        text = "".join("\t".join(str(p) for p in row) + "\n"
                       for row in (preds[:, None] if preds.ndim == 1 else preds).tolist())
        write_then_commit(out + ".incomplete", out, lambda: write_text(out + ".incomplete", text))
        partial.discard()
        logger.info("wrote %d predictions to %s", len(preds), out)
        return out

    # train_and_eval. The strategy first: multi-worker collectives must be configured before
    # TensorFlow runs any op (the checks below read the TFRecords).
    strategy = common_flags.distribution_strategy()
    common_flags.require_file("train_data_path", FLAGS.train_data_path)
    _first_record(FLAGS.train_data_path, seq, is_regression)
    records = _scan_train(FLAGS.train_data_path, seq, num_labels, is_regression)
    if eval_path:
        common_flags.require_file("eval_data_path", eval_path)
        _first_record(eval_path, seq, is_regression)
    if "train_data_size" not in meta:
        raise ValueError(f"{FLAGS.input_meta_data_path}: missing 'train_data_size'")
    if int(meta["train_data_size"]) > records:  # steps would repeat examples within an epoch
        raise ValueError(f"{FLAGS.input_meta_data_path}: train_data_size "
                         f"{meta['train_data_size']}, but --train_data_path "
                         f"{FLAGS.train_data_path} holds {records} records (meta data of "
                         "other records?)")
    if int(meta["train_data_size"]) < records:
        logger.warning("%s: train_data_size %s, but %s holds %d records: an epoch is "
                       "train_data_size examples", FLAGS.input_meta_data_path,
                       meta["train_data_size"], FLAGS.train_data_path, records)
    epochs = FLAGS.num_train_epochs * FLAGS.num_eval_per_epoch
    train_size = int(meta["train_data_size"]) // FLAGS.num_eval_per_epoch
    if FLAGS.train_data_size:
        train_size = min(train_size, FLAGS.train_data_size)
    steps_per_epoch = int(train_size / FLAGS.train_batch_size)
    if steps_per_epoch < 1:
        raise ValueError(f"train_data_size {train_size} < train_batch_size "
                         f"{FLAGS.train_batch_size}: no full batch to train on")
    warmup_steps = int(epochs * train_size * 0.1 / FLAGS.train_batch_size)
    cfg = TrainerConfig(
        model_dir=FLAGS.model_dir, steps_per_epoch=steps_per_epoch, epochs=epochs,
        steps_per_loop=common_flags.steps_per_loop(steps_per_epoch),
        global_batch_size=FLAGS.train_batch_size, **common_flags.trainer_options())
    trainer = Trainer(strategy, model_fn, _loss_fn(is_regression),
                      common_flags.make_optimizer_fn(cfg.total_steps, warmup_steps), cfg)
    trainer.restore_or_initialize(common_flags.encoder_checkpoint(),
                                  common_flags.encoder_source())
    seed = FLAGS.seed

    def train_ds(batch_size, ctx):
        return common_flags.input_options(create_classifier_dataset(
            FLAGS.train_data_path, seq, batch_size, is_training=True, input_pipeline_context=ctx,
            label_type=label_type, num_samples=FLAGS.train_data_size,
            shuffle_buffer=FLAGS.shuffle_buffer, seed=seed))

    eval_fn = None
    if eval_path:
        def eval_fn(tr):
            ds = create_classifier_dataset(eval_path, seq, FLAGS.eval_batch_size,
                                           is_training=False, label_type=label_type)
            preds, labels = _predict(tr.model, ds, is_regression)
            if is_regression:  # the seed's mean squared error, and GLUE's correlations
                return {**regression_metrics(preds, labels), "examples": len(labels)}
            return {"accuracy": float(np.mean(np.argmax(preds, axis=1) == labels)),
                    "examples": len(labels)}

    summary = trainer.train(train_ds, eval_fn)
    summary.update(steps_per_epoch=steps_per_epoch, warmup_steps=warmup_steps,
                   train_batch_size=FLAGS.train_batch_size, epochs=epochs,
                   eval_steps=int(math.ceil(meta.get("eval_data_size", 0) / FLAGS.eval_batch_size)))
    sub_model = common_flags.export_sub_model(trainer.model.encoder, config)
    if sub_model:
        summary["sub_model"] = sub_model
    if FLAGS.model_export_path:
        from pybert.export.savedmodel import export_model_savedmodel

        export_model_savedmodel(trainer.model, FLAGS.model_export_path)
    trainer.write_summary(summary)
    return summary


def main(argv=None):
    run_tool("run_classifier", run, argv=argv)


if __name__ == "__main__":
    main()
