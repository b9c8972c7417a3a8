"""Python face of the C++ WordPiece tokenizer.

`Tokenizer` is the fast API (ids, segment ids, masks and character offsets,
batched on several threads with the GIL released). `FullTokenizer` and
`BasicTokenizer` mirror the seed's tokenization.py so code written for it
runs unchanged:

    >>> tok = FullTokenizer("vocab.txt", do_lower_case=True)
    >>> tok.tokenize("unaffable")
    ['un', '##aff', '##able']

Tokenization follows the original BERT rules exactly (as Python 3 runs them),
including where HuggingFace `tokenizers` differs; see README "Tokenizer".
SentencePiece models (the seed's ALBERT path) are out of scope here.

Text policy: `str` is taken as is (lone surrogates included: they count as one
character each and usually become [UNK]). `bytes` are decoded as UTF-8;
`Tokenizer` rejects invalid UTF-8 with a ValueError naming the item and byte,
while the seed facades decode with errors="ignore" exactly like the seed's
convert_to_unicode.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pybert import _C

VocabError = _C.VocabError
EncodeError = _C.EncodeError

# Padded rows are allocated at max_seq_length: a typo like 10**9 must be an error, not an
# out-of-memory kill. BERT-family models stop far below this.
MAX_SEQ_LENGTH = 1 << 16

_TRUNCATIONS = ("longest_first", "only_first", "only_second")
MAX_THREADS = 4096  # the C++ side takes an int; more threads than this is a mistake


def is_integer(x) -> bool:
    """An int or NumPy integer that is not a bool: how counts, sizes and ids given as
    arguments are checked (2.7 is not truncated to 2, True is not read as 1)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _read_vocab_bytes(vocab_file: str | os.PathLike) -> bytes:
    path = Path(vocab_file)
    if not path.is_file():
        raise FileNotFoundError(f"vocab file not found: {path}")
    return path.read_bytes()


def _as_str(text, arg: str, index: int | None = None) -> str:
    if isinstance(text, str):
        return text
    where = arg if index is None else f"{arg}[{index}]"
    if isinstance(text, (bytes, bytearray)):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{where}: invalid UTF-8 at byte {e.start}: {e.reason}") from None
    raise TypeError(f"{where} must be str or bytes, got {type(text).__name__}")


def _as_str_list(texts, arg: str) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{arg} must be a sequence of str, got a single {type(texts).__name__}")
    return [_as_str(t, arg, i) for i, t in enumerate(texts)]


def _seed_unicode(text) -> str:
    """The seed's convert_to_unicode: bytes decoded as UTF-8, bad bytes dropped."""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8", "ignore")
    raise ValueError(f"Unsupported string type: {type(text)}")


@dataclass(frozen=True)
class Encoding:
    """One encoded text (or pair).

    ids: int32 [n] word-piece ids; type_ids: int32 [n] segment ids;
    input_mask: int32 [n] (1 = real token, 0 = padding); offsets: int32 [n, 2]
    [begin, end) character offsets into the text the token came from ((0, 0)
    for special tokens and padding; see `type_ids` for which text).
    """

    ids: np.ndarray
    type_ids: np.ndarray
    input_mask: np.ndarray
    offsets: np.ndarray
    tokens: list[str]


