"""run_squad: fine-tune BERT on SQuAD v1.1 / v2.0 and predict spans (the seed's run_squad.py flags).

  run_squad --mode=train_and_eval --input_meta_data_path=squad_meta_data \\
    --train_data_path=squad_train.tf_record --predict_file=dev-v1.1.json \\
    --vocab_file=bert/vocab.txt --bert_config_file=bert/bert_config.json \\
    --init_checkpoint=bert/bert_model.ckpt --train_batch_size=32 --learning_rate=8e-5 \\
    --num_train_epochs=2 --model_dir=out/squad

Modes: train, predict, eval (predict + the official metrics), train_and_predict,
train_and_eval, export_only. Prediction featurizes --predict_file with the
training meta data's max_seq_length / doc_stride / max_query_length (pybert's
featurizer takes under a second for the v1.1 dev set), runs the model, and
decodes spans in C++: model_dir/predictions.json, nbest_predictions.json and,
for v2.0, null_odds.json. eval writes model_dir/summaries/eval/eval_metrics.json
with the seed's keys and scales (v1.1: exact_match / final_f1 as fractions;
v2.0: the official keys in percent plus final_* and pr_*_ap) and TensorBoard
scalars (the seed's F1-score, then every metric). The printed result's
predict_seconds_this_run is the wall time of that whole phase: restoring the
model (when not trained in this run), featurizing, predicting, decoding,
writing the files and, for eval, the metrics.
"""

from __future__ import annotations

import json
import logging
import os
import time

from absl import flags

from pybert.cli import common_flags
from pybert.cli._runner import run_tool

FLAGS = flags.FLAGS

flags.DEFINE_enum("mode", "train_and_eval",
                  ["train_and_eval", "train_and_predict", "train", "eval", "predict",
                   "export_only"], "What to run.")
flags.DEFINE_string("train_data_path", "", "Training TFRecord (create_finetuning_data).")
flags.DEFINE_string("input_meta_data_path", None, "Meta data JSON of create_finetuning_data.")
flags.DEFINE_integer("train_batch_size", 32, "Global training batch size.", lower_bound=1)
flags.DEFINE_string("predict_file", None,
                    "SQuAD JSON to predict (and evaluate against); predict mode takes several "
                    "(comma-separated paths or glob patterns: <name>-predictions.json each).")
flags.DEFINE_string("vocab_file", None, "The model's vocabulary.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case the input (uncased models).")
flags.DEFINE_float("null_score_diff_threshold", 0.0,
                   "v2.0: predict no answer when null score - best non-null > this.")
flags.DEFINE_bool("verbose_logging", False, "Log get_final_text's alignment warnings.")
flags.DEFINE_integer("predict_batch_size", 8, "Prediction batch size.", lower_bound=1)
flags.DEFINE_integer("n_best_size", 20, "n-best predictions per question.", lower_bound=1)
flags.DEFINE_integer("max_answer_length", 30, "Longest answer, in word pieces.", lower_bound=1)
common_flags.define_common_bert_flags()
common_flags.define_prediction_flags()

logger = logging.getLogger("pybert.training")


def squad_loss(labels, outputs):
    """The seed's squad loss: mean of the start and end cross-entropies."""
    import tensorflow as tf

    def ce(positions, logits):
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        positions = tf.cast(positions, tf.int32)
        return -tf.reduce_mean(tf.gather(log_probs, positions, axis=1, batch_dims=1))

    return (ce(labels["start_positions"], outputs["start_logits"])
            + ce(labels["end_positions"], outputs["end_logits"])) / 2.0


def predict_files() -> list[str]:
    """The files of --predict_file: comma-separated paths or glob patterns, sorted (the seed's
    order)."""
    from pybert.data.pipelines import expand_patterns

    files = sorted(expand_patterns(FLAGS.predict_file))
    if not files:
        raise ValueError(f"--predict_file={FLAGS.predict_file!r} names no file")
    return files


