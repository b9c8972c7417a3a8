"""ONNX export of pybert models (tf2onnx) with ONNX Runtime's transformer optimizer.

The exported graph is not the Keras call traced as is: Keras' Dense lowers to
Tensordot, which tf2onnx mis-converts (a wrong Reshape, seen with tf2onnx
1.17), and its op layout hides the patterns ONNX Runtime fuses. So the export
function below recomputes the same model from the same variables in plain
TensorFlow ops laid out as ONNX Runtime's BERT fusions expect:

  * word + type embedding Gathers, + a Gather of the position table at a slice
    of constant position ids, LayerNorm -> EmbedLayerNormalization;
  * LayerNorm as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add
    -> LayerNormalization, and with the residual Add -> SkipLayerNormalization;
  * Q/K/V as MatMul+Add, Reshape [B, S, N, H], Transpose; scores Div sqrt(H),
    + (1 - mask) * -10000 built from the [B, S] mask by Unsqueeze/Cast/Sub/Mul,
    Softmax, MatMul, Transpose, Reshape -> one Attention node per layer;
  * GELU (tanh form) -> FastGelu (+ bias -> BiasGelu/FastGelu with bias);
    exact GELU (erf) -> Gelu / BiasGelu;
  * classifier / regression: the last layer for the [CLS] row only (queries,
    attention output and feed-forward of one row; keys and values of all).

export_onnx() checks the result against the Keras model on real, padded
inputs and fails (OnnxExportError) when fp32 differs by more than 1e-4 or an
expected fusion did not happen. tf2onnx, onnx and onnxruntime are imported
only here (extra "onnx").
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pybert._outputs import fresh_tmp_dir, replace_dir

logger = logging.getLogger(__name__)

TASKS = ("encoder", "classifier", "regression", "span")
INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")
METADATA_FILE = "pybert_model.json"
FORMAT = "pybert-onnx"
FORMAT_VERSION = 1
# what an export directory holds (an earlier export may be replaced, nothing else)
ONNX_EXPORT_FILES = ("*.onnx", "*.onnx.data", "vocab.txt", METADATA_FILE)
FP32_TOLERANCE = 1e-4
# Tasks whose head reads only the pooled [CLS] row (their last layer can stop there).
CLS_TASKS = ("classifier", "regression")


class OnnxExportError(ValueError):
    """The exported model failed its checks (numerics or fusions)."""


def _output_names(task: str) -> tuple[str, ...]:
    return {
        "encoder": ("sequence_output", "pooled_output"),
        "classifier": ("logits",),
        "regression": ("logits",),
        "span": ("start_logits", "end_logits"),
    }[task]


def export_function(model, task: str, cls_only: bool | None = None):
    """A tf.function on the three int32 [batch, seq] inputs that computes `model`
    (BertEncoder, BertClassifier or BertSpanLabeler) with ONNX-fusable ops.

    cls_only (default: True for classifier/regression, whose head reads only the
    pooled [CLS] row): the last layer computes its queries, attention output and
    feed-forward for row 0 only. Exact (no other row reaches the head), and about
    1/num_layers less work."""
    import tensorflow as tf

    from pybert.modeling import BertClassifier, BertEncoder, BertSpanLabeler

    expected = {"encoder": BertEncoder, "classifier": BertClassifier,
                "regression": BertClassifier, "span": BertSpanLabeler}[task]
    if not isinstance(model, expected):
        raise TypeError(f"task {task!r} needs a {expected.__name__}, got {type(model).__name__}")
    encoder = model if task == "encoder" else model.encoder
    config = encoder.config
    n, h, d = config.num_attention_heads, config.head_size, config.hidden_size
    act = config.hidden_act
    if cls_only is None:
        cls_only = task in CLS_TASKS
    elif cls_only and task not in CLS_TASKS:
        raise ValueError(f"cls_only needs a classifier or regression model, not {task!r}")

    def dense(x, layer):
        return tf.matmul(x, layer.kernel) + layer.bias

    def layer_norm(x, ln):
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        centered = x - mean
        var = tf.reduce_mean(tf.pow(centered, 2.0), axis=-1, keepdims=True)
        return centered / tf.sqrt(var + ln.epsilon) * ln.gamma + ln.beta

    def activation(x):
        if act in ("gelu", "gelu_tanh"):
            inner = 0.7978845608028654 * (x + 0.044715 * tf.pow(x, 3.0))
            return (x * 0.5) * (1.0 + tf.tanh(inner))
        if act == "gelu_exact":
            return x * ((1.0 + tf.math.erf(x * (1.0 / math.sqrt(2.0)))) * 0.5)
        if act == "relu":
            return tf.nn.relu(x)
        if act == "tanh":
            return tf.tanh(x)
        return x * tf.sigmoid(x)  # swish / silu

    def encode(word_ids, mask, type_ids):
        emb = encoder.embeddings
        batch, seq = tf.shape(word_ids)[0], tf.shape(word_ids)[1]
        # Word + type, then + a Gather of the position table at a [1, seq] slice of
        # constant ids: ONNX Runtime's EmbedLayerNormalization pattern for BERT.
        x = tf.gather(emb.word_embeddings, word_ids)
        x = x + tf.gather(emb.type_embeddings, type_ids)
        position_ids = tf.constant(
            np.arange(emb.position_embeddings.shape[0], dtype=np.int32)[None])
        x = x + tf.gather(emb.position_embeddings, position_ids[:, :seq])
        x = layer_norm(x, emb.layer_norm)
        # [B, S] -> [B, 1, 1, S] additive bias, as in the Keras model.
        bias = tf.expand_dims(tf.expand_dims(mask, 1), 2)
        bias = (1.0 - tf.cast(bias, tf.float32)) * -10000.0

        def heads(t, perm, rows):
            return tf.transpose(tf.reshape(t, tf.stack([batch, rows, n, h])), perm)

        layers = encoder.transformer_layers
        for i, layer in enumerate(layers):
            att = layer.attention
            # The last layer of a model that reads only [CLS] computes its queries, and
            # everything after the attention, for that one row (keys/values: every row).
            first_only = cls_only and i == len(layers) - 1
            xq = x[:, :1, :] if first_only else x
            rows = 1 if first_only else seq
            q = heads(dense(xq, att.query), [0, 2, 1, 3], rows)
            k = heads(dense(x, att.key), [0, 2, 3, 1], seq)
            v = heads(dense(x, att.value), [0, 2, 1, 3], seq)
            scores = tf.matmul(q, k) / math.sqrt(h) + bias
            ctx = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
            ctx = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), tf.stack([batch, rows, d]))
            x = layer_norm(xq + dense(ctx, att.output_dense), att.layer_norm)
            y = dense(activation(dense(x, layer.intermediate)), layer.output_dense)
            x = layer_norm(x + y, layer.layer_norm)
        return x

    def pooled(x):
        return tf.tanh(dense(x[:, 0, :], encoder.pooler))

    spec = [tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES]

    @tf.function(input_signature=spec)
    def fn(input_word_ids, input_mask, input_type_ids):
        x = encode(input_word_ids, input_mask, input_type_ids)
        if task == "encoder":
            return {"sequence_output": tf.identity(x, name="sequence_output"),
                    "pooled_output": tf.identity(pooled(x), name="pooled_output")}
        if task in ("classifier", "regression"):
            return {"logits": dense(pooled(x), model.classifier)}
        logits = dense(x, model.span)  # [B, S, 2]
        return {"start_logits": logits[:, :, 0], "end_logits": logits[:, :, 1]}

    return fn


def _fused_attention_handler(ctx, node, name, args):  # noqa: ARG001 - tf2onnx's signature
    """tf2onnx handler: PybertFusedAttention(q, k, v [B, S, N, H], mask [B, S_k], seed)
    -> com.microsoft.MultiHeadAttention on [B, S, N*H] with the mask as its 2-D
    key_padding_mask. Inference only: the dropout rate is ignored and the log-sum-exp
    output must be unused. A row whose keys are all masked differs (the op gives zeros,
    MultiHeadAttention a uniform average); BERT rows always keep [CLS]."""
    q, k, v, mask = node.input[:4]
    shape = ctx.get_shape(q)
    if not shape or len(shape) != 4 or shape[2] is None or shape[2] < 1:
        raise ValueError(f"{node.name}: PybertFusedAttention needs a static number of heads "
                         f"to map to MultiHeadAttention (query shape {shape})")
    if ctx.find_output_consumers(node.output[1]):
        raise ValueError(f"{node.name}: the log-sum-exp output is used; only inference graphs "
                         "(the attention output alone) map to MultiHeadAttention")
    out_name, dtypes = node.output[0], [ctx.get_dtype(node.output[0])]
    scale = node.get_attr_value("scale")
    ctx.remove_node(node.name)
    flat = ctx.make_const(f"{name}_flat_shape", np.array([0, 0, -1], np.int64)).output[0]
    q2, k2, v2 = (ctx.make_node("Reshape", [t, flat], dtypes=dtypes).output[0]
                  for t in (q, k, v))
    mask32 = ctx.make_node("Cast", [mask], attr={"to": 6},  # int32
                           dtypes=[6]).output[0]
    mha = ctx.make_node("MultiHeadAttention", [q2, k2, v2, "", mask32],
                        attr={"num_heads": int(shape[2]), "scale": float(scale)},
                        domain="com.microsoft", dtypes=dtypes)
    q_shape = ctx.make_node("Shape", [q], dtypes=[7]).output[0]  # int64
    ctx.make_node("Reshape", [mha.output[0], q_shape], outputs=[out_name], dtypes=dtypes)


CUSTOM_OP_HANDLERS = {"PybertFusedAttention": (_fused_attention_handler, [])}


def convert_traced(fn, path, opset: int = 17) -> None:
    """tf2onnx on a tf.function as traced (the model's own graph), PybertFusedAttention
    mapped to ONNX Runtime's MultiHeadAttention. export_onnx() does not need this (it
    rebuilds the graph in fusable plain ops); it is for graphs that call the op."""
    import tf2onnx
    from onnx import helper

    with _tf2onnx_without_global_pool():
        tf2onnx.convert.from_function(
            fn, input_signature=fn.input_signature, opset=opset, output_path=str(path),
            custom_op_handlers=CUSTOM_OP_HANDLERS,
            extra_opset=[helper.make_opsetid("com.microsoft", 1)])


def reference_outputs(model, task: str, inputs: dict) -> dict:
    """The Keras model's outputs (training=False) under the ONNX output names."""
    out = model({k: inputs[k] for k in INPUT_NAMES}, training=False)
    if task == "encoder":
        out = {"sequence_output": out["sequence_output"], "pooled_output": out["pooled_output"]}
    elif task in ("classifier", "regression"):
        out = {"logits": out}
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def fusion_targets(config, cls_only: bool = False) -> dict[str, int]:
    """The fused ops a BERT encoder of `config` must end up with after optimization
    (with cls_only, the last layer's one-query attention stays unfused: cheap)."""
    layers = config.num_hidden_layers
    targets = {"EmbedLayerNormalization": 1, "Attention": layers - int(cls_only),
               "SkipLayerNormalization": 2 * layers}
    if config.hidden_act in ("gelu", "gelu_tanh", "gelu_exact"):
        targets["Gelu (any form)"] = layers
    return targets


