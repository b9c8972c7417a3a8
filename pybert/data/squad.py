"""SQuAD v1.1 / v2.0 reading and featurization with the seed's rules, vectorized.

Reads SQuAD JSON and produces the seed's features (squad_lib
read_squad_examples + convert_examples_to_features): whitespace words, the
answer's word span, WordPiece tokens with the seed's `_improve_answer_span`,
doc spans of `max_tokens_for_doc` with `doc_stride`, the max-context rule, and
unique ids from 1000000000. Training features carry start/end positions and
is_impossible; evaluation features come with a `SquadFeatureArrays` file
(tokens, token_to_orig, max context, doc words) so prediction decodes spans
without re-tokenizing the dev set.

Speed comes from tokenizing each paragraph's words once (the seed does it
once per question) in the C++ tokenizer on all cores, and from computing the
max-context table once per (paragraph length, window) instead of per token.

Example:
    data = read_squad("dev-v1.1.json", is_training=False)
    feats = featurize(data, tokenizer, max_seq_length=384, doc_stride=128, max_query_length=64,
                      is_training=False)
    feats.arrays["input_ids"].shape -> (10833, 384)
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import json
import logging
import os
import re
from dataclasses import dataclass, field

import numpy as np

from pybert.data import records
from pybert.data.classification import DataError
from pybert.squad.postprocess import SquadFeatureArrays

logger = logging.getLogger("pybert.data")

BASE_UNIQUE_ID = 1000000000
# The seed's is_whitespace: space, tab, CR, LF and U+202F (narrow no-break space).
_WORD = re.compile("[^ \t\r\n\u202f]+")


@dataclass
class SquadData:
    """Paragraphs (whitespace words) and questions of one SQuAD file."""

    path: str
    paragraph_words: list[list[str]]  # [P] words of each context
    context_bytes: list[bytes]  # [P] UTF-8 of each context
    qas_ids: list[str]  # [E]
    questions: list[str]  # [E]
    example_paragraph: np.ndarray  # int64 [E] paragraph of each question
    # Training only (else empty): word span of the answer, answer text, is_impossible.
    start_word: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    end_word: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    answer_texts: list[str] = field(default_factory=list)
    is_impossible: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    skipped_mismatch: list[str] = field(default_factory=list)  # qas ids the seed skips too

    def __len__(self) -> int:
        return len(self.qas_ids)


@contextlib.contextmanager
def _no_gc():
    """Pauses the cyclic GC: reading builds ~10^5 acyclic objects that would trigger full,
    useless collections (tens of ms each)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _get(obj, key, where):
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{where}: missing field {key!r}")
    return obj[key]


def _list(obj, key, where) -> list:
    value = _get(obj, key, where)
    if not isinstance(value, list):
        raise DataError(f"{where}: {key!r} must be a list, got {type(value).__name__}")
    return value


def read_squad(path: str, is_training: bool, version_2_with_negative: bool = False) -> SquadData:
    with _no_gc():
        return _read_squad(path, is_training, version_2_with_negative)


