"""GLUE-style classification and regression data: TSV processors and features.

Reads the task TSVs with the seed's column rules (tf-models-official 2.4.0
classifier_data_lib: the same files, columns, header handling, labels and
processor names) and turns them into the seed's features, written as
TFRecords with the seed's feature names and dtypes:

    input_ids, input_mask, segment_ids  int64 [max_seq_length]
    label_ids                           int64 [1] (float [1] for regression)
    is_real_example, example_id         int64 [1]

plus the meta data dict of generate_tf_record_from_data_file. Tokenization
runs in the C++ tokenizer on all cores; truncation is the seed's
(longest first, the second text on ties). TFDS input and the retrieval and
tagging task types are left out.

Example:
    spec = get_task("MRPC")
    examples = read_examples(spec, "glue/MRPC", "dev")
    arrays = featurize(examples, tokenizer, 128, spec)
    arrays["input_ids"].shape -> (408, 128)
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pybert.data import records

logger = logging.getLogger("pybert.data")


class DataError(ValueError):
    """Bad input data; the message names the file and line (or example id)."""


@dataclass(frozen=True)
class InputExample:
    """One example. source is "file:line" for error messages."""

    guid: str
    text_a: str
    text_b: str | None
    label: object
    source: str = ""


@dataclass(frozen=True)
class Columns:
    """Where a split's fields are in each TSV row (indices may be negative, like the seed)."""

    text_a: int
    text_b: int | None = None
    label: int | None = None  # None: every row gets `default_label` (test sets)
    default_label: object = None
    header: bool = True  # skip the first row
    guid: int | None = None  # column with the id; None: the row index
    lang: int | None = None  # column naming the language (XNLI test)
    skip_short_rows: bool = False  # QQP train/dev: the seed skips garbage rows
    label_aliases: tuple = ()  # (from, to) pairs, e.g. XNLI "contradictory"


@dataclass(frozen=True)
class Source:
    path: str  # relative to the data dir; may contain {lang}
    columns: Columns
    lang: str | None = None  # test sets split by language: key of the output dict


@dataclass(frozen=True)
class TaskSpec:
    name: str  # the seed's processor name (meta data "processor_type")
    labels: tuple | None  # None: regression (float labels)
    train: tuple = ()
    dev: tuple = ()
    test: tuple = ()
    languages: tuple = ()  # supported languages for the language flag
    test_by_language: bool = False
    options: dict = field(default_factory=dict)

    @property
    def is_regression(self) -> bool:
        return self.labels is None


_NLI = ("contradiction", "entailment", "neutral")
_BIN = ("0", "1")
_XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur",
               "vi", "zh")
_PAWSX_LANGS = ("de", "en", "es", "fr", "ja", "ko", "zh")


def _glue(name, labels, train_cols, test_cols, dev_file="dev.tsv", test_file="test.tsv",
          dev_cols=None):
    return TaskSpec(
        name=name,
        labels=labels,
        train=(Source("train.tsv", train_cols),),
        dev=(Source(dev_file, dev_cols or train_cols),),
        test=(Source(test_file, test_cols),),
    )


