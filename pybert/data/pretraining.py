"""Masked-LM / next-sentence pre-training data from raw text, streaming and multi-process.

Input format (the seed's): one sentence per line, blank lines between
documents; several files form one stream, in the order given. Output: the
seed's tf.train.Example features (input_ids/segment_ids or the v2 names
input_word_ids/input_type_ids, input_mask, masked_lm_positions,
masked_lm_ids, masked_lm_weights, next_sentence_labels), round-robin over the
output files.

How it scales: the text is cut into chunks of whole documents (about
`chunk_mb` MB each). Each chunk is tokenized and turned into instances by the
C++ core (csrc/data/pretraining), which reproduces the seed's
create_training_instances draw for draw with a CPython-compatible Mersenne
Twister: the document shuffle, dupe_factor passes, segment packing, 50%
random next segment (drawn from the same chunk), truncation, 80/10/10
masking, whole-word and n-gram masking, and the final instance shuffle.
Chunk k is seeded with `random_seed` for k = 0 and a hash of (random_seed, k)
otherwise, so:

  * a corpus that fits in one chunk gives exactly the seed's output;
  * the output depends only on the input, the flags and the seed, never on
    the number of workers (results are written in chunk order);
  * memory is bounded by (num_workers + 2) chunks, whatever the corpus size.

The one deliberate difference from the seed is the chunk scope of the random
next segment and of the instance shuffle (the seed holds the whole corpus in
memory; the training pipeline shuffles again).

Example:
    opts = PretrainingOptions(max_seq_length=128, max_predictions_per_seq=20)
    stats = create_pretraining_data(["gutenberg_27books_bert_format.txt"], ["out.tfrecord"],
                                    "vocab.txt", opts)
    stats.instances -> 212611   (13.6 MB of prose, dupe_factor 10, default chunks, any workers)
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import glob
import hashlib
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from pybert import _C, __version__
from pybert._outputs import file_identity, replace_json
from pybert.data.classification import DataError
from pybert.data.records import INCOMPLETE_SUFFIX, AtomicRecordWriters, ResumableRecordWriters

logger = logging.getLogger("pybert.data.pretraining")


@dataclass(frozen=True)
class PretrainingOptions:
    """The seed's create_pretraining_data flags (same defaults)."""

    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 10
    random_seed: int = 12345
    do_lower_case: bool = True
    do_whole_word_mask: bool = False
    max_ngram_size: int | None = None
    use_v2_feature_names: bool = False
    gzip_compress: bool = False

    def validate(self) -> None:
        if self.max_seq_length < 5:
            raise ValueError(f"max_seq_length must be >= 5 ([CLS] a [SEP] b [SEP]), got "
                             f"{self.max_seq_length}")
        if self.max_predictions_per_seq < 1:
            raise ValueError(f"max_predictions_per_seq must be >= 1, got "
                             f"{self.max_predictions_per_seq}")
        if not 0.0 <= self.masked_lm_prob <= 1.0:
            raise ValueError(f"masked_lm_prob must be in [0, 1], got {self.masked_lm_prob}")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
        if self.dupe_factor < 1:
            raise ValueError(f"dupe_factor must be >= 1, got {self.dupe_factor}")
        if not 0 <= self.random_seed < 2**64:
            raise ValueError(f"random_seed must be in [0, 2**64), got {self.random_seed}")
        if self.max_ngram_size is not None and self.max_ngram_size < 0:
            raise ValueError(f"max_ngram_size must be >= 0, got {self.max_ngram_size}")
        if self.max_ngram_size and not self.do_whole_word_mask:
            # The seed raises the same way: n-grams are built from whole words.
            raise ValueError("max_ngram_size needs do_whole_word_mask=True (n-grams of words)")


@dataclass
class PretrainingStats:
    """What was written, for the closing summary."""

    documents: int = 0
    sentences: int = 0
    input_bytes: int = 0
    instances: int = 0
    tokens: int = 0  # real tokens (input_mask == 1), specials included
    masked: int = 0  # masked LM predictions
    masked_as_mask: int = 0  # replaced by [MASK]
    masked_kept: int = 0  # left as the original token
    random_next: int = 0  # next_sentence_labels == 1
    seconds: float = 0.0
    per_file: list = field(default_factory=list)
    continued_after: int = 0  # instances an earlier, killed run had written

    COUNTS = ("documents", "sentences", "input_bytes", "instances", "tokens", "masked",
              "masked_as_mask", "masked_kept", "random_next")

    def add(self, other: PretrainingStats) -> None:
        for k in self.COUNTS:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def summary(self) -> str:
        inst = max(self.instances, 1)
        masked = max(self.masked, 1)
        return (
            f"{self.instances} instances from {self.documents} documents "
            f"({self.sentences} sentences, {self.input_bytes / 1e6:.1f} MB) in "
            f"{self.seconds:.1f} s; {self.tokens} tokens ({self.tokens / inst:.1f} per instance); "
            f"masked {self.masked} = {100 * self.masked / max(self.tokens, 1):.2f}% of tokens "
            f"([MASK] {100 * self.masked_as_mask / masked:.1f}%, kept "
            f"{100 * self.masked_kept / masked:.1f}%, random "
            f"{100 * (self.masked - self.masked_as_mask - self.masked_kept) / masked:.1f}%); "
            f"next sentence random {100 * self.random_next / inst:.1f}%"
        )


