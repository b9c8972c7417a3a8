"""TF-Hub-style SavedModel of a BERT encoder (what the training tools take as
--hub_module_url, a local path: nothing is downloaded).

The SavedModel is callable on the seed's input dict and returns
sequence_output and pooled_output; vocab.txt is an asset (`vocab_file`) and
`do_lower_case` a variable, as in the seed's TF-Hub BERT exports, so a
tokenizer can be built from the model alone. The training tools take its
directory as --hub_module_url: its variables initialize the encoder (they are a
checkpoint whose root holds the encoder, like pybert's encoder checkpoints).
"""

from __future__ import annotations

from pathlib import Path

from pybert._outputs import fresh_tmp_dir, replace_dir

# what tf.saved_model.save writes (an earlier SavedModel may be replaced, nothing else)
SAVED_MODEL_FILES = ("saved_model.pb", "variables", "assets", "fingerprint.pb", "keras_metadata.pb")

_INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")


def export_encoder_savedmodel(encoder, vocab_file, do_lower_case: bool, export_dir) -> str:
    """Writes the SavedModel (to a temporary directory, renamed when complete)."""
    import tensorflow as tf

    class _Encoder(tf.Module):
        def __init__(self):
            super().__init__(name="bert_encoder")
            self.encoder = encoder
            self.vocab_file = tf.saved_model.Asset(str(vocab_file))
            self.do_lower_case = tf.Variable(
                bool(do_lower_case), trainable=False, name="do_lower_case"
            )

        @tf.function(
            input_signature=[
                {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in _INPUT_NAMES}
            ]
        )
        def __call__(self, inputs):
            out = self.encoder(inputs, training=False)
            return {
                "sequence_output": out["sequence_output"],
                "pooled_output": out["pooled_output"],
            }

    if not Path(vocab_file).is_file():
        raise FileNotFoundError(f"vocab file not found: {vocab_file}")
    return _save_atomically(_Encoder(), export_dir)


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

        @tf.function(
            input_signature=[
                {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in _INPUT_NAMES}
            ]
        )
        def __call__(self, inputs):
            out = self.model(inputs, training=False)
            return out if isinstance(out, dict) else {"logits": out}

    return _save_atomically(_Model(), export_dir)


def _save_atomically(module, export_dir) -> str:
    """tf.saved_model.save into <export_dir>.tmp, then renamed over export_dir.

    Traced with portable_attention(): the saved graph has only TensorFlow's own ops
    (no PybertFusedAttention), so it loads where pybert's op library is absent.
    """
    import tensorflow as tf

    from pybert.modeling.encoder import portable_attention

    export_dir = Path(export_dir)
    tmp = fresh_tmp_dir(export_dir, SAVED_MODEL_FILES, "SavedModel", create=False)
    with portable_attention():
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.__call__})
    replace_dir(tmp, export_dir, SAVED_MODEL_FILES, "SavedModel")
    return str(export_dir)
