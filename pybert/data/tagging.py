"""Tagging (token classification) data, XTREME PAN-X and UDPOS: the seed's files and features.

The seed's create_finetuning_data --fine_tuning_task_type=tagging
(tf-models-official 2.4.0 tagging_data_lib) reads from --input_data_dir

    train-en.tsv, dev-en.tsv, test-L.tsv for every language L of the task

with one word per line ("word<TAB>label"; test files may have the word
alone, which gets label id 0) and a blank line between sentences. Each word
is tokenized on its own; its first word piece carries the label id, the
other pieces, [CLS], [SEP] and the padding carry -1. A word that gives no
pieces, or more than max_seq_length - 2, becomes [UNK]; an empty word (a
line starting with a tab) gives no piece, and its label is dropped, as in
the seed. A sentence longer than max_seq_length - 2 pieces is cut at word
boundaries into several examples with the same sentence_id and
sub_sentence_id 0, 1, ...

Features (TFRecord, the seed's names):

    input_ids, input_mask, segment_ids, label_ids  int64 [max_seq_length]
    sentence_id, sub_sentence_id                    int64 [1]

and the seed's meta data (task_type "tagging", label_list, num_labels,
test_data_size per language, ...).

Differences from the seed: a bad row (three fields, an unknown label) is an
error naming the file and line instead of an assertion or KeyError, a
test language with no test-L.tsv is skipped with a warning (the seed stops
at the first missing file; an error is raised when none is there), and
featurize() refuses a Sentence whose words and label ids differ in number
(the seed zips them, dropping the extra ones).

Example:
    examples = read_file("panx/train-en.tsv", PANX_LABELS)
    arrays = featurize(examples, tokenizer, 128)
    arrays["label_ids"][0][:4] -> [-1, 3, 0, -1]
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from pybert._outputs import check_distinct_outputs
from pybert.data import records
from pybert.data.classification import DataError, read_lines

logger = logging.getLogger("pybert.data")

PADDING_LABEL_ID = -1
PANX_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
UDPOS_LABELS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART",
                "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")
PANX_LANGUAGES = (
    "ar", "he", "vi", "id", "jv", "ms", "tl", "eu", "ml", "ta", "te", "af", "nl", "en", "de",
    "el", "bn", "hi", "mr", "ur", "fa", "fr", "it", "pt", "es", "bg", "ru", "ja", "ka", "ko",
    "th", "sw", "yo", "my", "zh", "kk", "tr", "et", "fi", "hu",
)
UDPOS_LANGUAGES = (
    "af", "ar", "bg", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu",
    "id", "it", "ja", "kk", "ko", "mr", "nl", "pt", "ru", "ta", "te", "th", "tl", "tr", "ur",
    "vi", "yo", "zh",
)
# --tagging_task_name: (the seed's processor name, labels, test languages)
TASKS = {"panx": ("panx", PANX_LABELS, PANX_LANGUAGES),
         "udpos": ("udpos", UDPOS_LABELS, UDPOS_LANGUAGES)}
FEATURE_ORDER = ("input_ids", "input_mask", "segment_ids", "label_ids", "sentence_id",
                 "sub_sentence_id")


@dataclass
class Sentence:
    """One sentence of a tagging file: its words and label ids; source is "file:line"."""

    sentence_id: int
    words: list[str]
    label_ids: list[int]
    source: str = ""


def read_file(path: str, labels) -> list[Sentence]:
    """The sentences of one file, read as the seed reads it: lines of tf.io.gfile (every
    "\\r" dropped), "word<TAB>label" or "word", words and labels stripped of whitespace,
    blank lines between sentences."""
    label_map = {label: i for i, label in enumerate(labels)}
    sentences: list[Sentence] = []
    words: list[str] = []
    label_ids: list[int] = []
    start = 1
    for number, line in enumerate(read_lines(path), 1):
        if not line:
            if words:
                sentences.append(Sentence(len(sentences), words, label_ids, f"{path}:{start}"))
                words, label_ids = [], []
            continue
        if not words:
            start = number
        items = line.split("\t")
        if len(items) > 2:
            raise DataError(f"{path}:{number}: {len(items)} tab-separated fields; a line is "
                            "'word<TAB>label' (or the word alone in a test file)")
        if len(items) == 2:
            label = items[1].strip()
            if label not in label_map:
                raise DataError(f"{path}:{number}: label {label!r} is not one of "
                                f"{list(labels)}")
            label_ids.append(label_map[label])
        else:
            label_ids.append(0)  # the seed's dummy label for unlabeled test words
        words.append(items[0].strip())
    if words:
        sentences.append(Sentence(len(sentences), words, label_ids, f"{path}:{start}"))
    return sentences


def featurize(sentences: list[Sentence], tokenizer, max_seq_length: int,
              num_threads: int | None = None) -> dict[str, np.ndarray]:
    """The seed's _tokenize_example + _convert_single_example for all sentences, as arrays
    (one row per example; a long sentence gives several). Every word is tokenized in one
    batch (C++, num_threads); the pieces, labels and example rows are then placed with
    NumPy, and only the split of sentences into examples loops, once per example."""
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length must be at least 3, got {max_seq_length}")
    budget = max_seq_length - 2
    for s in sentences:
        where = f"sentence {s.sentence_id} ({s.source or 'no source'})"
        if len(s.words) != len(s.label_ids):
            raise ValueError(f"{where}: {len(s.words)} words but {len(s.label_ids)} labels")
        if s.words and min(s.label_ids) < 0:  # the seed's check: -1 means "no label"
            raise ValueError(f"{where}: negative label id {min(s.label_ids)}")
    words = [w for s in sentences for w in s.words]
    if words:
        enc = tokenizer.encode_batch(words, None, max_seq_length=None,
                                     add_special_tokens=False, return_offsets=False, pad=False,
                                     num_threads=num_threads or 0)
        flat, splits = enc.flat_ids, enc.row_splits
    else:
        flat, splits = np.zeros(0, np.int32), np.zeros(1, np.int64)
    vocab = tokenizer.vocab
    missing = [t for t in ("[UNK]", "[CLS]", "[SEP]") if t not in vocab]
    if missing:
        raise ValueError(f"{tokenizer.vocab_file}: the vocabulary has no {', '.join(missing)}")
    unk, cls, sep = vocab["[UNK]"], vocab["[CLS]"], vocab["[SEP]"]
    # Per word: its pieces, or [UNK] for a non-empty word with none or too many; an empty
    # word has none (its label is dropped, as in the seed).
    nonempty = np.fromiter((bool(w) for w in words), dtype=bool, count=len(words))
    count = np.diff(splits).astype(np.int64)
    as_unk = nonempty & ((count == 0) | (count > budget))
    pieces = np.where(as_unk, 1, count)
    end = np.concatenate([[0], np.cumsum(pieces)])  # word w: pieces [end[w], end[w + 1])
    total = int(end[-1])
    src = np.arange(total, dtype=np.int64) + np.repeat(splits[:-1] - end[:-1], pieces)
    own = np.repeat(~as_unk, pieces)  # the pieces that are the word's own
    flat_ids = np.full(total, unk, dtype=np.int64)
    flat_ids[own] = flat[src[own]]
    labels = np.fromiter((lab for s in sentences for lab in s.label_ids), dtype=np.int64,
                         count=len(words))
    flat_labels = np.full(total, PADDING_LABEL_ID, dtype=np.int64)
    first = pieces > 0
    flat_labels[end[:-1][first]] = labels[first]
    # The seed's greedy split of a sentence: a word that would take the example past the
    # budget starts the next one. Examples as word ranges [w0, w1), found by bisection.
    ex_w0, ex_w1, ex_sentence, ex_sub = [], [], [], []
    w = 0
    for s in sentences:
        w_end = w + len(s.words)
        sub = 0
        while w < w_end and end[w_end] > end[w]:
            # (every word has at most `budget` pieces, so an example takes at least one)
            stop = min(int(np.searchsorted(end, end[w] + budget, side="right")) - 1, w_end)
            stop = max(stop, w + 1)
            ex_w0.append(w)
            ex_w1.append(stop)
            ex_sentence.append(s.sentence_id)
            ex_sub.append(sub)
            sub += 1
            w = stop
        w = w_end
    n = len(ex_w0)
    p0, p1 = end[np.asarray(ex_w0, np.int64)], end[np.asarray(ex_w1, np.int64)]
    lengths = p1 - p0
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths) + 1
    taken = np.repeat(p0, lengths) + cols - 1
    input_ids = np.zeros((n, max_seq_length), dtype=np.int64)
    label_ids = np.full((n, max_seq_length), PADDING_LABEL_ID, dtype=np.int64)
    input_ids[rows, cols] = flat_ids[taken]
    label_ids[rows, cols] = flat_labels[taken]
    input_ids[:, 0] = cls
    input_ids[np.arange(n), lengths + 1] = sep
    mask = (np.arange(max_seq_length)[None, :] < (lengths + 2)[:, None]).astype(np.int64)
    return {
        "input_ids": input_ids,
        "input_mask": mask,
        "segment_ids": np.zeros_like(input_ids),
        "label_ids": label_ids,
        "sentence_id": np.asarray(ex_sentence, dtype=np.int64),
        "sub_sentence_id": np.asarray(ex_sub, dtype=np.int64),
    }


def write_features(path: str, arrays: dict[str, np.ndarray]) -> int:
    """Writes featurize() output as the seed's TFRecord (atomically); returns the count."""
    return records.write_feature_arrays(path, arrays, FEATURE_ORDER)


