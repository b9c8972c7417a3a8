"""Training: schedule and optimizer rules, run_classifier end to end on MRPC with a tiny BERT,
SIGKILL + restart = an uninterrupted run, predict / export, and errors before the first step."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from test_metrics import _pearson, _ranks  # noqa: E402
from tool_runner import kill_tool_once, run_tool  # noqa: E402

from pybert.configs import BertConfig  # noqa: E402
from pybert.data import classification  # noqa: E402
from pybert.modeling import BertClassifier  # noqa: E402
from pybert.tokenization import FullTokenizer  # noqa: E402
from pybert.training.optimization import WarmUpPolynomialDecay, create_optimizer  # noqa: E402

TINY = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 128,
        "type_vocab_size": 2, "initializer_range": 0.02}


def test_schedule_follows_the_seed_rule():
    s = WarmUpPolynomialDecay(1e-4, decay_steps=100, warmup_steps=10, end_lr=1e-6)
    for step in (0, 1, 5, 9, 10, 11, 50, 99, 100, 150):
        if step < 10:
            want = 1e-4 * step / 10
        else:  # linear decay measured from step 0, as the seed's PolynomialDecay
            want = (1e-4 - 1e-6) * (1 - min(step, 100) / 100) + 1e-6
        assert float(s(step)) == pytest.approx(want, rel=1e-6), step
    assert float(WarmUpPolynomialDecay(2e-5, 10)(0)) == pytest.approx(2e-5)


def test_optimizer_excludes_layer_norm_and_bias_from_weight_decay():
    model = BertClassifier(BertConfig.from_dict(TINY), 2)
    model.build()
    opt = create_optimizer(1e-4, 100, 10, variables=model.trainable_variables)
    opt.build(model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if opt._use_weight_decay(v)}
    assert decayed and all("layer_norm" not in p and not p.endswith("bias") for p in decayed)
    assert any(p.endswith("query/kernel") for p in decayed)
    assert any(p.endswith("word_embeddings") for p in decayed)
    assert opt.global_clipnorm == 1.0 and opt.epsilon == 1e-6 and opt.weight_decay == 0.01
    with pytest.raises(ValueError, match="optimizer_type"):
        create_optimizer(1e-4, 10, 1, optimizer_type="sgd")
    lamb = create_optimizer(1e-4, 100, 10, optimizer_type="lamb")
    # the seed's: Addons' LAMB does not clip (its AdamWeightDecay does)
    assert type(lamb).__name__ == "SeedLamb" and lamb.global_clipnorm is None


def _tfa_lamb(weights, grads, lrs, decayed, wd=0.01, b1=0.9, b2=0.999, eps=1e-6):
    """TensorFlow Addons' LAMB (the seed's), in NumPy float64, from its published update:
    weight decay inside the update, no trust ratio for the excluded variables."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v2 = {k: np.zeros_like(v) for k, v in w.items()}
    for t, (g_step, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
        for k in w:
            g = g_step[k].astype(np.float64)
            m[k] = b1 * m[k] + (1 - b1) * g
            v2[k] = b2 * v2[k] + (1 - b2) * g * g
            update = (m[k] / (1 - b1 ** t)) / (np.sqrt(v2[k] / (1 - b2 ** t)) + eps)
            ratio = 1.0
            if k in decayed:
                update = update + wd * w[k]
                w_norm, u_norm = np.linalg.norm(w[k]), np.linalg.norm(update)
                ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
            w[k] = w[k] - lr * ratio * update
    return w


def test_lamb_is_the_seeds_lamb():
    """--optimizer_type=lamb runs the seed's LAMB (TensorFlow Addons'): five steps on a
    tiny classifier's weights with fixed gradients (the word embeddings' sparse, with
    repeated rows) equal the NumPy transcription of its update; Keras 3's own Lamb (decay
    outside the trust ratio, trust ratio on LayerNorm and bias too) does not."""
    import keras

    from pybert.training.optimization import WarmUpPolynomialDecay

    model = BertClassifier(BertConfig.from_dict(TINY), 2)
    model.build()
    variables = model.trainable_variables
    rng = np.random.default_rng(0)
    grads = [{v.path: rng.normal(0, 0.01 * (1 + i), v.shape).astype(np.float32)
              for v in variables} for i in range(5)]
    # the word embeddings' gradient as an embedding lookup gives it: sparse, a row once per
    # use (rows 5 and 9 repeated); the reference gets the summed dense gradient
    (words,) = [v for v in variables if "word_embeddings" in v.path]
    ids = np.array([5, 9, 5, 5, 11, 9, 30000])
    sparse = []
    for g in grads:
        values = rng.normal(0, 0.01, (len(ids), words.shape[1])).astype(np.float32)
        dense = np.zeros(words.shape, np.float32)
        np.add.at(dense, ids, values)
        g[words.path] = dense
        sparse.append(tf.IndexedSlices(tf.constant(values), tf.constant(ids),
                                       tf.constant(words.shape, tf.int64)))
    start = {v.path: v.numpy() for v in variables}
    schedule = WarmUpPolynomialDecay(1e-2, 10, 2)
    lrs = [float(schedule(step)) for step in range(5)]
    results = {}
    for name in ("seed", "keras"):
        for v in variables:
            v.assign(start[v.path])
        opt = (create_optimizer(1e-2, 10, 2, optimizer_type="lamb", global_clipnorm=None,
                                variables=variables) if name == "seed" else
               keras.optimizers.Lamb(learning_rate=schedule, epsilon=1e-6, weight_decay=0.01))
        if name == "keras":
            opt.exclude_from_weight_decay(var_list=[v for v in variables
                                                    if "layer_norm" in v.path
                                                    or v.path.endswith("bias")])
        for g, emb in zip(grads, sparse, strict=True):
            opt.apply_gradients([(emb if v is words else tf.constant(g[v.path]), v)
                                 for v in variables])
        results[name] = {v.path: v.numpy() for v in variables}
    decayed = {v.path for v in variables
               if "layer_norm" not in v.path and not v.path.endswith("bias")}
    assert decayed and len(decayed) < len(variables)
    want = _tfa_lamb(start, grads, lrs, decayed)
    for k, w in want.items():
        np.testing.assert_allclose(results["seed"][k], w, rtol=1e-5, atol=1e-7, err_msg=k)
    worst = max(float(np.abs(results["keras"][k] - w).max()) for k, w in want.items())
    assert worst > 1e-3
    moved = np.abs(results["seed"][words.path] - start[words.path]).max(axis=1)
    assert set(np.flatnonzero(moved)) >= {5, 9, 11, 30000}


def test_partial_results_continue_after_complete_parts(tmp_path, capsys):
    from pybert._outputs import PartialResults

    d = tmp_path / "x.partial"
    rows = np.arange(40, dtype=np.float32).reshape(20, 2)
    first = PartialResults(d, {"input": "a"}, 0, "t")
    assert first.resume() == 0 and (d / "settings.json").exists()
    for i in range(0, 12, 3):  # four parts of 3 rows
        first.add(logits=rows[i:i + 3], ids=np.arange(i, i + 3))
    assert sorted(p.name for p in d.iterdir()) == [
        "part-00000.npz", "part-00001.npz", "part-00002.npz", "part-00003.npz", "settings.json"]

    def run(settings, every_s=0, max_rows=None):
        r = PartialResults(d, settings, every_s, "t")
        done = r.resume(max_rows)
        for i in range(done, 20, 3):
            r.add(logits=rows[i:i + 3], ids=np.arange(i, min(i + 3, 20)))
        out = r.arrays()
        np.testing.assert_array_equal(out["logits"], rows)
        np.testing.assert_array_equal(out["ids"], np.arange(20))
        return done

    (d / "part-00003.npz").unlink()  # killed while writing the fourth part
    (d / "part-00003.npz.tmp").write_bytes(b"cut")
    assert run({"input": "a"}, every_s=float("inf")) == 9  # kept in memory: no new parts
    assert len(list(d.glob("part-*.npz"))) == 3
    assert run({"input": "a"}, max_rows=8) == 0  # more rows than this run has
    assert "holds 9 rows, more than the 8" in capsys.readouterr().err
    assert run({"input": "b"}) == 0  # other settings
    assert "is from other input, checkpoint or flags; starting over" in capsys.readouterr().err
    assert run({"input": "b"}) == 20  # the previous run saved all its rows (7 parts)
    (d / "part-00002.npz").write_bytes(b"not an npz")
    assert run({"input": "b"}) == 0
    assert "unreadable part (part-00002.npz" in capsys.readouterr().err
    for cut in (b"", (d / "part-00001.npz").read_bytes()[:-30]):  # empty, a zip cut short
        (d / "part-00001.npz").write_bytes(cut)
        assert run({"input": "b"}) == 0
        assert "unreadable part (part-00001.npz" in capsys.readouterr().err
    PartialResults(d, {}, 0, "t").discard()
    assert not d.exists()


@pytest.fixture(scope="module")
def mrpc64(tmp_path_factory, data_dir, vocab_path):
    out = tmp_path_factory.mktemp("mrpc64")
    tok = FullTokenizer(vocab_path("uncased"))
    spec = classification.get_task("MRPC")
    meta = classification.generate_tf_record_from_data_file(
        spec, str(data_dir / "glue" / "MRPC"), tok, str(out / "train.tfr"), str(out / "eval.tfr"),
        max_seq_length=64)
    (out / "meta").write_text(json.dumps(meta))
    (out / "bert_config.json").write_text(json.dumps(TINY))
    return out


def _args(d, model_dir, *extra):
    return [f"--input_meta_data_path={d / 'meta'}", f"--train_data_path={d / 'train.tfr'}",
            f"--eval_data_path={d / 'eval.tfr'}", f"--bert_config_file={d / 'bert_config.json'}",
            f"--model_dir={model_dir}", "--train_data_size=512", "--train_batch_size=16",
            "--num_train_epochs=3", "--steps_per_loop=4", "--save_checkpoint_steps=8",
            "--learning_rate=1e-3", "--deterministic", "--distribution_strategy=one_device",
            "--seed=7", *extra]


def _cmd(*args):
    return [sys.executable, "-m", "pybert.cli.run_classifier", *args]


def _run(*args, check=True):
    # cwd outside the source tree: `-m` must import the installed pybert (with its _C).
    proc = subprocess.run(_cmd(*args), capture_output=True, text=True, timeout=900,
                          cwd=tempfile.gettempdir())
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-4000:])
    return proc