def _read_squad(path: str, is_training: bool, version_2_with_negative: bool) -> SquadData:
    """(read_squad) The seed's read_squad_examples, keeping each paragraph's words once.

    Training: a question needs exactly one answer (unless impossible); an
    answer whose text is not found at its offset is skipped, counted in
    `skipped_mismatch` and logged, as the seed does. An answer offset outside
    its context is an error naming the question id.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 at byte {e.start}: {e.reason}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be SQuAD data") from None
    articles = _get(data, "data", path)
    if not isinstance(articles, list):
        raise DataError(f"{path}: 'data' must be a list of articles")
    out = SquadData(path, [], [], [], [], np.zeros(0, np.int64))
    ex_par, starts_w, ends_w, impossible = [], [], [], []
    seen: dict = {}  # question id -> where (predictions are keyed by id)
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(_list(article, "paragraphs", f"{path}: data[{a}]")):
            where_p = f"{path}: data[{a}].paragraphs[{p}]"
            context = _get(paragraph, "context", where_p)
            if not isinstance(context, str):
                raise DataError(f"{where_p}: 'context' must be a string")
            words = _WORD.findall(context)
            word_starts = [m.start() for m in _WORD.finditer(context)] if is_training else None
            par_index = len(out.paragraph_words)
            out.paragraph_words.append(words)
            out.context_bytes.append(context.encode("utf-8", "surrogatepass"))
            for q, qa in enumerate(_list(paragraph, "qas", where_p)):
                where_q = f"{where_p}.qas[{q}]"
                qas_id = _get(qa, "id", where_q)
                if not isinstance(qas_id, (str, int)) or isinstance(qas_id, bool):
                    raise DataError(f"{where_q}: 'id' must be a string (or integer), got "
                                    f"{qas_id!r}")
                if not is_training:  # keys of predictions.json: 1 and "1" are one key
                    if str(qas_id) in seen:
                        raise DataError(f"{where_q}: question id {qas_id!r} again (first at "
                                        f"{seen[str(qas_id)]}); predictions are keyed by id")
                    seen[str(qas_id)] = where_q
                question = _get(qa, "question", f"{where_q} (id {qas_id})")
                if not isinstance(question, str):
                    raise DataError(f"{where_q} (id {qas_id}): 'question' must be a string")
                if is_training:
                    is_imp = bool(qa.get("is_impossible", False)) if version_2_with_negative \
                        else False
                    if version_2_with_negative and "is_impossible" not in qa:
                        raise DataError(f"{where_q} (id {qas_id}): missing field 'is_impossible'")
                    answers = _list(qa, "answers", f"{where_q} (id {qas_id})")
                    if len(answers) != 1 and not is_imp:
                        raise DataError(
                            f"{where_q} (id {qas_id}): for training each question needs exactly "
                            f"one answer, got {len(answers)}"
                        )
                    if is_imp:
                        s_w, e_w, text = -1, -1, ""
                    else:
                        ans = answers[0]
                        text = _get(ans, "text", f"{where_q} (id {qas_id}).answers[0]")
                        offset = _get(ans, "answer_start", f"{where_q} (id {qas_id}).answers[0]")
                        where_a = f"{where_q} (id {qas_id}).answers[0]"
                        if not isinstance(text, str) or not text:
                            raise DataError(f"{where_a}.text must be a non-empty string, got "
                                            f"{text!r}")
                        if isinstance(offset, bool) or not isinstance(offset, int):
                            raise DataError(f"{where_a}.answer_start must be an integer, got "
                                            f"{offset!r}")
                        if offset < 0 or offset + len(text) > len(context):
                            raise DataError(
                                f"{where_q} (id {qas_id}): answer_start {offset!r} with text "
                                f"{text!r} is outside the context ({len(context)} characters)"
                            )
                        # char_to_word_offset: the last word starting at or before the char.
                        s_w = bisect.bisect_right(word_starts, offset) - 1
                        e_w = bisect.bisect_right(word_starts, offset + len(text) - 1) - 1
                        actual = " ".join(words[s_w:e_w + 1])  # Python slice, like the seed
                        cleaned = " ".join(text.strip().split())
                        if actual.find(cleaned) == -1:
                            logger.warning("%s (id %s): could not find answer: %r vs. %r",
                                           where_q, qas_id, actual, cleaned)
                            out.skipped_mismatch.append(qas_id)
                            continue
                    starts_w.append(s_w)
                    ends_w.append(e_w)
                    out.answer_texts.append(text)
                    impossible.append(is_imp)
                out.qas_ids.append(qas_id)
                out.questions.append(question)
                ex_par.append(par_index)
    out.example_paragraph = np.asarray(ex_par, dtype=np.int64)
    if is_training:
        out.start_word = np.asarray(starts_w, dtype=np.int64)
        out.end_word = np.asarray(ends_w, dtype=np.int64)
        out.is_impossible = np.asarray(impossible, dtype=bool)
    if not out.qas_ids:
        raise DataError(f"{path}: no questions"
                        + (f" ({len(out.skipped_mismatch)} skipped: answer text not at its offset)"
                           if out.skipped_mismatch else ""))
    if out.skipped_mismatch:
        logger.warning("%s: skipped %d questions whose answer text is not at its offset "
                       "(the seed skips them too)", path, len(out.skipped_mismatch))
    return out


@dataclass
class SquadFeatures:
    """Featurized SQuAD: TFRecord columns plus what post-processing needs."""

    arrays: dict[str, np.ndarray]  # unique_ids, input_ids, input_mask, segment_ids (+ train)
    feature_example: np.ndarray  # int64 [F]
    num_examples: int
    post: SquadFeatureArrays | None = None  # evaluation only

    def __len__(self) -> int:
        return len(self.arrays["unique_ids"])


def _doc_spans(n_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[tuple[int, int]]:
    spans = []
    start = 0
    while start < n_tokens:
        length = min(n_tokens - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == n_tokens:
            break
        start += min(length, doc_stride)
    return spans


def _max_context(spans: list[tuple[int, int]], n_tokens: int) -> list[np.ndarray]:
    """Per span, a bool array: is this span the token's max-context span (the seed's rule).

    The score of a token in a span is min(left context, right context) + 0.01 * span length;
    the first span with the highest score wins (argmax returns the first maximum).
    """
    if not spans:  # a context without words: no features (as the seed)
        return []
    pos = np.arange(n_tokens, dtype=np.float64)
    scores = np.full((len(spans), n_tokens), -np.inf)
    for k, (s, length) in enumerate(spans):
        e = s + length - 1
        seg = pos[s:e + 1]
        scores[k, s:e + 1] = np.minimum(seg - s, e - seg) + 0.01 * length
    best = np.argmax(scores, axis=0)
    return [best[s:s + length] == k for k, (s, length) in enumerate(spans)]


def _gather_strings(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
    """Concatenates byte strings buf[starts[i]:starts[i]+lengths[i]]; returns (bytes, offsets)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    if total == 0:
        return b"", offsets
    idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)
    return buf[idx].tobytes(), offsets


