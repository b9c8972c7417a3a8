"""The seed's TF2 checkpoints (Model Garden networks.BertEncoder, written with
tf.train.Checkpoint(encoder=...) or (model=...)) -> pybert BertEncoder weights.

The seed's encoder is a functional Keras model, so its checkpoint keys are
positional: <root>/layer_with_weights-K/... with K = 0 word, 1 position, 2 type
embeddings, 3 embedding LayerNorm, 4 .. 4+L-1 the transformer layers, 4+L the
pooler. Attention kernels are EinsumDense: query/key/value [D, N, H] (bias
[N, H]) and output [N, H, D]; they are reshaped to dense [D, D] / [D].
"""

from __future__ import annotations

import functools

import numpy as np

from pybert.checkpoints.huggingface import CheckpointMismatchError, check_fit
from pybert.configs import BertConfig

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def _names(config: BertConfig, root: str):
    """(checkpoint key, pybert weight path, target shape) for every encoder weight."""
    d, inter, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    w = lambda k, rest: f"{root}layer_with_weights-{k}/{rest}{_SUFFIX}"  # noqa: E731
    names = [
        (w(0, "embeddings"), "embeddings/word_embeddings", (config.vocab_size, d)),
        (w(1, "embeddings"), "embeddings/position_embeddings", (config.max_position_embeddings, d)),
        (w(2, "embeddings"), "embeddings/type_embeddings", (config.type_vocab_size, d)),
        (w(3, "gamma"), "embeddings/layer_norm/gamma", (d,)),
        (w(3, "beta"), "embeddings/layer_norm/beta", (d,)),
    ]
    for i in range(L):
        k, ours = 4 + i, f"transformer_layer_{i}/"
        for part in ("query", "key", "value"):
            names.append(
                (
                    w(k, f"_attention_layer/_{part}_dense/kernel"),
                    f"{ours}attention/{part}/kernel",
                    (d, d),
                )
            )
            names.append(
                (w(k, f"_attention_layer/_{part}_dense/bias"), f"{ours}attention/{part}/bias", (d,))
            )
        names += [
            (
                w(k, "_attention_layer/_output_dense/kernel"),
                f"{ours}attention/output/kernel",
                (d, d),
            ),
            (w(k, "_attention_layer/_output_dense/bias"), f"{ours}attention/output/bias", (d,)),
            (w(k, "_attention_layer_norm/gamma"), f"{ours}attention/layer_norm/gamma", (d,)),
            (w(k, "_attention_layer_norm/beta"), f"{ours}attention/layer_norm/beta", (d,)),
            (w(k, "_intermediate_dense/kernel"), f"{ours}intermediate/kernel", (d, inter)),
            (w(k, "_intermediate_dense/bias"), f"{ours}intermediate/bias", (inter,)),
            (w(k, "_output_dense/kernel"), f"{ours}output/kernel", (inter, d)),
            (w(k, "_output_dense/bias"), f"{ours}output/bias", (d,)),
            (w(k, "_output_layer_norm/gamma"), f"{ours}layer_norm/gamma", (d,)),
            (w(k, "_output_layer_norm/beta"), f"{ours}layer_norm/beta", (d,)),
        ]
    names += [
        (w(4 + L, "kernel"), "pooler/kernel", (d, d)),
        (w(4 + L, "bias"), "pooler/bias", (d,)),
    ]
    return names


def encoder_roots(keys) -> list[str]:
    """The prefixes ("encoder/", "model/", "" for a SavedModel of the encoder, ...) under
    which checkpoint `keys` hold a Model Garden encoder (its word embeddings)."""
    marker = "layer_with_weights-0/embeddings/"
    return sorted({k[: k.index(marker)] for k in keys if marker in k
                   and (k.index(marker) == 0 or k[k.index(marker) - 1] == "/")})


def encoder_weights_from_model_garden(checkpoint: str, config: BertConfig) -> dict[str, np.ndarray]:
    """Reads a seed TF2 encoder checkpoint (prefix, e.g. .../bert_model.ckpt)."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(checkpoint))
    except (tf.errors.NotFoundError, ValueError) as e:
        raise FileNotFoundError(f"cannot read TF2 checkpoint {checkpoint}: {e}") from None
    shapes = reader.get_variable_to_shape_map()
    roots = encoder_roots(shapes)
    if len(roots) != 1:
        raise CheckpointMismatchError(
            f"{checkpoint}: expected one Model Garden encoder (a key like "
            f"'encoder/layer_with_weights-0/embeddings'), found roots {roots}"
        )
    root = roots[0]
    expected = _names(config, root)
    missing = [key for key, _, _ in expected if key not in shapes]
    used = {key for key, _, _ in expected}
    unexpected = sorted(
        k
        for k in shapes
        if k.startswith(root) and k[len(root):].startswith("layer_with_weights-")
        and k not in used and "OPTIMIZER_SLOT" not in k
    )
    out, wrong = {}, []
    for key, ours, shape in expected:
        if key in missing:
            continue
        value = reader.get_tensor(key).astype(np.float32)
        if value.size != int(np.prod(shape)):
            wrong.append(f"{key}: checkpoint {value.shape}, model {shape}")
            continue
        # EinsumDense [D, N, H] / [N, H] / [N, H, D] -> dense: a row-major reshape
        out[ours] = value.reshape(shape)
    check_fit(checkpoint, config, missing, unexpected, wrong)
    return out


def load_model_garden_encoder(checkpoint: str, config: BertConfig, **encoder_kwargs):
    """BertEncoder with the weights of a seed TF2 encoder checkpoint (a prefix), or of a
    TF-Hub SavedModel written by the seed's export_tfhub.py (its directory)."""
    import os

    from pybert.checkpoints.huggingface import assign_encoder_weights
    from pybert.modeling import BertEncoder

    if os.path.isfile(os.path.join(str(checkpoint), "saved_model.pb")):
        weights = encoder_weights_from_hub_savedmodel(checkpoint, config)
    else:
        weights = encoder_weights_from_model_garden(checkpoint, config)
    encoder = BertEncoder(config, **encoder_kwargs)
    encoder.build()
    assign_encoder_weights(encoder, weights)
    return encoder


