"""create_pretraining_data end to end: the seed's exact output, chunking, workers, statistics.

The seed's own script (tests/_oracle) runs with real TensorFlow and its own
FullTokenizer and writes its TFRecord; pybert's tool must write the same
examples in the same order when the corpus fits in one chunk. With several
chunks and workers the output must not depend on the number of workers, and
its statistics must follow the published rules (15% masked, 80/10/10, about
half random next sentences).
"""

import hashlib
import logging
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from seed_oracle import load_seed_pretraining, required
from tool_runner import kill_tool_when

tf = pytest.importorskip("tensorflow")

from pybert.data import pipelines  # noqa: E402
from pybert.data.classification import DataError  # noqa: E402
from pybert.data.pretraining import (  # noqa: E402
    PretrainingOptions,
    PretrainingStats,
    create_pretraining_data,
)
from pybert.data.records import read_examples  # noqa: E402


@pytest.fixture(scope="module")
def prose(tmp_path_factory, data_dir):
    """The first 12 kB of each of the 27 books: 27 documents, ~320 kB."""
    docs, cur, size = [], [], 0
    text = (data_dir / "english_prose/gutenberg_27books_bert_format.txt").read_text("utf-8")
    for line in text.split("\n"):
        if not line.strip():
            if cur:
                docs.append(cur)
            cur, size = [], 0
        elif size < 12_000:
            cur.append(line)
            size += len(line)
    docs.append(cur)
    path = tmp_path_factory.mktemp("prose") / "prose.txt"
    path.write_text("\n\n".join("\n".join(d) for d in docs if d) + "\n", encoding="utf-8")
    return path