def get_task(
    task_name: str, mnli_type: str = "matched", xnli_language: str = "en",
    pawsx_language: str = "en",
) -> TaskSpec:
    """The seed's processor for `task_name` (case-insensitive), as a TaskSpec."""
    key = task_name.upper()
    if key == "AX":
        return _glue("AX", _NLI, Columns(8, 9, -1, guid=0),
                     Columns(1, 2, default_label="contradiction", guid=0))
    if key == "COLA":
        return _glue("COLA", _BIN, Columns(3, None, 1, header=False),
                     Columns(1, None, default_label="0"))
    if key == "MNLI":
        if mnli_type not in ("matched", "mismatched"):
            raise ValueError(f"mnli_type must be 'matched' or 'mismatched', got {mnli_type!r}")
        return _glue("MNLI", _NLI, Columns(8, 9, -1, guid=0),
                     Columns(8, 9, default_label="contradiction", guid=0),
                     dev_file=f"dev_{mnli_type}.tsv", test_file=f"test_{mnli_type}.tsv")
    if key == "MRPC":
        return _glue("MRPC", _BIN, Columns(3, 4, 0), Columns(3, 4, default_label="0"))
    if key == "QNLI":
        return _glue("QNLI", ("entailment", "not_entailment"), Columns(1, 2, -1),
                     Columns(1, 2, default_label="entailment"))
    if key == "QQP":
        return _glue("QQP", _BIN, Columns(3, 4, 5, guid=0, skip_short_rows=True),
                     Columns(1, 2, default_label="0", guid=0))
    if key == "RTE":
        return _glue("RTE", ("entailment", "not_entailment"), Columns(1, 2, 3),
                     Columns(1, 2, default_label="entailment"))
    if key == "SST-2":
        return _glue("SST-2", _BIN, Columns(0, None, 1), Columns(1, None, default_label="0"))
    if key == "STS-B":
        return _glue("STS-B", None, Columns(7, 8, 9), Columns(7, 8, default_label=0.0))
    if key == "WNLI":
        return _glue("WNLI", _BIN, Columns(1, 2, 3), Columns(1, 2, default_label="0"))
    if key == "XNLI":
        langs = _languages(xnli_language, _XNLI_LANGS, "xnli_language")
        train_cols = Columns(0, 1, 2, label_aliases=(("contradictory", "contradiction"),))
        return TaskSpec(
            name="XNLI", labels=_NLI,
            train=tuple(Source(f"multinli/multinli.train.{lg}.tsv", train_cols) for lg in langs),
            dev=(Source("xnli.dev.tsv", Columns(6, 7, 1)),),
            test=(Source("xnli.test.tsv", Columns(6, 7, 1, lang=0)),),
            languages=_XNLI_LANGS, test_by_language=True,
        )
    if key == "PAWS-X":
        langs = _languages(pawsx_language, _PAWSX_LANGS, "pawsx_language")
        cols = Columns(1, 2, 3)
        return TaskSpec(
            name="XTREME-PAWS-X",  # the seed's PawsxProcessor reports this name
            labels=_BIN,
            train=tuple(
                Source(f"{lg}/{'train.tsv' if lg == 'en' else 'translated_train.tsv'}", cols)
                for lg in langs
            ),
            dev=tuple(Source(f"{lg}/dev_2k.tsv", cols) for lg in _PAWSX_LANGS),
            test=tuple(Source(f"{lg}/test_2k.tsv", cols, lang=lg) for lg in _PAWSX_LANGS),
            languages=_PAWSX_LANGS, test_by_language=True,
        )
    if key in ("XTREME-XNLI", "XTREME-PAWS-X"):
        xnli = key == "XTREME-XNLI"
        langs = _XNLI_LANGS if xnli else _PAWSX_LANGS
        cols = Columns(0, 1, 2, header=False)
        test_cols = Columns(0, 1, default_label="contradiction" if xnli else "0", header=False)
        return TaskSpec(
            name=key, labels=_NLI if xnli else _BIN,
            train=(Source("train-en.tsv", cols),),
            dev=(Source("dev-en.tsv", cols),),
            test=tuple(Source(f"test-{lg}.tsv", test_cols, lang=lg) for lg in langs),
            languages=langs, test_by_language=True,
        )
    raise ValueError(f"unknown classification task {task_name!r}; known: {', '.join(TASK_NAMES)}")


TASK_NAMES = ("AX", "COLA", "MNLI", "MRPC", "PAWS-X", "QNLI", "QQP", "RTE", "SST-2", "STS-B",
              "WNLI", "XNLI", "XTREME-XNLI", "XTREME-PAWS-X")


def _languages(value: str, supported: tuple, flag: str) -> tuple:
    if value == "all":
        return supported
    if value not in supported:
        raise ValueError(f"{flag}={value!r} is not supported; use 'all' or one of {supported}")
    return (value,)