def _fusions_missing(stats: dict, targets: dict) -> list[str]:
    missing = []
    for op, want in targets.items():
        if op == "Gelu (any form)":
            got = sum(stats.get(k, 0) for k in ("Gelu", "FastGelu", "BiasGelu"))
        elif op == "Attention":
            got = stats.get("Attention", 0) + stats.get("MultiHeadAttention", 0)
        else:
            got = stats.get(op, 0)
        if got < want:
            missing.append(f"{op}: {got} of {want}")
    return missing


@contextlib.contextmanager
def _tf2onnx_without_global_pool():
    """tf2onnx's GlobalPoolOptimizer turns a ReduceMean over the last axis of a rank-3
    tensor into Transpose/GlobalAveragePool, which hides every LayerNorm from ONNX
    Runtime's fusions; from_function takes no optimizer list, so it is left out here."""
    from tf2onnx import optimizer

    saved = optimizer._optimizers
    optimizer._optimizers = OrderedDict(
        (k, v) for k, v in saved.items() if k != "global_pool_optimizer")
    try:
        yield
    finally:
        optimizer._optimizers = saved


def convert(fn, path, opset: int = 17) -> None:
    """tf2onnx.convert.from_function with dynamic batch and sequence axes."""
    import tf2onnx

    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    with _tf2onnx_without_global_pool():
        tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=opset,
                                      output_path=str(path))