# The seed's TF-Hub exports (official/nlp/bert/export_tfhub.py: a Keras model saved in the
# SavedModel format) key their variables by position ("variables/17/..."), so they are read
# by the variables' own names, which the SavedModel's object graph records. Two layouts:
# "encoder", the networks.BertEncoder of tf-models-official 2.x (transformer/layer_N/...; what
# the seed 2.4 exports), and "bert_model", the earlier official/nlp/bert_modeling.BertModel
# (bert_model/encoder/layer_N/..., embedding_postprocessor/...; TF-Hub's first BERTs).
_LAYOUTS = {
    "encoder": {"position": "position_embedding/embeddings",
                "type": "type_embeddings/embeddings",
                "embedding_norm": "embeddings/layer_norm/",
                "layer": "transformer/layer_{}/",
                "attention_output": "self_attention/attention_output/"},
    "bert_model": {"position": "embedding_postprocessor/position_embeddings",
                   "type": "embedding_postprocessor/type_embeddings",
                   "embedding_norm": "embedding_postprocessor/layer_norm/",
                   "layer": "encoder/layer_{}/",
                   "attention_output": "self_attention_output/"},
}


def _keras_names(config: BertConfig, prefix: str, layout: str = "encoder"):
    """(variable name, pybert weight path, target shape) for every encoder weight of a
    Model Garden encoder whose variable names start with `prefix`. The attention kernels
    may be [D, N, H] / [N, H, D] or dense [D, D] (the earlier model's backward_compatible
    form): both reshape to [D, D] row-major."""
    names_of = _LAYOUTS[layout]
    d, inter, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    norm = prefix + names_of["embedding_norm"]
    names = [
        (f"{prefix}word_embeddings/embeddings", "embeddings/word_embeddings",
         (config.vocab_size, d)),
        (prefix + names_of["position"], "embeddings/position_embeddings",
         (config.max_position_embeddings, d)),
        (prefix + names_of["type"], "embeddings/type_embeddings", (config.type_vocab_size, d)),
        (norm + "gamma", "embeddings/layer_norm/gamma", (d,)),
        (norm + "beta", "embeddings/layer_norm/beta", (d,)),
    ]
    for i in range(L):
        theirs, ours = prefix + names_of["layer"].format(i), f"transformer_layer_{i}/"
        for part in ("query", "key", "value"):
            names += [
                (f"{theirs}self_attention/{part}/kernel", f"{ours}attention/{part}/kernel", (d, d)),
                (f"{theirs}self_attention/{part}/bias", f"{ours}attention/{part}/bias", (d,)),
            ]
        out = theirs + names_of["attention_output"]
        names += [
            (out + "kernel", f"{ours}attention/output/kernel", (d, d)),
            (out + "bias", f"{ours}attention/output/bias", (d,)),
        ]
        for part, ours_part, shape in (
            ("self_attention_layer_norm/gamma", "attention/layer_norm/gamma", (d,)),
            ("self_attention_layer_norm/beta", "attention/layer_norm/beta", (d,)),
            ("intermediate/kernel", "intermediate/kernel", (d, inter)),
            ("intermediate/bias", "intermediate/bias", (inter,)),
            ("output/kernel", "output/kernel", (inter, d)),
            ("output/bias", "output/bias", (d,)),
            ("output_layer_norm/gamma", "layer_norm/gamma", (d,)),
            ("output_layer_norm/beta", "layer_norm/beta", (d,)),
        ):
            names.append((theirs + part, ours + ours_part, shape))
    names += [
        (f"{prefix}pooler_transform/kernel", "pooler/kernel", (d, d)),
        (f"{prefix}pooler_transform/bias", "pooler/bias", (d,)),
    ]
    return names


def savedmodel_variables(export_dir) -> dict[str, str]:
    """See _savedmodel_variables; parsed once per version of the SavedModel's files
    (checkpoint_format and the reader both ask)."""
    import os

    stamp = tuple(os.stat(os.path.join(str(export_dir), *parts)).st_mtime_ns
                  for parts in (("saved_model.pb",), ("variables", "variables.index")))
    return dict(_savedmodel_variables(os.path.abspath(str(export_dir)), stamp))