def read_lines(path: str) -> list[str]:
    """The lines of a UTF-8 text file as the seed's tf.io.gfile.GFile reads them: lines end
    at "\\n" only and lose every "\\r" (TensorFlow's line reader drops them); other line
    breaks (form feed, U+0085, U+2028) stay inside the line. Errors name the file (and the
    line of invalid UTF-8)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 at byte {e.start}: {e.reason}") from None
    lines = text.replace("\r", "").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _read_tsv(path: str) -> list[list[str]]:
    """Rows of a tab-separated file, read like the seed (csv, tab, no quoting, over the
    lines of read_lines)."""
    csv.field_size_limit(sys.maxsize)
    return list(csv.reader(read_lines(path), delimiter="\t", quotechar=None))


def _field(row, index, path, line, what):
    try:
        return row[index]
    except IndexError:
        raise DataError(
            f"{path}:{line}: missing column {index} ({what}); the row has {len(row)} "
            f"tab-separated fields"
        ) from None


def _read_source(spec: TaskSpec, data_dir: str, src: Source, set_type: str, stats: dict):
    path = os.path.join(data_dir, src.path)
    rows = _read_tsv(path)
    cols = src.columns
    out: dict[str | None, list[InputExample]] = {}
    aliases = dict(cols.label_aliases)
    label_set = None if spec.labels is None else set(spec.labels)
    for i, row in enumerate(rows):
        if cols.header and i == 0:
            continue
        line = i + 1
        if cols.skip_short_rows and set_type != "test":
            needed = max(cols.text_a, cols.text_b or 0, cols.label or 0)
            if len(row) <= needed:
                stats["skipped_rows"] = stats.get("skipped_rows", 0) + 1
                logger.warning("%s:%d: skipping a row with %d fields", path, line, len(row))
                continue
        text_a = _field(row, cols.text_a, path, line, "text_a")
        text_b = None if cols.text_b is None else _field(row, cols.text_b, path, line, "text_b")
        if cols.label is None:
            label = cols.default_label
        else:
            raw = _field(row, cols.label, path, line, "label")
            label = aliases.get(raw, raw)
            if spec.is_regression:
                try:
                    label = float(label)
                except ValueError:
                    label = math.nan
                if not math.isfinite(label):
                    raise DataError(
                        f"{path}:{line}: label {raw!r} is not a finite number ({spec.name} is a "
                        f"regression task)"
                    )
            elif label not in label_set:
                raise DataError(
                    f"{path}:{line}: label {raw!r} is not one of {list(spec.labels)} "
                    f"(task {spec.name})"
                )
        guid_value = i if cols.guid is None else _field(row, cols.guid, path, line, "id")
        lang = src.lang
        if cols.lang is not None:
            lang = _field(row, cols.lang, path, line, "language")
        out.setdefault(lang, []).append(
            InputExample(f"{set_type}-{guid_value}", text_a, text_b, label, f"{path}:{line}")
        )
    return out


def read_examples(spec: TaskSpec, data_dir: str, split: str):
    """Examples of one split ("train", "dev" or "test").

    Returns a list, or for test sets split by language (XNLI, PAWS-X, XTREME)
    a dict {language: list} in the seed's language order.
    """
    sources = {"train": spec.train, "dev": spec.dev, "test": spec.test}[split]
    stats: dict = {}
    by_lang: dict[str | None, list[InputExample]] = {}
    if split == "test" and spec.test_by_language:
        by_lang = {lg: [] for lg in spec.languages}
    for src in sources:
        for lang, exs in _read_source(spec, data_dir, src, split, stats).items():
            if split == "test" and spec.test_by_language:
                if lang not in by_lang:
                    raise DataError(
                        f"{os.path.join(data_dir, src.path)}: unknown language {lang!r} "
                        f"(supported: {list(spec.languages)})"
                    )
                by_lang[lang].extend(exs)
            else:
                by_lang.setdefault(None, []).extend(exs)
    if stats.get("skipped_rows"):
        logger.warning("%s %s: skipped %d malformed rows (as the seed does)", spec.name, split,
                       stats["skipped_rows"])
    if split == "test" and spec.test_by_language:
        return by_lang
    return by_lang.get(None, [])


def featurize(
    examples: Sequence[InputExample],
    tokenizer,
    max_seq_length: int,
    spec: TaskSpec,
    num_threads: int | None = None,
) -> dict[str, np.ndarray]:
    """The seed's convert_single_example for a whole list, as arrays.

    Returns int32 input_ids/input_mask/segment_ids [N, max_seq_length],
    label_ids [N] (int64, or float32 for regression), is_real_example and
    example_id [N] int64. A pair whose second text has no tokens is encoded as
    a single text, as the seed does.
    """
    n = len(examples)
    if not n:
        ids = mask = segs = np.zeros((0, max_seq_length), dtype=np.int32)
    else:
        pairs = ([ex.text_b for ex in examples] if any(ex.text_b for ex in examples)
                 else None)  # an empty or None text_b: a single text, as in the seed
        enc = tokenizer.encode_batch(
            [ex.text_a for ex in examples], pairs, max_seq_length=max_seq_length,
            truncation="longest_first", return_offsets=False, pad=True,
            num_threads=num_threads or 0, empty_pair_as_single=True)
        ids, mask, segs = enc.input_word_ids, enc.input_mask, enc.input_type_ids
    if spec.is_regression:
        labels = np.asarray([float(ex.label) for ex in examples], dtype=np.float32)
    else:
        label_map = {label: i for i, label in enumerate(spec.labels)}
        labels = np.empty(n, dtype=np.int64)
        for i, ex in enumerate(examples):
            try:
                labels[i] = label_map[ex.label]
            except KeyError:
                raise DataError(
                    f"{ex.source or ex.guid}: label {ex.label!r} is not one of "
                    f"{list(spec.labels)} (task {spec.name})"
                ) from None
    return {
        "input_ids": ids,
        "input_mask": mask,
        "segment_ids": segs,
        "label_ids": labels,
        "is_real_example": np.ones(n, dtype=np.int64),
        "example_id": np.arange(n, dtype=np.int64),
    }


FEATURE_ORDER = ("input_ids", "input_mask", "segment_ids", "label_ids", "is_real_example",
                 "example_id")


def write_features(path: str, arrays: dict[str, np.ndarray]) -> int:
    """Writes featurize() output as the seed's TFRecord (atomically); returns the count."""
    return records.write_feature_arrays(path, arrays, FEATURE_ORDER)


