"""The data tools end to end: command lines, outputs, errors, and tf.data pipelines.

Pipelines are checked two ways: pybert.data.pipelines reads what the tools
wrote, and the seed's own bert/input_pipeline.py (tests/_oracle, with real
TensorFlow) reads the same files with its feature specs.
"""

import json
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from seed_oracle import load_seed_input_pipeline, required

tf = pytest.importorskip("tensorflow")

from pybert.data import pipelines  # noqa: E402


def _tool(name, *args, check=True):
    # cwd outside the source tree: `-m` must import the installed pybert (with its _C).
    proc = subprocess.run([sys.executable, "-m", f"pybert.cli.{name}", *args],
                          capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir())
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def seed_input_pipeline():
    return required(load_seed_input_pipeline())


@pytest.fixture(scope="module")
def mrpc(tmp_path_factory, data_dir, vocab_path):
    out = tmp_path_factory.mktemp("mrpc")
    proc = _tool(
        "create_finetuning_data", "--fine_tuning_task_type=classification",
        f"--input_data_dir={data_dir / 'glue' / 'MRPC'}", "--classification_task_name=MRPC",
        f"--vocab_file={vocab_path('uncased')}", f"--train_data_output_path={out}/train.tf_record",
        f"--eval_data_output_path={out}/eval.tf_record", f"--meta_data_file_path={out}/meta",
        "--max_seq_length=128")
    assert "train_data_size=3668" in proc.stdout
    return out


def test_finetuning_cli_mrpc_meta_data(mrpc):
    meta = json.loads((mrpc / "meta").read_text())
    assert meta == {"processor_type": "MRPC", "train_data_size": 3668, "max_seq_length": 128,
                    "task_type": "bert_classification", "num_labels": 2, "eval_data_size": 408}
    # The seed's layout: json.dumps(indent=4) plus a newline.
    assert (mrpc / "meta").read_text() == json.dumps(meta, indent=4) + "\n"


def test_classifier_pipeline_reads_tool_output(mrpc, seed_input_pipeline):
    ours = pipelines.create_classifier_dataset(str(mrpc / "eval.tf_record"), 128, 32,
                                               is_training=False)
    seed = seed_input_pipeline.create_classifier_dataset(str(mrpc / "eval.tf_record"), 128, 32,
                                                         is_training=False)
    n = 0
    for (x1, y1), (x2, y2) in zip(ours, seed, strict=True):
        for k in ("input_word_ids", "input_mask", "input_type_ids"):
            assert x1[k].dtype == tf.int32
            np.testing.assert_array_equal(x1[k].numpy(), x2[k].numpy())
        np.testing.assert_array_equal(y1.numpy(), y2.numpy())
        n += int(y1.shape[0])
    assert n == 408
    train = pipelines.create_classifier_dataset(str(mrpc / "train.tf_record"), 128, 32,
                                                is_training=True, seed=1)
    x, y = next(iter(train))
    assert x["input_word_ids"].shape == (32, 128) and y.shape == (32,)


def test_pipeline_shards_per_input_pipeline(mrpc):
    ctx = [tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i,
                                      num_replicas_in_sync=2) for i in range(2)]
    sizes = []
    for c in ctx:
        ds = pipelines.create_classifier_dataset(str(mrpc / "eval.tf_record"), 128, 16,
                                                 is_training=False, input_pipeline_context=c)
        sizes.append(sum(int(y.shape[0]) for _, y in ds))
    assert sizes == [204, 204]
    strategy = tf.distribute.get_strategy()
    dist = pipelines.distribute(
        strategy,
        lambda bs, c: pipelines.create_classifier_dataset(
            str(mrpc / "train.tf_record"), 128, bs, True, c, seed=3), 8)
    x, y = next(iter(dist))
    assert x["input_word_ids"].shape == (8, 128)


