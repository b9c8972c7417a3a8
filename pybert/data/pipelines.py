"""tf.data input pipelines over the seed's TFRecords, for the training tools.

Same inputs and outputs as the seed's bert/input_pipeline.py (feature names,
int64 -> int32 casts, (features, labels) tuples, drop_remainder when
training), built for throughput: records are batched first and parsed with
one vectorized tf.io.parse_example per batch, files are interleaved in
parallel, and GZIP files (create_pretraining_data --gzip_compress) are
detected from their first bytes.

Under a tf.distribute strategy, call through `distribute(strategy, fn,
global_batch_size)`: each input pipeline gets its own shard (by file when
there are enough files, else by record) and the per-replica batch size.

Example:
    ds = create_classifier_dataset("train.tf_record", seq_length=128, batch_size=32)
    features, labels = next(iter(ds))
    features["input_word_ids"].shape -> (32, 128), dtype int32
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def expand_patterns(input_patterns) -> list[str]:
    """Files matching comma-separated or listed glob patterns (an existing file is taken as
    is, even with glob characters in its name); an error names the empty ones."""
    if isinstance(input_patterns, str):
        input_patterns = [p.strip() for p in input_patterns.split(",") if p.strip()]
    files = []
    for pattern in input_patterns:
        literal = not tf.io.gfile.isdir(pattern) and tf.io.gfile.exists(pattern)
        matched = [pattern] if literal else sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise ValueError(f"{pattern} does not match any files")
        files.extend(matched)
    return files


def _compression(path: str) -> str:
    with tf.io.gfile.GFile(path, "rb") as f:
        return "GZIP" if f.read(2) == b"\x1f\x8b" else ""


def _records(files, is_training, input_pipeline_context, seed, num_samples=None):
    """Raw records of the files: sharded per input pipeline, shuffled and repeated for training.

    num_samples keeps the first records (in file order) before anything else, as the seed does.
    """
    compression = {_compression(f) for f in files}
    if len(compression) != 1:
        raise ValueError(f"mix of GZIP and uncompressed TFRecords: {files}")
    compression = compression.pop()
    n_pipes = input_pipeline_context.num_input_pipelines if input_pipeline_context else 1
    pipe_id = input_pipeline_context.input_pipeline_id if input_pipeline_context else 0
    shard_files = n_pipes > 1 and len(files) >= n_pipes and not num_samples
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shard_files:
        ds = ds.shard(n_pipes, pipe_id)
    repeat_files = is_training and not num_samples
    if repeat_files:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
        cycle_length=1 if num_samples else min(8, len(files)),
        num_parallel_calls=AUTOTUNE,
        deterministic=not is_training or seed is not None,
    )
    if num_samples:
        ds = ds.take(num_samples)
    if n_pipes > 1 and not shard_files:
        ds = ds.shard(n_pipes, pipe_id)
    if is_training and not repeat_files:
        ds = ds.repeat()
    options = tf.data.Options()
    # Sharding is done here, per input pipeline; stop tf.distribute from sharding again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)


def _fixed(shape, dtype=tf.int64):
    return tf.io.FixedLenFeature(shape, dtype)


def pretrain_spec(seq_length: int, max_predictions_per_seq: int,
                  use_next_sentence_label: bool = True, use_v2_feature_names: bool = False):
    """The tf.io.parse_example spec of create_pretraining_data's records."""
    ids, types = ("input_word_ids", "input_type_ids") if use_v2_feature_names else \
        ("input_ids", "segment_ids")
    spec = {
        ids: _fixed([seq_length]),
        "input_mask": _fixed([seq_length]),
        types: _fixed([seq_length]),
        "masked_lm_positions": _fixed([max_predictions_per_seq]),
        "masked_lm_ids": _fixed([max_predictions_per_seq]),
        "masked_lm_weights": _fixed([max_predictions_per_seq], tf.float32),
    }
    if use_next_sentence_label:
        spec["next_sentence_labels"] = _fixed([1])
    return spec


def classifier_spec(seq_length: int, label_type=tf.int64, include_sample_weights: bool = False):
    """The spec of create_finetuning_data's classification/regression records."""
    spec = {name: _fixed([seq_length]) for name in ("input_ids", "input_mask", "segment_ids")}
    spec["label_ids"] = _fixed([], label_type)
    if include_sample_weights:
        spec["weight"] = _fixed([], tf.float32)
    return spec


def squad_spec(seq_length: int, is_training: bool):
    """The spec of create_finetuning_data's SQuAD training or evaluation records."""
    spec = {name: _fixed([seq_length]) for name in ("input_ids", "input_mask", "segment_ids")}
    names = ("start_positions", "end_positions") if is_training else ("unique_ids",)
    spec.update({name: _fixed([]) for name in names})
    return spec