_VOCAB_BUFFERS: dict = {}


def _word_bytes(contexts: list[bytes], expected: int):
    """UTF-8 start and length of every whitespace word of the contexts (in order), vectorized.

    Returns (buffer, starts, lengths) over b" ".join(contexts); whitespace is the seed's:
    the bytes of space, tab, CR, LF and the 3-byte U+202F.
    """
    buf = np.frombuffer(b" ".join(contexts), dtype=np.uint8)
    ws = (buf == 0x20) | (buf == 0x09) | (buf == 0x0D) | (buf == 0x0A)
    nnbsp = np.flatnonzero((buf[:-2] == 0xE2) & (buf[1:-1] == 0x80) & (buf[2:] == 0xAF))
    for k in range(3):
        ws[nnbsp + k] = True
    edges = np.diff(np.concatenate(([False], ~ws, [False])).astype(np.int8))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if len(starts) != expected:  # the str and byte splits disagree: cannot happen for UTF-8
        raise AssertionError(f"word split mismatch: {len(starts)} != {expected}")
    return buf, starts.astype(np.int64), (ends - starts).astype(np.int64)


def _vocab_buffer(tokenizer):
    """_flat_strings of the vocabulary, cached per tokenizer."""
    key = id(tokenizer)
    hit = _VOCAB_BUFFERS.get(key)
    if hit is None or hit[0] is not tokenizer:
        tokens = tokenizer.convert_ids_to_tokens(range(tokenizer.vocab_size))
        hit = (tokenizer, _flat_strings(tokens))
        _VOCAB_BUFFERS.clear()
        _VOCAB_BUFFERS[key] = hit
    return hit[1]


