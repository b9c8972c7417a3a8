"""Runs the seed's own serving.py command (tf-models-official 2.4.0) under tf_keras, in its
own process: writes a random seed BertEncoder of BERT_CONFIG as tf.train.Checkpoint(model=)
(what serving.py restores), exports it with serving.py's main and its flags, and writes
what the export's two signatures return for the rows of INPUTS.npz.

  python tests/seed_serving.py ORACLE_DIR BERT_CONFIG INPUTS.npz WORK_DIR

WORK_DIR/ckpt-1 (checkpoint), WORK_DIR/export (SavedModel), WORK_DIR/examples.tfrecord (the
rows as serialized tf.Examples), WORK_DIR/outputs.npz (serving_default: the last row's
[seq, hidden], as the seed's `outputs[-1]` gives; serving_examples: likewise).
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"

from seed_tf2_encoder import stub_unused_imports  # noqa: E402


def main(oracle_dir, config_path, inputs_path, work_dir):
    stub_unused_imports(oracle_dir)
    import types

    sys.modules["official.nlp.modeling.models"] = types.ModuleType("models")  # not on this path
    import numpy as np
    import tensorflow as tf
    from official.nlp.bert import bert_models, configs, serving

    inputs = np.load(inputs_path)
    seq = inputs["input_word_ids"].shape[1]
    tf.random.set_seed(3)
    encoder = bert_models.get_transformer_encoder(configs.BertConfig.from_json_file(config_path))
    encoder([tf.zeros([1, seq], tf.int32)] * 3)
    rng = np.random.default_rng(3)  # its initializer gives every layer the same values
    for w in encoder.weights:
        w.assign(rng.normal(0, 0.05, w.shape).astype(np.float32))
    prefix = tf.train.Checkpoint(model=encoder).save(os.path.join(work_dir, "ckpt"))
    export = os.path.join(work_dir, "export")
    serving.FLAGS(["serving", f"--bert_config_file={config_path}",
                   f"--model_checkpoint_path={prefix}", f"--export_path={export}",
                   f"--sequence_length={seq}"])
    serving.main(None)
    loaded = tf.saved_model.load(export)
    out = {"default": loaded.signatures["serving_default"](
        inputs=tf.constant(inputs["input_word_ids"]))["outputs"].numpy()}
    records = os.path.join(work_dir, "examples.tfrecord")
    with tf.io.TFRecordWriter(records) as writer:
        for i in range(len(inputs["input_word_ids"])):
            feature = {name: tf.train.Feature(int64_list=tf.train.Int64List(
                value=inputs[key][i].tolist())) for name, key in (
                ("input_ids", "input_word_ids"), ("input_mask", "input_mask"),
                ("segment_ids", "input_type_ids"))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                         .SerializeToString())
    examples = tf.constant(list(tf.data.TFRecordDataset(records).as_numpy_iterator()))
    out["examples"] = loaded.signatures["serving_examples"](examples=examples)[
        "outputs"].numpy()
    np.savez(os.path.join(work_dir, "outputs.npz"), **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