def test_finetuning_cli_squad_train_and_eval(tmp_path, data_dir, vocab_path, seed_input_pipeline):
    src = json.loads((data_dir / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    src["data"] = src["data"][:1]
    for par in src["data"][0]["paragraphs"]:
        for qa in par["qas"]:
            qa["answers"] = qa["answers"][:1]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(src), encoding="utf-8")
    _tool("create_finetuning_data", "--fine_tuning_task_type=squad",
          f"--squad_data_file={path}", f"--squad_predict_file={path}",
          f"--vocab_file={vocab_path('uncased')}", f"--train_data_output_path={tmp_path}/t.tfr",
          f"--eval_data_output_path={tmp_path}/e.tfr", f"--meta_data_file_path={tmp_path}/meta",
          "--max_seq_length=384")
    meta = json.loads((tmp_path / "meta").read_text())
    assert meta["task_type"] == "bert_squad" and meta["max_query_length"] == 64
    assert meta["eval_examples"] == sum(len(p["qas"]) for p in src["data"][0]["paragraphs"])
    assert (tmp_path / "e.tfr.features.npz").exists()
    seed = seed_input_pipeline.create_squad_dataset(str(tmp_path / "t.tfr"), 384, 4,
                                                    is_training=True)
    x, y = next(iter(seed))
    assert set(y) == {"start_positions", "end_positions"}
    ours = pipelines.create_squad_dataset(str(tmp_path / "e.tfr"), 384, 64, is_training=False)
    total = sum(int(x["unique_ids"].shape[0]) for x, _ in ours)
    assert total == meta["eval_data_size"]
    # an output flag without its input would stay unwritten, an input without its output
    # has nowhere to go: errors before any work, nothing written
    vocab = f"--vocab_file={vocab_path('uncased')}"
    train_in, train_out = f"--squad_data_file={path}", f"--train_data_output_path={tmp_path}/t2"
    eval_in, eval_out = f"--squad_predict_file={path}", f"--eval_data_output_path={tmp_path}/e2"
    for args, message in (
            ([train_in, train_out, eval_out], "--eval_data_output_path needs --squad_predict_file"),
            ([eval_in, eval_out, train_out], "--train_data_output_path needs --squad_data_file"),
            ([train_in, eval_in, eval_out], "--train_data_output_path is required with "
                                            "--squad_data_file"),
            ([train_in, train_out, eval_in], "--eval_data_output_path is required with "
                                             "--squad_predict_file"),
            ([train_in, train_out, f"--test_data_output_path={tmp_path}/x2"],
             "--test_data_output_path is not used for SQuAD")):
        proc = _tool("create_finetuning_data", "--fine_tuning_task_type=squad", vocab, *args,
                     f"--meta_data_file_path={tmp_path}/meta2", check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert message in proc.stderr, (message, proc.stderr[-2000:])
        assert not {p.name for p in tmp_path.iterdir()} & {"t2", "e2", "x2", "meta2"}


def test_finetuning_cli_errors(tmp_path, data_dir, vocab_path):
    bad = tmp_path / "glue"
    bad.mkdir()
    (bad / "train.tsv").write_text("Quality\ta\tb\tc\td\n1\t1\t2\tonly\n", encoding="utf-8")
    proc = _tool("create_finetuning_data", "--classification_task_name=MRPC",
                 f"--input_data_dir={bad}", f"--vocab_file={vocab_path('uncased')}",
                 f"--train_data_output_path={tmp_path}/o.tfr",
                 f"--meta_data_file_path={tmp_path}/meta", check=False)
    assert proc.returncode == 1
    assert "train.tsv:2: missing column 4 (text_b)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.tfr").exists() and not (tmp_path / "meta").exists()
    proc = _tool("create_finetuning_data", "--fine_tuning_task_type=tagging",
                 f"--vocab_file={vocab_path('uncased')}", f"--meta_data_file_path={tmp_path}/m",
                 check=False)
    assert proc.returncode == 1 and "--input_data_dir is required for tagging" in proc.stderr


def test_finetuning_cli_replaces_all_outputs_or_none(tmp_path, data_dir, vocab_path):
    def glue(name, train_rows, dev_text):
        d = tmp_path / name
        d.mkdir()
        lines = (data_dir / "glue" / "MRPC" / "train.tsv").read_text(encoding="utf-8")
        (d / "train.tsv").write_text("\n".join(lines.split("\n")[:train_rows + 1]) + "\n",
                                     encoding="utf-8")
        (d / "dev.tsv").write_text(dev_text, encoding="utf-8")
        return d

    dev = (data_dir / "glue" / "MRPC" / "dev.tsv").read_text(encoding="utf-8")
    good = glue("good", 20, "\n".join(dev.split("\n")[:6]) + "\n")
    # A later run whose training split is fine but whose dev split breaks on line 3.
    bad = glue("bad", 30, "\n".join(dev.split("\n")[:2]) + "\n1\t1\t2\tonly four\n")
    out = tmp_path / "out"
    args = [f"--vocab_file={vocab_path('uncased')}", "--classification_task_name=MRPC",
            f"--train_data_output_path={out}/train.tfr", f"--eval_data_output_path={out}/eval.tfr",
            f"--meta_data_file_path={out}/meta", "--max_seq_length=32"]
    _tool("create_finetuning_data", f"--input_data_dir={good}", *args)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["eval.tfr", "meta", "train.tfr"]
    assert json.loads(before["meta"])["train_data_size"] == 20
    proc = _tool("create_finetuning_data", f"--input_data_dir={bad}", *args, check=False)
    assert proc.returncode == 1 and "dev.tsv:3: missing column 4" in proc.stderr
    # The training file of the failed run did not replace the earlier one: the set is intact.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    proc = _tool("create_finetuning_data", f"--input_data_dir={good}", *args[:3],
                 f"--meta_data_file_path={out}/train.tfr", check=False)
    assert proc.returncode == 1
    assert ("--train_data_output_path and --meta_data_file_path are the same file"
            in proc.stderr)
    proc = _tool("create_finetuning_data", f"--input_data_dir={good}", *args[:4],
                 f"--meta_data_file_path={tmp_path}", check=False)
    assert proc.returncode == 1
    assert f"--meta_data_file_path {tmp_path}: is a directory" in proc.stderr
    under_file = f"{out}/train.tfr/sub/meta"  # a path below a file: named before any work
    proc = _tool("create_finetuning_data", f"--input_data_dir={good}", *args[:4],
                 f"--meta_data_file_path={under_file}", check=False)
    assert proc.returncode == 1
    assert f"--meta_data_file_path {under_file}: {out}/train.tfr is a file" in proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # One file under two names (through a symlinked directory, or "./"): refused before any
    # work (before, the second write replaced the first and the set was left half written).
    (tmp_path / "link").symlink_to(out)
    for eval_path in (f"{tmp_path}/link/train.tfr", f"{out}/./train.tfr"):
        proc = _tool("create_finetuning_data", f"--input_data_dir={good}", *args[:3],
                     f"--eval_data_output_path={eval_path}", f"--meta_data_file_path={out}/m2",
                     check=False)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert ("--train_data_output_path and --eval_data_output_path are the same file"
                in proc.stderr)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_full_disk_is_not_reported_as_out_of_memory():
    """A full disk: TensorFlow's writers raise ResourceExhaustedError (before, reported as
    "out of memory ... try a smaller batch size"), Python's file writes an OSError that
    names no file (the message now lists the output flags)."""
    import errno

    from absl import flags

    from pybert.cli._runner import user_error

    e = tf.errors.ResourceExhaustedError(None, None, "out/t.incomplete; No space left on device")
    assert user_error(e) == "no space left on device: out/t.incomplete; No space left on device"
    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    assert user_error(oom).startswith("out of memory: OOM when allocating tensor")
    values = flags.FlagValues()
    flags.DEFINE_string("output_file", None, "", flag_values=values)
    values(["tool", "--output_file=out/p.tsv"])
    saved, flags.FLAGS = flags.FLAGS, values  # the module reads flags.FLAGS when called
    try:
        message = user_error(OSError(errno.ENOSPC, "No space left on device"))
    finally:
        flags.FLAGS = saved
    assert message == "no space left on device while writing (outputs: --output_file=out/p.tsv)"
    named = OSError(errno.ENOSPC, "No space left on device", "out/p.tsv.incomplete")
    assert user_error(named) == str(named)
