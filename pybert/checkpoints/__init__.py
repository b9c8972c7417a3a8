"""Checkpoint converters into pybert encoders.

Encoders from HuggingFace BertModel / BertForPreTraining safetensors,
google-research TF1 checkpoints and the seed's TF2 (Model Garden BertEncoder)
checkpoints and TF-Hub SavedModels; pre-trainers (masked-LM + next-sentence heads) from HuggingFace
BertForPreTraining and TF1 pre-training checkpoints.
"""

from pybert.checkpoints.huggingface import (
    CheckpointMismatchError,
    encoder_weights_from_huggingface,
    load_huggingface_encoder,
    load_huggingface_pretrainer,
    save_encoder_checkpoint,
)
from pybert.checkpoints.model_garden import (
    encoder_weights_from_hub_savedmodel,
    encoder_weights_from_model_garden,
    load_model_garden_encoder,
)
from pybert.checkpoints.tf1 import encoder_weights_from_tf1, load_tf1_encoder, load_tf1_pretrainer


def checkpoint_format(checkpoint: str) -> str:
    """"pybert" (tf.train.Checkpoint(encoder=BertEncoder), also the variables of pybert's
    TF-Hub-style SavedModels), "model_garden" (the seed's TF2
    encoder checkpoints, under any root), "model_garden_hub" (the variables of a TF-Hub
    SavedModel written by the seed's export_tfhub.py: <dir>/variables/variables), "tf1"
    (google-research BERT) or "unknown", from the keys and the object graph of the
    checkpoint at prefix `checkpoint`."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(checkpoint))
    keys = reader.get_variable_to_shape_map()
    if "bert/embeddings/word_embeddings" in keys:
        return "tf1"
    if any(k.startswith("encoder/embeddings/word_embeddings/") for k in keys):
        return "pybert"
    # pybert's TF-Hub-style SavedModel: its variables are keyed by their place in the
    # `variables` list TF-Hub asks for, and the encoder is found in the object graph
    if _object_path_exists(reader, ("encoder", "embeddings", "word_embeddings")):
        return "pybert"
    from pybert.checkpoints.model_garden import encoder_roots, is_hub_savedmodel

    if encoder_roots(keys):
        return "model_garden"
    export_dir = hub_savedmodel_dir(checkpoint)
    if export_dir and is_hub_savedmodel(export_dir):
        return "model_garden_hub"
    return "unknown"


def _object_node(reader, path):
    """(object graph, node id) of the object at `path` (child names from the root) in the
    checkpoint's object graph, or None."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    if not reader.has_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"):
        return None
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    node = 0
    for name in path:
        children = {c.local_name: c.node_id for c in graph.nodes[node].children}
        if name not in children:
            return None
        node = children[name]
    return graph, node


def _object_path_exists(reader, path) -> bool:
    """Whether the checkpoint's object graph has the object at `path`."""
    return _object_node(reader, path) is not None


def saved_values_below(checkpoint: str, path=("encoder",)) -> int:
    """How many saved values (variables) the checkpoint holds below the object at `path`
    (0 when it has no such object)."""
    import tensorflow as tf

    found = _object_node(tf.train.load_checkpoint(str(checkpoint)), path)
    if found is None:
        return 0
    graph, root = found
    seen, todo = {root}, [root]
    while todo:
        for child in graph.nodes[todo.pop()].children:
            if child.node_id not in seen:
                seen.add(child.node_id)
                todo.append(child.node_id)
    return sum(1 for n in seen if graph.nodes[n].attributes)


def hub_savedmodel_dir(checkpoint: str) -> str | None:
    """The SavedModel directory whose variables checkpoint `checkpoint` is
    (<dir>/variables/variables), or None."""
    import os

    head, base = os.path.split(os.path.normpath(str(checkpoint)))
    export_dir, sub = os.path.split(head)
    if base == "variables" and sub == "variables" and os.path.isfile(
            os.path.join(export_dir or ".", "saved_model.pb")):
        return export_dir or "."
    return None


__all__ = [
    "CheckpointMismatchError",
    "checkpoint_format",
    "hub_savedmodel_dir",
    "encoder_weights_from_hub_savedmodel",
    "encoder_weights_from_huggingface",
    "encoder_weights_from_model_garden",
    "encoder_weights_from_tf1",
    "load_model_garden_encoder",
    "load_tf1_encoder",
    "load_tf1_pretrainer",
    "load_huggingface_encoder",
    "load_huggingface_pretrainer",
    "save_encoder_checkpoint",
]