def _scores_div(path) -> int:
    """TensorFlow's constant folding turns scores / sqrt(H) into scores * (1 / sqrt(H)).
    With the mask bias also a Mul, ONNX Runtime's attention matcher (which takes the
    first Mul parent of the Add for both paths) cannot tell them apart; back to Div."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    changed = 0
    for node in graph.node:
        if node.op_type != "Mul" or len(node.input) != 2 or node.input[1] not in inits:
            continue
        matmul = producer.get(node.input[0])
        if matmul is None or matmul.op_type != "MatMul":
            continue
        if not all(getattr(producer.get(i), "op_type", "") == "Transpose" for i in matmul.input):
            continue
        value = numpy_helper.to_array(inits[node.input[1]])
        if value.size != 1 or not 0 < float(value.reshape(())) < 1:
            continue
        name = node.name + "_divisor"
        graph.initializer.append(numpy_helper.from_array(
            np.asarray(1.0 / value, dtype=value.dtype), name))
        node.op_type = "Div"
        node.input[1] = name
        changed += 1
    onnx.save(model, str(path))
    return changed


def _position_ids_slice(path) -> int:
    """tf2onnx turns the [1, seq] slice of the constant position ids into a clamped
    StridedSlice (Max/Where/...) that ONNX Runtime's EmbedLayerNormalization matcher
    does not know; it wants Slice(ids, starts=[0], ends=Unsqueeze(Gather(Shape(
    input_word_ids), 1)), axes=[1], steps=[1]). Rewrites that one Slice (the same
    values: seq never exceeds the table, or the Gather below it fails anyway)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    changed = 0
    for node in list(graph.node):
        if node.op_type != "Gather" or node.input[0] not in inits:
            continue
        sl = producer.get(node.input[1])
        if sl is None or sl.op_type != "Slice" or sl.input[0] not in inits:
            continue
        ids = numpy_helper.to_array(inits[sl.input[0]])
        table = inits[node.input[0]]
        if (ids.ndim != 2 or ids.shape[0] != 1 or len(table.dims) != 2
                or ids.shape[1] != table.dims[0]
                or not np.array_equal(ids[0], np.arange(ids.shape[1]))):
            continue
        prefix = sl.name + "_bert_positions"
        for name, value in ((f"{prefix}_zero", np.array([0], np.int64)),
                            (f"{prefix}_one", np.array([1], np.int64)),
                            (f"{prefix}_index", np.array(1, np.int64))):
            graph.initializer.append(numpy_helper.from_array(value, name))
        new_nodes = [
            helper.make_node("Shape", ["input_word_ids"], [f"{prefix}_shape"],
                             name=f"{prefix}_Shape"),
            helper.make_node("Gather", [f"{prefix}_shape", f"{prefix}_index"],
                             [f"{prefix}_seq"], name=f"{prefix}_Gather", axis=0),
            helper.make_node("Unsqueeze", [f"{prefix}_seq", f"{prefix}_zero"],
                             [f"{prefix}_ends"], name=f"{prefix}_Unsqueeze"),
        ]
        position = list(graph.node).index(sl)
        for offset, n in enumerate(new_nodes):
            graph.node.insert(position + offset, n)
        del sl.input[1:]
        sl.input.extend([f"{prefix}_zero", f"{prefix}_ends", f"{prefix}_one", f"{prefix}_one"])
        changed += 1
    onnx.save(model, str(path))
    return changed