def _flat_strings(strings: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
    starts = np.zeros(len(encoded), dtype=np.int64)
    if len(encoded) > 1:
        np.cumsum(lengths[:-1], out=starts[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), starts, lengths


def featurize(
    data: SquadData,
    tokenizer,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    is_training: bool = False,
    num_threads: int | None = None,
) -> SquadFeatures:
    """The seed's convert_examples_to_features for all questions at once.

    Evaluation features are not padded to a batch multiple (the seed's
    prediction adds dummy features; pybert's prediction handles a partial
    last batch).
    """
    with _no_gc():
        return _featurize(data, tokenizer, max_seq_length, doc_stride, max_query_length,
                          is_training, num_threads)


def _featurize(data, tokenizer, max_seq_length, doc_stride, max_query_length, is_training,
               num_threads) -> SquadFeatures:
    if max_query_length < 1 or doc_stride < 1:
        raise ValueError(f"max_query_length ({max_query_length}) and doc_stride ({doc_stride}) "
                         f"must be positive")
    if max_seq_length < 4:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for [CLS], a question, "
                         f"[SEP], a passage token and [SEP]")
    threads = num_threads or 0
    vocab = tokenizer.vocab
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]

    # 1. Word pieces of every paragraph word, tokenized once per paragraph.
    all_words = [w for words in data.paragraph_words for w in words]
    par_word_splits = np.zeros(len(data.paragraph_words) + 1, dtype=np.int64)
    np.cumsum([len(w) for w in data.paragraph_words], out=par_word_splits[1:])
    enc = tokenizer.encode_batch(all_words, add_special_tokens=False, return_offsets=False,
                                 pad=False, num_threads=threads)
    word_tok_splits = enc.row_splits  # [W + 1] over flat_ids
    flat_doc_ids = enc.flat_ids
    # word index (within its paragraph) of each flat word piece
    word_of_piece = np.repeat(np.arange(len(all_words), dtype=np.int64), np.diff(word_tok_splits))
    par_of_word = np.repeat(np.arange(len(data.paragraph_words)), np.diff(par_word_splits))
    word_local = (np.arange(len(all_words)) - par_word_splits[par_of_word])[word_of_piece]
    par_tok_start = word_tok_splits[par_word_splits[:-1]]
    par_tok_end = word_tok_splits[par_word_splits[1:]]

    # 2. Questions, truncated to max_query_length pieces.
    qenc = tokenizer.encode_batch(data.questions, add_special_tokens=False, return_offsets=False,
                                  pad=False, num_threads=threads)
    q_splits, q_ids = qenc.row_splits, qenc.flat_ids

    if is_training:
        aenc = tokenizer.encode_batch(data.answer_texts, add_special_tokens=False,
                                      return_offsets=False, pad=False, num_threads=threads)
        a_splits, a_ids = aenc.row_splits, aenc.flat_ids

    # 3. Spans per question, then the feature rows.
    span_cache: dict[tuple[int, int], tuple[list, list]] = {}
    plan = []  # (example, doc_start_flat, span_start, span_len, q_start, q_len, max_ctx, pos)
    for e in range(len(data)):
        p = int(data.example_paragraph[e])
        q0 = int(q_splits[e])
        q_len = min(int(q_splits[e + 1]) - q0, max_query_length)
        t0, t1 = int(par_tok_start[p]), int(par_tok_end[p])
        n_tok = t1 - t0
        max_doc = max_seq_length - q_len - 3
        if max_doc < 1:  # the seed loops forever here
            raise ValueError(
                f"question {data.qas_ids[e]!r} of {data.path}: max_seq_length={max_seq_length} "
                f"leaves no room for the passage after its {q_len} tokens (max_query_length="
                f"{max_query_length}) and 3 special tokens")
        key = (n_tok, max_doc)
        if key not in span_cache:
            spans = _doc_spans(n_tok, max_doc, doc_stride)
            if len(spans) == 1:
                ctx = [np.ones(n_tok, dtype=bool)]  # one window: every token has its max context
            else:
                ctx = _max_context(spans, n_tok)
            span_cache[key] = (spans, ctx)
        spans, max_ctx = span_cache[key]
        tok_start = tok_end = None
        if is_training:
            if data.is_impossible[e]:
                tok_start = tok_end = -1
            else:
                w0 = int(par_word_splits[p])
                sw, ew = int(data.start_word[e]), int(data.end_word[e])
                n_words = int(par_word_splits[p + 1]) - w0
                if sw < 0:  # the seed indexes orig_to_tok_index[-1]: the last word
                    sw += n_words
                tok_start = int(word_tok_splits[w0 + sw]) - t0
                if ew < n_words - 1:
                    tok_end = int(word_tok_splits[w0 + ew + 1]) - t0 - 1
                else:
                    tok_end = n_tok - 1
                tok_start, tok_end = _improve_answer_span(
                    flat_doc_ids[t0:t1], tok_start, tok_end,
                    a_ids[int(a_splits[e]):int(a_splits[e + 1])])
        for k, (s, length) in enumerate(spans):
            pos = (0, 0)
            if is_training and not data.is_impossible[e]:
                if tok_start >= s and tok_end <= s + length - 1:
                    off = q_len + 2
                    pos = (tok_start - s + off, tok_end - s + off)
            plan.append((e, t0, s, length, q0, q_len, max_ctx[k], pos))

    n = len(plan)
    ids = np.zeros((n, max_seq_length), dtype=np.int32)
    mask = np.zeros_like(ids)
    segs = np.zeros_like(ids)
    feature_example = np.empty(n, dtype=np.int64)
    real_len = np.empty(n, dtype=np.int64)
    doc_begin = np.empty(n, dtype=np.int64)
    for f, (e, t0, s, length, q0, q_len, _, _) in enumerate(plan):
        row = ids[f]
        row[0] = cls_id
        row[1:1 + q_len] = q_ids[q0:q0 + q_len]
        row[1 + q_len] = sep_id
        d0 = 2 + q_len
        row[d0:d0 + length] = flat_doc_ids[t0 + s:t0 + s + length]
        row[d0 + length] = sep_id
        total = d0 + length + 1
        mask[f, :total] = 1
        segs[f, d0:total] = 1
        feature_example[f] = e
        real_len[f] = total
        doc_begin[f] = t0 + s
    arrays = {
        "unique_ids": np.arange(BASE_UNIQUE_ID, BASE_UNIQUE_ID + n, dtype=np.int64),
        "input_ids": ids,
        "input_mask": mask,
        "segment_ids": segs,
    }
    if is_training:
        arrays["start_positions"] = np.asarray([x[7][0] for x in plan], dtype=np.int64)
        arrays["end_positions"] = np.asarray([x[7][1] for x in plan], dtype=np.int64)
        arrays["is_impossible"] = data.is_impossible[feature_example].astype(np.int64)
    feats = SquadFeatures(arrays, feature_example, len(data))
    if not is_training:
        feats.post = _post_arrays(data, tokenizer, plan, ids, real_len, feature_example,
                                  word_local, par_word_splits, flat_doc_ids, q_ids)
    return feats


