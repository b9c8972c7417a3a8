"""tf2_encoder_checkpoint_converter: the seed's command of that name, with its flags.

  python tools/tf2_encoder_checkpoint_converter.py \\
      --bert_config_file=uncased_L-12_H-768_A-12/bert_config.json \\
      --checkpoint_to_convert=uncased_L-12_H-768_A-12/bert_model.ckpt \\
      --converted_checkpoint_path=tf2/bert_model.ckpt

Writes <converted_checkpoint_path>-1 with a `checkpoint` file beside it, as the
seed's tf.train.Checkpoint.save does, in pybert's encoder layout (root
`encoder`), which every pybert tool's --init_checkpoint reads. The training
tools also read the TF1 checkpoint itself, so converting is optional.
--checkpoint_to_convert takes a TF1 release checkpoint, the seed's TF2
checkpoints and TF-Hub SavedModels, and pybert's. pybert-convert-checkpoint is
the fuller converter (HuggingFace too; bert_config.json and vocab.txt beside).
"""

from __future__ import annotations

import os

from absl import flags

from pybert.cli._runner import run_tool

FLAGS = flags.FLAGS
flags.DEFINE_string("bert_config_file", None, "The checkpoint's bert_config.json.")
flags.DEFINE_string("checkpoint_to_convert", None,
                    "The checkpoint to convert: a TF1 BERT checkpoint prefix (the encoder; "
                    "task heads are left out), or a TF2 / TF-Hub / pybert one.")
flags.DEFINE_string("converted_checkpoint_path", None,
                    "Prefix of the written checkpoint (<prefix>-1, as the seed's save).")
flags.DEFINE_string("checkpoint_model_name", "encoder",
                    "The checkpoint's root object; pybert's tools read `encoder` (the default).")
flags.DEFINE_enum("converted_model", "encoder", ["encoder", "pretrainer"],
                  "encoder (pretrainer: not offered; pybert-run-pretraining starts its heads "
                  "afresh from an encoder checkpoint).")


def convert(bert_config_file: str, checkpoint_to_convert: str, converted_checkpoint_path: str,
            checkpoint_model_name: str = "encoder", converted_model: str = "encoder") -> str:
    import tensorflow as tf

    from pybert.cli.common_flags import require_file
    from pybert.configs import BertConfig
    from pybert.training.loop import load_encoder

    if checkpoint_model_name != "encoder":
        raise ValueError(f"--checkpoint_model_name={checkpoint_model_name}: pybert's tools read "
                         "encoder checkpoints whose root is `encoder` (the default)")
    if converted_model != "encoder":
        raise ValueError("--converted_model=pretrainer is not offered: pybert-run-pretraining "
                         "--init_checkpoint takes the encoder (or the TF1 checkpoint itself)")
    for flag, value in (("checkpoint_to_convert", checkpoint_to_convert),
                        ("converted_checkpoint_path", converted_checkpoint_path)):
        if not value:
            raise ValueError(f"--{flag} is required")
    config = BertConfig.from_json_file(require_file("bert_config_file", bert_config_file))
    output_dir = os.path.dirname(converted_checkpoint_path) or "."
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--converted_checkpoint_path {converted_checkpoint_path}: "
                         f"{output_dir} is not a directory")
    encoder = load_encoder(config, checkpoint_to_convert, "--checkpoint_to_convert")
    os.makedirs(output_dir, exist_ok=True)
    # TensorFlow writes the shards under temporary names and merges them into place
    return tf.train.Checkpoint(encoder=encoder).save(converted_checkpoint_path)


def main(argv=None):
    def run():
        return convert(FLAGS.bert_config_file, FLAGS.checkpoint_to_convert,
                       FLAGS.converted_checkpoint_path, FLAGS.checkpoint_model_name,
                       FLAGS.converted_model)

    run_tool("tf2_encoder_checkpoint_converter", run, lambda path, _: print(f"wrote {path}"),
             argv)


if __name__ == "__main__":
    main()
