"""TF-Hub-style SavedModel of a BERT encoder (what the training tools take as
--hub_module_url, a local path: nothing is downloaded).

It is a Reusable SavedModel as TF-Hub defines it (what `hub.KerasLayer(path,
trainable=True)` fine-tunes): `obj(inputs, training=False)`, `obj.variables`,
`obj.trainable_variables` and `obj.regularization_losses` (none). It is called
either way TF-Hub's BERTs are:

- on the input dict (input_word_ids, input_mask, input_type_ids; the encoder API of
  TF-Hub's BERTs from version 3 on), returning a dict with `pooled_output`,
  `sequence_output`, `encoder_outputs` (every layer's output; the last is
  sequence_output) and `default` (= pooled_output);
- on the list [input_word_ids, input_mask, input_type_ids] (the seed's
  export_tfhub.py and TF-Hub's first BERTs), returning [pooled_output,
  sequence_output]: what the seed's classifier_model and squad_model unpack.

`training=True` applies dropout; outputs are float32 (also from an encoder built
under a mixed-precision policy). The four calls are traced when exported, so
saved_model.pb holds four graphs of the encoder (3.3 MB for a 6-layer MiniLM).
vocab.txt is an asset (`vocab_file`) and `do_lower_case` a variable, as in the
seed's exports, so a tokenizer can be built from the model alone. The serving
signature takes the three inputs by name and returns default, pooled_output and
sequence_output. The training tools take the directory as --hub_module_url: its
variables initialize the encoder (they are a checkpoint whose object graph holds
the encoder at `encoder`, like pybert's encoder checkpoints; their keys are
positional, `variables/N`, as in any Keras or TF-Hub SavedModel).
"""

from __future__ import annotations

from pathlib import Path

from pybert._outputs import fresh_tmp_dir, replace_dir

# what tf.saved_model.save writes (an earlier SavedModel may be replaced, nothing else)
SAVED_MODEL_FILES = ("saved_model.pb", "variables", "assets", "fingerprint.pb", "keras_metadata.pb")

_INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")


def _input_specs():
    import tensorflow as tf

    return {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in _INPUT_NAMES}


def export_encoder_savedmodel(encoder, vocab_file, do_lower_case: bool, export_dir) -> str:
    """Writes the SavedModel (to a temporary directory, renamed when complete)."""
    import tensorflow as tf

    class _Encoder(tf.Module):
        # TF-Hub's Reusable SavedModel attributes, plain lists here (tf.Module's own
        # `variables` and `trainable_variables` are properties a SavedModel does not keep)
        variables = None
        trainable_variables = None
        regularization_losses = None

        def __init__(self):
            super().__init__(name="bert_encoder")
            self.encoder = encoder
            self.vocab_file = tf.saved_model.Asset(str(vocab_file))
            self.do_lower_case = tf.Variable(
                bool(do_lower_case), trainable=False, name="do_lower_case"
            )
            self.variables = list(encoder.variables) + [self.do_lower_case]
            self.trainable_variables = list(encoder.trainable_variables)
            self.regularization_losses = []

        @tf.function
        def __call__(self, inputs, training=False):
            by_name = inputs if isinstance(inputs, dict) else dict(
                zip(_INPUT_NAMES, inputs, strict=True))
            out = self.encoder({name: by_name[name] for name in _INPUT_NAMES},
                               training=training)
            # float32, as TF-Hub's BERTs return, also from an encoder under mixed precision
            pooled, sequence = (tf.cast(out[key], tf.float32)
                                for key in ("pooled_output", "sequence_output"))
            if not isinstance(inputs, dict):
                return [pooled, sequence]
            return {"default": pooled, "pooled_output": pooled, "sequence_output": sequence,
                    "encoder_outputs": [tf.cast(t, tf.float32) for t in out["encoder_outputs"]]}

        @tf.function(input_signature=[_input_specs()])
        def serve(self, inputs):
            out = self(inputs)
            return {key: out[key] for key in ("default", "pooled_output", "sequence_output")}

    if not Path(vocab_file).is_file():
        raise FileNotFoundError(f"vocab file not found: {vocab_file}")
    module = _Encoder()

    def trace():
        specs = _input_specs()
        for inputs in (specs, [specs[name] for name in _INPUT_NAMES]):
            for training in (False, True):  # the SavedModel keeps all four
                module.__call__.get_concrete_function(inputs, training=training)
        return {"serving_default": module.serve.get_concrete_function()}

    had_all_layers = encoder.output_all_layers
    encoder.output_all_layers = True  # for encoder_outputs, while traced and saved
    try:
        return _save_atomically(module, export_dir, trace)
    finally:
        encoder.output_all_layers = had_all_layers