def expand_input_files(input_file: str | Sequence[str]) -> list[str]:
    """Comma-separated list (or sequence) of files or glob patterns, each pattern sorted."""
    patterns = input_file.split(",") if isinstance(input_file, str) else list(input_file)
    files = []
    for pattern in (p.strip() for p in patterns):
        if not pattern:
            continue
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matched:
            raise DataError(f"input_file pattern {pattern!r} matches no files")
        for f in matched:
            if not os.path.isfile(f):
                raise DataError(f"{f}: input file not found")
        files.extend(matched)
    if not files:
        raise DataError("no input files given")
    return files


@dataclass
class _Chunk:
    index: int
    documents: list  # list[list[str]] sentences per document
    input_bytes: int


def read_chunks(files: Sequence[str], chunk_bytes: int) -> Iterator[_Chunk]:
    """Documents (lists of stripped non-empty lines) grouped into chunks of ~chunk_bytes.

    A blank (or whitespace-only) line ends a document, as in the seed; files
    continue each other (a file without a trailing blank line runs into the
    next one, as in the seed). Invalid UTF-8 is an error naming file and line.
    """
    index = 0
    docs: list[list[str]] = [[]]
    size = 0
    for path in files:
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, 1):
                if b"\r" in raw:  # the seed's GFile.readline drops every "\r"
                    raw = raw.replace(b"\r", b"")
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}:{line_no}: invalid UTF-8 at byte {e.start} of the "
                                    f"line: {e.reason}") from None
                size += len(raw)
                if not line:
                    if size >= chunk_bytes and any(docs):
                        yield _Chunk(index, [d for d in docs if d], size)
                        index += 1
                        docs, size = [[]], 0
                    elif docs[-1]:
                        docs.append([])
                    continue
                docs[-1].append(line)
    if any(docs):
        yield _Chunk(index, [d for d in docs if d], size)


def chunk_seed(random_seed: int, index: int) -> int:
    """The generator seed of chunk `index`: random_seed itself for the first chunk."""
    if index == 0:
        return random_seed
    digest = hashlib.sha256(f"pybert-pretraining:{random_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


_WORKER: dict = {}


def _init_spawned_worker(parent: int, vocab_file: str, do_lower_case: bool) -> None:
    """A worker process: exits when its parent is gone (a SIGKILLed run would otherwise leave
    its workers waiting for work forever), then loads the vocabulary."""

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="pybert-parent-watch").start()
    _init_worker(vocab_file, do_lower_case)


def _init_worker(vocab_file: str, do_lower_case: bool) -> None:
    from pybert.tokenization import FullTokenizer

    tok = FullTokenizer(vocab_file, do_lower_case=do_lower_case)
    tokens = tok.convert_ids_to_tokens(range(tok.vocab_size))
    _WORKER["tokenizer"] = tok
    _WORKER["is_subword"] = np.fromiter((t.startswith("##") for t in tokens), dtype=np.uint8,
                                        count=len(tokens))
    for name in ("[CLS]", "[SEP]", "[MASK]"):
        if name not in tok.vocab:
            raise DataError(f"{vocab_file}: the vocabulary has no {name} token")
    _WORKER["ids"] = (tok.vocab["[CLS]"], tok.vocab["[SEP]"], tok.vocab["[MASK]"])


FEATURE_ORDER = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                 "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")
V2_NAMES = {"input_ids": "input_word_ids", "segment_ids": "input_type_ids"}