def optimize(src, dst, config) -> dict[str, int]:
    """onnxruntime.transformers.optimizer on a BERT graph; returns the fused-op counts."""
    from onnxruntime.transformers import optimizer

    _scores_div(src)
    _position_ids_slice(src)
    opt = optimizer.optimize_model(str(src), model_type="bert",
                                   num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size, opt_level=0)
    stats = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    opt.save_model_to_file(str(dst))
    return stats


def quantize_int8(src, dst, cls_only: bool = False) -> None:
    """Dynamic int8 quantization of the MatMul weights (for CPU), one scale per output
    column (per-channel): on the quickstart's MRPC model it halves the mean difference from
    fp32 probabilities compared with one scale per weight matrix, at a cost of 2-7% in speed
    (bench/RESULTS.md).
    Activations are quantized per batch at run time (DynamicQuantizeLinear)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # ONNX shape inference gives no type to the outputs of the com.microsoft fused ops;
    # every tensor the quantizer asks about is float32 here. The quantizer leaves a MatMul
    # whose input has no inferred type in float32, with a warning per tensor. In a cls_only
    # export those are the two MatMuls of activations in the last layer's one-query [CLS]
    # attention (left unfused, see fusion_targets), which should stay float32: there the
    # warnings are dropped (their tensors named in one info line); in any other export they
    # are shown, as nothing should be untyped.
    untyped: list[str] = []

    class _Untyped(logging.Filter):
        def filter(self, record):
            found = re.match(r"Failed to infer data type of tensor: '([^']*)'",
                             record.getMessage())
            if found:
                untyped.append(found[1])
                return False
            return True

    root = logging.getLogger()
    drop = _Untyped()
    if cls_only:
        root.addFilter(drop)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.removeFilter(drop)
    if untyped:
        logger.info("int8: MatMuls reading untyped activations left in float32 (the last "
                    "layer's [CLS] attention): %s", ", ".join(sorted(set(untyped))))


def convert_fp16(src, dst) -> None:
    """float16 weights and compute with float32 inputs and outputs (for GPU)."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(dst))