def _improve_answer_span(doc_ids, start, end, answer_ids):
    """The seed's _improve_answer_span on ids: the first (start asc) exact token match inside
    [start, end] of the tokenized answer; unchanged when none (or the answer has no tokens)."""
    n = len(answer_ids)
    if n == 0:
        return start, end
    first = answer_ids[0]
    for s in range(start, end - n + 2):
        if doc_ids[s] == first and np.array_equal(doc_ids[s:s + n], answer_ids):
            return s, s + n - 1
    return start, end


def _post_arrays(data, tokenizer, plan, ids, real_len, feature_example, word_local,
                 par_word_splits, flat_doc_ids, q_ids) -> SquadFeatureArrays:
    """SquadFeatureArrays for the features without per-token Python work.

    A feature's tokens are [CLS] question [SEP] passage-window [SEP]; the
    strings of every paragraph's word pieces and every question's pieces are
    built once, and each feature's token bytes are five slices of those.
    """
    vbuf, vstart, vlen = _vocab_buffer(tokenizer)
    cls_b, sep_b = (tokenizer.convert_ids_to_tokens([i])[0].encode() for i in
                    (tokenizer.vocab["[CLS]"], tokenizer.vocab["[SEP]"]))
    doc_ids64 = flat_doc_ids.astype(np.int64)
    pbuf, poff = _gather_strings(vbuf, vstart[doc_ids64], vlen[doc_ids64])
    q64 = q_ids.astype(np.int64)
    qbuf, qoff = _gather_strings(vbuf, vstart[q64], vlen[q64])
    n = len(plan)
    seq = ids.shape[1]
    real = np.arange(seq)[None, :] < real_len[:, None]  # [F, S]
    token_offsets = np.zeros(int(real_len.sum()) + 1, dtype=np.int64)
    np.cumsum(vlen[ids[real]], out=token_offsets[1:])
    token_splits = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(real_len, out=token_splits[1:])
    token_to_orig = np.full(int(token_splits[-1]), -1, dtype=np.int32)
    max_context = np.zeros(int(token_splits[-1]), dtype=np.uint8)
    parts = []
    for f, (_, t0, s, length, q0, q_len, mctx, _) in enumerate(plan):
        base = int(token_splits[f]) + 2 + q_len
        token_to_orig[base:base + length] = word_local[t0 + s:t0 + s + length]
        max_context[base:base + length] = mctx
        parts += (cls_b, qbuf[qoff[q0]:qoff[q0 + q_len]], sep_b,
                  pbuf[poff[t0 + s]:poff[t0 + s + length]], sep_b)
    token_data = b"".join(parts)
    # Doc words per example: each example repeats its paragraph's words.
    gbuf, wstart, wlen = _word_bytes(data.context_bytes, int(par_word_splits[-1]))
    words_buf, words_off = _gather_strings(gbuf, wstart, wlen)
    par = data.example_paragraph.tolist()
    w_lo, w_hi = par_word_splits[:-1], par_word_splits[1:]
    doc_data = b"".join(words_buf[words_off[w_lo[p]]:words_off[w_hi[p]]] for p in par)
    counts = np.diff(par_word_splits)[data.example_paragraph]
    doc_splits = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(counts, out=doc_splits[1:])
    doc_offsets = np.zeros(int(doc_splits[-1]) + 1, dtype=np.int64)
    if par:
        np.cumsum(np.concatenate([wlen[w_lo[p]:w_hi[p]] for p in par]), out=doc_offsets[1:])
    assert token_offsets[-1] == len(token_data) and doc_offsets[-1] == len(doc_data)
    return SquadFeatureArrays(
        qas_ids=list(data.qas_ids),
        doc_data=doc_data,
        doc_offsets=doc_offsets,
        doc_splits=doc_splits,
        unique_ids=np.arange(BASE_UNIQUE_ID, BASE_UNIQUE_ID + n, dtype=np.int64),
        feature_example=feature_example.copy(),
        token_data=token_data,
        token_offsets=token_offsets,
        token_splits=token_splits,
        token_to_orig=token_to_orig,
        max_context=max_context,
    )


