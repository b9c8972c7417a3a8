"""run_pretraining: masked-LM + next-sentence pre-training (the seed's run_pretraining.py flags).

  run_pretraining --input_files="out/pt_*.tfrecord" --bert_config_file=bert_config.json \\
    --max_seq_length=128 --max_predictions_per_seq=20 --train_batch_size=32 \\
    --num_steps_per_epoch=1000 --num_train_epochs=10 --warmup_steps=10000 \\
    --learning_rate=1e-4 --model_dir=out/pretrain

Loss (the seed's): masked-LM cross-entropy averaged over the real predictions
(masked_lm_weights) plus the next-sentence cross-entropy. Checkpoints every
epoch (or --save_checkpoint_steps) with resume; at the end the encoder is
written as model_dir/pretrained/bert_model.ckpt with bert_config.json beside
it, ready for --init_checkpoint of run_classifier / run_squad. --init_checkpoint
continues pre-training from an encoder checkpoint.
"""

from __future__ import annotations

import logging
import os
import shutil

from absl import flags

from pybert.cli import common_flags
from pybert.cli._runner import run_tool

FLAGS = flags.FLAGS

flags.DEFINE_string("input_files", None, "Pre-training TFRecords (comma-separated globs).")
flags.DEFINE_integer("max_seq_length", 128, "Sequence length of the TFRecords.", lower_bound=3)
flags.DEFINE_integer("max_predictions_per_seq", 20, "Masked LM predictions per sequence.",
                     lower_bound=1)
flags.DEFINE_integer("train_batch_size", 32, "Global training batch size.", lower_bound=1)
flags.DEFINE_integer("num_steps_per_epoch", 1000, "Training steps per epoch.", lower_bound=1)
flags.DEFINE_float("warmup_steps", 10000, "Linear warm-up steps.", lower_bound=0)
flags.DEFINE_bool("use_next_sentence_label", True, "Train the next-sentence head too.")
flags.DEFINE_integer("train_summary_interval", 0,
                     "Write the training summaries (and log) every this many steps when "
                     "--log_steps is not given; negative: no training summaries.")
flags.DEFINE_bool("use_v2_feature_names", False,
                  "The TFRecords use input_word_ids/input_type_ids feature names.")
common_flags.define_common_bert_flags()

logger = logging.getLogger("pybert.training")


def pretrain_loss(use_nsp: bool):
    import tensorflow as tf

    def loss(labels, outputs):
        logits = outputs["masked_lm_logits"]  # [B, P, V]
        ids = tf.cast(labels["masked_lm_ids"], tf.int32)
        weights = tf.cast(labels["masked_lm_weights"], tf.float32)
        per = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=logits)
        lm = tf.math.divide_no_nan(tf.reduce_sum(per * weights), tf.reduce_sum(weights))
        if not use_nsp:
            return lm
        nsp_labels = tf.cast(tf.reshape(labels["next_sentence_labels"], [-1]), tf.int32)
        nsp = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=nsp_labels, logits=outputs["next_sentence_logits"]))
        return lm + nsp

    return loss


def run() -> dict:
    from pybert.configs import BertConfig
    from pybert.data.pipelines import check_first_records, create_pretrain_dataset, pretrain_spec
    from pybert.modeling import BertPretrainer
    from pybert.training.loop import Trainer, TrainerConfig

    if not FLAGS.input_files:
        raise ValueError("--input_files is required")
    config_path = common_flags.require_file("bert_config_file", FLAGS.bert_config_file)
    config = BertConfig.from_json_file(config_path)
    common_flags.check_sequence_length(FLAGS.max_seq_length, config, "--max_seq_length")
    if not FLAGS.model_dir:
        raise ValueError("--model_dir is required")
    common_flags.setup_runtime()
    use_nsp = FLAGS.use_next_sentence_label
    seq, preds = FLAGS.max_seq_length, FLAGS.max_predictions_per_seq
    # The strategy first: multi-worker collectives must be configured before TensorFlow runs
    # any op (reading the records below does).
    strategy = common_flags.distribution_strategy()
    # an error names a pattern without files, or a file of records other flags wrote
    check_first_records(FLAGS.input_files,
                        pretrain_spec(FLAGS.max_seq_length, FLAGS.max_predictions_per_seq,
                                      FLAGS.use_next_sentence_label, FLAGS.use_v2_feature_names),
                        "--max_seq_length, --max_predictions_per_seq and --use_v2_feature_names "
                        "must be those create_pretraining_data ran with")
    options = common_flags.trainer_options()
    if FLAGS.log_steps is None and FLAGS.train_summary_interval > 0:
        options["log_steps"] = FLAGS.train_summary_interval
    cfg = TrainerConfig(
        model_dir=FLAGS.model_dir, steps_per_epoch=FLAGS.num_steps_per_epoch,
        epochs=FLAGS.num_train_epochs,
        steps_per_loop=common_flags.steps_per_loop(FLAGS.num_steps_per_epoch),
        global_batch_size=FLAGS.train_batch_size,
        train_summaries=FLAGS.train_summary_interval >= 0, **options)
    trim = common_flags.trim_padding()
    trainer = Trainer(strategy,
                      lambda: common_flags.fine_tuning_model(  # --hub_module_trainable=false
                          BertPretrainer(config, trim_padding=trim, name="bert_pretrainer")),
                      pretrain_loss(use_nsp),
                      common_flags.make_optimizer_fn(cfg.total_steps, int(FLAGS.warmup_steps),
                                                       clip_lamb_with_explicit_allreduce=True),
                      cfg)
    trainer.restore_or_initialize(common_flags.encoder_checkpoint(),
                                  common_flags.encoder_source())
    if not use_nsp:  # the next-sentence head and the pooler under it get no gradient
        common_flags.ignore_missing_gradients("pooler", "next_sentence")
    seed = FLAGS.seed

    def train_ds(batch_size, ctx):
        ds = create_pretrain_dataset(FLAGS.input_files, seq, preds, batch_size, True, ctx,
                                     use_next_sentence_label=use_nsp,
                                     use_v2_feature_names=FLAGS.use_v2_feature_names,
                                     shuffle_buffer=FLAGS.shuffle_buffer, seed=seed)
        keys = ("masked_lm_ids", "masked_lm_weights") + (("next_sentence_labels",)
                                                          if use_nsp else ())
        return common_flags.input_options(ds.map(lambda x: (x, {k: x[k] for k in keys})))

    result = trainer.train(train_ds)
    from pybert.checkpoints.huggingface import save_encoder_checkpoint

    out = os.path.join(FLAGS.model_dir, FLAGS.sub_model_export_name or "pretrained")
    path = save_encoder_checkpoint(trainer.model.encoder, config, out)
    shutil.copyfile(config_path, os.path.join(out, "bert_config.json"))
    result["pretrained_encoder"] = path
    trainer.write_summary(result)
    return result


def main(argv=None):
    run_tool("run_pretraining", run, argv=argv)


if __name__ == "__main__":
    main()