def session(path, providers=None, intra_op_threads: int = 0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        opts.intra_op_num_threads = intra_op_threads
    return ort.InferenceSession(str(path), opts,
                                providers=providers or ["CPUExecutionProvider"])


def run_onnx(sess, inputs: dict) -> dict:
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, {k: np.asarray(inputs[k], dtype=np.int32) for k in INPUT_NAMES})
    return dict(zip(names, values, strict=True))


def compare(reference: dict, got: dict, mask: np.ndarray, task: str) -> dict:
    """max and mean |a - b| over real tokens (sequence outputs) or rows, and argmax
    agreement."""
    report: dict = {}
    worst, total, count = 0.0, 0.0, 0
    for name, ref in reference.items():
        out = got[name]
        if out.shape != ref.shape:
            raise OnnxExportError(f"output {name}: shape {out.shape}, expected {ref.shape}")
        diff = np.abs(out.astype(np.float64) - ref)
        if name in ("sequence_output", "start_logits", "end_logits"):  # real tokens only
            diff = diff[mask.astype(bool)]
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        total, count = total + float(diff.sum()), count + diff.size
    report["max_abs_diff"] = worst
    report["mean_abs_diff"] = total / count if count else 0.0
    if task == "classifier":
        report["argmax_agreement"] = float(
            np.mean(np.argmax(got["logits"], -1) == np.argmax(reference["logits"], -1)))
    return report