TRAIN_FEATURES = ("unique_ids", "input_ids", "input_mask", "segment_ids", "start_positions",
                  "end_positions", "is_impossible")
EVAL_FEATURES = ("unique_ids", "input_ids", "input_mask", "segment_ids")


def features_path(tfrecord_path: str) -> str:
    """Where the post-processing arrays of an evaluation TFRecord live."""
    return tfrecord_path + ".features.npz"


def write_features(path: str, feats: SquadFeatures, is_training: bool) -> int:
    """Writes the TFRecord (and, for evaluation, features_path(path)) atomically."""
    names = TRAIN_FEATURES if is_training else EVAL_FEATURES
    n = records.write_records(path, records.serialize_rows([(k, feats.arrays[k]) for k in names]))
    if not is_training and feats.post is not None:
        feats.post.save(features_path(path))
    return n


def generate_tf_record_from_json_file(
    input_file_path: str,
    tokenizer,
    output_path: str,
    max_seq_length: int = 384,
    max_query_length: int = 64,
    doc_stride: int = 128,
    version_2_with_negative: bool = False,
    num_threads: int | None = None,
) -> dict:
    """Training TFRecord from a SQuAD file; returns the seed's meta data dict."""
    data = read_squad(input_file_path, True, version_2_with_negative)
    feats = featurize(data, tokenizer, max_seq_length, doc_stride, max_query_length, True,
                      num_threads)
    n = write_features(output_path, feats, is_training=True)
    logger.info("wrote %d training features for %d questions to %s", n, len(data), output_path)
    return {
        "task_type": "bert_squad",
        "train_data_size": n,
        "max_seq_length": max_seq_length,
        "max_query_length": max_query_length,
        "doc_stride": doc_stride,
        "version_2_with_negative": version_2_with_negative,
    }
