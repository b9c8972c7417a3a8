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

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def expand_patterns(input_patterns) -> list[str]:
    """Files matching comma-separated or listed glob patterns; an error names the empty ones."""
    if isinstance(input_patterns, str):
        input_patterns = [p for p in input_patterns.split(",") if p]
    files = []
    for pattern in input_patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
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
    spec = {
        ids: tf.io.FixedLenFeature([seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([seq_length], tf.int64),
        types: tf.io.FixedLenFeature([seq_length], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32),
    }
    if use_next_sentence_label:
        spec["next_sentence_labels"] = tf.io.FixedLenFeature([1], tf.int64)

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
    spec = {
        "input_ids": tf.io.FixedLenFeature([seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([seq_length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([seq_length], tf.int64),
        "label_ids": tf.io.FixedLenFeature([], label_type),
    }
    if include_sample_weights:
        spec["weight"] = tf.io.FixedLenFeature([], tf.float32)

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
    spec = {
        "input_ids": tf.io.FixedLenFeature([seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([seq_length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([seq_length], tf.int64),
    }
    if is_training:
        spec["start_positions"] = tf.io.FixedLenFeature([], tf.int64)
        spec["end_positions"] = tf.io.FixedLenFeature([], tf.int64)
    else:
        spec["unique_ids"] = tf.io.FixedLenFeature([], tf.int64)

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


def distribute(strategy, dataset_fn, global_batch_size: int):
    """strategy.distribute_datasets_from_function with per-replica batches and sharding.

    dataset_fn(batch_size, input_pipeline_context) -> tf.data.Dataset.
    """

    def fn(ctx):
        return dataset_fn(ctx.get_per_replica_batch_size(global_batch_size), ctx)

    return strategy.distribute_datasets_from_function(fn)