_KINDS = {tf.int64: "int64_list", tf.float32: "float_list", tf.string: "bytes_list"}


def count_records(input_patterns) -> int:
    """Records in the files of input_patterns (read, not parsed)."""
    total = 0
    for path in expand_patterns(input_patterns):
        ds = tf.data.TFRecordDataset(path, compression_type=_compression(path))
        total += int(ds.reduce(np.int64(0), lambda n, _: n + 1))
    return total


def check_first_records(input_patterns, spec: dict, hint: str = "") -> list[str]:
    """The files of input_patterns, after checking the first record of each against spec.

    A record that the training pipeline would fail to parse mid-run (a missing
    feature, another length, int where float is expected: records written
    with other flags or for another task) raises ValueError naming the file,
    the feature and what the flags expect, followed by `hint`. Reads one
    record per file; empty files are skipped unless all are.
    """
    files = expand_patterns(input_patterns)
    empty = 0
    for path in files:
        ds = tf.data.TFRecordDataset(path, compression_type=_compression(path)).take(1)
        try:
            raw = next(iter(ds), None)
        except tf.errors.DataLossError as e:
            raise ValueError(f"{path}: not a TFRecord file or corrupt ({e.message.strip()})") \
                from None
        if raw is None:  # an empty shard (more output files than instances) adds nothing
            empty += 1
            continue
        try:
            got = tf.train.Example.FromString(raw.numpy()).features.feature
        except Exception as e:  # a protobuf DecodeError
            raise ValueError(f"{path}: the first record is not a tf.train.Example ({e})") from None
        for name, feature in spec.items():
            want_kind = _KINDS[feature.dtype]
            want_len = int(np.prod(feature.shape)) if feature.shape else 1
            problem = None
            if name not in got:
                problem = f"feature {name!r} is missing (has {', '.join(sorted(got))})"
            else:
                kind = got[name].WhichOneof("kind")
                n = len(getattr(got[name], kind).value) if kind else 0
                if kind != want_kind:
                    problem = f"feature {name!r} is {kind}, expected {want_kind}"
                elif n != want_len:
                    problem = f"feature {name!r} has {n} values, expected {want_len}"
            if problem:
                raise ValueError(f"{path}: {problem}" + (f"; {hint}" if hint else ""))
    if empty == len(files):
        raise ValueError(f"{input_patterns}: no records (every file is empty)")
    return files


def _parse(spec: dict, select):
    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        parsed = {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v
                  for k, v in parsed.items()}
        return select(parsed)

    return parse