def validation_inputs(tokenizer, max_seq_length: int, num: int = 64) -> dict:
    """Real inputs with padding: sentence pairs and single sentences of the packaged
    sample text, padded to the longest in the batch (lengths vary row by row)."""
    from pybert.resources import sample_text_path

    with open(sample_text_path(), encoding="utf-8") as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    lines = (lines * (2 * num // max(len(lines), 1) + 2))[: 2 * num]
    firsts, seconds = lines[0::2][:num], lines[1::2][:num]
    half = num // 2
    singles = tokenizer.encode_batch(firsts[:half], max_seq_length=max_seq_length,
                                     return_offsets=False, pad=False)
    pairs = tokenizer.encode_batch(firsts[half:], seconds[half:], max_seq_length=max_seq_length,
                                   return_offsets=False, pad=False)
    rows = []
    for enc in (singles, pairs):
        splits = enc["row_splits"]
        for i in range(len(enc)):
            rows.append((enc["flat_ids"][splits[i]:splits[i + 1]],
                         enc["flat_type_ids"][splits[i]:splits[i + 1]]))
    seq = max(len(r[0]) for r in rows)
    out = {k: np.zeros((len(rows), seq), np.int32) for k in INPUT_NAMES}
    for i, (ids, types) in enumerate(rows):
        out["input_word_ids"][i, : len(ids)] = ids
        out["input_type_ids"][i, : len(ids)] = types
        out["input_mask"][i, : len(ids)] = 1
    return out


@dataclass
class ExportResult:
    output_dir: str
    metadata: dict


def lower_case_for(vocab_file: str, given: bool | None) -> bool:
    """--do_lower_case (default true, as the data tool's); lower-casing with a vocab that
    looks cased (more than 10 alphabetic word pieces with upper-case letters: special
    tokens such as [CLS] or <S> aside) warns, as the data tool may have run without it."""
    with open(vocab_file, encoding="utf-8", errors="replace") as f:
        upper = sum(1 for t in (line.strip().removeprefix("##") for line in f)
                    if t.isalpha() and t != t.lower())
    lower = True if given is None else given
    if lower and upper > 10:
        logger.warning(
            "--do_lower_case=true with %s, which looks cased (%d word pieces with upper-case "
            "letters): right only if the data tool lower-cased too; else pass "
            "--do_lower_case=false", vocab_file, upper)
    return lower


def export_onnx(
    model,
    task: str,
    output_dir,
    vocab_file,
    do_lower_case: bool,
    max_seq_length: int,
    labels: list[str] | None = None,
    int8: bool = False,
    fp16: bool = False,
    opset: int = 17,
    require_fusions: bool = True,
    source: str = "",
    extra_metadata: dict | None = None,
    cls_only: bool | None = None,
) -> ExportResult:
    """Exports `model` to output_dir: model.onnx (fp32, optimized), optionally
    model_int8.onnx / model_fp16.onnx, vocab.txt and pybert_model.json (plus
    `extra_metadata`, e.g. a span model's doc_stride). Validates against the
    Keras model; writes into <output_dir>.tmp and renames when done. cls_only: see
    export_function (default: on for classifier/regression)."""
    from pybert.tokenization import FullTokenizer

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if cls_only is None:
        cls_only = task in CLS_TASKS
    if not Path(vocab_file).is_file():
        raise FileNotFoundError(f"vocab file not found: {vocab_file}")
    encoder = model if task == "encoder" else model.encoder
    config = encoder.config
    tokenizer = FullTokenizer(str(vocab_file), do_lower_case=do_lower_case)
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"vocab file {vocab_file} has {tokenizer.vocab_size} tokens but the "
                         f"model's embedding has {config.vocab_size} rows")
    if not 2 <= max_seq_length <= config.max_position_embeddings:
        raise ValueError(f"max_seq_length must be in [2, {config.max_position_embeddings}], "
                         f"got {max_seq_length}")
    if task == "classifier":
        num_labels = int(model.num_labels)
        labels = [str(x) for x in labels] if labels else [str(i) for i in range(num_labels)]
        if len(labels) != num_labels:
            raise ValueError(f"{len(labels)} labels given ({labels}) for a classifier with "
                             f"{num_labels} outputs")
    elif task == "regression" and model.num_labels != 1:
        raise ValueError(f"task 'regression' needs num_labels 1, got {model.num_labels}")

    output_dir = Path(output_dir)
    tmp = fresh_tmp_dir(output_dir, ONNX_EXPORT_FILES, "pybert ONNX export")
    try:  # a failed export leaves nothing behind

        inputs = validation_inputs(tokenizer, max_seq_length)
        reference = reference_outputs(model, task, inputs)
        with tempfile.TemporaryDirectory() as work:
            raw = Path(work) / "raw.onnx"
            convert(export_function(model, task, cls_only), raw, opset)
            stats = optimize(raw, tmp / "model.onnx", config)
        logger.info("fused operators: %s", stats)
        targets = fusion_targets(config, cls_only)
        missing = _fusions_missing(stats, targets)
        if missing and require_fusions:
            raise OnnxExportError("ONNX Runtime's optimizer did not fuse what a BERT graph should "
                                  f"have: {', '.join(missing)} (fused: {stats}); "
                                  "--norequire_fusions exports the unfused (slower) graph")

        mask = inputs["input_mask"]
        validation = {"inputs": {"rows": int(mask.shape[0]), "seq": int(mask.shape[1]),
                                 "padding_share": float(1.0 - mask.mean())}}
        validation["fp32"] = compare(reference, run_onnx(session(tmp / "model.onnx"), inputs), mask,
                                     task)
        if validation["fp32"]["max_abs_diff"] > FP32_TOLERANCE:
            raise OnnxExportError(
                f"fp32 ONNX model differs from TensorFlow by "
                f"{validation['fp32']['max_abs_diff']:.3g} (> {FP32_TOLERANCE}) on the "
                "validation inputs")
        models = {"fp32": "model.onnx"}
        if int8:
            quantize_int8(tmp / "model.onnx", tmp / "model_int8.onnx", cls_only)
            models["int8"] = "model_int8.onnx"
            validation["int8"] = compare(
                reference, run_onnx(session(tmp / "model_int8.onnx"), inputs), mask, task)
        if fp16:
            convert_fp16(tmp / "model.onnx", tmp / "model_fp16.onnx")
            models["fp16"] = "model_fp16.onnx"
            try:
                validation["fp16"] = compare(
                    reference, run_onnx(session(tmp / "model_fp16.onnx"), inputs), mask, task)
            except Exception as e:  # noqa: BLE001 - ORT's CPU provider lacks some fp16 kernels
                validation["fp16"] = {"not_validated": f"CPU provider cannot run it: {e}"[:300]}
        shutil.copyfile(vocab_file, tmp / "vocab.txt")
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": task,
            "labels": labels if task == "classifier" else None,
            "do_lower_case": bool(do_lower_case),
            "max_seq_length": int(max_seq_length),
            "vocab_file": "vocab.txt",
            "vocab_size": int(tokenizer.vocab_size),
            "inputs": list(INPUT_NAMES),
            "outputs": list(_output_names(task)),
            "models": models,
            "opset": opset,
            "bert_config": config.to_dict(),
            "fusions": stats,
            "fusion_targets": targets,
            "cls_only_last_layer": bool(cls_only),
            "validation": validation,
            "source": source,
            **(extra_metadata or {}),
        }
        with open(tmp / METADATA_FILE, "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2)
            f.write("\n")
        replace_dir(tmp, output_dir, ONNX_EXPORT_FILES, "pybert ONNX export")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(str(output_dir), metadata)


def read_metadata(model_dir) -> dict:
    """pybert_model.json of an exported model, checked for what prediction needs."""
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{model_dir}: no {METADATA_FILE} (export the model with pybert-export-onnx, "
            "which writes the model, its vocab and this metadata together)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a pybert ONNX metadata file (format {meta.get('format')!r})")
    for key in ("task", "do_lower_case", "max_seq_length", "vocab_file", "models"):
        if key not in meta:
            raise ValueError(f"{path}: missing {key!r}")
    if meta["task"] not in TASKS:
        raise ValueError(f"{path}: unknown task {meta['task']!r}")
    return meta
