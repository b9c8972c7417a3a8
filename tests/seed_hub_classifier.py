"""Runs the seed's own classifier model on a TF-Hub SavedModel, under tf_keras in its
own process: tf-models-official 2.4.0's bert_models.classifier_model(...,
hub_module_url=EXPORT_DIR, hub_module_trainable=True), what the seed's
run_classifier builds for --hub_module_url (hub.KerasLayer called on the list
[input_word_ids, input_mask, input_type_ids]). Also calls the SavedModel through
hub.KerasLayer on the input dict (TF-Hub's later BERT encoder API) and trains the
seed's model for one step (SGD, Keras fit).

  python tests/seed_hub_classifier.py ORACLE_DIR BERT_CONFIG EXPORT_DIR INPUTS.npz OUT.npz

OUT.npz: pooled/sequence outputs of the list call (training False and True), the
dict call's outputs, the layer's trainable weight count and each trainable weight
of the encoder before and after the step.
"""

import os
import sys
import types

os.environ["TF_USE_LEGACY_KERAS"] = "1"

from seed_tf2_encoder import stub_unused_imports  # noqa: E402


def main(oracle_dir, config_path, export_dir, inputs_path, out_path):
    stub_unused_imports(oracle_dir, real=("tensorflow_hub",))
    sys.modules["official.nlp.modeling.models"] = types.ModuleType("models")  # not on this path
    import numpy as np
    import tensorflow as tf
    import tensorflow_hub as hub
    from official.nlp.bert import bert_models, configs

    inputs = np.load(inputs_path)
    names = ("input_word_ids", "input_mask", "input_type_ids")
    as_list = [tf.constant(inputs[n]) for n in names]
    model, core = bert_models.classifier_model(
        configs.BertConfig.from_json_file(config_path), num_labels=2,
        max_seq_length=inputs["input_word_ids"].shape[1], hub_module_url=export_dir,
        hub_module_trainable=True)
    out = {}
    out["pooled"], out["sequence"] = (t.numpy() for t in core(as_list, training=False))
    out["pooled_training"], _ = (t.numpy() for t in core(as_list, training=True))
    by_dict = hub.KerasLayer(export_dir)(dict(zip(names, as_list, strict=True)))
    out["dict_default"] = by_dict["default"].numpy()
    out["dict_pooled"] = by_dict["pooled_output"].numpy()
    out["dict_sequence"] = by_dict["sequence_output"].numpy()
    out["dict_encoder_outputs"] = np.stack([t.numpy() for t in by_dict["encoder_outputs"]])
    out["trainable_count"] = np.array(len(core.trainable_weights))
    before = [w.numpy() for w in core.trainable_weights]
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    labels = np.arange(len(inputs["input_word_ids"])) % 2
    model.fit(dict(zip(names, as_list, strict=True)), labels, batch_size=len(labels), epochs=1,
              verbose=0)
    for i, (w, b) in enumerate(zip(core.trainable_weights, before, strict=True)):
        out[f"before_{i}"], out[f"after_{i}"] = b, w.numpy()
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