class BatchEncoding:
    """Encoded batch: padded arrays [batch, seq] and the ragged form.

    Padded (absent when pad=False): input_word_ids, input_mask, input_type_ids,
    offsets [batch, seq, 2]. Ragged: flat_ids, flat_type_ids, flat_offsets
    [total, 2] and row_splits int64 [batch + 1]; row i is
    flat_ids[row_splits[i]:row_splits[i + 1]]. `ids` is a list of per-text
    int32 arrays (views of flat_ids).
    """

    def __init__(self, arrays: dict):
        self._arrays = arrays
        self._ids = None

    def __getattr__(self, name):
        arrays = self.__dict__.get("_arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(f"BatchEncoding has no field {name!r}; fields: {sorted(arrays)}")

    def __len__(self) -> int:
        return len(self._arrays["row_splits"]) - 1

    @property
    def ids(self) -> list[np.ndarray]:
        if self._ids is None:
            self._ids = np.split(self._arrays["flat_ids"], self._arrays["row_splits"][1:-1])
        return self._ids

    def model_inputs(self) -> dict[str, np.ndarray]:
        """The padded arrays under the seed's model input names."""
        return {k: self._arrays[k] for k in ("input_word_ids", "input_mask", "input_type_ids")}

    def keys(self):
        return self._arrays.keys()

    def __getitem__(self, key: str) -> np.ndarray:
        return self._arrays[key]


class Tokenizer:
    """Fast exact BERT tokenizer.

    Args:
      vocab_file: WordPiece vocab, one token per line (id = line number).
      do_lower_case: lower-case and strip accents (uncased models).
      max_input_chars_per_word: longer words become unk_token (seed: 400).
      unk_token: must be in the vocab.
      split_on_punc: split punctuation into its own tokens (the seed's flag).

    Example: encode("hello world").ids -> [101, 7592, 2088, 102] with the
    uncased BERT vocab.
    """

    def __init__(
        self,
        vocab_file,
        do_lower_case: bool = True,
        max_input_chars_per_word: int = 400,
        unk_token: str = "[UNK]",
        split_on_punc: bool = True,
    ):
        data = _read_vocab_bytes(vocab_file)
        if (isinstance(max_input_chars_per_word, bool)
                or not isinstance(max_input_chars_per_word, int)
                or not 0 < max_input_chars_per_word < 2**31):
            raise ValueError(
                f"max_input_chars_per_word must be a positive int below 2**31, got "
                f"{max_input_chars_per_word!r}"
            )
        if not isinstance(unk_token, str) or not unk_token:
            raise ValueError(f"unk_token must be a non-empty str, got {unk_token!r}")
        try:
            unk_token.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"unk_token {unk_token!r} is not valid Unicode text (a lone "
                             "surrogate)") from None
        self.vocab_file = str(vocab_file)
        self.do_lower_case = bool(do_lower_case)
        self.max_input_chars_per_word = max_input_chars_per_word
        self.unk_token = unk_token
        self._native = _C.WordpieceTokenizer(
            data,
            # the name in error messages: a file name that is not UTF-8 (legal on Linux)
            # reaches Python with lone surrogates, which std::string cannot take
            os.fsencode(vocab_file).decode("utf-8", "backslashreplace"),
            self.do_lower_case,
            max_input_chars_per_word,
            unk_token,
            bool(split_on_punc),
        )
        self._inv_vocab_list = None
        self._vocab = None
        self._inv_vocab = None

    # -- vocabulary ------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._native.vocab_size()

    @property
    def vocab(self) -> collections.OrderedDict:
        if self._vocab is None:
            self._vocab = collections.OrderedDict(
                (t, i) for i, t in enumerate(self._id_to_token_list())
            )
        return self._vocab

    @property
    def inv_vocab(self) -> dict:
        if self._inv_vocab is None:
            self._inv_vocab = dict(enumerate(self._id_to_token_list()))
        return self._inv_vocab

    def _id_to_token_list(self) -> list[str]:
        if self._inv_vocab_list is None:
            self._inv_vocab_list = self._native.tokens()
        return self._inv_vocab_list

    def convert_tokens_to_ids(self, tokens) -> list[int]:
        vocab = self.vocab
        return [vocab[t] for t in tokens]

    def convert_ids_to_tokens(self, ids) -> list[str]:
        table = self._id_to_token_list()
        out = []
        for i in ids:
            if not is_integer(i):  # an id, not a float to truncate or a bool
                raise TypeError(f"token ids must be ints, got {i!r}")
            i = int(i)
            if not 0 <= i < len(table):  # a negative id must not index from the end
                raise KeyError(f"id {i} is not in the vocabulary (0 to {len(table) - 1})")
            out.append(table[i])
        return out

    # -- tokenization ----------------------------------------------------------
    def tokenize(self, text) -> list[str]:
        """Word-piece strings of `text` (no special tokens)."""
        ids, _ = self._native.encode(_as_str(text, "text"))
        table = self._id_to_token_list()
        return [table[i] for i in ids.tolist()]

    def encode(
        self,
        text,
        text_pair=None,
        max_seq_length: int | None = None,
        truncation: str = "longest_first",
        add_special_tokens: bool = True,
    ) -> Encoding:
        """Encodes one text or pair; pads to max_seq_length when given (the seed's features)."""
        pairs = None if text_pair is None else [_as_str(text_pair, "text_pair")]
        batch = self.encode_batch(
            [_as_str(text, "text")],
            pairs,
            max_seq_length=max_seq_length,
            truncation=truncation,
            add_special_tokens=add_special_tokens,
            return_offsets=True,
            pad=True,
            num_threads=1,
        )
        n = int(batch.row_splits[1])
        width = batch.input_word_ids.shape[1]
        if max_seq_length is None:
            width = n
        ids = batch.input_word_ids[0, :width]
        table = self._id_to_token_list()
        return Encoding(
            ids=ids,
            type_ids=batch.input_type_ids[0, :width],
            input_mask=batch.input_mask[0, :width],
            offsets=batch.offsets[0, :width],
            tokens=[table[i] for i in ids[:n].tolist()],
        )

    def encode_batch(
        self,
        texts: Sequence,
        text_pairs: Sequence | None = None,
        max_seq_length: int | None = None,
        truncation: str = "longest_first",
        add_special_tokens: bool = True,
        return_offsets: bool = True,
        pad: bool = True,
        num_threads: int | None = 1,
        empty_pair_as_single: bool = False,
    ) -> BatchEncoding:
        """Encodes many texts (or pairs) on `num_threads` threads (None or 0: all cores).

        Returns a BatchEncoding with padded int32 arrays [batch, seq] (seq =
        max_seq_length when given, else the longest row) and the ragged form.
        empty_pair_as_single: a pair whose second text is None or has no word pieces
        is encoded as a single text (`[CLS] a [SEP]`, truncated to max_seq_length - 2
        whatever `truncation` says, as a single text is), as the seed's
        convert_single_example does; otherwise it is `[CLS] a [SEP] [SEP]` (HuggingFace's
        rule) and a None is an error. With it, pairs may also have max_seq_length 3 or 4
        (the seed's too): when the longest_first truncation empties the second text, the
        row is a single text with the first text as truncated.
        """
        if truncation not in _TRUNCATIONS:
            raise ValueError(f"truncation must be one of {_TRUNCATIONS}, got {truncation!r}")
        if max_seq_length is not None and (
            not isinstance(max_seq_length, (int, np.integer))
            or not 0 < max_seq_length <= MAX_SEQ_LENGTH
        ):
            raise ValueError(
                f"max_seq_length must be an int in [1, {MAX_SEQ_LENGTH}] or None, got "
                f"{max_seq_length!r}"
            )
        if num_threads is not None and not is_integer(num_threads):
            raise ValueError(f"num_threads must be an int in [0, {MAX_THREADS}] or None, got "
                             f"{num_threads!r}")
        if not num_threads:
            num_threads = os.cpu_count() or 1
        if not 0 <= num_threads <= MAX_THREADS:
            raise ValueError(f"num_threads must be in [0, {MAX_THREADS}] or None, got "
                             f"{num_threads}")
        args = (
            -1 if max_seq_length is None else int(max_seq_length),
            truncation,
            bool(add_special_tokens),
            bool(return_offsets),
            bool(pad),
            int(num_threads),
        )
        if empty_pair_as_single and text_pairs is not None and not isinstance(
                text_pairs, (str, bytes)):
            text_pairs = ["" if p is None else p for p in text_pairs]
        try:
            # Fast path: lists/tuples of str go straight to C++, which checks each item.
            arrays = self._native.encode_batch(texts, text_pairs, *args,
                                               bool(empty_pair_as_single))
        except TypeError:
            texts = _as_str_list(texts, "texts")
            if text_pairs is not None:
                text_pairs = _as_str_list(text_pairs, "text_pairs")
            arrays = self._native.encode_batch(texts, text_pairs, *args,
                                               bool(empty_pair_as_single))
        return BatchEncoding(arrays)

    def basic_tokenize(self, text) -> list[str]:
        """The BasicTokenizer's tokens (cleaning, CJK, lower/accents, punctuation)."""
        return self._native.basic_tokenize(_as_str(text, "text"))


class FullTokenizer(Tokenizer):
    """Drop-in for the seed's tokenization.FullTokenizer."""

    def __init__(self, vocab_file, do_lower_case: bool = True, split_on_punc: bool = True):
        super().__init__(vocab_file, do_lower_case=do_lower_case, split_on_punc=split_on_punc)

    def tokenize(self, text) -> list[str]:
        return super().tokenize(_seed_unicode(text))


_BASIC_VOCAB = b"[UNK]\n"


class BasicTokenizer:
    """Drop-in for the seed's tokenization.BasicTokenizer (no vocabulary needed)."""

    def __init__(self, do_lower_case: bool = True, split_on_punc: bool = True):
        self.do_lower_case = do_lower_case
        self.split_on_punc = split_on_punc
        self._native = _C.WordpieceTokenizer(
            _BASIC_VOCAB, "<basic>", bool(do_lower_case), 400, "[UNK]", bool(split_on_punc)
        )

    def tokenize(self, text) -> list[str]:
        return self._native.basic_tokenize(_seed_unicode(text))