def _weights(model_dir):
    ckpt = tf.train.latest_checkpoint(str(model_dir))
    reader = tf.train.load_checkpoint(ckpt)
    # Every saved value: model weights (TF saves each under its shortest path, often through
    # the optimizer), optimizer slots, global step and the dropout RNG states.
    return ckpt, {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(ckpt)
                  if n != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_sigkill_and_restart_equals_uninterrupted_run(mrpc64, tmp_path):
    straight = tmp_path / "straight"
    _run(*_args(mrpc64, straight))
    summary = json.loads((straight / "training_summary.json").read_text())
    assert summary["total_training_steps"] == 96 and summary["resumed_from_step"] == 0
    assert 0 < summary["eval_accuracy"] <= 1 and np.isfinite(summary["last_train_loss"])

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(*_args(mrpc64, killed, "--keep_checkpoint_max=2")),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    deadline = time.time() + 600
    # the second checkpoint complete: its files written and the state file pointing at it
    # (killing between the two leaves step 8 as the latest, correctly, but tests less)
    while not str(tf.train.latest_checkpoint(str(killed))).endswith("ctl_step-16"):
        assert proc.poll() is None, "the run ended before its second checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "training_summary.json").exists(), "killed too late: the run finished"
    resumed = _run(*_args(mrpc64, killed, "--keep_checkpoint_max=2"))
    assert "resuming from" in resumed.stderr
    assert sorted(p.name for p in killed.glob("ctl_step-*.index")) == [
        "ctl_step-88.index", "ctl_step-96.index"]
    summary2 = json.loads((killed / "training_summary.json").read_text())
    assert 16 <= summary2["resumed_from_step"] < 96
    ckpt_a, a = _weights(straight)
    ckpt_b, b = _weights(killed)
    assert ckpt_a.endswith("ctl_step-96") and ckpt_b.endswith("ctl_step-96")
    assert a.keys() == b.keys() and len(a) > 100
    assert any(k.startswith("rng/") for k in a)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # Killed after its last checkpoint, before its summary: a rerun only evaluates.
    (killed / "training_summary.json").unlink()
    last = _run(*_args(mrpc64, killed, "--keep_checkpoint_max=2"))
    assert "already at step 96 of 96" in last.stderr
    summary3 = json.loads((killed / "training_summary.json").read_text())
    assert summary3["steps_this_run"] == 0
    assert summary3["eval_accuracy"] == summary2["eval_accuracy"] == summary["eval_accuracy"]

    # A finished model_dir is not trained again: as in the seed, the command restores the last
    # checkpoint, skips the training and evaluates it again; a run of other length is refused.
    again = _run(*_args(mrpc64, straight))
    assert "training skipped" in again.stderr and "ctl_step-96" in again.stderr
    assert f"eval at step 96: accuracy {summary['eval_accuracy']:.4f}" in again.stderr
    assert json.loads((straight / "training_summary.json").read_text()) == summary  # kept
    assert _weights(straight)[0] == ckpt_a and len(list(straight.glob("ctl_step-*.index"))) == 12
    longer = _run(*_args(mrpc64, straight, "--num_train_epochs=4"), check=False)
    assert longer.returncode == 1 and "holds a finished run of 96 steps" in longer.stderr
    assert "asks for 128" in longer.stderr and "--overwrite" in longer.stderr

    # predict: softmax rows for the 408 dev examples; export_only: a SavedModel that agrees.
    _run(*_args(mrpc64, straight, "--mode=predict"))
    rows = (straight / "test_results.tsv").read_text().splitlines()
    probs = np.array([[float(v) for v in r.split("\t")] for r in rows])
    assert probs.shape == (408, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    # the seed's text: str() of the Python floats its float32 values become (tolist()):
    # "0.49122413992881775", not "0.49122414"
    assert rows == ["\t".join(str(v) for v in r) for r in probs.astype(np.float32).tolist()]
    assert all(len(v) > 12 for r in rows for v in r.split("\t") if 0 < float(v) < 1)
    # --predict_checkpoint_path: an earlier checkpoint, not the latest; its predictions are
    # those of the Keras model restored from it
    early_ckpt = straight / "ctl_step-88"
    _run(*_args(mrpc64, straight, "--mode=predict", f"--predict_checkpoint_path={early_ckpt}"))
    early = np.array([[float(v) for v in r.split("\t")] for r in
                      (straight / "test_results.tsv").read_text().splitlines()])
    assert early.shape == (408, 2) and np.abs(early - probs).max() > 1e-4
    from pybert.data.pipelines import create_classifier_dataset

    keras_model = BertClassifier(BertConfig.from_dict(TINY), 2, name="bert_classifier")
    keras_model.build()
    tf.train.Checkpoint(model=keras_model).read(str(early_ckpt)).expect_partial()
    x, _ = next(iter(create_classifier_dataset(str(mrpc64 / "eval.tfr"), 64, 16, False)))
    want = tf.nn.softmax(keras_model(x, training=False)).numpy()
    np.testing.assert_allclose(early[:16], want, atol=1e-5)
    # A killed predict run continues after the batches it saved (one part per batch here).
    partial = straight / "test_results.partial"
    pargs = _args(mrpc64, straight, "--mode=predict", "--eval_batch_size=3",
                  "--predict_progress_seconds=0")
    (straight / "test_results.tsv").unlink()
    kill_tool_once("run_classifier", pargs, lambda: len(list(partial.glob("part-*.npz"))) >= 3)
    parts = len(list(partial.glob("part-*.npz")))
    assert not (straight / "test_results.tsv").exists() and 3 <= parts < 136
    continued = _run(*pargs)
    assert f"after {3 * parts} examples" in continued.stderr
    again = np.array([[float(v) for v in r.split("\t")] for r in
                      (straight / "test_results.tsv").read_text().splitlines()])
    np.testing.assert_allclose(again, probs, atol=1e-6)
    assert not partial.exists()
    export = tmp_path / "export"
    _run(*_args(mrpc64, straight, "--mode=export_only", f"--model_export_path={export}"))
    loaded = tf.saved_model.load(str(export))
    x, _ = next(iter(create_classifier_dataset(str(mrpc64 / "eval.tfr"), 64, 8, False)))
    logits = loaded.signatures["serving_default"](**x)["logits"].numpy()
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), probs[:8], rtol=1e-4, atol=1e-6)


