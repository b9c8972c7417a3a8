"""SQuAD n-best span decoding with the seed's rules, in C++ (csrc/squad).

`postprocess_output` has the seed's signature (squad_lib.postprocess_output)
and returns the same (predictions, nbest, null odds) dicts. It accepts the
seed's objects (examples with qas_id and doc_tokens; features with unique_id,
example_index, tokens, token_to_orig_map, token_is_max_context; results with
unique_id, start_logits, end_logits) or pybert's compact `SquadFeatureArrays`
with results as arrays, which skip all per-token Python work:

    arrays = SquadFeatureArrays.from_seed(examples, features)   # once
    preds, nbest, odds = postprocess_output(arrays, None, (unique_ids, start, end), 20, 30, True)

What it leaves out: reading SQuAD JSON and featurizing (pybert.data.squad).
"""

from __future__ import annotations

import collections
import gc
import json
import logging
import math
import os
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from pybert import _C
from pybert.data.records import staged_outputs, write_text, write_then_commit
from pybert.tokenization import MAX_THREADS, is_integer

logger = logging.getLogger("pybert.squad")
_INT32_MAX = 2**31 - 1


def _flatten(strings) -> tuple[bytes, np.ndarray]:
    encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
    return b"".join(encoded), _offsets([len(b) for b in encoded])