def _digest(paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("whole_word,odd_breaks", [(False, False), (True, False), (False, True)])
def test_single_chunk_equals_seed_script(whole_word, odd_breaks, tmp_path, data_dir, vocab_path):
    seed = required(load_seed_pretraining())
    seed.tf = tf
    seed.FLAGS(["create_pretraining_data"])
    vocab = str(vocab_path("uncased"))
    text = str(data_dir / "bert_sample_text/sample_text.txt")
    if odd_breaks:  # CRLF line ends, a stray CR mid-word (the seed's reader drops every CR),
        # U+2028 and U+0085 mid-line (not line ends for either)
        lines = (data_dir / "bert_sample_text/sample_text.txt").read_text("utf-8").split("\n")
        odd = ["\r", "\u2028", "\x85", "\x0c"]
        lines = [f"{x[:7]}{odd[i % 4]}{x[7:]}" if i % 3 == 0 and len(x) > 7 else x
                 for i, x in enumerate(lines)]
        text = str(tmp_path / "odd.txt")
        with open(text, "w", encoding="utf-8", newline="") as f:
            f.write("\r\n".join(lines))
    tok = seed.tokenization.FullTokenizer(vocab, do_lower_case=True)
    ngram = 0 if whole_word else None  # 0: as unset (the seed's "max_ngram_size or 1")
    instances = seed.create_training_instances([text], tok, 64, 3, 0.1, 0.15, 10,
                                               random.Random(7), whole_word, ngram)
    seed_out = [str(tmp_path / "seed_a.tfrecord"), str(tmp_path / "seed_b.tfrecord")]
    seed.write_instance_to_example_files(instances, tok, 64, 10, seed_out, False)
    ours_out = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
    opts = PretrainingOptions(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=3,
                              random_seed=7, do_whole_word_mask=whole_word,
                              max_ngram_size=ngram)
    stats = create_pretraining_data([text], ours_out, vocab, opts, num_workers=1, progress=False)
    assert stats.instances == len(instances) > 50
    for mine, theirs in zip(ours_out, seed_out, strict=True):
        a, b = read_examples(mine), read_examples(theirs)
        assert len(a) == len(b) > 0
        for x, y in zip(a, b, strict=True):
            assert x.keys() == y.keys()
            for k in x:
                assert x[k].dtype == y[k].dtype, k
                np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_workers_do_not_change_output(prose, tmp_path, vocab_path):
    vocab = str(vocab_path("uncased"))
    opts = PretrainingOptions(max_seq_length=128, dupe_factor=2)
    outs = {}
    for workers in (1, 2):
        paths = [tmp_path / f"w{workers}_{i}.tfrecord" for i in range(3)]
        stats = create_pretraining_data([str(prose)], [str(p) for p in paths], vocab, opts,
                                        num_workers=workers, chunk_mb=0.05, progress=False)
        outs[workers] = (_digest(paths), stats.instances)
        assert [c for _, c in stats.per_file] == [len(read_examples(str(p))) for p in paths]
    assert outs[1] == outs[2]
    other = [tmp_path / "seed99.tfrecord"]
    create_pretraining_data([str(prose)], [str(other[0])], vocab,
                            PretrainingOptions(dupe_factor=2, random_seed=99), num_workers=1,
                            chunk_mb=0.05, progress=False)
    assert _digest(other) != outs[1][0]


def test_statistics_follow_the_rules(prose, tmp_path, vocab_path):
    out = tmp_path / "stats.tfrecord"
    stats = create_pretraining_data([str(prose)], [str(out)], str(vocab_path("uncased")),
                                    PretrainingOptions(dupe_factor=3), num_workers=2,
                                    chunk_mb=0.1, progress=False)
    assert stats.documents == 27 and stats.instances > 1500
    rows = read_examples(str(out))
    assert len(rows) == stats.instances
    mask = np.stack([r["input_mask"] for r in rows])
    weights = np.stack([r["masked_lm_weights"] for r in rows])
    n_tokens = mask.sum(axis=1)
    # 15% of each instance's tokens (rounded, at least 1, at most 20) are predicted.
    want = np.minimum(20, np.maximum(1, np.round(n_tokens * 0.15)))
    assert (weights.sum(axis=1) <= want).all()
    assert weights.sum() / want.sum() > 0.98
    assert 0.135 < stats.masked / stats.tokens < 0.155
    share_mask = stats.masked_as_mask / stats.masked
    share_kept = stats.masked_kept / stats.masked
    assert abs(share_mask - 0.8) < 0.02 and abs(share_kept - 0.1) < 0.015
    # Next sentence: random half the time when a chunk holds 2+ segments, always when it holds
    # one (the seed's rule; long paragraph lines make that common here). Chunking the corpus
    # must not move the share away from the one-chunk run (= the seed's output).
    single = create_pretraining_data([str(prose)], [str(tmp_path / "one.tfrecord")],
                                     str(vocab_path("uncased")), PretrainingOptions(dupe_factor=3),
                                     num_workers=1, progress=False)
    share = stats.random_next / stats.instances
    assert share > 0.5 and abs(share - single.random_next / single.instances) < 0.03
    nsp = np.concatenate([r["next_sentence_labels"] for r in rows])
    assert nsp.sum() == stats.random_next
    assert "instances from 27 documents" in stats.summary()


def test_pipelines_read_pretraining_output(prose, tmp_path, vocab_path):
    seed = pytest.importorskip("seed_oracle").ORACLE_DIR / "official/nlp/bert/input_pipeline.py"
    if not seed.exists():
        pytest.skip("seed oracle not unpacked")
    import importlib.util

    spec = importlib.util.spec_from_file_location("seed_input_pipeline_pt", seed)
    seed_pipeline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed_pipeline)
    plain = tmp_path / "plain.tfrecord"
    create_pretraining_data([str(prose)], [str(plain)], str(vocab_path("uncased")),
                            PretrainingOptions(dupe_factor=1), num_workers=1, progress=False)
    theirs = seed_pipeline.create_pretrain_dataset([str(plain)], 128, 20, 16, is_training=False)
    ours = pipelines.create_pretrain_dataset(str(plain), 128, 20, 16, is_training=False)
    (x_seed, _), x_ours = next(iter(theirs)), next(iter(ours))
    for k, v in x_seed.items():
        assert x_ours[k].dtype == v.dtype, k
        np.testing.assert_array_equal(x_ours[k].numpy(), v.numpy(), err_msg=k)
    # GZIP and the v2 feature names: detected and mapped to the same model inputs.
    gz = tmp_path / "v2.tfrecord.gz"
    create_pretraining_data([str(prose)], [str(gz)], str(vocab_path("uncased")),
                            PretrainingOptions(dupe_factor=1, gzip_compress=True,
                                               use_v2_feature_names=True),
                            num_workers=1, progress=False)
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    x_v2 = next(iter(pipelines.create_pretrain_dataset(str(gz), 128, 20, 16, is_training=False,
                                                       use_v2_feature_names=True)))
    for k in x_ours:
        np.testing.assert_array_equal(x_v2[k].numpy(), x_ours[k].numpy(), err_msg=k)
    train = pipelines.create_pretrain_dataset(str(plain), 128, 20, 8, is_training=True, seed=1)
    assert next(iter(train))["masked_lm_ids"].shape == (8, 20)