def generate_tf_record_from_data_file(
    spec: TaskSpec,
    data_dir: str,
    tokenizer,
    train_data_output_path: str | None = None,
    eval_data_output_path: str | None = None,
    test_data_output_path: str | None = None,
    max_seq_length: int = 128,
    num_threads: int | None = None,
) -> dict:
    """Writes the train/eval/test TFRecords and returns the seed's meta data dict."""
    if not train_data_output_path:
        raise ValueError("train_data_output_path is required")
    if spec.test_by_language and test_data_output_path and "{}" not in test_data_output_path:
        raise ValueError(
            f"test_data_output_path must contain '{{}}' for {spec.name} (one file per language), "
            f"got {test_data_output_path!r}"
        )
    if spec.test_by_language and test_data_output_path:
        try:  # checked before any file is written
            test_data_output_path.format("en")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"test_data_output_path {test_data_output_path!r}: one '{{}}' for the language "
                f"and no other braces ({type(e).__name__}: {e})") from None

    def convert(examples, path, split):
        if not examples:
            where = ", ".join(os.path.join(data_dir, src.path)
                              for src in {"train": spec.train, "dev": spec.dev,
                                          "test": spec.test}[split])
            raise DataError(f"{where}: no examples for the {split} split of {spec.name}")
        arrays = featurize(examples, tokenizer, max_seq_length, spec, num_threads)
        write_features(path, arrays)
        logger.info("wrote %d examples to %s", len(examples), path)
        return len(examples)

    meta: dict = {"processor_type": spec.name}
    train = read_examples(spec, data_dir, "train")
    meta["train_data_size"] = convert(train, train_data_output_path, "train")
    meta["max_seq_length"] = max_seq_length
    eval_size = None
    if eval_data_output_path:
        eval_size = convert(read_examples(spec, data_dir, "dev"), eval_data_output_path, "dev")
    if test_data_output_path:
        test = read_examples(spec, data_dir, "test")
        if isinstance(test, dict):
            for lang, exs in test.items():
                # A language with no rows still gets its (empty) file, as in the seed.
                path = test_data_output_path.format(lang)
                if exs:
                    meta[f"test_{lang}_data_size"] = convert(exs, path, "test")
                else:
                    write_features(path, featurize([], tokenizer, max_seq_length, spec))
                    meta[f"test_{lang}_data_size"] = 0
        else:
            meta["test_data_size"] = convert(test, test_data_output_path, "test")
    if spec.is_regression:
        meta["task_type"] = "bert_regression"
        meta["label_type"] = "float"
    else:
        meta["task_type"] = "bert_classification"
        meta["num_labels"] = len(spec.labels)
    if eval_size is not None:
        meta["eval_data_size"] = eval_size
    return meta
