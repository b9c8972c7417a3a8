"""export_tfhub: the seed's command of that name, with its flags.

  python tools/export_tfhub.py --bert_config_file=bert_config.json \\
      --model_checkpoint_path=bert_model.ckpt --vocab_file=vocab.txt --export_path=hub_dir

Writes the encoder as a TF-Hub-style SavedModel (vocab file as an asset,
do_lower_case as a variable; see pybert.export.savedmodel), under a temporary
name and renamed when complete: what --hub_module_url takes. The checkpoint
may be pybert's, the seed's TF2 one (`model` or `encoder` root) or a TF1
release checkpoint.

As the seed's export, it is called on the list [input_word_ids, input_mask,
input_type_ids] and returns [pooled_output, sequence_output], with a `training`
argument and the variables hub.KerasLayer(..., trainable=True) fine-tunes; it
is also called on the input dict (TF-Hub's later BERT API). The variables
inside are pybert's encoder's, named otherwise than the seed's Keras model's;
pybert's tools read both.
"""

from __future__ import annotations

import logging

from absl import flags

from pybert.cli._runner import run_tool

FLAGS = flags.FLAGS
flags.DEFINE_string("bert_config_file", None, "The checkpoint's bert_config.json.")
flags.DEFINE_string("model_checkpoint_path", None, "The encoder checkpoint (a prefix).")
flags.DEFINE_string("export_path", None, "The SavedModel directory to write.")
flags.DEFINE_string("vocab_file", None, "The vocabulary the model was trained with.")
flags.DEFINE_bool("do_lower_case", None,
                  "Whether to lowercase; if not given, true when 'uncased' is in the name of "
                  "--vocab_file (as the seed decides).")


def export(bert_config_file: str, model_checkpoint_path: str, export_path: str,
           vocab_file: str, do_lower_case: bool | None = None) -> str:
    from pybert.cli.common_flags import require_file
    from pybert.configs import BertConfig
    from pybert.export.savedmodel import export_encoder_savedmodel
    from pybert.training.loop import load_encoder

    for flag, value in (("model_checkpoint_path", model_checkpoint_path),
                        ("export_path", export_path)):
        if not value:
            raise ValueError(f"--{flag} is required")
    config = BertConfig.from_json_file(require_file("bert_config_file", bert_config_file))
    require_file("vocab_file", vocab_file)
    if do_lower_case is None:
        do_lower_case = "uncased" in vocab_file
        logging.info("do_lower_case=%s from the name of --vocab_file=%s", do_lower_case,
                     vocab_file)
    encoder = load_encoder(config, model_checkpoint_path, "--model_checkpoint_path")
    return export_encoder_savedmodel(encoder, vocab_file, do_lower_case, export_path)


def main(argv=None):
    def run():
        return export(FLAGS.bert_config_file, FLAGS.model_checkpoint_path, FLAGS.export_path,
                      FLAGS.vocab_file, FLAGS.do_lower_case)

    run_tool("export_tfhub", run, lambda path, _: print(f"wrote {path}"), argv)


if __name__ == "__main__":
    main()
