"""Sentence retrieval data (XTREME BUCC and Tatoeba): the seed's files, features and meta data.

The seed's create_finetuning_data --fine_tuning_task_type=retrieval
(tf-models-official 2.4.0 sentence_retrieval_lib) reads, for each language
L of the task, the non-English side and the English side from
--input_data_dir:

    BUCC     L-en.dev.L, L-en.dev.en, L-en.test.L, L-en.test.en
             rows "L-000123<TAB>sentence": example_id 123 (languages de fr ru zh)
    Tatoeba  L-en.L, L-en.en
             one sentence per line: example_id = the line's index (36 languages)

and writes one TFRecord per file, `L-en-L.dev.tfrecords` and
`L-en-en.dev.tfrecords` under the eval output directory (`.test.` under the
test one), each example a single text:

    input_ids, input_mask, segment_ids  int64 [max_seq_length]
    is_real_example, example_id         int64 [1]

with meta data {"processor_type", "max_seq_length", "number_eval_data",
"number_test_data"} counting the examples per file ("L-en.L": n).

Differences from the seed: a language with no files in the directory is
skipped with a warning (the seed stops at the first missing file; an error
is raised when no language has files, or when a language has one side but
not the other), Tatoeba's missing dev split is an error naming the flag, a
bad row is an error naming the file and line (the seed raises IndexError or
a protobuf error), and the command line refuses --max_seq_length below 3
(the seed writes [CLS] [SEP] records at 2).

Example:
    meta = generate_retrieval_tf_record("tatoeba", "xtreme/tatoeba", tokenizer,
                                        test_data_output_path="out/tatoeba")
    meta["number_test_data"]["zh-en.zh"] -> 1000
"""

from __future__ import annotations

import logging
import os

import numpy as np

from pybert.data import records
from pybert.data.classification import DataError, _field, _read_tsv

logger = logging.getLogger("pybert.data")

BUCC_LANGUAGES = ("de", "fr", "ru", "zh")
TATOEBA_LANGUAGES = (
    "af", "ar", "bg", "bn", "de", "el", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu",
    "id", "it", "ja", "jv", "ka", "kk", "ko", "ml", "mr", "nl", "pt", "ru", "sw", "ta", "te",
    "th", "tl", "tr", "ur", "vi", "zh",
)
TASKS = {"bucc": ("BUCC", BUCC_LANGUAGES), "tatoeba": ("TATOEBA", TATOEBA_LANGUAGES)}
FEATURE_ORDER = ("input_ids", "input_mask", "segment_ids", "is_real_example", "example_id")


def input_file(task: str, lang: str, side: str, split: str) -> str:
    """The seed's file name for one side of a language pair ("de-en.dev.en", "zh-en.zh")."""
    if task == "bucc":
        return f"{lang}-en.{split}.{side}"
    return f"{lang}-en.{side}"


def read_sentences(task: str, path: str) -> tuple[list[str], np.ndarray]:
    """The texts and example ids of one file, read as the seed reads it (csv over
    tf.io.gfile lines, tab-separated, no quoting)."""
    texts, ids = [], []
    for i, row in enumerate(_read_tsv(path)):
        line = i + 1
        if task == "bucc":
            key = _field(row, 0, path, line, "id")
            parts = key.split("-")
            try:
                example_id = int(parts[1])
            except (IndexError, ValueError):
                raise DataError(f"{path}:{line}: id {key!r} is not <language>-<number> "
                                "(BUCC's sentence ids, e.g. de-000001)") from None
            if not -2**63 <= example_id < 2**63:
                raise DataError(f"{path}:{line}: id {key!r}: the number does not fit the "
                                "int64 example_id")
            texts.append(_field(row, 1, path, line, "sentence"))
            ids.append(example_id)
        else:
            texts.append(_field(row, 0, path, line, "sentence"))
            ids.append(i)
    return texts, np.asarray(ids, dtype=np.int64)


def featurize(texts: list[str], example_ids, tokenizer, max_seq_length: int,
              num_threads: int | None = None) -> dict[str, np.ndarray]:
    """The seed's convert_single_example for single texts without labels, as arrays."""
    n = len(texts)
    if n:
        enc = tokenizer.encode_batch(texts, None, max_seq_length=max_seq_length,
                                     truncation="longest_first", return_offsets=False, pad=True,
                                     num_threads=num_threads or 0)
        ids, mask, segs = enc.input_word_ids, enc.input_mask, enc.input_type_ids
    else:
        ids = mask = segs = np.zeros((0, max_seq_length), dtype=np.int32)
    return {
        "input_ids": ids,
        "input_mask": mask,
        "segment_ids": segs,
        "is_real_example": np.ones(n, dtype=np.int64),
        "example_id": np.asarray(example_ids, dtype=np.int64).reshape(n),
    }