def instances_from_documents(documents, opts: PretrainingOptions, seed: int,
                             num_threads: int = 1) -> tuple[dict, PretrainingStats]:
    """Tokenizes documents (lists of sentences) and creates the instance arrays of one chunk."""
    tok = _WORKER["tokenizer"]
    sentences = [s for doc in documents for s in doc]
    enc = tok.encode_batch(sentences, add_special_tokens=False, return_offsets=False, pad=False,
                           num_threads=num_threads)
    lengths = np.diff(enc.row_splits)
    # The seed keeps a sentence only when it has tokens, and a document only when it keeps one.
    doc_of_sentence = np.repeat(np.arange(len(documents)), [len(d) for d in documents])
    keep = lengths > 0
    kept_docs = doc_of_sentence[keep]
    sentence_splits = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(lengths[keep], out=sentence_splits[1:])
    sentence_ids = enc.flat_ids  # sentences without tokens contribute nothing
    doc_counts = np.bincount(kept_docs, minlength=len(documents))
    doc_counts = doc_counts[doc_counts > 0]
    document_splits = np.zeros(len(doc_counts) + 1, dtype=np.int64)
    np.cumsum(doc_counts, out=document_splits[1:])
    stats = PretrainingStats(documents=len(doc_counts), sentences=int(keep.sum()))
    if len(doc_counts) == 0:
        return {}, stats
    cls_id, sep_id, mask_id = _WORKER["ids"]
    arrays = _C.create_pretraining_instances(
        sentence_ids, sentence_splits, document_splits, _WORKER["is_subword"], seed,
        opts.max_seq_length, opts.max_predictions_per_seq, opts.masked_lm_prob,
        opts.short_seq_prob, opts.dupe_factor, opts.do_whole_word_mask,
        int(opts.max_ngram_size or 0), cls_id, sep_id, mask_id)
    n = len(arrays["next_sentence_labels"])
    stats.instances = n
    if n:
        stats.tokens = int(arrays["input_mask"].sum())
        w = arrays["masked_lm_weights"] > 0
        stats.masked = int(w.sum())
        rows = np.nonzero(w)[0]
        pos = arrays["masked_lm_positions"][w]
        shown = arrays["input_ids"][rows, pos]
        stats.masked_as_mask = int((shown == mask_id).sum())
        stats.masked_kept = int(((shown == arrays["masked_lm_ids"][w]) & (shown != mask_id)).sum())
        stats.random_next = int(arrays["next_sentence_labels"].sum())
    return arrays, stats


def serialize_instances(arrays: dict, use_v2_feature_names: bool = False) -> list[bytes]:
    """Instance arrays as serialized tf.train.Examples with the seed's feature names."""
    if not arrays or len(arrays["next_sentence_labels"]) == 0:
        return []
    names = V2_NAMES if use_v2_feature_names else {}
    return _C.serialize_examples([(names.get(k, k), arrays[k]) for k in FEATURE_ORDER])


def _process_chunk(chunk: _Chunk, opts: PretrainingOptions, threads: int = 1):
    arrays, stats = instances_from_documents(chunk.documents, opts,
                                             chunk_seed(opts.random_seed, chunk.index), threads)
    stats.input_bytes = chunk.input_bytes
    return chunk.index, serialize_instances(arrays, opts.use_v2_feature_names), stats


