"""Runs the seed's own TF2 encoder (tf-models-official==2.4.0,
official.nlp.modeling.networks.BertEncoder) under tf_keras, in its own process
(TF_USE_LEGACY_KERAS must be set before TensorFlow is imported): builds it from
a bert_config.json as the seed's tf2_encoder_checkpoint_converter does,
writes tf.train.Checkpoint(encoder=...) and the outputs on given inputs.

  python tests/seed_tf2_encoder.py ORACLE_DIR BERT_CONFIG INPUTS.npz OUT_PREFIX
-> OUT_PREFIX (checkpoint) and OUT_PREFIX.outputs.npz

  python tests/seed_tf2_encoder.py ORACLE_DIR BERT_CONFIG INPUTS.npz OUT_PREFIX EXPORT_DIR VOCAB
also exports the encoder as a TF-Hub SavedModel to EXPORT_DIR with the seed's own
export_tfhub.export_bert_tfhub (from the checkpoint, as its command line does).
"""

import json
import os
import sys
import types

os.environ["TF_USE_LEGACY_KERAS"] = "1"


def stub_unused_imports(oracle_dir, real=()):
    """Puts the oracle on sys.path and stands in for what the seed's modules import but
    the code paths run here do not use (packages not installed, and the parts of
    tf-models-official the oracle does not unpack: albert, the seq2seq models); the
    packages named in `real` are imported for real."""
    sys.path.insert(0, oracle_dir)
    gin = types.ModuleType("gin")
    gin.configurable = lambda *a, **k: a[0] if a and callable(a[0]) else (lambda f: f)
    sys.modules["gin"] = gin
    for name in ("tensorflow_hub", "tensorflow_datasets", "sentencepiece", "tensorflow_addons"):
        if name not in real:
            sys.modules.setdefault(name, types.ModuleType(name))
    import tensorflow as tf

    tf.keras.mixed_precision.experimental = tf.keras.mixed_precision
    albert = types.ModuleType("official.nlp.albert")
    albert.configs = types.ModuleType("official.nlp.albert.configs")
    albert.configs.AlbertConfig = type("AlbertConfig", (), {})
    sys.modules["official.nlp.albert"] = albert
    sys.modules["official.nlp.albert.configs"] = albert.configs


def main(oracle_dir, config_path, inputs_path, out_prefix, export_dir=None, vocab=None):
    stub_unused_imports(oracle_dir)
    import numpy as np
    import tensorflow as tf
    from official.modeling import activations
    from official.nlp.modeling import networks

    cfg = json.load(open(config_path))
    tf.random.set_seed(1)
    encoder = networks.BertEncoder(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        num_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        intermediate_size=cfg["intermediate_size"],
        activation=activations.gelu,
        dropout_rate=cfg["hidden_dropout_prob"],
        attention_dropout_rate=cfg["attention_probs_dropout_prob"],
        max_sequence_length=cfg["max_position_embeddings"],
        type_vocab_size=cfg["type_vocab_size"],
        initializer=tf.keras.initializers.TruncatedNormal(stddev=cfg["initializer_range"]),
    )
    inputs = np.load(inputs_path)
    sequence, pooled = encoder(
        [inputs["input_word_ids"], inputs["input_mask"], inputs["input_type_ids"]], training=False
    )
    tf.train.Checkpoint(encoder=encoder).write(out_prefix)
    if export_dir:
        # export_tfhub imports bert_models, which imports the seq2seq models the oracle
        # does not unpack; the export path does not use them
        sys.modules["official.nlp.modeling.models"] = types.ModuleType("models")
        from official.nlp.bert import configs, export_tfhub

        # its restore asserts every object matched, save_counter included: a save(), not
        # the write() above
        saved = tf.train.Checkpoint(encoder=encoder).save(out_prefix + "-for-export")
        export_tfhub.export_bert_tfhub(configs.BertConfig.from_json_file(config_path), saved,
                                       export_dir, vocab)
    np.savez(
        out_prefix + ".outputs.npz", sequence_output=sequence.numpy(), pooled_output=pooled.numpy()
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
