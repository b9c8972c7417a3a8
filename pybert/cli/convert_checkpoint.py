"""convert_checkpoint: a pretrained BERT -> a pybert checkpoint directory
(bert_config.json with the explicit GELU form, bert_model.ckpt, vocab.txt).

  python tools/convert_checkpoint.py --source_format=huggingface --input=HF_DIR --output_dir=OUT
  python tools/convert_checkpoint.py --source_format=tf1 \\
      --input=uncased_L-12_H-768_A-12/bert_model.ckpt --output_dir=OUT

  python tools/convert_checkpoint.py --source_format=model_garden \\
      --input=tf2_bert/bert_model.ckpt \\
      --bert_config_file=tf2_bert/bert_config.json --output_dir=OUT
  python tools/convert_checkpoint.py --source_format=model_garden \\
      --input=bert_en_uncased_L-12_H-768_A-12_hub_dir \\
      --bert_config_file=bert_config.json --output_dir=OUT
"""

from __future__ import annotations

import dataclasses
import logging
import os

from absl import app, flags

from pybert.cli._runner import run_tool

FLAGS = flags.FLAGS
flags.DEFINE_enum("source_format", None, ["tf1", "huggingface", "model_garden"], "Checkpoint kind.")
flags.DEFINE_string("input", None,
                    "HF model directory, TF1 or TF2 checkpoint prefix, or (model_garden) a "
                    "TF-Hub SavedModel directory written by the seed's export_tfhub.py.")
flags.DEFINE_string("output_dir", None, "Where the pybert checkpoint directory is written.")
flags.DEFINE_string("bert_config_file", None,
                    "bert_config.json (tf1, model_garden; default: beside --input; required "
                    "for a SavedModel --input).")
flags.DEFINE_string("vocab_file", None, "vocab.txt to copy (default: beside --input).")
flags.DEFINE_enum(
    "gelu",
    None,
    ["tanh", "exact"],
    "Override the GELU form (default: tanh for tf1 and model_garden, from config.json "
    "for huggingface).",
)

flags.DEFINE_string("saved_model_dir", None,
                    "Also write the encoder as a TF-Hub-style SavedModel there (vocab.txt as an "
                    "asset, do_lower_case as a variable): what the training tools take as "
                    "--hub_module_url.")
flags.DEFINE_bool("do_lower_case", None,
                  "Stored in the SavedModel (--saved_model_dir); default: the input "
                  "SavedModel's own, else true.")


def convert(
    source_format, input_path, output_dir, bert_config_file=None, vocab_file=None, gelu=None,
    saved_model_dir=None, do_lower_case=None,
) -> str:
    """do_lower_case (for --saved_model_dir): None takes the input SavedModel's own, else
    True."""
    from pybert.checkpoints import (
        load_huggingface_encoder,
        load_model_garden_encoder,
        load_tf1_encoder,
        save_encoder_checkpoint,
    )
    from pybert.configs import BertConfig

    base = input_path if os.path.isdir(input_path) else os.path.dirname(input_path)
    is_savedmodel = os.path.isfile(os.path.join(input_path, "saved_model.pb"))
    # huggingface: a directory or a .safetensors file; tf1 / model_garden: a checkpoint prefix
    must_exist = input_path if source_format == "huggingface" else (base or ".")
    if not os.path.exists(must_exist):
        raise FileNotFoundError(f"--input={input_path}: {must_exist} not found")
    if source_format == "huggingface":
        config = BertConfig.from_hf_json_file(bert_config_file or os.path.join(base, "config.json"))
    elif source_format in ("tf1", "model_garden"):  # the seed's bert_config.json
        if (not bert_config_file and is_savedmodel
                and not os.path.exists(os.path.join(base, "bert_config.json"))):
            raise ValueError(f"--input={input_path} is a SavedModel, which holds no "
                             "bert_config.json: --bert_config_file is required")
        config = BertConfig.from_json_file(
            bert_config_file or os.path.join(base, "bert_config.json")
        )
        if config.hidden_act == "gelu":  # Google's and the seed's "gelu" is the tanh form
            config = dataclasses.replace(config, hidden_act="gelu_tanh")
    else:
        raise ValueError(f"unknown source_format {source_format!r}")
    if gelu:
        config = dataclasses.replace(config, hidden_act=f"gelu_{gelu}")
    if source_format == "huggingface":
        encoder, _ = load_huggingface_encoder(input_path, config)
    elif source_format == "tf1":
        encoder = load_tf1_encoder(input_path, config)
    else:
        encoder = load_model_garden_encoder(input_path, config)
    vocab = vocab_file or _default_vocab(source_format, input_path, base)
    if vocab_file and not os.path.exists(vocab_file):
        raise FileNotFoundError(f"--vocab_file {vocab_file}: not found")
    if saved_model_dir and not os.path.exists(vocab):
        raise FileNotFoundError(f"--saved_model_dir needs a vocab file: {vocab} not found "
                                "(pass --vocab_file)")
    if not os.path.exists(vocab):
        logging.getLogger("pybert").warning(
            "no vocab file beside --input (%s not found): %s gets none; pass --vocab_file to "
            "copy one", vocab, output_dir)
    path = save_encoder_checkpoint(
        encoder, config, output_dir, vocab_file=vocab if os.path.exists(vocab) else None
    )
    if saved_model_dir:
        from pybert.export.savedmodel import export_encoder_savedmodel

        if do_lower_case is None:
            do_lower_case = _savedmodel_lower_case(input_path) if is_savedmodel else None
        export_encoder_savedmodel(encoder, vocab, True if do_lower_case is None else
                                  do_lower_case, saved_model_dir)
    return path


def _savedmodel_lower_case(export_dir) -> bool | None:
    """The do_lower_case variable a TF-Hub BERT SavedModel keeps (None: it has none)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    key = "do_lower_case/.ATTRIBUTES/VARIABLE_VALUE"
    return bool(reader.get_tensor(key)) if reader.has_tensor(key) else None


def _default_vocab(source_format, input_path, base) -> str:
    """vocab.txt beside --input; for a TF-Hub SavedModel, the one .txt among its assets
    (the seed's export_tfhub.py keeps the vocab file's own name there)."""
    assets = os.path.join(input_path, "assets")
    if source_format == "model_garden" and os.path.isfile(
            os.path.join(input_path, "saved_model.pb")) and os.path.isdir(assets):
        found = sorted(n for n in os.listdir(assets) if n.endswith(".txt"))
        if len(found) == 1:
            return os.path.join(assets, found[0])
    return os.path.join(base, "vocab.txt")


def main(argv=None):
    def run():
        for name in ("source_format", "input", "output_dir"):
            if not getattr(FLAGS, name):
                raise app.UsageError(f"--{name} is required")
        return convert(FLAGS.source_format, FLAGS.input, FLAGS.output_dir,
                       FLAGS.bert_config_file, FLAGS.vocab_file, FLAGS.gelu,
                       FLAGS.saved_model_dir, FLAGS.do_lower_case)

    def report(path, _seconds):
        print(f"wrote {path}")
        if FLAGS.saved_model_dir:
            print(f"wrote {FLAGS.saved_model_dir}")

    run_tool("convert_checkpoint", run, report, argv)


if __name__ == "__main__":
    main()