def load_encoder_savedmodel(path):
    """Returns (callable on the input dict, vocab_file path, do_lower_case)."""
    import tensorflow as tf

    if not (Path(path) / "saved_model.pb").exists():
        raise FileNotFoundError(f"no SavedModel at {path} (expected {path}/saved_model.pb)")
    loaded = tf.saved_model.load(str(path))
    return loaded, loaded.vocab_file.asset_path.numpy().decode(), bool(loaded.do_lower_case.numpy())


def export_model_savedmodel(model, export_dir) -> str:
    """SavedModel of a task model (classifier or span labeler) with a serving signature on
    the seed's three int32 inputs [batch, seq]; written to a temporary directory first."""
    import tensorflow as tf

    class _Model(tf.Module):
        def __init__(self):
            super().__init__(name="bert_model")
            self.model = model

        @tf.function(input_signature=[_input_specs()])
        def __call__(self, inputs):
            out = self.model(inputs, training=False)
            return out if isinstance(out, dict) else {"logits": out}

    module = _Model()
    return _save_atomically(module, export_dir, lambda: {"serving_default": module.__call__})


def export_serving_savedmodel(encoder, export_dir, sequence_length: int | None = None) -> str:
    """The seed's serving.py export of an encoder for TensorFlow Serving: signature
    `serving_default` takes the int32 token ids [batch, seq] (input `inputs`; the mask is
    ids != 0 and the segment ids are 0, as the seed derives them) and returns `outputs`,
    the sequence output [batch, seq, hidden] (float32). With sequence_length > 0,
    `serving_examples` also takes serialized tf.Examples (int64 features input_ids,
    input_mask and segment_ids, all three required, of that length, as the seed parses
    them). Written to a temporary directory first."""
    import tensorflow as tf

    features = {name: tf.io.FixedLenFeature([sequence_length], tf.int64)
                for name in ("input_ids", "input_mask", "segment_ids")
                } if sequence_length and sequence_length > 0 else None

    class _Serving(tf.Module):
        def __init__(self):
            super().__init__(name="serving_model")
            self.encoder = encoder

        @tf.function
        def serve(self, input_ids, input_mask=None, segment_ids=None):
            if segment_ids is None:
                segment_ids = tf.zeros_like(input_ids)
            if input_mask is None:
                input_mask = tf.cast(tf.not_equal(input_ids, 0), input_ids.dtype)
            out = self.encoder({"input_word_ids": input_ids, "input_mask": input_mask,
                                "input_type_ids": segment_ids}, training=False)
            return {"outputs": tf.cast(out["sequence_output"], tf.float32)}

        @tf.function
        def serve_examples(self, inputs):
            parsed = {k: tf.cast(v, tf.int32)
                      for k, v in tf.io.parse_example(inputs, features).items()}
            return self.serve(parsed["input_ids"], parsed["input_mask"],
                              parsed["segment_ids"])

    module = _Serving()

    def trace():
        signatures = {"serving_default": module.serve.get_concrete_function(
            input_ids=tf.TensorSpec([None, None], tf.int32, name="inputs"))}
        if features:
            signatures["serving_examples"] = module.serve_examples.get_concrete_function(
                tf.TensorSpec([None], tf.string, name="examples"))
        return signatures

    return _save_atomically(module, export_dir, trace)


def _save_atomically(module, export_dir, trace) -> str:
    """tf.saved_model.save into <export_dir>.tmp, then renamed over export_dir; `trace()`
    traces the module's functions and returns its signatures ({name: function}).

    Traced with portable_attention(): the saved graph has only TensorFlow's own ops
    (no PybertFusedAttention), so it loads where pybert's op library is absent.
    """
    import tensorflow as tf

    from pybert.modeling.encoder import portable_attention

    export_dir = Path(export_dir)
    tmp = fresh_tmp_dir(export_dir, SAVED_MODEL_FILES, "SavedModel", create=False)
    with portable_attention():
        tf.saved_model.save(module, str(tmp), signatures=trace())
    replace_dir(tmp, export_dir, SAVED_MODEL_FILES, "SavedModel")
    return str(export_dir)