def _finish(ds, spec, select, batch_size, is_training, shuffle_buffer, seed):
    if is_training and shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
    ds = ds.batch(batch_size, drop_remainder=is_training)
    ds = ds.map(_parse(spec, select), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def create_pretrain_dataset(
    input_patterns,
    seq_length: int,
    max_predictions_per_seq: int,
    batch_size: int,
    is_training: bool = True,
    input_pipeline_context=None,
    use_next_sentence_label: bool = True,
    use_v2_feature_names: bool = False,
    shuffle_buffer: int = 1000,
    seed: int | None = None,
):
    """Batches of masked-LM pre-training features (the seed's create_pretrain_dataset).

    Yields dicts: input_word_ids, input_mask, input_type_ids [B, seq_length];
    masked_lm_positions, masked_lm_ids [B, P] int32; masked_lm_weights [B, P]
    float32; next_sentence_labels [B, 1] when use_next_sentence_label.
    """
    ids, types = ("input_word_ids", "input_type_ids") if use_v2_feature_names else \
        ("input_ids", "segment_ids")
    spec = pretrain_spec(seq_length, max_predictions_per_seq, use_next_sentence_label,
                         use_v2_feature_names)

    def select(r):
        x = {
            "input_word_ids": r[ids],
            "input_mask": r["input_mask"],
            "input_type_ids": r[types],
            "masked_lm_positions": r["masked_lm_positions"],
            "masked_lm_ids": r["masked_lm_ids"],
            "masked_lm_weights": r["masked_lm_weights"],
        }
        if use_next_sentence_label:
            x["next_sentence_labels"] = r["next_sentence_labels"]
        return x

    files = expand_patterns(input_patterns)
    ds = _records(files, is_training, input_pipeline_context, seed)
    return _finish(ds, spec, select, batch_size, is_training, shuffle_buffer, seed)


def create_classifier_dataset(
    file_path,
    seq_length: int,
    batch_size: int,
    is_training: bool = True,
    input_pipeline_context=None,
    label_type=tf.int64,
    include_sample_weights: bool = False,
    num_samples: int | None = None,
    shuffle_buffer: int = 1000,
    seed: int | None = None,
):
    """(features, labels) batches for classification/regression (the seed's names and dtypes).

    labels: [B] int32 (label_type tf.int64) or float32 (tf.float32).
    """
    spec = classifier_spec(seq_length, label_type, include_sample_weights)

    def select(r):
        x = {"input_word_ids": r["input_ids"], "input_mask": r["input_mask"],
             "input_type_ids": r["segment_ids"]}
        if include_sample_weights:
            return x, r["label_ids"], r["weight"]
        return x, r["label_ids"]

    files = expand_patterns(file_path)
    ds = _records(files, is_training, input_pipeline_context, seed, num_samples)
    return _finish(ds, spec, select, batch_size, is_training, shuffle_buffer, seed)


def create_squad_dataset(
    file_path,
    seq_length: int,
    batch_size: int,
    is_training: bool = True,
    input_pipeline_context=None,
    shuffle_buffer: int = 1000,
    seed: int | None = None,
):
    """SQuAD batches: training (x, {start_positions, end_positions}); evaluation (x, {}) with
    x["unique_ids"]. Evaluation keeps a partial last batch (the seed pads with dummy features)."""
    spec = squad_spec(seq_length, is_training)

    def select(r):
        x = {"input_word_ids": r["input_ids"], "input_mask": r["input_mask"],
             "input_type_ids": r["segment_ids"]}
        y = {}
        if is_training:
            y = {"start_positions": r["start_positions"], "end_positions": r["end_positions"]}
        else:
            x["unique_ids"] = r["unique_ids"]
        return x, y

    files = expand_patterns(file_path)
    ds = _records(files, is_training, input_pipeline_context, seed)
    return _finish(ds, spec, select, batch_size, is_training, shuffle_buffer, seed)


def create_retrieval_dataset(file_path, seq_length: int, batch_size: int,
                             input_pipeline_context=None):
    """(features, example_id [B, 1]) batches of create_finetuning_data's retrieval records
    (the seed's create_retrieval_dataset): one pass in a fixed order; the last batch is
    padded to batch_size as the seed pads it, with all-zero features and example_id -1
    (scorers drop those rows)."""
    spec = {name: _fixed([seq_length]) for name in ("input_ids", "input_mask", "segment_ids")}
    spec["example_id"] = _fixed([1])

    def select(r):
        x = {"input_word_ids": r["input_ids"], "input_mask": r["input_mask"],
             "input_type_ids": r["segment_ids"]}
        return x, r["example_id"]

    def pad_to_batch(x, y):
        pad = batch_size - tf.shape(y)[0]
        zeros = tf.zeros([pad, seq_length], tf.int32)
        x = {key: tf.concat([value, zeros], axis=0) for key, value in x.items()}
        return x, tf.concat([y, -tf.ones([pad, 1], tf.int32)], axis=0)

    files = expand_patterns(file_path)
    ds = _records(files, False, input_pipeline_context, None)
    ds = _finish(ds, spec, select, batch_size, False, 0, None)
    return ds.map(pad_to_batch, num_parallel_calls=AUTOTUNE)


def create_tagging_dataset(file_path, seq_length: int, batch_size: int,
                           is_training: bool = True, include_sentence_id: bool = False,
                           input_pipeline_context=None, shuffle_buffer: int = 1000,
                           seed: int | None = None):
    """(features, label_ids [B, seq_length]) batches of create_finetuning_data's tagging
    records (the seed's TaggingDataLoader); label -1 marks pieces that carry no label.
    include_sentence_id adds sentence_id and sub_sentence_id [B] to the features."""
    spec = {name: _fixed([seq_length])
            for name in ("input_ids", "input_mask", "segment_ids", "label_ids")}
    if include_sentence_id:
        spec["sentence_id"] = _fixed([])
        spec["sub_sentence_id"] = _fixed([])

    def select(r):
        x = {"input_word_ids": r["input_ids"], "input_mask": r["input_mask"],
             "input_type_ids": r["segment_ids"]}
        if include_sentence_id:
            x["sentence_id"] = r["sentence_id"]
            x["sub_sentence_id"] = r["sub_sentence_id"]
        return x, r["label_ids"]

    files = expand_patterns(file_path)
    ds = _records(files, is_training, input_pipeline_context, seed)
    return _finish(ds, spec, select, batch_size, is_training, shuffle_buffer, seed)


def distribute(strategy, dataset_fn, global_batch_size: int):
    """strategy.distribute_datasets_from_function with per-replica batches and sharding.

    dataset_fn(batch_size, input_pipeline_context) -> tf.data.Dataset.
    """

    def fn(ctx):
        return dataset_fn(ctx.get_per_replica_batch_size(global_batch_size), ctx)

    return strategy.distribute_datasets_from_function(fn)
