"""MultiWorkerMirroredStrategy on CPU: two worker processes on 127.0.0.1 (TF_CONFIG) train a
tiny BERT classifier and must end with the weights of a single-process run with the same
global batch. Dropout is off and the input is not shuffled, so both runs see the same global
batches (the two workers take alternate records) and compute the same updates up to float
rounding of the cross-worker sum."""

import json
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from pybert.data import classification  # noqa: E402
from pybert.tokenization import FullTokenizer  # noqa: E402

TINY = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 128,
        "type_vocab_size": 2, "initializer_range": 0.02}


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _weights(model_dir):
    ckpt = tf.train.latest_checkpoint(str(model_dir))
    assert ckpt, f"no checkpoint in {model_dir}"
    reader = tf.train.load_checkpoint(ckpt)
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(ckpt)
            if n.startswith(("model/", "optimizer/_trainable_variables"))}


@pytest.mark.slow
def test_two_workers_match_one(tmp_path, data_dir, vocab_path):
    tok = FullTokenizer(vocab_path("uncased"))
    meta = classification.generate_tf_record_from_data_file(
        classification.get_task("MRPC"), str(data_dir / "glue" / "MRPC"), tok,
        str(tmp_path / "train.tfr"), max_seq_length=32)
    (tmp_path / "meta").write_text(json.dumps(meta))
    (tmp_path / "bert_config.json").write_text(json.dumps(TINY))

    def args(model_dir, strategy):
        return [sys.executable, "-m", "pybert.cli.run_classifier",
                f"--input_meta_data_path={tmp_path / 'meta'}",
                f"--train_data_path={tmp_path / 'train.tfr'}",
                f"--bert_config_file={tmp_path / 'bert_config.json'}", f"--model_dir={model_dir}",
                "--train_data_size=128", "--train_batch_size=16", "--num_train_epochs=1",
                "--steps_per_loop=4", "--learning_rate=1e-3", "--shuffle_buffer=0", "--seed=3",
                f"--distribution_strategy={strategy}"]

    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    single = subprocess.run(args(tmp_path / "single", "off"), capture_output=True, text=True,
                            timeout=600, cwd=tempfile.gettempdir(), env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        wenv = {**env, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen(args(tmp_path / "multi", "multi_worker_mirrored"),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      cwd=tempfile.gettempdir(), env=wenv))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    one, two = _weights(tmp_path / "single"), _weights(tmp_path / "multi")
    assert one.keys() == two.keys() and len(one) > 10
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=2e-4, atol=2e-5, err_msg=name)


@pytest.mark.slow
def test_run_pretraining_two_workers_from_worker_hosts(tmp_path, data_dir, vocab_path):
    """run_pretraining under multi_worker_mirrored, the cluster given by the seed's
    --worker_hosts / --task_index: it checks its input records only after creating the
    strategy (collectives must be configured before TensorFlow runs an op)."""
    from pybert.data.pretraining import PretrainingOptions, create_pretraining_data

    opts = PretrainingOptions(max_seq_length=32, max_predictions_per_seq=5, dupe_factor=1)
    create_pretraining_data([str(data_dir / "bert_sample_text/sample_text.txt")],
                            [str(tmp_path / "pt.tfrecord")], str(vocab_path("uncased")), opts,
                            num_workers=1, progress=False)
    (tmp_path / "bert_config.json").write_text(json.dumps(TINY))
    hosts = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "pybert.cli.run_pretraining",
         f"--input_files={tmp_path / 'pt.tfrecord'}", "--max_seq_length=32",
         "--max_predictions_per_seq=5", f"--bert_config_file={tmp_path / 'bert_config.json'}",
         f"--model_dir={tmp_path / 'multi'}", "--train_batch_size=8", "--num_steps_per_epoch=2",
         "--num_train_epochs=1", "--warmup_steps=1", "--distribution_strategy="
         "multi_worker_mirrored", f"--worker_hosts={hosts}", f"--task_index={i}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir(),
        env=env) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    summary = json.loads((tmp_path / "multi" / "training_summary.json").read_text())
    assert summary["total_training_steps"] == 2 and np.isfinite(summary["last_train_loss"])