def _cli(*args, env=None):
    # cwd outside the source tree: `-m` must import the installed pybert (with its _C).
    return subprocess.run([sys.executable, "-m", "pybert.cli.create_pretraining_data", *args],
                          capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir(),
                          env=env)


def test_cli_and_bad_input(tmp_path, data_dir, vocab_path):
    vocab = str(vocab_path("uncased"))
    out = tmp_path / "cli.tfrecord"
    proc = _cli(f"--input_file={data_dir / 'bert_sample_text' / '*.txt'}",
                f"--output_file={out}", f"--vocab_file={vocab}", "--dupe_factor=2",
                "--max_seq_length=64", "--num_workers=1", "--noprogress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "instances from 3 documents" in proc.stdout and out.exists()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"A fine first line.\n\nSecond document \xff here.\n")
    proc = _cli(f"--input_file={bad}", f"--output_file={tmp_path / 'bad.tfrecord'}",
                f"--vocab_file={vocab}", "--noprogress")
    assert proc.returncode == 1
    assert f"{bad}:3: invalid UTF-8" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("bad.tfrecord*"))
    proc = _cli(f"--input_file={tmp_path / 'missing*.txt'}", f"--output_file={tmp_path / 'x'}",
                f"--vocab_file={vocab}")
    assert proc.returncode == 1 and "matches no files" in proc.stderr
    # Outputs that are directories or inputs, and non-finite float flags: refused at start.
    before = bad.read_bytes()
    for args, message in [
            ([f"--output_file={tmp_path}"], f"--output_file {tmp_path}: is a directory"),
            ([f"--output_file={tmp_path / 'o.tfrecord'},{bad}"],
             f"--output_file {bad} is also --input_file"),
            ([f"--output_file={tmp_path / 'o.tfrecord'}", "--masked_lm_prob=nan"],
             "flag --masked_lm_prob=nan: not a finite number"),
            # one file twice (before: both "written", one empty file, exit 0)
            ([f"--output_file={tmp_path / 'o.tfrecord'},{tmp_path}/./o.tfrecord"],
             "are the same file")]:
        proc = _cli(f"--input_file={bad}", f"--vocab_file={vocab}", *args)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
    assert bad.read_bytes() == before and not list(tmp_path.glob("o.tfrecord*"))
    # A vocabulary without [MASK], with two worker processes: the message, not a worker's
    # traceback behind a BrokenProcessPool.
    no_mask = tmp_path / "no_mask.txt"
    no_mask.write_text("".join(f"{t}\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]))
    proc = _cli(f"--input_file={bad}", f"--output_file={tmp_path / 'o.tfrecord'}",
                f"--vocab_file={no_mask}", "--num_workers=2", "--noprogress")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"{no_mask}: the vocabulary has no [MASK] token" in proc.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no documents with tokens"):
        create_pretraining_data([str(empty)], [str(tmp_path / "e.tfrecord")], vocab,
                                num_workers=1, progress=False)
    assert not list(tmp_path.glob("e.tfrecord*"))
    with pytest.raises(ValueError, match="are the same file"):  # the API too
        create_pretraining_data([str(bad)], [str(tmp_path / "r"), f"{tmp_path}/./r"], vocab,
                                num_workers=1, progress=False)
    assert not list(tmp_path.glob("r*"))
    with pytest.raises(ValueError, match=rf"random_seed must be in \[0, 2\*\*64\), got {2**64}"):
        create_pretraining_data([str(empty)], [str(tmp_path / "e.tfrecord")], vocab,
                                PretrainingOptions(random_seed=2**64), progress=False)
    with pytest.raises(ValueError, match="max_ngram_size needs do_whole_word_mask"):
        create_pretraining_data([str(empty)], [str(tmp_path / "e.tfrecord")], vocab,
                                PretrainingOptions(max_ngram_size=3), progress=False)


def test_killed_run_continues_to_the_uninterrupted_output(tmp_path, data_dir, vocab_path):
    """SIGKILL twice (once with two worker processes), then a run to the end: the files
    equal those of a run that was never interrupted, byte for byte."""
    corpus = data_dir / "english_prose/gutenberg_27books_bert_format.txt"  # 13.6 MB, 27 books
    flags = [f"--input_file={corpus}", f"--vocab_file={vocab_path('uncased')}",
             "--dupe_factor=1", "--chunk_mb=0.5", "--noprogress"]
    ref = [tmp_path / "ref_a.tfrecord", tmp_path / "ref_b.tfrecord"]
    proc = _cli(*flags, f"--output_file={ref[0]},{ref[1]}", "--num_workers=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref_stdout = proc.stdout
    outs = [tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"]
    progress = tmp_path / "a.tfrecord.incomplete.progress"
    args = [*flags, f"--output_file={outs[0]},{outs[1]}"]
    tool = "create_pretraining_data"
    first = kill_tool_when(tool, [*args, "--num_workers=2"], progress, 2)["chunks"]
    second = kill_tool_when(tool, [*args, "--num_workers=1"], progress, first + 3)["chunks"]
    assert first >= 2 and second >= first + 3
    assert not any(p.exists() for p in outs)
    assert (tmp_path / "a.tfrecord.incomplete.1").exists()  # the second run's segment
    proc = _cli(*args, "--num_workers=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "continued an interrupted run after" in proc.stdout
    assert [p.read_bytes() for p in outs] == [p.read_bytes() for p in ref]
    # The per-file counts (restored from the progress record) are the uninterrupted run's.
    assert proc.stdout.splitlines()[-2:] == [
        line.replace("ref_", "") for line in ref_stdout.splitlines()[-2:]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in outs + ref)


def test_partial_outputs_of_other_settings_start_over(prose, tmp_path, vocab_path, caplog):
    vocab = str(vocab_path("uncased"))
    out, ref = tmp_path / "p.tfrecord", tmp_path / "ref" / "p.tfrecord"
    for name, data in (("p.tfrecord.incomplete", b"junk"), ("p.tfrecord.incomplete.1", b"junk"),
                       ("p.tfrecord.incomplete.progress", b'{"settings": {}, "chunks": 9}')):
        (tmp_path / name).write_bytes(data)
    opts = PretrainingOptions(dupe_factor=1)
    with caplog.at_level(logging.WARNING, logger="pybert.data.pretraining"):
        create_pretraining_data([str(prose)], [str(out)], vocab, opts, num_workers=1,
                                chunk_mb=0.05, progress=False)
    assert "other input files, vocabulary, flags or outputs; starting over" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.tfrecord"]
    create_pretraining_data([str(prose)], [str(ref)], vocab, opts, num_workers=1,
                            chunk_mb=0.05, progress=False)
    assert out.read_bytes() == ref.read_bytes()


def test_continued_runs_check_the_files_they_continue(prose, tmp_path, vocab_path,
                                                      monkeypatch):
    """Runs stopped (Ctrl-C) in a chunk: a rerun continues only its own files, with the
    statistics of an uninterrupted run; other output orders and GZIP start over cleanly."""
    from pybert.data import pretraining

    vocab, opts = str(vocab_path("uncased")), PretrainingOptions(dupe_factor=1)
    real = pretraining._process_chunk

    def run(outs, stop_at=None, options=opts):
        def stopping(chunk, o, threads=1):
            if chunk.index == stop_at:
                raise KeyboardInterrupt
            return real(chunk, o, threads)

        monkeypatch.setattr(pretraining, "_process_chunk", stopping)
        return create_pretraining_data([str(prose)], [str(tmp_path / o) for o in outs], vocab,
                                       options, num_workers=1, chunk_mb=0.05, progress=False)

    ref = run(["ref_a", "ref_b"])
    for outs, stop_at in ((["a", "b"], 2), (["b", "a"], 5)):
        with pytest.raises(KeyboardInterrupt):
            run(outs, stop_at)
    # The [b, a] run rewrote a's and b's files: the [a, b] run must not take them for its own.
    stats = run(["a", "b"])
    assert stats.continued_after == 0
    assert [(tmp_path / o).read_bytes() for o in "ab"] == [
        (tmp_path / o).read_bytes() for o in ("ref_a", "ref_b")]
    with pytest.raises(KeyboardInterrupt):
        run(["c", "d"], 3)
    stats = run(["c", "d"])
    assert stats.continued_after > 0
    assert [(tmp_path / o).read_bytes() for o in "cd"] == [
        (tmp_path / o).read_bytes() for o in ("ref_a", "ref_b")]
    for k in PretrainingStats.COUNTS:
        assert getattr(stats, k) == getattr(ref, k), k
    assert [c for _, c in stats.per_file] == [c for _, c in ref.per_file]
    with pytest.raises(KeyboardInterrupt):  # a partial run, then GZIP: no stray files
        run(["g"], 2)
    run(["g"], options=PretrainingOptions(dupe_factor=1, gzip_compress=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a", "b", "c", "d", "g", "ref_a", "ref_b"]


def test_cli_masking_flags_reach_the_generator(tmp_path, data_dir, vocab_path):
    """The command line's masking and sampling flags give the records of the library call
    with the same options (GZIP-compressed as asked), and not those of the defaults."""
    vocab = str(vocab_path("uncased"))
    text = str(data_dir / "bert_sample_text" / "sample_text.txt")
    flags_and_options = [("--do_whole_word_mask", "do_whole_word_mask", True),
                         ("--max_ngram_size=3", "max_ngram_size", 3),
                         ("--random_seed=7", "random_seed", 7),
                         ("--short_seq_prob=0.3", "short_seq_prob", 0.3),
                         ("--masked_lm_prob=0.2", "masked_lm_prob", 0.2),
                         ("--max_predictions_per_seq=12", "max_predictions_per_seq", 12),
                         ("--dupe_factor=2", "dupe_factor", 2),
                         ("--gzip_compress", "gzip_compress", True)]
    out = tmp_path / "cli.tfrecord"
    proc = _cli(f"--input_file={text}", f"--output_file={out}", f"--vocab_file={vocab}",
                "--max_seq_length=64", "--num_workers=1", "--noprogress",
                *(f for f, _, _ in flags_and_options))
    assert proc.returncode == 0, proc.stderr[-2000:]
    opts = PretrainingOptions(max_seq_length=64,
                              **{name: value for _, name, value in flags_and_options})
    lib = tmp_path / "lib.tfrecord"
    create_pretraining_data([text], [str(lib)], vocab, opts, num_workers=1, progress=False)
    plain = tmp_path / "plain.tfrecord"
    create_pretraining_data([text], [str(plain)], vocab,
                            PretrainingOptions(max_seq_length=64, max_predictions_per_seq=12,
                                               dupe_factor=2), num_workers=1, progress=False)

    def records(path, compression):
        return [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression)]

    got = records(out, "GZIP")
    assert got == records(lib, "GZIP") and len(got) > 20
    with pytest.raises(tf.errors.DataLossError):
        records(out, "")  # compressed, as asked
    assert got != records(plain, "")


def test_cli_smoke_run_on_embedded_defaults(tmp_path):
    # its output goes to a new temporary directory: here, under tmp_path
    proc = _cli("--noprogress", "--num_workers=1", "--dupe_factor=1",
                env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no flags given" in proc.stdout and "instances from" in proc.stdout
    (out,) = tmp_path.glob("pybert_pretraining_*/sample.tfrecord")
    n = len(read_examples(str(out)))
    assert f"-> {out}" in proc.stdout and f"{out}: {n} instances" in proc.stdout and n > 5