def test_errors_before_the_first_step(mrpc64, tmp_path):
    bad_meta = tmp_path / "meta"
    meta = json.loads((mrpc64 / "meta").read_text())
    bad_meta.write_text(json.dumps({**meta, "max_seq_length": 128}))
    args = _args(mrpc64, tmp_path / "m")
    proc = _run(*[a if not a.startswith("--input_meta_data_path") else
                  f"--input_meta_data_path={bad_meta}" for a in args], check=False)
    assert proc.returncode == 1
    assert ("feature 'input_ids' has 64 values, expected 128; the meta data "
            f"{bad_meta} says max_seq_length=128, classification") in proc.stderr
    proc = _run(*args, f"--init_checkpoint={tmp_path / 'nope' / 'bert_model.ckpt'}",
                check=False)
    assert proc.returncode == 1 and "no such checkpoint" in proc.stderr
    # An encoder checkpoint of another shape than bert_config.
    other = BertConfig.from_dict({**TINY, "hidden_size": 48, "intermediate_size": 96})
    from pybert.checkpoints.huggingface import save_encoder_checkpoint
    from pybert.modeling import BertEncoder

    enc = BertEncoder(other)
    enc.build()
    ckpt = save_encoder_checkpoint(enc, other, tmp_path / "other")
    proc = _run(*args, f"--init_checkpoint={ckpt}", check=False)
    assert proc.returncode == 1 and "does not fit the model built from bert_config" in proc.stderr
    # --mode=predict from an encoder checkpoint (of the right shape): it has no classifier
    # (before: an AssertionError's traceback); from a checkpoint that is not there
    tiny = BertConfig.from_dict(TINY)
    enc = BertEncoder(tiny)
    enc.build()
    enc_ckpt = save_encoder_checkpoint(enc, tiny, tmp_path / "tiny_encoder")
    for path, message in ((enc_ckpt, f"checkpoint {enc_ckpt} does not fit a BertClassifier"),
                          (tmp_path / "nope" / "ckpt", "--predict_checkpoint_path "
                           f"{tmp_path / 'nope' / 'ckpt'}: no such checkpoint")):
        proc = _run(*args, "--mode=predict", f"--predict_checkpoint_path={path}", check=False)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
    proc = _run(*[a.replace("train.tfr", "missing.tfr") for a in args], check=False)
    assert proc.returncode == 1 and "missing.tfr: file not found" in proc.stderr
    # A sequence longer than the config's position embeddings.
    short = tmp_path / "short_config.json"
    short.write_text(json.dumps({**TINY, "max_position_embeddings": 32}))
    proc = _run(*[a if not a.startswith("--bert_config_file") else f"--bert_config_file={short}"
                  for a in args], check=False)
    assert proc.returncode == 1
    assert f"max_seq_length=64 exceeds max_position_embeddings=32 of {short}" in proc.stderr
    # Ids beyond the config's vocabulary (data made with another vocab): one line naming it.
    small = tmp_path / "small_vocab_config.json"
    small.write_text(json.dumps({**TINY, "vocab_size": 100}))
    proc = _run(*[a if not a.startswith("--bert_config_file") else f"--bert_config_file={small}"
                  for a in args], check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "is outside an embedding table of 100 rows" in proc.stderr
    # Meta data that claims more training records than the file holds (stale meta data).
    bad_meta.write_text(json.dumps({**meta, "train_data_size": 10**6}))
    proc = _run(*[a if not a.startswith("--input_meta_data_path") else
                  f"--input_meta_data_path={bad_meta}" for a in args], check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (f"train_data_size 1000000, but --train_data_path {mrpc64 / 'train.tfr'} holds "
            f"{meta['train_data_size']} records") in proc.stderr
    # Meta data that is not an object, or with a count that is not an integer.
    for bad in ("5", json.dumps({**meta, "max_seq_length": "abc"})):
        bad_meta.write_text(bad)
        proc = _run(*[a if not a.startswith("--input_meta_data_path") else
                      f"--input_meta_data_path={bad_meta}" for a in args], check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert (f"{bad_meta}: not meta data" if bad == "5" else
                f"{bad_meta}: 'max_seq_length' is 'abc', not a positive integer") in proc.stderr
    # Out-of-range flags: absl's one-line error, before anything runs.
    proc = _run(*args, "--train_batch_size=0", check=False)
    assert proc.returncode == 1 and "flag --train_batch_size=0" in proc.stderr
    assert "Traceback" not in proc.stderr
    for scale in ("abc", "-1", "nan", ""):  # whatever the dtype (fp32 ignores a good one)
        proc = _run(*args, f"--loss_scale={scale}", check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert f"--loss_scale={scale}: expected 'dynamic' or a positive number" in proc.stderr
    assert not (tmp_path / "m" / "training_summary.json").exists()


def test_corrupt_training_records_fail_without_traceback(mrpc64, tmp_path):
    """A flipped byte mid-file (the first records are fine) stops training at that batch with
    a one-line error that lists the input files."""
    data = bytearray((mrpc64 / "train.tfr").read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "train.tfr"
    bad.write_bytes(bytes(data))
    args = [a if not a.startswith("--train_data_path") else f"--train_data_path={bad}"
            for a in _args(mrpc64, tmp_path / "m", "--shuffle_buffer=0")]
    proc = _run(*args, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "run_classifier: error: corrupt or truncated input data" in proc.stderr
    assert f"--train_data_path={bad}" in proc.stderr and "corrupted record at" in proc.stderr
    # A file that is not a TFRecord at all is refused before training.
    bad.write_bytes(b"not a tfrecord file, just text\n" * 10)
    proc = _run(*args, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{bad}: not a TFRecord file or corrupt" in proc.stderr


def _tiny_hub(tmp_path):
    """(config, random TINY encoder, its TF-Hub-style SavedModel in tmp_path/hub)."""
    from pybert.export.savedmodel import export_encoder_savedmodel
    from pybert.modeling import BertEncoder

    config = BertConfig.from_dict(TINY)
    encoder = BertEncoder(config)
    encoder.build()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n")
    return config, encoder, export_encoder_savedmodel(encoder, vocab, True, tmp_path / "hub")


def test_hub_module_url_initializes_the_encoder(mrpc64, tmp_path, monkeypatch):
    """--hub_module_url: a local encoder SavedModel (pybert's TF-Hub-style export) gives the
    encoder's initial weights (learning rate 0: they come out of training unchanged);
    contradictory or missing inputs stop before the first step."""
    from pybert.export.savedmodel import export_encoder_savedmodel
    from pybert.modeling import BertEncoder

    config, encoder, hub = _tiny_hub(tmp_path)
    vocab = tmp_path / "vocab.txt"
    model_dir = tmp_path / "m"
    args = [a for a in _args(mrpc64, model_dir) if not a.startswith(("--train_data_size",
                                                                      "--learning_rate"))]
    proc = _run(*args, f"--hub_module_url={hub}", "--train_data_size=32",
                "--learning_rate=0", "--num_train_epochs=1", "--loss_scale=128")
    assert "encoder initialized from" in proc.stderr
    # the seed ignores --loss_scale outside fp16; so does pybert, saying so
    assert "--loss_scale=128 ignored: loss scaling applies to --dtype=fp16 only" in proc.stderr
    model = BertClassifier(config, 2)
    model.build()
    tf.train.Checkpoint(model=model).read(tf.train.latest_checkpoint(str(model_dir))
                                          ).expect_partial()
    assert len(encoder.weights) == len(model.encoder.weights) > 10
    for a, b in zip(encoder.weights, model.encoder.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)

    proc = _run(*args, f"--hub_module_url={hub}", "--init_checkpoint=x", check=False)
    assert proc.returncode == 1
    assert "--hub_module_url and --init_checkpoint both given" in proc.stderr
    proc = _run(*args, f"--hub_module_url={tmp_path}", check=False)
    assert proc.returncode == 1 and "no SavedModel there" in proc.stderr
    url = "https://tfhub.dev/tensorflow/bert_en_uncased_L-12_H-768_A-12/3"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "empty_cache"))
    proc = _run(*args, f"--hub_module_url={url}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"--hub_module_url {url}: nothing is downloaded; a URL is read from the TF-Hub " \
           "cache only" in proc.stderr
    proc = _run(*args, "--hub_module_url=gs://bucket/bert", check=False)
    assert proc.returncode == 1 and "only local directories and http(s) URLs" in proc.stderr
    # an encoder of another shape: the error names the flag it came from
    other = BertEncoder(BertConfig.from_dict(
        dict(TINY, intermediate_size=2 * TINY["intermediate_size"])))
    other.build()
    wrong = export_encoder_savedmodel(other, vocab, True, tmp_path / "hub_other")
    proc = _run(*args, f"--hub_module_url={wrong}", f"--model_dir={tmp_path / 'm2'}",
                check=False)
    assert proc.returncode == 1
    assert "--hub_module_url" in proc.stderr and "does not fit the model" in proc.stderr


def test_seed_tfhub_savedmodel_as_hub_module_url(mrpc64, tmp_path, vocab_path, monkeypatch):
    """A TF-Hub SavedModel written by the seed's own export_tfhub.py (its variables are keyed
    by position, "variables/N") initializes the encoder through --hub_module_url as the
    seed's run_classifier takes it: the seed encoder's outputs within 1e-4, the same weights
    in the trained model (learning rate 0), and pybert-convert-checkpoint reads it too."""
    from seed_oracle import ORACLE_DIR

    from pybert.checkpoints import checkpoint_format
    from pybert.cli.convert_checkpoint import convert
    from pybert.modeling import BertEncoder
    from pybert.training.loop import restore_encoder

    pytest.importorskip("tf_keras")
    if not (ORACLE_DIR / "official" / "nlp" / "modeling").exists():
        pytest.skip("seed oracle not unpacked (tools/run_tests.sh)")
    rng = np.random.default_rng(3)
    mask = np.ones((3, 24), np.int32)
    mask[1, 9:] = 0
    mask[2, 17:] = 0
    batch = {"input_word_ids": rng.integers(0, 30522, (3, 24)).astype(np.int32),
             "input_mask": mask, "input_type_ids": (rng.random((3, 24)) < 0.5).astype(np.int32)}
    np.savez(tmp_path / "inputs.npz", **batch)
    hub, prefix = tmp_path / "seed_hub", str(tmp_path / "seed" / "bert_model.ckpt")
    vocab = tmp_path / "vocab.txt"  # no "uncased" in the name: the seed stores lower case False
    vocab.write_bytes(vocab_path("uncased").read_bytes())
    seed = subprocess.run(
        [sys.executable, os.path.join(os.path.dirname(__file__), "seed_tf2_encoder.py"),
         str(ORACLE_DIR), str(mrpc64 / "bert_config.json"), str(tmp_path / "inputs.npz"),
         prefix, str(hub), str(vocab)], capture_output=True, text=True)
    assert seed.returncode == 0, seed.stderr[-3000:]
    want = np.load(prefix + ".outputs.npz")
    keys = [k for k, _ in tf.train.list_variables(str(hub / "variables" / "variables"))]
    assert "variables/0/.ATTRIBUTES/VARIABLE_VALUE" in keys  # positional keys, as the seed's
    assert checkpoint_format(str(hub / "variables" / "variables")) == "model_garden_hub"

    config = BertConfig.from_json_file(mrpc64 / "bert_config.json")
    direct = BertEncoder(config)
    direct.build()
    restore_encoder(direct, str(hub), "--hub_module_url")
    out = direct(batch)
    for name in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(np.asarray(out[name]), want[name], atol=1e-4, rtol=0)

    # The seed's run_classifier command with the seed's SavedModel as --hub_module_url: a
    # URL, found where tensorflow_hub caches its downloads (sha1 of the URL).
    import hashlib
    import shutil

    url = "https://tfhub.dev/tensorflow/bert_en_uncased_L-2_H-32_A-2/1"
    shutil.copytree(hub, tmp_path / "cache" / hashlib.sha1(url.encode()).hexdigest())
    model_dir = tmp_path / "m"
    args = [a for a in _args(mrpc64, model_dir) if not a.startswith(("--train_data_size",
                                                                      "--learning_rate"))]
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    proc = _run(*args, f"--hub_module_url={url}", "--train_data_size=32",
                "--learning_rate=0", "--num_train_epochs=1")
    assert "TF-Hub SavedModel of a Model Garden encoder" in proc.stderr
    assert "the TF-Hub cache's copy" in proc.stderr
    model = BertClassifier(config, 2)
    model.build()
    tf.train.Checkpoint(model=model).read(tf.train.latest_checkpoint(str(model_dir))
                                          ).expect_partial()
    for a, b in zip(direct.weights, model.encoder.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)

    # pybert-convert-checkpoint: the directory as --input; the vocab and do_lower_case come
    # from the SavedModel; its bert_config.json must be given.
    from pybert.export.savedmodel import load_encoder_savedmodel

    convert("model_garden", str(hub), str(tmp_path / "converted"),
            bert_config_file=str(mrpc64 / "bert_config.json"),
            saved_model_dir=str(tmp_path / "again"))
    assert (tmp_path / "converted" / "vocab.txt").read_bytes() == vocab.read_bytes()
    assert load_encoder_savedmodel(tmp_path / "again")[2] is False
    with pytest.raises(ValueError, match="a SavedModel, which holds no bert_config.json: "
                                         "--bert_config_file is required"):
        convert("model_garden", str(hub), str(tmp_path / "c2"))
    converted = BertEncoder(BertConfig.from_json_file(tmp_path / "converted" / "bert_config.json"))
    converted.build()
    restore_encoder(converted, str(tmp_path / "converted" / "bert_model.ckpt"))
    for a, b in zip(direct.weights, converted.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)

    # A config the SavedModel does not fit: an error naming the flag, the directory and
    # the variables, before the first step.
    small = tmp_path / "one_layer.json"
    small.write_text(json.dumps(dict(TINY, num_hidden_layers=1)))
    proc = _run(*[a if not a.startswith("--bert_config_file") else f"--bert_config_file={small}"
                  for a in args], f"--hub_module_url={hub}", f"--model_dir={tmp_path / 'm2'}",
                check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (f"--hub_module_url {hub} (TF-Hub SavedModel of a Model Garden encoder) does not "
            "fit") in proc.stderr
    assert "unexpected (16): transformer/layer_1/" in proc.stderr


def test_help_and_the_seed_short_flag_names():
    """--help lists the tool's flags and the shared ones; the seed's short names (-md, -ds,
    ...) work, and --distribution_strategy ignores case as the seed's does."""
    proc = run_tool("run_classifier", "--help", check=False)
    for flag in ("--mode", "--model_dir", "--distribution_strategy", "--init_checkpoint",
                 "--predict_progress_seconds"):
        assert flag in proc.stdout, flag
    proc = run_tool("run_classifier", "-ds=One_Device", "-md=/nonexistent/m", "-dt=bf16",
                    "-ng=0", check=False)
    assert proc.returncode == 1 and "Flags parsing error" not in proc.stderr
    assert "--input_meta_data_path is required" in proc.stderr


def test_seed_flags_freeze_export_and_refuse(mrpc64, tmp_path):
    """The seed's other flags: --hub_module_trainable=false keeps a --hub_module_url encoder
    as loaded while the head trains; --sub_model_export_name writes the trained encoder;
    the no-op flags are accepted; gin and graph_rewrite are refused before training."""
    from pybert.modeling import BertEncoder
    from pybert.training.loop import restore_encoder

    config, encoder, hub = _tiny_hub(tmp_path)
    base = [a for a in _args(mrpc64, tmp_path / "x") if not a.startswith(("--train_data_size",
                                                                           "--model_dir"))]
    base += [f"--hub_module_url={hub}", "--train_data_size=32", "--num_train_epochs=1",
             "--sub_model_export_name=encoder"]
    for trainable in (False, True):
        model_dir = tmp_path / f"m_{trainable}"
        _run(*base, f"--model_dir={model_dir}", f"--hub_module_trainable={trainable}",
             "--scale_loss", "--use_keras_compile_fit=false", "--explicit_allreduce=false",
             "--allreduce_bytes_per_pack=0", "--fp16_implementation=keras",
             "--datasets_num_private_threads=2", "--tf_gpu_thread_mode=gpu_private")
        exported = BertEncoder(config)
        exported.build()
        restore_encoder(exported, str(model_dir / "encoder" / "bert_model.ckpt"))
        same = [np.array_equal(a.numpy(), b.numpy())
                for a, b in zip(encoder.weights, exported.weights, strict=True)]
        ckpt = tf.train.latest_checkpoint(str(model_dir))
        slots = [shape for n, shape in tf.train.list_variables(ckpt)
                 if n.startswith("optimizer/_variables/")]
        if trainable:
            assert not any(same)  # every encoder weight moved
        else:
            assert all(same)
            # AdamW keeps two slots per trainable variable: the head's kernel and bias only
            assert sorted(slots) == [[2], [2], [32, 2], [32, 2]], slots
            # the other modes build and restore the frozen model too
            _run(*base, f"--model_dir={model_dir}", "--hub_module_trainable=false",
                 "--mode=predict")
            assert len((model_dir / "test_results.tsv").read_text().splitlines()) > 10
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "encoder").mkdir()
    (tmp_path / "taken" / "encoder" / "notes.txt").write_text("mine")
    for flags, message in (
            (["--gin_file=bert.gin"], "no gin configuration"),
            (["--fp16_implementation=graph_rewrite"], "no mixed precision graph"),
            (["--distribution_strategy=mirrored", "--all_reduce_alg=ring"],
             "--all_reduce_alg=ring does not apply to --distribution_strategy=mirrored"),
            (["--worker_hosts=a:1,b:2"], "--task_index=-1 is not the index"),
            (["--distribution_strategy=one_device", "--num_gpus=2"],
             "one_device cannot use --num_gpus=2"),
            (["--distribution_strategy=parameter_server"], "parameter_server is not supported"),
            (["--mode=predict", "--distribution_strategy=parameter_server"],  # any mode
             "parameter_server is not supported"),
            ([f"--model_dir={tmp_path / 'taken'}"], "holds files that are not a pybert encoder")):
        proc = _run(*base, f"--model_dir={tmp_path / 'bad'}", *flags, check=False)
        assert proc.returncode == 1 and message in proc.stderr, (flags, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
    assert (tmp_path / "taken" / "encoder" / "notes.txt").read_text() == "mine"


def test_frozen_encoder_runs_without_dropout():
    """A frozen encoder (--hub_module_trainable=false) runs in inference mode, as the seed's
    non-trainable hub.KerasLayer: with training=True the span logits are deterministic; a
    trainable one applies dropout."""
    from pybert.modeling import BertSpanLabeler

    model = BertSpanLabeler(BertConfig.from_dict(TINY))
    model.build()
    x = {"input_word_ids": tf.constant([[101, 2000, 2001, 102]]),
         "input_mask": tf.ones((1, 4), tf.int32), "input_type_ids": tf.zeros((1, 4), tf.int32)}
    a, b = (model(x, training=True)["start_logits"].numpy() for _ in range(2))
    assert not np.array_equal(a, b)
    model.encoder.trainable = False
    a, b = (model(x, training=True)["start_logits"].numpy() for _ in range(2))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, model(x, training=False)["start_logits"].numpy(), atol=1e-6)


def test_xla_fp16_and_gradient_accumulation_runs(mrpc64, tmp_path):
    """--enable_xla (the step is jit-compiled; "auto" attention uses TF ops inside it),
    --dtype=fp16 (dynamic loss scaling) and --num_accumulation_steps=2 (Keras' gradient
    accumulators: weights change every second step) each train to the end with a finite
    loss."""
    base = [a for a in _args(mrpc64, tmp_path) if not a.startswith(("--train_data_size",
                                                                    "--model_dir",
                                                                    "--num_train_epochs"))]
    base += ["--train_data_size=64", "--num_train_epochs=1"]

    def run(name, *extra):
        proc = _run(*base, f"--model_dir={tmp_path / name}", *extra)
        summary = json.loads((tmp_path / name / "training_summary.json").read_text())
        assert summary["total_training_steps"] == 4, summary
        assert np.isfinite(summary["last_train_loss"]) and 0 < summary["eval_accuracy"] <= 1
        return proc, _weights(tmp_path / name)[1]

    # (had "auto" attention kept the fused op inside the jit-compiled step, XLA would
    # refuse it: "unsupported operations"; TF's "Compiled cluster" log line is not
    # printed in every environment, so it is not relied on)
    run("xla", "--enable_xla")
    _, state = run("fp16", "--dtype=fp16")
    assert any("dynamic_scale" in k for k in state), sorted(state)[:20]
    run("accum", "--num_accumulation_steps=2", "--save_checkpoint_steps=1")

    def trained(step):  # the model's trainable variables in checkpoint ctl_step-<step>
        reader = tf.train.load_checkpoint(str(tmp_path / "accum" / f"ctl_step-{step}"))
        return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(str(
            tmp_path / "accum" / f"ctl_step-{step}")) if n.startswith("optimizer/_trainable")}

    w2, w3, w4 = trained(2), trained(3), trained(4)
    assert len(w2) > 30
    # step 3 only accumulates its gradients, step 4 applies the two steps' mean
    assert all(np.array_equal(w2[k], w3[k]) for k in w2)
    assert sum(not np.array_equal(w3[k], w4[k]) for k in w3) > 30


def test_evaluations_per_epoch_and_export_after_training(mrpc64, tmp_path):
    """--num_eval_per_epoch=2 splits each epoch into two train/eval rounds (the seed's rule:
    steps per round from train_data_size / 2, warm-up from the whole run); with
    --model_export_path, train_and_eval ends with a SavedModel of the trained model."""
    model_dir, export = tmp_path / "m", tmp_path / "export"
    args = [a for a in _args(mrpc64, model_dir) if not a.startswith(("--num_train_epochs",
                                                                       "--train_data_size"))]
    proc = _run(*args, "--num_train_epochs=1", "--num_eval_per_epoch=2",
                f"--model_export_path={export}", "--optimizer_type=lamb", "--explicit_allreduce")
    # the seed's run_classifier (Keras compile/fit) never clips LAMB's gradients
    assert "optimizer lamb: gradients not clipped" in proc.stderr
    summary = json.loads((model_dir / "training_summary.json").read_text())
    # 3,668 MRPC training pairs: 1,834 per round, 114 steps of 16; warm-up 10% of 228
    assert (summary["epochs"], summary["steps_per_epoch"]) == (2, 114)
    assert summary["total_training_steps"] == 228 and summary["warmup_steps"] == 22
    assert proc.stderr.count("eval at step") == 2
    assert "eval at step 114:" in proc.stderr and "eval at step 228:" in proc.stderr
    loaded = tf.saved_model.load(str(export))
    from pybert.data.pipelines import create_classifier_dataset

    model = BertClassifier(BertConfig.from_dict(TINY), 2, name="bert_classifier")
    model.build()
    tf.train.Checkpoint(model=model).read(
        tf.train.latest_checkpoint(str(model_dir))).expect_partial()
    x, _ = next(iter(create_classifier_dataset(str(mrpc64 / "eval.tfr"), 64, 8, False)))
    np.testing.assert_allclose(loaded.signatures["serving_default"](**x)["logits"].numpy(),
                               model(x, training=False).numpy(), atol=1e-5)


def test_regression_eval_reports_mse_and_correlations(tmp_path, data_dir, vocab_path):
    """STS-B (float labels): the evaluation reports the seed's mean squared error and
    GLUE's Pearson and Spearman correlations, equal to those of --mode=predict's values
    on the same eval set against its labels."""
    d = tmp_path / "stsb"
    d.mkdir()
    meta = classification.generate_tf_record_from_data_file(
        classification.get_task("STS-B"), str(data_dir / "glue" / "STS-B"),
        FullTokenizer(vocab_path("uncased")), str(d / "train.tfr"), str(d / "eval.tfr"),
        max_seq_length=64)
    (d / "meta").write_text(json.dumps(meta))
    (d / "bert_config.json").write_text(json.dumps(TINY))
    args = [a for a in _args(d, tmp_path / "m") if not a.startswith(("--train_data_size",
                                                                     "--num_train_epochs"))]
    _run(*args, "--train_data_size=64", "--num_train_epochs=1")
    summary = json.loads((tmp_path / "m" / "training_summary.json").read_text())
    _run(*args, "--mode=predict")
    pred = [float(x) for x in (tmp_path / "m" / "test_results.tsv").read_text().split()]
    gold = [float(ex.label) for ex in classification.read_examples(
        classification.get_task("STS-B"), str(data_dir / "glue" / "STS-B"), "dev")]
    assert len(pred) == len(gold) == 1500
    gold = np.float32(gold).astype(np.float64).tolist()  # as the TFRecord holds them
    assert summary["eval_mean_squared_error"] == pytest.approx(
        sum((p - g) ** 2 for p, g in zip(pred, gold, strict=True)) / len(gold), rel=1e-5)
    assert summary["eval_pearson"] == pytest.approx(_pearson(pred, gold), abs=1e-5)
    assert summary["eval_spearman"] == pytest.approx(
        _pearson(_ranks(pred), _ranks(gold)), abs=1e-5)


def test_run_squad_train_and_eval_tiny(tmp_path, data_dir, vocab_path):
    """Train a tiny model a few steps on a SQuAD v1.1 slice, then predict and evaluate it:
    the prediction files and the official metrics come out (the values mean nothing here)."""
    src = json.loads((data_dir / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    src["data"] = src["data"][:1]
    src["data"][0]["paragraphs"] = src["data"][0]["paragraphs"][:6]
    for par in src["data"][0]["paragraphs"]:
        for qa in par["qas"]:
            qa["answers"] = qa["answers"][:1]
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(src), encoding="utf-8")
    vocab = str(vocab_path("uncased"))
    run_tool("create_finetuning_data", "--fine_tuning_task_type=squad", f"--squad_data_file={path}",
          f"--vocab_file={vocab}", f"--train_data_output_path={tmp_path / 'train.tfr'}",
          f"--meta_data_file_path={tmp_path / 'meta'}", "--max_seq_length=128",
          "--doc_stride=64", "--max_query_length=32")
    (tmp_path / "bert_config.json").write_text(json.dumps(TINY))
    model_dir = tmp_path / "squad_model"
    # Meta data that claims more training features than the records hold: refused.
    meta = json.loads((tmp_path / "meta").read_text())
    (tmp_path / "stale_meta").write_text(json.dumps({**meta, "train_data_size": 10**6}))
    stale = run_tool("run_squad", "--mode=train",
                     f"--input_meta_data_path={tmp_path / 'stale_meta'}",
                     f"--train_data_path={tmp_path / 'train.tfr'}",
                     f"--bert_config_file={tmp_path / 'bert_config.json'}",
                     f"--model_dir={tmp_path / 'stale'}", "--train_batch_size=8",
                     "--distribution_strategy=one_device", check=False)
    assert stale.returncode == 1 and "Traceback" not in stale.stderr, stale.stderr[-3000:]
    assert (f"train_data_size 1000000, but --train_data_path {tmp_path / 'train.tfr'} holds "
            f"{meta['train_data_size']} records") in stale.stderr
    proc = run_tool("run_squad", "--mode=train_and_eval",
                 f"--input_meta_data_path={tmp_path / 'meta'}",
                 f"--train_data_path={tmp_path / 'train.tfr'}", f"--predict_file={path}",
                 f"--vocab_file={vocab}", f"--bert_config_file={tmp_path / 'bert_config.json'}",
                 f"--model_dir={model_dir}", "--train_batch_size=8", "--num_train_epochs=1",
                 "--predict_batch_size=16", "--learning_rate=1e-3",
                 "--distribution_strategy=one_device")
    preds = json.loads((model_dir / "predictions.json").read_text())
    n_questions = sum(len(p["qas"]) for p in src["data"][0]["paragraphs"])
    assert len(preds) == n_questions
    nbest = json.loads((model_dir / "nbest_predictions.json").read_text())
    assert all(1 <= len(v) <= 20 for v in nbest.values())
    metrics = json.loads((model_dir / "summaries" / "eval" / "eval_metrics.json").read_text())
    assert set(metrics) == {"exact_match", "final_f1"} and 0 <= metrics["final_f1"] <= 1
    assert "SQuAD eval F1-score" in proc.stderr and "(fraction of 1)" in proc.stderr
    # the pooler gets no gradient from the span head: Keras' warning about it is not shown
    assert "Gradients do not exist" not in proc.stderr, proc.stderr[-3000:]
    # the tool's result: prediction + evaluation time, no empty in-loop evaluation time
    assert "'predict_seconds_this_run'" in proc.stdout
    assert "eval_seconds_this_run" not in proc.stdout
    # The same command again (as in the seed): training skipped, prediction and eval again.
    again = run_tool("run_squad", *proc.args[proc.args.index("--mode=train_and_eval"):])
    assert "training skipped" in again.stderr and "SQuAD eval F1-score" in again.stderr
    assert json.loads((model_dir / "predictions.json").read_text()) == preds
    # predict takes several files (comma list and globs): <name>-predictions.json each
    for name in ("first", "second"):
        (tmp_path / f"{name}.json").write_text(path.read_text())
    common = [f"--input_meta_data_path={tmp_path / 'meta'}", f"--vocab_file={vocab}",
              f"--bert_config_file={tmp_path / 'bert_config.json'}", f"--model_dir={model_dir}",
              "--predict_batch_size=16", "--distribution_strategy=one_device"]
    run_tool("run_squad", "--mode=predict", *common,
             f"--predict_file={tmp_path / 'fir*.json'},{tmp_path / 'second.json'}")
    for name in ("first", "second"):
        assert json.loads((model_dir / f"{name}-predictions.json").read_text()) == preds
    bad = run_tool("run_squad", "--mode=eval", *common,
                   f"--predict_file={tmp_path / 'first.json'},{tmp_path / 'second.json'}",
                   check=False)
    assert bad.returncode == 1 and "evaluates one --predict_file, got 2" in bad.stderr
    # --mode=eval alone: the metrics of train_and_eval's evaluation (the same checkpoint)
    (model_dir / "summaries" / "eval" / "eval_metrics.json").unlink()
    run_tool("run_squad", "--mode=eval", *common, f"--predict_file={path}")
    assert json.loads((model_dir / "summaries" / "eval" / "eval_metrics.json").read_text()) \
        == metrics
    # --mode=export_only: a SavedModel whose logits are the last checkpoint's model's
    export = tmp_path / "squad_export"
    run_tool("run_squad", "--mode=export_only", *common, f"--model_export_path={export}")
    from pybert.data.pipelines import create_squad_dataset
    from pybert.modeling import BertSpanLabeler

    keras_model = BertSpanLabeler(BertConfig.from_dict(TINY), name="bert_span_labeler")
    keras_model.build()
    tf.train.Checkpoint(model=keras_model).read(
        tf.train.latest_checkpoint(str(model_dir))).expect_partial()
    x, _ = next(iter(create_squad_dataset(str(tmp_path / "train.tfr"), 128, 8, False)))
    x = {k: x[k] for k in ("input_word_ids", "input_mask", "input_type_ids")}
    served = tf.saved_model.load(str(export)).signatures["serving_default"](**x)
    want = keras_model(x, training=False)
    for key in ("start_logits", "end_logits"):
        np.testing.assert_allclose(served[key].numpy(), want[key].numpy(), atol=1e-5)

    # The logits of a prediction whose outputs cannot be written are kept (predict.partial,
    # one part per batch here); a rerun continues after the complete parts: here the first
    # two, as if the run had been killed while writing the third.
    one = [*common, f"--predict_file={path}", "--predict_batch_size=4",
           "--predict_progress_seconds=0"]
    (model_dir / "predictions.json").unlink()
    (model_dir / "predictions.json").mkdir()
    failed = run_tool("run_squad", "--mode=predict", *one, check=False)
    assert failed.returncode == 1 and "is a directory" in failed.stderr
    partial = model_dir / "predict.partial"
    parts = sorted(partial.glob("part-*.npz"))
    assert len(parts) >= 3 and (partial / "settings.json").exists()
    for p in parts[2:]:
        p.unlink()
    (partial / "part-00002.npz.tmp").write_bytes(b"cut short")
    (model_dir / "predictions.json").rmdir()
    saved = {p: p.read_bytes() for p in partial.iterdir()}
    proc = run_tool("run_squad", "--mode=predict", *one)
    assert f"continuing the prediction of {path} after 8 of" in proc.stderr
    assert json.loads((model_dir / "predictions.json").read_text()) == preds
    assert not partial.exists()
    # Another checkpoint (or input, vocabulary, sequence flags) starts over.
    partial.mkdir()
    for p, data in saved.items():
        p.write_bytes(data)
    (model_dir / "predictions.json").unlink()
    os.utime(tf.train.latest_checkpoint(str(model_dir)) + ".index")
    proc = run_tool("run_squad", "--mode=predict", *one)
    assert "starting over" in proc.stderr and "continuing" not in proc.stderr
    assert json.loads((model_dir / "predictions.json").read_text()) == preds
    assert not partial.exists()


def test_run_squad_v2_from_the_command_line(tmp_path, data_dir, vocab_path):
    """SQuAD 2.0 through the tools: create_finetuning_data --version_2_with_negative, a tiny
    model trained a few steps, run_squad's v2.0 prediction files (null_odds.json) and
    metrics; --null_score_diff_threshold decides the empty answers as the seed's rule."""
    src = json.loads((data_dir / "squad" / "haystack_small-v2.0.json").read_text("utf-8"))
    src["data"] = src["data"][:1]
    src["data"][0]["paragraphs"] = src["data"][0]["paragraphs"][:8]
    qas = [qa for p in src["data"][0]["paragraphs"] for qa in p["qas"]]
    assert 0 < sum(qa["is_impossible"] for qa in qas) < len(qas)
    for qa in qas:  # for training: one answer (none for an impossible question)
        qa["answers"] = qa["answers"][:1]
    path = tmp_path / "squad2.json"
    path.write_text(json.dumps(src), encoding="utf-8")
    vocab = str(vocab_path("uncased"))
    run_tool("create_finetuning_data", "--fine_tuning_task_type=squad",
             f"--squad_data_file={path}", "--version_2_with_negative", f"--vocab_file={vocab}",
             f"--train_data_output_path={tmp_path / 'train.tfr'}",
             f"--meta_data_file_path={tmp_path / 'meta'}", "--max_seq_length=128",
             "--doc_stride=64", "--max_query_length=32")
    meta = json.loads((tmp_path / "meta").read_text())
    assert meta["version_2_with_negative"] is True
    (tmp_path / "bert_config.json").write_text(json.dumps(TINY))
    model_dir = tmp_path / "model"
    common = [f"--input_meta_data_path={tmp_path / 'meta'}", f"--vocab_file={vocab}",
              f"--bert_config_file={tmp_path / 'bert_config.json'}", f"--model_dir={model_dir}",
              f"--predict_file={path}", "--predict_batch_size=16",
              "--distribution_strategy=one_device"]
    proc = run_tool("run_squad", "--mode=train_and_eval", *common,
                    f"--train_data_path={tmp_path / 'train.tfr'}", "--train_batch_size=8",
                    "--num_train_epochs=1", "--learning_rate=1e-3", "--optimizer_type=lamb",
                    "--explicit_allreduce")
    assert "SQuAD eval F1-score" in proc.stderr and "(percent)" in proc.stderr
    # the seed's run_squad clips LAMB's gradients with --explicit_allreduce (a callback)
    assert "optimizer lamb: gradients clipped to global norm 1.0" in proc.stderr
    metrics = json.loads((model_dir / "summaries" / "eval" / "eval_metrics.json").read_text())
    assert {"final_exact", "final_f1"} <= set(metrics) and 0 <= metrics["final_f1"] <= 100
    null_odds = json.loads((model_dir / "null_odds.json").read_text())
    assert set(null_odds) == {qa["id"] for qa in qas}
    # score_null - best non-null > threshold: the empty answer
    answers = {}
    for threshold in (-1e9, 1e9):
        run_tool("run_squad", "--mode=predict", *common,
                 f"--null_score_diff_threshold={threshold}")
        answers[threshold] = json.loads((model_dir / "predictions.json").read_text())
    assert set(answers[-1e9].values()) == {""}
    assert "" not in answers[1e9].values() and len(answers[1e9]) == len(qas)

    # Exported from its --model_dir (the latest checkpoint) with the task read from the meta
    # data (span: it has doc_stride), then served by pybert-predict: the v2.0 files, and the
    # answers of run_squad's default threshold
    pytest.importorskip("tf2onnx")
    run_tool("run_squad", "--mode=predict", *common)
    want = json.loads((model_dir / "predictions.json").read_text())
    proc = run_tool("export_onnx", f"--model_dir={model_dir}",
                    f"--bert_config_file={tmp_path / 'bert_config.json'}",
                    f"--input_meta_data_path={tmp_path / 'meta'}", f"--vocab_file={vocab}",
                    f"--output_dir={tmp_path / 'onnx'}", "--norequire_fusions")
    exported = json.loads((tmp_path / "onnx" / "pybert_model.json").read_text())
    assert exported["task"] == "span" and exported["version_2_with_negative"] is True
    assert exported["validation"]["fp32"]["max_abs_diff"] <= 1e-4
    assert (exported["doc_stride"], exported["max_query_length"]) == (64, 32)
    run_tool("predict", f"--model_dir={tmp_path / 'onnx'}", f"--input_file={path}",
             f"--output_dir={tmp_path / 'served'}", "--progress=false")
    served = json.loads((tmp_path / "served" / "predictions.json").read_text())
    assert served == want
    assert json.loads((tmp_path / "served" / "null_odds.json").read_text()).keys() == \
        null_odds.keys()


def test_run_pretraining_tiny_then_finetune_init(tmp_path, data_dir, vocab_path):
    vocab = str(vocab_path("uncased"))
    text = data_dir / "bert_sample_text" / "sample_text.txt"
    run_tool("create_pretraining_data", f"--input_file={text}",
          f"--output_file={tmp_path / 'pt.tfrecord'}", f"--vocab_file={vocab}",
          "--max_seq_length=64", "--max_predictions_per_seq=10", "--dupe_factor=2",
          "--num_workers=1", "--noprogress")
    (tmp_path / "bert_config.json").write_text(json.dumps(TINY))
    (tmp_path / "pt_empty.tfrecord").write_bytes(b"")  # an empty shard is skipped
    model_dir = tmp_path / "pt_model"
    args = [f"--input_files={tmp_path / 'pt*.tfrecord'}",
            f"--bert_config_file={tmp_path / 'bert_config.json'}", f"--model_dir={model_dir}",
            "--max_seq_length=64", "--max_predictions_per_seq=10", "--train_batch_size=8",
            "--num_steps_per_epoch=6", "--num_train_epochs=2", "--warmup_steps=2",
            "--learning_rate=1e-3", "--distribution_strategy=one_device"]
    run_tool("run_pretraining", *args, "--sub_model_export_name=encoder",
             "--train_summary_interval=-1")
    summary = json.loads((model_dir / "training_summary.json").read_text())
    tags = {v.tag for f in (model_dir / "summaries" / "train").glob("events*")
            for e in tf.compat.v1.train.summary_iterator(str(f)) for v in e.summary.value}
    assert not tags  # --train_summary_interval < 0: no training summaries
    assert summary["total_training_steps"] == 12 and np.isfinite(summary["last_train_loss"])
    # The loss starts near ln(vocab) + ln(2) for random weights.
    assert summary["last_train_loss"] < np.log(30522) + np.log(2) + 1
    ckpt = model_dir / "encoder" / "bert_model.ckpt"  # not pretrained/: the name given
    assert (model_dir / "encoder" / "bert_config.json").exists()
    from pybert.modeling import BertEncoder
    from pybert.training.loop import restore_encoder

    enc = BertEncoder(BertConfig.from_dict(TINY))
    enc.build()
    restore_encoder(enc, str(ckpt))  # usable as --init_checkpoint
    bad = run_tool("run_pretraining", *[a.replace("pt*.tfrecord", "none*.tfrecord") for a in args],
                check=False)
    assert bad.returncode == 1 and "does not match any files" in bad.stderr
    # Flags that do not fit the records: the file, the feature and the flags to check.
    bad = run_tool("run_pretraining", *[a.replace("per_seq=10", "per_seq=20") for a in args],
                   check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert ("pt.tfrecord: feature 'masked_lm_positions' has 10 values, expected 20; "
            "--max_seq_length, --max_predictions_per_seq and --use_v2_feature_names") in bad.stderr
    bad = run_tool("run_pretraining", *args, "--use_v2_feature_names", check=False)
    assert bad.returncode == 1 and "feature 'input_word_ids' is missing" in bad.stderr
    # --hub_module_url with --hub_module_trainable=false: only the heads train, the encoder
    # comes out as loaded (before, the flag was ignored here)
    _, hub_encoder, hub = _tiny_hub(tmp_path)
    frozen = [a.replace("pt_model", "pt_frozen") for a in args if "num_train_epochs" not in a]
    # (with the seed's LAMB, which trains the heads here)
    proc = run_tool("run_pretraining", *frozen, "--num_train_epochs=1", f"--hub_module_url={hub}",
                    "--hub_module_trainable=false", "--sub_model_export_name=encoder",
                    "--steps_per_loop=2", "--log_steps=0",  # 0: the last step's log only
                    "--optimizer_type=lamb")
    assert "step 6/6 loss" in proc.stderr and "step 2/6" not in proc.stderr
    assert "optimizer lamb: gradients not clipped" in proc.stderr  # as the seed's LAMB
    frozen_summary = json.loads((tmp_path / "pt_frozen" / "training_summary.json").read_text())
    assert np.isfinite(frozen_summary["last_train_loss"])
    # --nouse_next_sentence_label: masked LM only (a loss near ln(vocab), no next-sentence
    # term); the next-sentence head and the pooler get no gradient, without Keras' warning
    mlm = [a.replace("pt_model", "pt_mlm") for a in args if "num_train_epochs" not in a]
    proc = run_tool("run_pretraining", *mlm, "--num_train_epochs=1",
                    "--nouse_next_sentence_label", "--learning_rate=0",
                    "--train_summary_interval=3", "--steps_per_loop=1")
    assert "Gradients do not exist" not in proc.stderr, proc.stderr[-2000:]
    # --train_summary_interval=3: training summaries (and log lines) every 3 steps (at the
    # end of a loop, as in the seed: one step per loop here)
    assert "step 3/6 loss" in proc.stderr and "step 2/6" not in proc.stderr
    steps = sorted(e.step for f in (tmp_path / "pt_mlm" / "summaries" / "train").glob("events*")
                   for e in tf.compat.v1.train.summary_iterator(str(f))
                   for v in e.summary.value if v.tag == "loss")
    assert steps == [3, 6]
    mlm_loss = json.loads((tmp_path / "pt_mlm" / "training_summary.json").read_text())[
        "last_train_loss"]
    assert abs(mlm_loss - np.log(30522)) < 0.5
    out = BertEncoder(BertConfig.from_dict(TINY))
    out.build()
    restore_encoder(out, str(tmp_path / "pt_frozen" / "encoder" / "bert_model.ckpt"))
    for a, b in zip(hub_encoder.weights, out.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def _load_bench_module(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trainer_steps_equal_pytorch_with_the_seed_update_rule(tmp_path, minilm_dir, data_dir):
    """pybert's Trainer + optimizer vs HuggingFace/PyTorch running the seed's AdamWeightDecay rule
    (bench/mrpc_reference_hf.py's SeedAdamW and schedule, the MRPC accuracy reference): the real
    checkpoint, dropout off, the same head, the same MRPC batches, 16 steps crossing the end of
    the warm-up, gradient clipping and weight decay. The same losses at every step (float drift
    at lr 1e-4: ~4e-5 by step 24) and the
    same final weights; torch.optim.AdamW (epsilon after the bias correction) drifts apart."""
    import dataclasses

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from pybert.checkpoints.huggingface import load_huggingface_encoder
    from pybert.training.loop import Trainer, TrainerConfig

    ref = _load_bench_module("mrpc_reference_hf")
    steps, warmup, total, batch, lr = 16, 4, 30, 8, 1e-4
    lines = (data_dir / "glue/MRPC/train.tsv").read_text(encoding="utf-8").split("\n")[1:]
    rows = [x.split("\t") for x in lines if x][: steps * batch]
    import pybert

    tok = pybert.Tokenizer(minilm_dir / "vocab.txt")
    enc = tok.encode_batch([r[3] for r in rows], [r[4] for r in rows], max_seq_length=64)
    feats = enc.model_inputs()
    labels = np.array([int(r[0]) for r in rows], np.int32)

    config = BertConfig.from_hf_json_file(minilm_dir / "config.json")
    config = dataclasses.replace(config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

    def model_fn():
        encoder, _ = load_huggingface_encoder(minilm_dir, config)
        return BertClassifier(config, 2, encoder=encoder)

    def loss_fn(y, logits):
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        return -tf.reduce_mean(tf.gather(log_probs, tf.cast(y, tf.int32), axis=1, batch_dims=1))

    trainer = Trainer(tf.distribute.get_strategy(), model_fn, loss_fn,
                       lambda v: create_optimizer(lr, total, warmup, variables=v),
                       TrainerConfig(str(tmp_path / "run"), steps_per_epoch=steps,
                                    global_batch_size=batch))
    head_w = trainer.model.classifier.kernel.numpy()
    head_b = trainer.model.classifier.bias.numpy()

    def train_ds(batch_size, ctx):
        return tf.data.Dataset.from_tensor_slices((dict(feats), labels)).batch(batch_size).repeat()

    pybert_losses = []
    orig_train_steps = trainer._make_train_fn

    def eager_loop():  # one step per call so that every step's loss is seen
        fn = orig_train_steps()

        def run(iterator, n):
            for _ in range(int(n)):
                trainer.train_loss.reset_state()
                fn(iterator, tf.constant(1))
                pybert_losses.append(float(trainer.train_loss.result()))
        return run

    trainer._make_train_fn = eager_loop
    trainer.train(train_ds)

    def torch_run(adam):
        hf = transformers.BertForSequenceClassification.from_pretrained(
            str(minilm_dir), num_labels=2, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
        with torch.no_grad():
            hf.classifier.weight.copy_(torch.from_numpy(head_w.T.copy()))
            hf.classifier.bias.copy_(torch.from_numpy(head_b))
        no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
        named = list(hf.named_parameters())
        groups = [{"params": [p for n, p in named if not any(k in n for k in no_decay)],
                   "weight_decay": 0.01},
                  {"params": [p for n, p in named if any(k in n for k in no_decay)],
                   "weight_decay": 0.0}]
        if adam == "seed":
            opt = ref.seed_adamw(groups, lr=lr, eps=1e-6)
        else:
            opt = torch.optim.AdamW(groups, lr=lr, eps=1e-6)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: s / warmup if s < warmup else max(0.0, 1.0 - s / total))
        hf.train()
        out_losses, norms = [], []
        t = {k: torch.from_numpy(np.asarray(v, np.int64)) for k, v in feats.items()}
        for s in range(steps):
            sl = slice(s * batch, (s + 1) * batch)
            out = hf(input_ids=t["input_word_ids"][sl], attention_mask=t["input_mask"][sl],
                     token_type_ids=t["input_type_ids"][sl],
                     labels=torch.from_numpy(labels[sl].astype(np.int64)))
            out.loss.backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)))
            opt.step()
            sched.step()
            opt.zero_grad()
            out_losses.append(float(out.loss.detach()))
        return np.array(out_losses), norms, hf

    seed_losses, norms, hf = torch_run("seed")
    assert max(norms) > 1.0  # clipping was exercised
    pybert_losses = np.array(pybert_losses)
    assert len(pybert_losses) == steps
    np.testing.assert_allclose(pybert_losses, seed_losses, rtol=0, atol=1e-4)
    print("max |pybert - seed rule|", np.abs(pybert_losses - seed_losses).max())
    assert abs(pybert_losses[-1] - pybert_losses[0]) > 0.05  # it trained
    ours = trainer.model.encoder.pooler.kernel.numpy()
    theirs = hf.bert.pooler.dense.weight.detach().numpy().T
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-5)
    # The epsilon rule matters: PyTorch's AdamW from the same start is visibly elsewhere.
    torch_losses, _, _ = torch_run("torch")
    print("max |torch AdamW - seed rule|", np.abs(torch_losses - seed_losses).max())
    assert np.abs(torch_losses - seed_losses).max() > 10 * np.abs(pybert_losses - seed_losses).max()