@functools.lru_cache(maxsize=4)
def _savedmodel_variables(export_dir, _stamp) -> dict[str, str]:
    """{variable name: checkpoint key} of the SavedModel at `export_dir`, from its object
    graph (whose node ids are those of its variables' checkpoint); None for a name that
    several variables share."""
    import os

    import tensorflow as tf
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2, trackable_object_graph_pb2

    pb = os.path.join(str(export_dir), "saved_model.pb")
    prefix = os.path.join(str(export_dir), "variables", "variables")
    saved = saved_model_pb2.SavedModel()
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    try:
        with open(pb, "rb") as f:
            saved.ParseFromString(f.read())
        reader = tf.train.load_checkpoint(prefix)
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    except (OSError, DecodeError, tf.errors.OpError, ValueError) as e:
        raise CheckpointMismatchError(
            f"{export_dir}: cannot read the SavedModel's variables: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if len(saved.meta_graphs) != 1:
        raise CheckpointMismatchError(f"{export_dir}: {len(saved.meta_graphs)} meta graphs in "
                                      "saved_model.pb (a TF2 SavedModel has one)")
    nodes = saved.meta_graphs[0].object_graph_def.nodes
    out = {}
    for i, node in enumerate(nodes):
        if node.WhichOneof("kind") != "variable" or i >= len(graph.nodes):
            continue
        keys = [a.checkpoint_key for a in graph.nodes[i].attributes
                if a.name == "VARIABLE_VALUE"]
        name = node.variable.name
        name = name[:-2] if name.endswith(":0") else name
        if keys and name:
            # a name two variables share is ambiguous (None); an error only if it is needed
            out[name] = None if name in out and out[name] != keys[0] else keys[0]
    return out


def is_hub_savedmodel(export_dir) -> bool:
    """Whether `export_dir` is a SavedModel holding one Model Garden encoder by variable name
    (what the seed's export_tfhub.py writes)."""
    import os

    if not os.path.isfile(os.path.join(str(export_dir), "saved_model.pb")):
        return False
    return len(_word_embedding_prefixes(savedmodel_variables(export_dir))) == 1


def _word_embedding_prefixes(names) -> list[str]:
    marker = "word_embeddings/embeddings"
    return sorted({n[: -len(marker)] for n in names
                   if n.endswith(marker) and (n == marker or n[-len(marker) - 1] == "/")})


def encoder_weights_from_hub_savedmodel(export_dir, config: BertConfig) -> dict[str, np.ndarray]:
    """Reads the encoder of a TF-Hub SavedModel written by the seed's export_tfhub.py (the
    directory; its variables are matched by name under any common prefix, in either layout
    of _LAYOUTS)."""
    import os

    import tensorflow as tf

    names = savedmodel_variables(export_dir)
    prefixes = _word_embedding_prefixes(names)
    if len(prefixes) != 1:
        raise CheckpointMismatchError(
            f"{export_dir}: expected one Model Garden encoder in the SavedModel (a variable "
            f"named like 'word_embeddings/embeddings'), found {len(prefixes)}")
    prefix = prefixes[0]
    reader = tf.train.load_checkpoint(os.path.join(str(export_dir), "variables", "variables"))
    shapes = reader.get_variable_to_shape_map()
    layout = ("bert_model" if prefix + _LAYOUTS["bert_model"]["type"] in names else "encoder")
    expected = _keras_names(config, prefix, layout)

    def present(name):
        # tf-models-official 2.1-2.2 named the attention output self_attention_output, as
        # the earlier model did; 2.3 on, self_attention/attention_output
        older = name.replace("/self_attention/attention_output/", "/self_attention_output/")
        return older if name not in names and older in names else name

    expected = [(present(name), ours, shape) for name, ours, shape in expected]
    ambiguous = [name for name, _, _ in expected if name in names and names[name] is None]
    if ambiguous:
        raise CheckpointMismatchError(f"{export_dir}: two variables are named "
                                      f"{ambiguous[0]!r}; the SavedModel cannot be read by name")
    used = {name for name, _, _ in expected}
    missing = [name for name, _, _ in expected if name not in names]
    # encoder variables the config has no place for (more layers, an embedding projection)
    parts = ("transformer/", "encoder/", "embedding", "word_embeddings/", "position_embedding/",
             "type_embeddings/", "pooler_transform/")
    unexpected = sorted(n for n in names if n not in used and names[n] in shapes
                        and n.startswith(prefix) and n[len(prefix):].startswith(parts))
    out, wrong = {}, []
    for name, ours, shape in expected:
        if name in missing:
            continue
        value = reader.get_tensor(names[name]).astype(np.float32)
        if value.size != int(np.prod(shape)):
            wrong.append(f"{name}: SavedModel {value.shape}, model {shape}")
            continue
        out[ours] = value.reshape(shape)  # EinsumDense kernels -> dense, row-major
    check_fit(export_dir, config, missing, unexpected, wrong)
    return out