class _Progress:
    """<first output>.incomplete.progress: the chunks the partial outputs hold.

    Saved after each chunk, once its records are flushed; a run with other settings
    (input or vocab files changed on disk, other flags or outputs) starts over.
    """

    def __init__(self, output_files: Sequence[str], settings: dict):
        self.outputs = list(output_files)
        self.path = str(output_files[0]) + INCOMPLETE_SUFFIX + ".progress"
        self.settings = settings
        self.saved = False

    def load(self) -> dict | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            logger.warning("%s is not readable; starting over", self.path)
            return None
        if not isinstance(state, dict) or state.get("settings") != self.settings:
            logger.warning("%s: the partial outputs are from other input files, vocabulary, "
                           "flags or outputs; starting over", self.path)
            return None
        try:
            int(state["chunks"])
            [int(state["stats"][k]) for k in PretrainingStats.COUNTS]
            complete = ResumableRecordWriters(self.outputs, state["writers"]).resumable()
        except (KeyError, TypeError, ValueError):
            complete = False
        if not complete:
            logger.warning("%s: the partial outputs do not match it; starting over", self.path)
            return None
        self.saved = True
        return state

    def save(self, state: dict) -> None:
        replace_json(self.path, {"settings": self.settings, **state})
        self.saved = True

    def discard(self, partial_outputs: bool = False) -> None:
        """Removes the record and any other run's that names one of these outputs first
        (and, with partial_outputs, their partial files)."""
        for out in self.outputs:
            for p in (str(out) + INCOMPLETE_SUFFIX + ".progress",
                      str(out) + INCOMPLETE_SUFFIX + ".progress.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(p)
        if partial_outputs:
            ResumableRecordWriters.discard(self.outputs)


def create_pretraining_data(
    input_files: Sequence[str],
    output_files: Sequence[str],
    vocab_file: str,
    opts: PretrainingOptions = PretrainingOptions(),
    num_workers: int | None = None,
    chunk_mb: float = 8.0,
    progress: bool = True,
) -> PretrainingStats:
    """Writes the pre-training TFRecords; returns the statistics of what was written.

    Outputs appear under their names only when complete. Uncompressed outputs can be
    continued: a run that is killed (or fails) after some chunks leaves its partial files
    and <first output>.incomplete.progress, and the same call again continues after the
    last chunk written, giving the files an uninterrupted run writes.
    """
    opts.validate()
    if chunk_mb <= 0:
        raise ValueError(f"chunk_mb must be positive, got {chunk_mb}")
    workers = num_workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if not output_files:
        raise ValueError("at least one output file is needed")
    files = expand_input_files(input_files)
    # The vocabulary here first (workers load it again): its errors name the file here, not in
    # a worker's traceback behind a BrokenProcessPool.
    _init_worker(vocab_file, opts.do_lower_case)
    total_bytes = sum(os.path.getsize(f) for f in files)
    chunk_bytes = int(chunk_mb * 1e6)
    chunks = read_chunks(files, chunk_bytes)
    stats = PretrainingStats()
    # Uncompressed outputs record their progress after each chunk; the same command run
    # again after a kill continues there (GZIP streams cannot be cut and continued).
    resumable = not opts.gzip_compress
    tracker = _Progress(
        output_files, {"inputs": [file_identity(f) for f in files],
                       "vocab": file_identity(vocab_file),
                       "outputs": [os.path.abspath(p) for p in output_files],
                       "options": dataclasses.asdict(opts), "chunk_bytes": chunk_bytes,
                       "pybert": __version__})
    state = tracker.load() if resumable else None
    if state:
        writers = ResumableRecordWriters(output_files, state["writers"])
        for k in PretrainingStats.COUNTS:
            setattr(stats, k, int(state["stats"][k]))
        done = int(state["chunks"])
        stats.continued_after = stats.instances
        logger.warning("continuing the outputs of an interrupted run after %d instances (%s)",
                       stats.instances, tracker.path)
    else:
        writers = (AtomicRecordWriters(output_files, opts.gzip_compress) if opts.gzip_compress
                   else ResumableRecordWriters(output_files))
        done = 0
        # An earlier run's partial outputs and records (of other settings), gzip or not.
        tracker.discard(partial_outputs=True)
    start, documents_before = time.perf_counter(), stats.documents
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="create_pretraining_data",
                   dynamic_ncols=True, initial=stats.input_bytes)

    def record(result, writers):
        index, serialized, s = result
        writers.write_all(serialized)
        stats.add(s)
        if resumable:
            tracker.save({"chunks": index + 1, "writers": writers.checkpoint(),
                           "stats": {k: getattr(stats, k) for k in PretrainingStats.COUNTS}})
        if bar is not None:
            bar.update(s.input_bytes)
            elapsed = max(time.perf_counter() - start, 1e-9)
            rate = (stats.documents - documents_before) / elapsed  # this run's
            bar.set_postfix(docs=stats.documents, docs_per_s=f"{rate:.1f}",
                            instances=stats.instances, refresh=False)

    todo = (c for c in chunks if c.index >= done)  # earlier chunks: read again, not made
    try:
        with writers:
            if workers == 1:
                for chunk in todo:
                    record(_process_chunk(chunk, opts), writers)
            else:
                # Workers are spawned (never forked from a process that may hold TensorFlow
                # threads); at most workers + 1 chunks are in flight, results in chunk order.
                ctx = multiprocessing.get_context("spawn")
                with cf.ProcessPoolExecutor(
                        workers, mp_context=ctx, initializer=_init_spawned_worker,
                        initargs=(os.getpid(), vocab_file, opts.do_lower_case)) as pool:
                    pending: list[cf.Future] = []
                    for chunk in todo:
                        pending.append(pool.submit(_process_chunk, chunk, opts))
                        while len(pending) > workers:
                            record(pending.pop(0).result(), writers)
                    for fut in pending:
                        record(fut.result(), writers)
            if stats.documents == 0:
                raise DataError(f"no documents with tokens in {', '.join(files)}")
    except BaseException:
        # What was written stays for a rerun to continue (a kill, Ctrl-C, an error in a
        # later file); outputs without a document in them are removed.
        if resumable and (not tracker.saved or stats.documents == 0):
            tracker.discard(partial_outputs=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    tracker.discard()
    stats.seconds = time.perf_counter() - start
    stats.per_file = list(zip(output_files, writers.counts, strict=True))
    return stats