def generate_tagging_tf_record(
    task: str,
    data_dir: str,
    tokenizer,
    max_seq_length: int,
    train_data_output_path: str,
    eval_data_output_path: str,
    test_data_output_path: str,
    num_threads: int | None = None,
) -> dict:
    """Writes train, eval and per-language test TFRecords (test_data_output_path has '{}'
    for the language); returns the seed's meta data. task: "panx" or "udpos"."""
    task = task.lower()
    if task not in TASKS:
        raise ValueError(f"unknown tagging task {task!r}; known: {', '.join(TASKS)}")
    name, labels, languages = TASKS[task]
    for flag, value in (("--train_data_output_path", train_data_output_path),
                        ("--eval_data_output_path", eval_data_output_path),
                        ("--test_data_output_path", test_data_output_path)):
        if not value:
            raise ValueError(f"{flag} is required for tagging data (the seed writes train, "
                             "eval and per-language test files)")
    try:  # checked before any file is written
        if test_data_output_path.format("en") == test_data_output_path:
            raise ValueError("no '{}'")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(
            f"--test_data_output_path {test_data_output_path!r}: needs one '{{}}' for the "
            f"language and no other braces ({type(e).__name__}: {e})") from None
    present = [lg for lg in languages if os.path.isfile(os.path.join(data_dir, f"test-{lg}.tsv"))]
    if not present:
        raise DataError(f"{data_dir}: no test-<lang>.tsv for any of {', '.join(languages)}")
    check_distinct_outputs(  # before any work: one path per output
        [("--train_data_output_path", train_data_output_path),
         ("--eval_data_output_path", eval_data_output_path)]
        + [(f"--test_data_output_path for {lg}", test_data_output_path.format(lg))
           for lg in present])
    absent = [lg for lg in languages if lg not in present]
    if absent:
        logger.warning("%s: no test-<lang>.tsv for %s; writing test data for %s only", data_dir,
                       ", ".join(absent), ", ".join(present))

    def convert(path_in, path_out):
        sentences = read_file(os.path.join(data_dir, path_in), labels)
        if not sentences and path_in == "train-en.tsv":  # as classification data refuses it
            raise DataError(f"{os.path.join(data_dir, path_in)}: no sentences to train on")
        n = write_features(path_out, featurize(sentences, tokenizer, max_seq_length,
                                               num_threads))
        logger.info("wrote %d examples (%d sentences) of %s to %s", n, len(sentences), path_in,
                    path_out)
        return n

    meta: dict = {
        "train_data_size": convert("train-en.tsv", train_data_output_path),
        "max_seq_length": max_seq_length,
        "num_labels": len(labels),
        "task_type": "tagging",
        "label_type": "int",
        "label_shape": [max_seq_length],
    }
    eval_size = convert("dev-en.tsv", eval_data_output_path)
    test_size = {lg: convert(f"test-{lg}.tsv", test_data_output_path.format(lg))
                 for lg in present}
    # The seed's token_classification_meta_data leaves out falsy sizes.
    if eval_size:
        meta["eval_data_size"] = eval_size
    meta["test_data_size"] = test_size
    meta["label_list"] = list(labels)
    meta["processor_type"] = name
    return meta
