"""serving: the seed's serving.py command (a SavedModel of an encoder for TensorFlow
Serving), with its flags.

  python tools/serving.py --bert_config_file=bert_config.json \\
      --model_checkpoint_path=bert_model.ckpt --export_path=serving_dir [--sequence_length=128]

Signature `serving_default`: int32 token ids [batch, seq] (input `inputs`; mask = ids != 0,
segment ids 0, as the seed derives them) -> `outputs`, the encoder's sequence output
[batch, seq, hidden]. With --sequence_length > 0, `serving_examples` also takes serialized
tf.Examples with int64 input_ids, input_mask and segment_ids of that length. The checkpoint
may be pybert's, the seed's TF2 one (any root: the seed's serving.py reads `model`, what
its --sub_model_export_name writes), a TF-Hub SavedModel or a TF1 release checkpoint.
Written under a temporary name and renamed when complete.

One difference: the seed returns `outputs[-1]` of an encoder that returns the sequence
output itself, which is the last example's [seq, hidden] rather than the last layer's
[batch, seq, hidden]; pybert returns the whole batch (the last example's rows are the
seed's).
"""

from __future__ import annotations

from absl import flags

from pybert.cli._runner import run_tool

FLAGS = flags.FLAGS
flags.DEFINE_integer("sequence_length", None,
                     "With a value > 0, also a `serving_examples` signature that parses "
                     "serialized tf.Examples of this sequence length.")
flags.DEFINE_string("bert_config_file", None, "The checkpoint's bert_config.json.")
flags.DEFINE_string("model_checkpoint_path", None, "The encoder checkpoint (a prefix).")
flags.DEFINE_string("export_path", None, "The SavedModel directory to write.")


def export(bert_config_file: str, model_checkpoint_path: str, export_path: str,
           sequence_length: int | None = None) -> str:
    from pybert.cli.common_flags import check_sequence_length, require_file
    from pybert.configs import BertConfig
    from pybert.export.savedmodel import export_serving_savedmodel
    from pybert.training.loop import load_encoder

    for flag, value in (("model_checkpoint_path", model_checkpoint_path),
                        ("export_path", export_path)):
        if not value:
            raise ValueError(f"--{flag} is required")
    config = BertConfig.from_json_file(require_file("bert_config_file", bert_config_file))
    if sequence_length is not None:
        check_sequence_length(sequence_length, config, "--sequence_length", bert_config_file)
    encoder = load_encoder(config, model_checkpoint_path, "--model_checkpoint_path")
    return export_serving_savedmodel(encoder, export_path, sequence_length)


def main(argv=None):
    def run():
        return export(FLAGS.bert_config_file, FLAGS.model_checkpoint_path, FLAGS.export_path,
                      FLAGS.sequence_length)

    run_tool("serving", run, lambda path, _: print(f"wrote {path}"), argv)


if __name__ == "__main__":
    main()