def write_features(path: str, arrays: dict[str, np.ndarray]) -> int:
    """Writes featurize() output as the seed's TFRecord (atomically); returns the count."""
    return records.write_feature_arrays(path, arrays, FEATURE_ORDER)


def _languages(task: str, data_dir: str, splits: list[str]) -> list[str]:
    """The task's languages with files in data_dir, in the seed's order; warns about the
    languages without files and raises when a language is half there or none is."""
    name, languages = TASKS[task]
    present, absent = [], []
    for lang in languages:
        names = [input_file(task, lang, side, split) for split in splits
                 for side in (lang, "en")]
        found = [os.path.isfile(os.path.join(data_dir, f)) for f in names]
        if all(found):
            present.append(lang)
        elif any(found):
            missing = [f for f, ok in zip(names, found, strict=True) if not ok]
            raise DataError(f"{data_dir}: {name} language {lang!r} is incomplete: "
                            f"{', '.join(missing)} not found")
        else:
            absent.append(lang)
    if not present:
        pattern = input_file(task, "<lang>", "<lang|en>", "<split>")
        raise DataError(f"{data_dir}: no {name} files ({pattern}, split "
                        f"{' and '.join(splits)}) for any of {', '.join(languages)}")
    if absent:
        logger.warning("%s: no %s files for %s; writing %s only", data_dir, name,
                       ", ".join(absent), ", ".join(present))
    return present


def generate_retrieval_tf_record(
    task: str,
    data_dir: str,
    tokenizer,
    eval_data_output_path: str | None = None,
    test_data_output_path: str | None = None,
    max_seq_length: int = 128,
    num_threads: int | None = None,
) -> dict:
    """Writes the per-language TFRecords into the output directories; returns the seed's
    meta data. task: "bucc" or "tatoeba" (the seed's --retrieval_task_name)."""
    task = task.lower()
    if task not in TASKS:
        raise ValueError(f"unknown retrieval task {task!r}; known: {', '.join(TASKS)}")
    name = TASKS[task][0]
    if not (eval_data_output_path or test_data_output_path):
        raise ValueError("retrieval data needs --eval_data_output_path and/or "
                         "--test_data_output_path (output directories)")
    if task == "tatoeba" and eval_data_output_path:
        raise ValueError("--eval_data_output_path: Tatoeba has test data only (L-en.L, "
                         "L-en.en); give --test_data_output_path")
    outputs = [(split, out) for split, out in (("dev", eval_data_output_path),
                                               ("test", test_data_output_path)) if out]
    for split, out in outputs:
        if os.path.exists(out) and not os.path.isdir(out):
            flag = "--eval_data_output_path" if split == "dev" else "--test_data_output_path"
            raise ValueError(f"{flag} {out}: is a file; retrieval data is written to a "
                             "directory (one TFRecord per language and side)")
    languages = _languages(task, data_dir, [split for split, _ in outputs])
    meta = {"processor_type": name, "max_seq_length": max_seq_length,
            "number_eval_data": {}, "number_test_data": {}}
    for lang in languages:
        counts = {}
        for side in (lang, "en"):
            for split, out in outputs:
                path = os.path.join(data_dir, input_file(task, lang, side, split))
                texts, ids = read_sentences(task, path)
                arrays = featurize(texts, ids, tokenizer, max_seq_length, num_threads)
                write_features(os.path.join(out, f"{lang}-en-{side}.{split}.tfrecords"), arrays)
                key = "number_eval_data" if split == "dev" else "number_test_data"
                meta[key][f"{lang}-en.{side}"] = len(texts)
                counts[side] = len(texts)
                logger.info("wrote %d %s examples of %s", len(texts), split, path)
        if task == "tatoeba" and counts[lang] != counts["en"]:  # written as the seed writes them
            logger.warning("%s: %s-en.%s has %d sentences, %s-en.en %d: Tatoeba's two sides "
                           "are translations line by line, so retrieval scores on them are "
                           "meaningless", data_dir, lang, lang, counts[lang], lang, counts["en"])
    return meta
