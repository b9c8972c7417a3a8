"""Slow, obviously-correct Python reference of the original BERT tokenizer rules.

Written from the published rules of google-research/bert tokenization.py (as
Python 3 runs them) to test the C++ tokenizer against; the seed's
max_input_chars_per_word default (400) is a parameter. It also returns the
character offsets that each word piece covers, tracked through every step.
"""

import unicodedata

CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_control(ch):
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(cp):
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def load_vocab(path):
    vocab = {}
    with open(path, encoding="utf-8", newline="\n") as f:
        for index, line in enumerate(f):
            vocab.setdefault(line.strip(), index)
    return vocab


def basic_tokenize(text, do_lower_case=True, split_on_punc=True):
    """Returns [(token, [char index in text of each token char])]."""
    # _clean_text
    chars = []
    for i, ch in enumerate(text):
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or is_control(ch):
            continue
        chars.append((" " if is_whitespace(ch) else ch, i))
    # _tokenize_chinese_chars
    spaced = []
    for ch, i in chars:
        if is_cjk(ord(ch)):
            spaced += [(" ", -1), (ch, i), (" ", -1)]
        else:
            spaced.append((ch, i))
    # whitespace_tokenize (str.split())
    tokens, cur = [], []
    for ch, i in spaced:
        if ch.isspace():
            if cur:
                tokens.append(cur)
            cur = []
        else:
            cur.append((ch, i))
    if cur:
        tokens.append(cur)
    out = []
    for tok in tokens:
        if do_lower_case:
            s = "".join(c for c, _ in tok)
            # str.lower() on the whole token (Final_Sigma needs the context);
            # map each lowered char back through per-char lowering lengths.
            lowered = s.lower()
            idx = []
            for c, i in tok:
                idx += [i] * len(c.lower())
            assert len(idx) == len(lowered)
            # NFD per character keeps the mapping; then canonical reordering.
            nfd = []
            for c, i in zip(lowered, idx, strict=True):
                nfd += [(d, i) for d in unicodedata.normalize("NFD", c)]
            nfd = _canonical_order(nfd)
            assert "".join(c for c, _ in nfd) == unicodedata.normalize("NFD", lowered)
            tok = [(c, i) for c, i in nfd if unicodedata.category(c) != "Mn"]
        pieces, cur = [], []
        for c, i in tok:
            if split_on_punc and is_punctuation(c):
                if cur:
                    pieces.append(cur)
                pieces.append([(c, i)])
                cur = []
            elif c.isspace():
                if cur:
                    pieces.append(cur)
                cur = []
            else:
                cur.append((c, i))
        if cur:
            pieces.append(cur)
        for p in pieces:
            out.append(("".join(c for c, _ in p), [i for _, i in p]))
    return out


def _canonical_order(seq):
    seq = list(seq)
    i = 0
    while i < len(seq):
        if unicodedata.combining(seq[i][0]) == 0:
            i += 1
            continue
        j = i
        while j < len(seq) and unicodedata.combining(seq[j][0]) != 0:
            j += 1
        seq[i:j] = sorted(seq[i:j], key=lambda x: unicodedata.combining(x[0]))  # stable
        i = j
    return seq


def wordpiece(token, vocab, unk="[UNK]", max_chars=400):
    """Greedy longest-match-first; returns [(piece, start_char, end_char)]."""
    if len(token) > max_chars:
        return [(unk, 0, len(token))]
    # (piece, first char, end char) within the token
    out, start = [], 0
    while start < len(token):
        end, cur = len(token), None
        while start < end:
            sub = token[start:end]
            if start > 0:
                sub = "##" + sub
            if sub in vocab:
                cur = sub
                break
            end -= 1
        if cur is None:
            return [(unk, 0, len(token))]
        out.append((cur, start, end))
        start = end
    return out


def tokenize(text, vocab, do_lower_case=True, max_chars=400, split_on_punc=True):
    """Returns (tokens, offsets) with offsets [begin, end) in text."""
    tokens, offsets = [], []
    for tok, idx in basic_tokenize(text, do_lower_case, split_on_punc):
        for piece, s, e in wordpiece(tok, vocab, max_chars=max_chars):
            tokens.append(piece)
            # canonical reordering can move marks of different input characters,
            # so a piece spans the min..max input character it came from
            offsets.append((min(idx[s:e]), max(idx[s:e]) + 1))
    return tokens, offsets