def predict(model, meta: dict, out_dir: str, predict_file: str, checkpoint: str,
            prefix: str = "") -> tuple[dict, dict]:
    """Featurizes predict_file, runs the model, writes out_dir/<prefix>predictions.json,
    <prefix>nbest_predictions.json and (v2.0) <prefix>null_odds.json.

    The logits computed so far are kept in out_dir/<prefix>predict.partial (see
    --predict_progress_seconds): a rerun of a killed run with the same file, checkpoint and
    flags continues after them."""
    import numpy as np
    import tensorflow as tf

    from pybert import squad as squad_post
    from pybert._outputs import PartialResults, file_identity
    from pybert.data import squad
    from pybert.tokenization import FullTokenizer

    common_flags.require_file("vocab_file", FLAGS.vocab_file)
    v2 = bool(meta.get("version_2_with_negative", False))
    tok = FullTokenizer(FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
    data = squad.read_squad(predict_file, False, v2)
    feats = squad.featurize(data, tok, int(meta["max_seq_length"]), int(meta["doc_stride"]),
                            int(meta["max_query_length"]), False)
    a = feats.arrays
    n = len(a["input_ids"])
    partial = PartialResults(
        os.path.join(out_dir, f"{prefix}predict.partial"),
        {"predict_file": file_identity(predict_file),
         "checkpoint": common_flags.checkpoint_identity(checkpoint),
         "vocab_file": file_identity(FLAGS.vocab_file), "do_lower_case": FLAGS.do_lower_case,
         "bert_config_file": file_identity(FLAGS.bert_config_file), "dtype": FLAGS.dtype,
         "features": n,
         **{k: int(meta[k]) for k in ("max_seq_length", "doc_stride", "max_query_length")}},
        FLAGS.predict_progress_seconds, "run_squad")
    done = partial.resume(max_rows=n)
    if done:
        logger.info("continuing the prediction of %s after %d of %d features", predict_file,
                    done, n)
    ds = tf.data.Dataset.from_tensor_slices({
        "input_word_ids": a["input_ids"][done:], "input_mask": a["input_mask"][done:],
        "input_type_ids": a["segment_ids"][done:]}).batch(FLAGS.predict_batch_size)

    @tf.function
    def step(x):
        out = model(x, training=False)
        return out["start_logits"], out["end_logits"]

    try:
        for x in ds:
            s, e = step(x)
            partial.add(start=s.numpy(), end=e.numpy())
    except BaseException:
        partial.save()  # what was computed is kept for a rerun (Ctrl-C, an error)
        raise
    logits = partial.arrays()
    if not logits:  # no features
        logits = {k: np.zeros((0, int(meta["max_seq_length"])), np.float32)
                  for k in ("start", "end")}
    start, end = logits["start"], logits["end"]
    logger.info("predicted %d features of %d questions", len(start), len(data))
    partial.save()  # the rows of this run too, should writing the outputs fail
    preds, nbest, null_odds = squad_post.write_predictions(
        feats.post, None, (a["unique_ids"], start, end), FLAGS.n_best_size,
        FLAGS.max_answer_length, FLAGS.do_lower_case,
        os.path.join(out_dir, f"{prefix}predictions.json"),
        os.path.join(out_dir, f"{prefix}nbest_predictions.json"),
        os.path.join(out_dir, f"{prefix}null_odds.json"), v2, FLAGS.null_score_diff_threshold,
        FLAGS.verbose_logging, num_threads=0)
    partial.discard()
    return preds, null_odds


def evaluate(predict_file: str, preds: dict, null_odds: dict, v2: bool) -> dict:
    """The seed's eval metrics (its keys and scales: v1.1 fractions, v2.0 final_*)."""
    from pybert.squad import run_squad_metrics

    with open(predict_file, encoding="utf-8") as f:
        dataset = json.load(f)
    return dict(run_squad_metrics(dataset, preds, null_odds, v2))


def run():
    import tensorflow as tf

    from pybert.configs import BertConfig
    from pybert.data.pipelines import (
        check_first_records,
        count_records,
        create_squad_dataset,
        squad_spec,
    )
    from pybert.modeling import BertSpanLabeler
    from pybert.training.loop import Trainer, TrainerConfig

    meta = common_flags.read_meta_data(FLAGS.input_meta_data_path)
    for key in ("max_seq_length", "doc_stride", "max_query_length"):
        if key not in meta:
            raise ValueError(f"{FLAGS.input_meta_data_path}: missing {key!r} (not SQuAD meta "
                             f"data?)")
    seq = int(meta["max_seq_length"])
    config = BertConfig.from_json_file(common_flags.require_file("bert_config_file",
                                                                 FLAGS.bert_config_file))
    common_flags.check_sequence_length(seq, config)
    if not FLAGS.model_dir:
        raise ValueError("--model_dir is required")
    mode = FLAGS.mode
    files = []
    if "predict" in mode or "eval" in mode:
        if not FLAGS.predict_file:
            raise ValueError(f"--mode={mode} needs --predict_file")
        files = predict_files()
        if "eval" in mode and len(files) != 1:
            raise ValueError(f"--mode={mode} evaluates one --predict_file, got {len(files)}: "
                             f"{files} (--mode=predict takes several)")
    common_flags.setup_runtime()

    def model_fn():
        return common_flags.fine_tuning_model(BertSpanLabeler(config, name="bert_span_labeler"))

    if mode == "export_only":
        return common_flags.export_only(model_fn)

    result: dict = {}
    model = None
    if "train" in mode:
        common_flags.require_file("train_data_path", FLAGS.train_data_path)
        n = int(meta.get("train_data_size", 0))
        steps_per_epoch = int(n / FLAGS.train_batch_size)
        if steps_per_epoch < 1:
            raise ValueError(f"train_data_size {n} < train_batch_size {FLAGS.train_batch_size}")
        epochs = FLAGS.num_train_epochs
        warmup = int(epochs * n * 0.1 / FLAGS.train_batch_size)
        # The strategy before reading records: multi-worker collectives must be configured
        # before TensorFlow runs any op.
        strategy = common_flags.distribution_strategy()
        check_first_records(FLAGS.train_data_path, squad_spec(seq, True),
                            f"the meta data {FLAGS.input_meta_data_path} says SQuAD training "
                            f"records of max_seq_length={seq}")
        records = count_records(FLAGS.train_data_path)
        if n > records:  # steps would repeat features within an epoch
            raise ValueError(f"{FLAGS.input_meta_data_path}: train_data_size {n}, but "
                             f"--train_data_path {FLAGS.train_data_path} holds {records} "
                             "records (meta data of other records?)")
        cfg = TrainerConfig(
            model_dir=FLAGS.model_dir, steps_per_epoch=steps_per_epoch, epochs=epochs,
            steps_per_loop=common_flags.steps_per_loop(steps_per_epoch),
            global_batch_size=FLAGS.train_batch_size, **common_flags.trainer_options())
        trainer = Trainer(strategy, model_fn, squad_loss,
                          common_flags.make_optimizer_fn(
                              cfg.total_steps, warmup, clip_lamb_with_explicit_allreduce=True),
                          cfg)
        trainer.restore_or_initialize(common_flags.encoder_checkpoint(),
                                      common_flags.encoder_source())
        # The span head reads the sequence output only: the encoder's pooler (kept for the
        # checkpoints) gets no gradient, which Keras' optimizer warns about at every trace.
        common_flags.ignore_missing_gradients("pooler")
        seed = FLAGS.seed

        def train_ds(batch_size, ctx):
            return common_flags.input_options(create_squad_dataset(
                FLAGS.train_data_path, seq, batch_size, True, ctx,
                shuffle_buffer=FLAGS.shuffle_buffer, seed=seed))

        result = trainer.train(train_ds)
        result.update(warmup_steps=warmup, steps_per_epoch=steps_per_epoch)
        sub_model = common_flags.export_sub_model(trainer.model.encoder, config)
        if sub_model:
            result["sub_model"] = sub_model
        trainer.write_summary(result)
        model = trainer.model
    if "predict" in mode or "eval" in mode:
        t_predict = time.perf_counter()
        if model is None:
            model = model_fn()
            checkpoint = common_flags.restore_model(model)
        else:
            checkpoint = tf.train.latest_checkpoint(FLAGS.model_dir) or ""
        result["predictions"] = []
        for path in files:
            # several files: out/<name>-predictions.json for each (the seed's prefix)
            prefix = f"{os.path.splitext(os.path.basename(path))[0]}-" if len(files) > 1 else ""
            preds, null_odds = predict(model, meta, FLAGS.model_dir, path, checkpoint,
                                       prefix)
            result["predictions"].append(
                os.path.join(FLAGS.model_dir, f"{prefix}predictions.json"))
        if "eval" in mode:
            metrics = evaluate(files[0], preds, null_odds,
                               bool(meta.get("version_2_with_negative")))
            summary_dir = os.path.join(FLAGS.model_dir, "summaries", "eval")
            os.makedirs(summary_dir, exist_ok=True)
            from pybert.data.records import write_json_atomic

            write_json_atomic(os.path.join(summary_dir, "eval_metrics.json"), metrics)
            writer = tf.summary.create_file_writer(summary_dir)
            with writer.as_default(step=0):
                tf.summary.scalar("F1-score", metrics["final_f1"])  # the seed's one scalar
                for k, v in metrics.items():
                    tf.summary.scalar(k, float(v))
            writer.flush()
            # the seed's line and value: v1.1's final_f1 is a fraction, v2.0's a percentage
            logger.info("SQuAD eval F1-score: %f (%s)", metrics["final_f1"],
                        "percent" if meta.get("version_2_with_negative") else "fraction of 1")
            logger.info("SQuAD eval: %s", metrics)
            result["eval_metrics"] = metrics
        result["predict_seconds_this_run"] = round(time.perf_counter() - t_predict, 3)
    return result


def main(argv=None):
    run_tool("run_squad", run, argv=argv)


if __name__ == "__main__":
    main()