@dataclass
class SquadFeatureArrays:
    """Everything post-processing needs from examples and features, as flat arrays.

    Examples: qas_ids [E]; doc tokens of example e are the strings
    doc_data[doc_offsets[k]:doc_offsets[k+1]] for k in [doc_splits[e], doc_splits[e+1]).
    Features (grouped by example, in example order): unique_ids [F],
    feature_example [F]; word pieces in token_data/token_offsets with
    token_splits [F+1]; per token, token_to_orig (doc token index, -1 outside
    the passage) and max_context (token_is_max_context).
    """

    qas_ids: list
    doc_data: bytes
    doc_offsets: np.ndarray
    doc_splits: np.ndarray
    unique_ids: np.ndarray
    feature_example: np.ndarray
    token_data: bytes
    token_offsets: np.ndarray
    token_splits: np.ndarray
    token_to_orig: np.ndarray
    max_context: np.ndarray

    @classmethod
    def from_seed(cls, examples, features) -> SquadFeatureArrays:
        """Builds the arrays from the seed's SquadExample / InputFeatures objects."""
        doc_lists = [ex.doc_tokens for ex in examples]
        doc_data, doc_offsets = _flatten(t for doc in doc_lists for t in doc)
        doc_splits = _offsets([len(d) for d in doc_lists])
        example_index = np.asarray([f.example_index for f in features], dtype=np.int64)
        order = np.argsort(example_index, kind="stable")  # the seed groups features by example
        feats = [features[i] for i in order]
        token_data, token_offsets = _flatten(t for f in feats for t in f.tokens)
        token_splits = _offsets([len(f.tokens) for f in feats])
        token_to_orig = np.full(int(token_splits[-1]), -1, dtype=np.int32)
        max_context = np.zeros(int(token_splits[-1]), dtype=np.uint8)
        for f, base in zip(feats, token_splits[:-1].tolist(), strict=True):
            n = len(f.tokens)
            for k, v in f.token_to_orig_map.items():
                if 0 <= k < n:
                    token_to_orig[base + k] = v
            for k, v in f.token_is_max_context.items():
                if 0 <= k < n and v:
                    max_context[base + k] = 1
        return cls(
            qas_ids=[ex.qas_id for ex in examples],
            doc_data=doc_data,
            doc_offsets=doc_offsets,
            doc_splits=doc_splits,
            unique_ids=np.asarray([f.unique_id for f in feats], dtype=np.int64),
            feature_example=example_index[order],
            token_data=token_data,
            token_offsets=token_offsets,
            token_splits=token_splits,
            token_to_orig=token_to_orig,
            max_context=max_context,
        )

    def save(self, path: str) -> None:
        """Writes an .npz (to a temporary name, renamed when complete).

        On disk each distinct passage is stored once (the questions on one
        paragraph share it) and string offsets become per-string byte lengths
        in the narrowest unsigned type; load() rebuilds these arrays exactly.
        """
        docs, example_doc = {}, np.empty(len(self.qas_ids), dtype=np.int64)
        splits = self.doc_splits.astype(np.int64)
        offs = self.doc_offsets.astype(np.int64)[splits].tolist()
        word_lengths = np.diff(self.doc_offsets).astype(np.int64, copy=False).tobytes()
        splits = (8 * splits).tolist()
        for e in range(len(self.qas_ids)):  # a passage: its bytes and its word lengths
            key = (self.doc_data[offs[e]:offs[e + 1]], word_lengths[splits[e]:splits[e + 1]])
            example_doc[e] = docs.setdefault(key, len(docs))
        doc_words = np.fromiter((len(k[1]) // 8 for k in docs), dtype=np.int64, count=len(docs))
        doc_lengths = np.frombuffer(b"".join(k[1] for k in docs), dtype=np.int64)
        tok = self.token_offsets if len(self.token_offsets) else np.zeros(1, np.int64)
        to_orig = np.asarray(self.token_to_orig, dtype=np.int64)
        if len(to_orig) and not (-1 <= int(to_orig.min()) and int(to_orig.max()) <= _INT32_MAX):
            raise ValueError("token_to_orig must be doc token indices (int32) or -1")
        tmp = f"{path}.tmp.npz"
        write_then_commit(tmp, path, lambda: np.savez(
            tmp,
            layout=np.asarray(_LAYOUT),
            qas_ids=np.frombuffer(json.dumps(self.qas_ids).encode(), dtype=np.uint8),
            doc_data=np.frombuffer(b"".join(k[0] for k in docs), dtype=np.uint8),
            doc_lengths=_narrow(doc_lengths),
            doc_words=doc_words,
            example_doc=example_doc,
            token_data=np.frombuffer(self.token_data[int(tok[0]):int(tok[-1])], dtype=np.uint8),
            token_lengths=_narrow(np.diff(tok)),
            token_to_orig=_narrow(to_orig + 1),  # -1 (outside the passage) -> 0
            **{k: getattr(self, k) for k in _ARRAY_FIELDS},
        ))

    @classmethod
    def load(cls, path: str) -> SquadFeatureArrays:
        """Reads what save() wrote (or the earlier layout: offsets, a passage per question)."""
        f = open(path, "rb")  # a missing or unreadable file: its own OSError
        try:
            with f:
                z = np.load(f, allow_pickle=False)
                if not hasattr(z, "files"):
                    raise ValueError("one array, not an .npz archive")
                with z:
                    return cls._from_npz(z)
        except (ValueError, KeyError, IndexError, TypeError, EOFError, OSError, RuntimeError,
                NotImplementedError, zipfile.BadZipFile, zlib.error) as e:
            raise ValueError(f"{path}: not SQuAD feature arrays written by pybert (cut, "
                             f"corrupt or another file: {e})") from None

    @classmethod
    def _from_npz(cls, z) -> SquadFeatureArrays:
        def vector(name):
            a = z[name]
            if a.ndim != 1 or a.dtype.kind not in "iu":
                raise ValueError(f"{name}: a {a.ndim}-D {a.dtype} array, expected 1-D integers")
            return a

        fields = {k: vector(k) for k in _ARRAY_FIELDS}
        if "layout" not in z.files:  # written before 2026-11-29
            qas_ids = json.loads(str(z["qas_ids"]))
            arrays = dict(token_to_orig=vector("token_to_orig"),
                          doc_data=z["doc_data"].tobytes(), doc_offsets=vector("doc_offsets"),
                          doc_splits=vector("doc_splits"), token_data=z["token_data"].tobytes(),
                          token_offsets=vector("token_offsets"))
        else:
            layout = z["layout"]
            if layout.shape != () or layout.dtype.kind not in "iu":
                raise ValueError(f"layout: a {layout.ndim}-D {layout.dtype} array, expected "
                                 "an integer")
            if int(layout) != _LAYOUT:
                raise ValueError(f"layout {int(layout)}, this pybert reads {_LAYOUT} (written "
                                 "by a newer pybert?)")
            qas_ids = json.loads(vector("qas_ids").tobytes())
            shifted = vector("token_to_orig")
            if len(shifted) and int(shifted.max()) > _INT32_MAX + 1:
                raise ValueError("token_to_orig past the int32 range")
            doc = _expand_docs(vector("doc_data").tobytes(), vector("doc_lengths"),
                               vector("doc_words"), vector("example_doc"))
            arrays = dict(token_to_orig=shifted.astype(np.int32) - 1,
                          doc_data=doc[0], doc_offsets=doc[1], doc_splits=doc[2],
                          token_data=vector("token_data").tobytes(),
                          token_offsets=_offsets(vector("token_lengths")))
        if not isinstance(qas_ids, list):
            raise ValueError(f"qas_ids: a JSON {type(qas_ids).__name__}, expected a list")
        n_tokens = len(arrays["token_offsets"]) - 1
        if (len(arrays["doc_splits"]) != len(qas_ids) + 1
                or len(fields["token_splits"]) != len(fields["unique_ids"]) + 1
                or not len(arrays["token_to_orig"]) == len(fields["max_context"]) == n_tokens):
            raise ValueError("array sizes disagree")
        return cls(qas_ids=qas_ids, **arrays, **fields)


_LAYOUT = 2  # save(): passages once, string lengths instead of offsets, narrow integers


def _narrow(lengths: np.ndarray) -> np.ndarray:
    """Non-negative integers in the narrowest unsigned dtype that holds them."""
    if len(lengths) and int(lengths.min()) < 0:
        raise ValueError("SquadFeatureArrays with negative string lengths (offsets that "
                         "decrease)")
    top = int(lengths.max()) if len(lengths) else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return lengths.astype(dtype)
    return lengths.astype(np.uint64)


def _offsets(lengths) -> np.ndarray:
    """Offsets (int64, from 0, one more than the lengths) of strings of these lengths."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _expand_docs(data: bytes, lengths, doc_words, example_doc):
    """Per-question doc strings (data, offsets, splits) from the distinct passages."""
    word_splits = _offsets(doc_words)
    byte_offsets = _offsets(lengths)
    if byte_offsets[-1] != len(data) or word_splits[-1] != len(lengths):
        raise ValueError("passage sizes disagree")
    if len(example_doc) and not (0 <= example_doc.min() and example_doc.max() < len(doc_words)):
        raise ValueError("a question's passage index is out of range")
    w0, w1 = word_splits[example_doc], word_splits[example_doc + 1]
    b0, b1 = byte_offsets[w0].tolist(), byte_offsets[w1].tolist()
    doc_data = b"".join(data[a:b] for a, b in zip(b0, b1, strict=True))
    counts = w1 - w0
    splits = _offsets(counts)
    # word k of question e is passage word w0[e] + (k - splits[e])
    words = np.arange(int(splits[-1]), dtype=np.int64) + np.repeat(w0 - splits[:-1], counts)
    return doc_data, _offsets(np.diff(byte_offsets)[words]), splits


_ARRAY_FIELDS = (  # stored as they are; the doc and token offsets are rebuilt by load()
    "unique_ids",
    "feature_example",
    "token_splits",
    "max_context",
)


def _results_to_arrays(all_results, unique_ids: np.ndarray):
    """Aligns results with the features' unique ids: [F, S] start and end logits (float32 arrays
    stay float32, each value is widened exactly in C++; anything else becomes float64)."""
    if isinstance(all_results, tuple) and len(all_results) == 3:
        ids, start, end = (np.asarray(x) for x in all_results)
        if not (start.dtype == np.float32 and end.dtype == np.float32):
            start = np.asarray(start, dtype=np.float64)
            end = np.asarray(end, dtype=np.float64)
        if start.ndim != 2 or start.shape != end.shape or ids.shape != (start.shape[0],):
            raise ValueError(
                "results as arrays must be (unique_ids [N], start_logits [N, S], end_logits "
                f"[N, S]); got shapes {ids.shape}, {start.shape}, {end.shape}"
            )
        if ids.dtype.kind not in "iu":  # 3.7 would become feature 3
            raise ValueError(f"result unique_ids must be integers, got dtype {ids.dtype}")
        ids = ids.astype(np.int64).tolist()
    else:
        all_results = list(all_results)
        ids = [r.unique_id for r in all_results]
        for i in ids:
            if not is_integer(i):  # 3.7 would become feature 3
                raise ValueError(f"result unique_ids must be integers, got {i!r}")
        lengths = {len(r.start_logits) for r in all_results} | {
            len(r.end_logits) for r in all_results
        }
        if len(lengths) > 1:
            for r in all_results:
                if len(r.start_logits) != len(r.end_logits) or len(r.start_logits) != max(lengths):
                    raise ValueError(
                        f"result {r.unique_id}: logits of length {len(r.start_logits)} / "
                        f"{len(r.end_logits)}, expected {max(lengths)} like the others"
                    )
        start = np.asarray([r.start_logits for r in all_results], dtype=np.float64)
        end = np.asarray([r.end_logits for r in all_results], dtype=np.float64)
        if start.ndim == 1:  # no results (reported below as missing), or empty logits
            start = start.reshape(len(ids), -1 if ids else 0)
            end = end.reshape(len(ids), -1 if ids else 0)
    ids = np.asarray(ids, dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"duplicate result unique_id {_first_duplicate(ids)}")
    if ids.shape == unique_ids.shape and np.array_equal(ids, unique_ids):
        index = None  # results already in feature order (the usual case)
    else:
        order = np.argsort(ids, kind="stable")
        pos = np.searchsorted(ids, unique_ids, sorter=order)
        pos = np.minimum(pos, len(ids) - 1) if len(ids) else pos
        found = (ids[order[pos]] == unique_ids) if len(ids) else np.zeros(len(unique_ids), bool)
        if not found.all():
            missing = unique_ids[~found]
            raise ValueError(
                f"no result for feature unique_id {int(missing[0])} ({len(missing)} missing)"
            )
        index = order[pos]
        if len(ids) > len(unique_ids):  # as the seed: e.g. the results of its padding features
            logger.info("ignoring %d results whose unique_id has no feature (first: %d)",
                        len(ids) - len(unique_ids), int(np.setdiff1d(ids, unique_ids)[0]))
    if index is not None:
        start, end = start[index], end[index]
    # NaN / inf are found by the C++ side (one pass), reported by _non_finite_error
    return np.ascontiguousarray(start), np.ascontiguousarray(end)


def _non_finite_error(start, end, unique_ids) -> ValueError:
    bad = ~(np.isfinite(start).all(axis=1) & np.isfinite(end).all(axis=1))
    return ValueError(f"result unique_id {int(unique_ids[np.argmax(bad)])}: logits are NaN or inf")


def _first_duplicate(ids):
    values, counts = np.unique(ids, return_counts=True)
    return int(values[np.argmax(counts > 1)])


def postprocess_output(
    all_examples,
    all_features,
    all_results,
    n_best_size,
    max_answer_length,
    do_lower_case,
    version_2_with_negative=False,
    null_score_diff_threshold=0.0,
    verbose=False,
    num_threads=1,
):
    """The seed's postprocess_output, in C++. Returns (predictions, nbest, null_odds).

    all_examples/all_features: the seed's objects, or a SquadFeatureArrays as
    all_examples with all_features None. all_results: the seed's RawResult
    objects, or (unique_ids, start_logits, end_logits) arrays.
    num_threads: examples are decoded in parallel (None or 0: all cores).
    """
    if isinstance(all_examples, SquadFeatureArrays):
        arrays = all_examples
    else:
        arrays = SquadFeatureArrays.from_seed(all_examples, all_features)
    if not is_integer(n_best_size) or n_best_size < 1:
        raise ValueError(f"n_best_size must be an int >= 1, got {n_best_size!r}")
    if not is_integer(max_answer_length) or max_answer_length < 1:
        raise ValueError(f"max_answer_length must be an int >= 1, got {max_answer_length!r}")
    if num_threads is not None and (not is_integer(num_threads)
                                    or not 0 <= num_threads <= MAX_THREADS):
        raise ValueError(f"num_threads must be in [0, {MAX_THREADS}] or None, got "
                         f"{num_threads!r}")
    if version_2_with_negative and math.isnan(float(null_score_diff_threshold)):
        raise ValueError("null_score_diff_threshold is NaN")
    if len(arrays.qas_ids) != len(arrays.doc_splits) - 1:
        raise ValueError(f"qas_ids: {len(arrays.qas_ids)} ids for "
                         f"{len(arrays.doc_splits) - 1} examples (doc_splits)")
    start, end = _results_to_arrays(all_results, np.asarray(arrays.unique_ids, dtype=np.int64))
    gc_was_enabled = gc.isenabled()
    # The result is ~20 dicts per question and a list per question, nothing
    # cyclic: collections triggered by creating them would only walk them.
    gc.disable()
    try:
        try:
            out = _C.squad_postprocess(
                arrays.doc_data,
                arrays.doc_offsets,
                arrays.doc_splits,
                arrays.feature_example,
                arrays.token_data,
                arrays.token_offsets,
                arrays.token_splits,
                arrays.token_to_orig,
                arrays.max_context,
                start,
                end,
                min(int(n_best_size), _INT32_MAX),  # more than every candidate: all of them
                min(int(max_answer_length), _INT32_MAX),
                bool(do_lower_case),
                bool(version_2_with_negative),
                float(null_score_diff_threshold),
                bool(verbose),
                int(num_threads or os.cpu_count() or 1),
            )
        except ValueError as e:
            if "not finite" in str(e):
                raise _non_finite_error(start, end, arrays.unique_ids) from None
            raise
        predictions = collections.OrderedDict()
        nbest = collections.OrderedDict()
        null_odds = collections.OrderedDict()
        for qas_id, (prediction, entries, score_diff, log) in zip(arrays.qas_ids, out,
                                                                  strict=True):
            for message in log:
                logger.info(message)
            predictions[qas_id] = prediction
            nbest[qas_id] = entries
            if version_2_with_negative:
                null_odds[qas_id] = score_diff
    finally:
        if gc_was_enabled:
            gc.enable()
    return predictions, nbest, null_odds


def get_final_text(pred_text, orig_text, do_lower_case, verbose=False):
    """The seed's get_final_text: project a normalized span back onto the original text."""
    del verbose  # messages are logged by postprocess_output(verbose=True)
    return _C.squad_final_text(pred_text, orig_text, bool(do_lower_case))


def _write_json(records, path):
    tmp = f"{path}.tmp"
    write_then_commit(tmp, path, lambda: write_text(tmp, json.dumps(records, indent=4) + "\n"))


def write_predictions(
    all_examples,
    all_features,
    all_results,
    n_best_size,
    max_answer_length,
    do_lower_case,
    output_prediction_file,
    output_nbest_file,
    output_null_log_odds_file,
    version_2_with_negative=False,
    null_score_diff_threshold=0.0,
    verbose=False,
    num_threads=1,
):
    """Writes predictions.json, nbest_predictions.json and (v2.0) null_odds.json."""
    logger.info("Writing predictions to: %s", output_prediction_file)
    logger.info("Writing nbest to: %s", output_nbest_file)
    predictions, nbest, null_odds = postprocess_output(
        all_examples,
        all_features,
        all_results,
        n_best_size,
        max_answer_length,
        do_lower_case,
        version_2_with_negative,
        null_score_diff_threshold,
        verbose,
        num_threads,
    )
    with staged_outputs():  # the files replace an earlier run's together, or not at all
        _write_json(predictions, output_prediction_file)
        _write_json(nbest, output_nbest_file)
        if version_2_with_negative:
            _write_json(null_odds, output_null_log_odds_file)
    return predictions, nbest, null_odds
