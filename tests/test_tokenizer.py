"""The C++ tokenizer against the original BERT rules.

Oracles, from slow to trusted: tests/reference_tokenization.py (a Python
rewrite of the rules that also tracks offsets) is first checked against the
seed's own tokenization.py; the C++ tokenizer must then give identical ids
and offsets on real corpora and adversarial strings, for uncased, cased and
multilingual-cased vocabularies.
"""

import itertools
import os
import random
import subprocess
import sys
import unicodedata

import numpy as np
import pytest
import reference_tokenization as ref
from conftest import VOCABS

import pybert
from pybert import _C

CORPORA = [
    "glue/MRPC/dev.tsv",
    "glue/CoLA/dev.tsv",
    "glue/STS-B/dev.tsv",
    "glue/SST-2/dev.tsv",
    "glue/RTE/dev.tsv",
    "squad/haystack_small-v2.0.json",
    "multilingual/tatoeba_mixed_24langs_bert_format.txt",
    "chinese/tatoeba.cmn-eng.cmn.txt",
    "chinese/gutenberg_25558_shen_yin_yu_classical_zh.txt",
    "english_prose/gutenberg_27books_bert_format.txt",
    "cmrc2018_zh/cmrc2018_trial.json",
]

# Per corpus, at most this many characters are compared (the Python reference
# is slow); lines are taken from several places of the file.
MAX_CHARS = 120_000


def corpus_lines(data_dir, rel):
    text = (data_dir / rel).read_text(encoding="utf-8")
    lines = text.split("\n")
    rng = random.Random(rel)
    rng.shuffle(lines)
    out, total = [], 0
    for line in lines:
        if total > MAX_CHARS:
            break
        out.append(line[:4000])
        total += len(out[-1])
    return out


@pytest.fixture(scope="module", params=sorted(VOCABS))
def tok_and_vocab(request, vocab_path):
    path = vocab_path(request.param)
    lower = VOCABS[request.param][1]
    return pybert.Tokenizer(path, do_lower_case=lower), ref.load_vocab(path), lower


def adversarial_strings(n, seed):
    pools = [
        "abcXYZ",
        "ÀÉÎõüßÅçñ",
        "\u0300\u0301\u0327\u0345\u0f71\u302e\u302f\u1dc0",
        "你好中文\uf900\uf9a8\U00020000\U0002f800",
        "한국어각힣",
        "ひらがなカタカナｶﾀｶﾅ",
        "ΑΣΒσςΣΌΐ",
        "😀🎉👍🏽\u200d🇫🇷",
        "\u200b\u200c\u200d\ufeff\u00ad\u2060",
        "\x00\x01\x1f\x7f\x85\ufffd\x0b\x0c",
        " \t\n\r\u00a0\u2000\u3000\u2028\u2029\x1c\u202f",
        ".,!?;:'\"()[]{}-–—¡¿«»…§",
        "0123456789٣",
        "İIıK\u212a\u212b\u1e9e\u0130\u03a3",
        "\ud800\udfff\udc00",
        "##",
        "\U0001d165\U0001d166\U0001d16d\u1b44\u0f39",
        "[CLS][SEP][UNK][MASK]",
        "\u05d0\u05b7\u0627\u064b\u0915\u094d",
    ]
    rng = random.Random(seed)
    out = ["", " ", "\x00", "\u0301", "Σ", "ΑΣ", "ΑΣ.", "Σ'Α", "a" * 401, "a" * 400, "x" * 5000]
    for _ in range(n):
        k = rng.randint(0, 60)
        if rng.random() < 0.25:
            out.append("".join(chr(rng.randint(0, 0x3FFFF)) for _ in range(k)))
        else:
            out.append("".join(rng.choice(rng.choice(pools)) for _ in range(k)))
    return out


def check_same(tok, vocab, lower, texts, max_chars=400):
    batch = tok.encode_batch(texts, add_special_tokens=False, pad=False)
    flat_off = batch.flat_offsets
    splits = batch.row_splits
    table = tok.convert_ids_to_tokens(range(tok.vocab_size))
    for i, text in enumerate(texts):
        want_tokens, want_offsets = ref.tokenize(text, vocab, lower, max_chars=max_chars)
        got_ids = batch.flat_ids[splits[i] : splits[i + 1]].tolist()
        got = [table[j] for j in got_ids]
        assert got == want_tokens, f"text {i}: {text[:200]!r}"
        assert [vocab[t] for t in want_tokens] == got_ids
        got_off = [tuple(x) for x in flat_off[splits[i] : splits[i + 1]].tolist()]
        assert got_off == want_offsets, f"offsets of text {i}: {text[:200]!r}"


def test_unicode_tables_match_this_python():
    # The tables were generated from Python's unicodedata; the reference
    # below uses the running Python's, so they must be the same version.
    assert _C.unicode_version == unicodedata.unidata_version


def test_reference_matches_seed(seed_tokenization, data_dir, vocab_path):
    """The Python reference equals the seed's own tokenizer (tokens)."""
    for name, (_, lower) in VOCABS.items():
        path = vocab_path(name)
        seed = seed_tokenization.FullTokenizer(str(path), do_lower_case=lower)
        vocab = ref.load_vocab(path)
        texts = adversarial_strings(1500, seed=7)
        for rel in CORPORA[:1] + CORPORA[6:8]:
            texts += corpus_lines(data_dir, rel)[:300]
        for text in texts:
            assert ref.tokenize(text, vocab, lower)[0] == seed.tokenize(text), repr(text)


def test_seed_facades_equal_seed(seed_tokenization, vocab_path):
    """BasicTokenizer and FullTokenizer return the seed's words and pieces as str, lone
    surrogates included (the adversarial strings hold some)."""
    for lower in (True, False):
        ours_basic = pybert.BasicTokenizer(do_lower_case=lower)
        seed_basic = seed_tokenization.BasicTokenizer(do_lower_case=lower)
        ours = pybert.FullTokenizer(vocab_path("uncased"), do_lower_case=lower)
        seed = seed_tokenization.FullTokenizer(str(vocab_path("uncased")), do_lower_case=lower)
        texts = adversarial_strings(600, seed=11)
        texts += ["\ud800abc", "a\ud83d\ude00b", "x \udc00\u0301 y", "AB\ud800CD",
                  "\ud800\u4e00\udc00", "caf\u00e9\ud800"]
        for text in texts:
            assert ours_basic.tokenize(text) == seed_basic.tokenize(text), repr(text)
            assert ours.tokenize(text) == seed.tokenize(text), repr(text)


@pytest.mark.parametrize("rel", CORPORA)
def test_matches_reference_on_corpora(tok_and_vocab, data_dir, rel):
    tok, vocab, lower = tok_and_vocab
    check_same(tok, vocab, lower, corpus_lines(data_dir, rel))


def test_matches_reference_on_adversarial_strings(tok_and_vocab):
    tok, vocab, lower = tok_and_vocab
    check_same(tok, vocab, lower, adversarial_strings(4000, seed=1))


def test_long_runs_of_combining_marks(tok_and_vocab):
    """Canonical reordering of a run of thousands of combining marks (spacing Mc ones with
    a combining class survive accent stripping, so their order shows): same tokens and
    offsets as the reference, without the insertion sort's quadratic time."""
    tok, vocab, lower = tok_and_vocab
    rng = random.Random(3)
    marks = "\u0316\U0001d165\U0001d16d\u0301\u0f72\u302e\u0345"
    texts = ["x" + "".join(rng.choice(marks) for _ in range(n)) + " y" for n in (33, 200, 3000)]
    check_same(tok, vocab, lower, texts)
    long = "a" + "\u0301\u0316" * 300_000  # (minutes before; milliseconds now)
    got = tok.encode(long).tokens[1:-1]
    # uncased: the marks are stripped after reordering; cased: one word over 400 chars
    assert got == (tok.encode("a").tokens[1:-1] if lower else ["[UNK]"])


def test_uncased_rules_on_multilingual_vocab(vocab_path):
    """Lower-casing + accent stripping on a vocabulary that has accents and Σ/ς."""
    path = vocab_path("multi_cased")
    tok = pybert.Tokenizer(path, do_lower_case=True, max_input_chars_per_word=12)
    check_same(tok, ref.load_vocab(path), True, adversarial_strings(4000, seed=2), max_chars=12)


def test_seed_examples(vocab_path):
    tok = pybert.FullTokenizer(vocab_path("uncased"))
    assert tok.tokenize("UNwant\u00e9d,running") == ["unwanted", ",", "running"]
    # CJK characters become single-character words (推 is not in this vocab)
    assert tok.tokenize("ah\u535a\u63a8zz")[:3] == ["ah", "\u535a", "[UNK]"]
    assert tok.tokenize(" \tHeLLo!how  \n Are yoU?  ") == ["hello", "!", "how", "are", "you", "?"]
    assert tok.tokenize("ΑΣ.") == ["α", "##ς", "."]  # CPython's Final_Sigma
    assert tok.tokenize("a" * 401) == ["[UNK]"]
    basic = pybert.BasicTokenizer(do_lower_case=False)
    assert basic.tokenize(" \tHeLLo!how  \n Are yoU?  ") == ["HeLLo", "!", "how", "Are", "yoU", "?"]
    assert pybert.BasicTokenizer().tokenize("H\u00e9llo") == ["hello"]


def test_full_tokenizer_api(vocab_path):
    tok = pybert.FullTokenizer(vocab_path("uncased"), do_lower_case=True)
    tokens = tok.tokenize("Hello world")
    ids = tok.convert_tokens_to_ids(tokens)
    assert ids == [7592, 2088]
    assert tok.convert_ids_to_tokens(ids) == tokens
    assert tok.vocab["[CLS]"] == 101 and tok.inv_vocab[102] == "[SEP]"
    assert len(tok.vocab) == 30522
    # the seed decodes bytes with errors="ignore"
    assert tok.tokenize(b"caf\xc3\xa9 \xff ok") == ["cafe", "ok"]


def test_encode_pairs_truncation_and_padding(vocab_path):
    tok = pybert.Tokenizer(vocab_path("uncased"))
    enc = tok.encode("Hello world", "How are you?", max_seq_length=12)
    assert enc.tokens == ["[CLS]", "hello", "world", "[SEP]", "how", "are", "you", "?", "[SEP]"]
    assert enc.ids.tolist()[:9] == tok.convert_tokens_to_ids(enc.tokens)
    assert enc.ids.tolist()[9:] == [0, 0, 0]
    assert enc.input_mask.tolist() == [1] * 9 + [0] * 3
    assert enc.type_ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0]
    assert enc.offsets.tolist()[:5] == [[0, 0], [0, 5], [6, 11], [0, 0], [0, 3]]
    # the seed's _truncate_seq_pair: pop from the longer, the second on ties
    a, b = "a b c d e f g", "x y z"
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog".split()
    for _ in range(200):
        a = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        b = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        n = rng.randint(5, 20)
        ta, tb = tok.tokenize(a), tok.tokenize(b)
        while len(ta) + len(tb) > n - 3:
            (ta if len(ta) > len(tb) else tb).pop()
        want = ["[CLS]"] + ta + ["[SEP]"] + tb + ["[SEP]"]
        assert tok.encode(a, b, max_seq_length=n).tokens == want
    single = tok.encode("one two three four five", max_seq_length=4)
    assert single.tokens == ["[CLS]", "one", "two", "[SEP]"]
    only = tok.encode("one two three four", "five six", max_seq_length=7, truncation="only_first")
    assert only.tokens == ["[CLS]", "one", "two", "[SEP]", "five", "six", "[SEP]"]
    with pytest.raises(ValueError, match="only_second"):
        tok.encode("one two three four five", "six", max_seq_length=6, truncation="only_second")


def test_empty_pair_as_single_follows_the_seed(vocab_path):
    """empty_pair_as_single: the seed's convert_single_example rule (`if tokens_b:`), built
    here from word pieces: a second text without pieces (None, "", blanks, a lone
    zero-width space, only control characters) gives [CLS] a [SEP], truncated to n - 2."""
    tok = pybert.Tokenizer(vocab_path("uncased"))
    rng = random.Random(1)
    words = "the quick brown fox jumps over a lazy dog".split()
    empties = [None, "", "   ", "\u200b", "\t\n", "\x00\ufffd"]
    texts, pairs, want = [], [], []
    for i in range(300):
        a = " ".join(rng.choice(words) for _ in range(rng.randint(1, 14)))
        b = (rng.choice(empties) if i % 3 == 0
             else " ".join(rng.choice(words) for _ in range(rng.randint(1, 14))))
        ta, tb = tok.tokenize(a), tok.tokenize(b or "")
        if tb:
            while len(ta) + len(tb) > 12 - 3:
                (ta if len(ta) > len(tb) else tb).pop()
            want.append(["[CLS]"] + ta + ["[SEP]"] + tb + ["[SEP]"])
        else:
            want.append(["[CLS]"] + ta[:12 - 2] + ["[SEP]"])
        texts.append(a)
        pairs.append(b)
    assert sum(w.count("[SEP]") == 1 for w in want) == 100  # the rows of an empty pair
    for threads in (1, 3):
        enc = tok.encode_batch(texts, pairs, max_seq_length=12, pad=False, num_threads=threads,
                               empty_pair_as_single=True)
        flat = tok.convert_ids_to_tokens(enc.flat_ids.tolist())
        got = [flat[lo:hi] for lo, hi in itertools.pairwise(enc.row_splits)]
        assert got == want
        types = np.split(enc.flat_type_ids, enc.row_splits[1:-1])
        assert [t.tolist() for t in types] == [
            [0] * (w.index("[SEP]") + 1) + [1] * (len(w) - w.index("[SEP]") - 1) for w in want]
    # off (the default): HuggingFace's [CLS] a [SEP] [SEP], and None is refused
    enc = tok.encode("the dog", "\u200b")
    assert enc.tokens == ["[CLS]", "the", "dog", "[SEP]", "[SEP]"]
    with pytest.raises(TypeError, match="text_pairs"):
        tok.encode_batch(["the dog"], [None])


def test_batch_threads_and_forms_agree(vocab_path, data_dir):
    tok = pybert.Tokenizer(vocab_path("uncased"))
    lines = (data_dir / "glue/SST-2/dev.tsv").read_text(encoding="utf-8").split("\n") * 30
    one = tok.encode_batch(lines, num_threads=1)
    two = tok.encode_batch(lines, num_threads=2)
    for key in one.keys():
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)
    assert len(one) == len(lines)
    for i in (0, 5, len(lines) - 1):
        row = one.ids[i]
        n = len(row)
        np.testing.assert_array_equal(one.input_word_ids[i, :n], row)
        assert one.input_mask[i].sum() == n
        assert not one.input_word_ids[i, n:].any()
        single = tok.encode(lines[i])
        np.testing.assert_array_equal(single.ids, row)
        np.testing.assert_array_equal(single.offsets, one.offsets[i, :n])
    pairs = tok.encode_batch(lines[:100], lines[100:200], max_seq_length=32, num_threads=2)
    assert pairs.input_word_ids.shape == (100, 32)
    assert pairs.input_word_ids.dtype == np.int32
    for i in (0, 50, 99):
        assert (
            pairs.input_word_ids[i].tolist()
            == tok.encode(lines[i], lines[100 + i], max_seq_length=32).ids.tolist()
        )
    empty = tok.encode_batch([])
    assert len(empty) == 0 and empty.input_word_ids.shape == (0, 0)


def test_strange_inputs_do_not_crash(vocab_path):
    tok = pybert.Tokenizer(vocab_path("uncased"))
    huge = "word " * 200_000 + "x" * 1_000_000 + "\ud800" * 1000
    out = tok.encode_batch([huge, "", "\x00" * 100, "\ud800\udc00"], num_threads=2)
    assert out.flat_ids.dtype == np.int32
    assert tok.tokenize("\ud800abc") == ["[UNK]"]  # lone surrogate: one character
    assert tok.encode("\ud800 abc").offsets.tolist()[2] == [2, 5]


def _run_tokenizer_script(tmp_path, vocab, body: str) -> str:
    """Runs `body` in a fresh Python with `tok` (a Tokenizer on `vocab`) and numpy as np
    defined, from a directory outside the source tree; a crash fails the test, not pytest."""
    script = tmp_path / "script.py"
    script.write_text("import sys\nimport numpy as np\nimport pybert\n"
                      "tok = pybert.Tokenizer(sys.argv[1])\n" + body, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script), str(vocab)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    return proc.stdout.strip()


def test_batch_survives_another_thread_emptying_the_list(vocab_path, tmp_path):
    """The core runs without the GIL on views of the strs: a thread that empties the list
    meanwhile must not free them under it (before the fix: a segfault)."""
    out = _run_tokenizer_script(tmp_path, vocab_path("uncased"), (
        "import threading, time\n"
        "def texts():  # new strs each time: the list holds the only reference\n"
        "    return [('x ' * 1_000_000) + str(i) for i in range(8)]\n"
        "expected = [tok.encode(t, add_special_tokens=False).ids for t in texts()[:2]]\n"
        "for round in range(3):\n"
        "    batch = texts()\n"
        "    def empty():\n"
        "        time.sleep(0.01)\n"
        "        batch.clear()\n"
        "        batch.extend(['y'] * 8)\n"
        "    th = threading.Thread(target=empty)\n"
        "    th.start()\n"
        "    out = tok.encode_batch(batch, num_threads=1, add_special_tokens=False, pad=False)\n"
        "    th.join()\n"
        "    assert len(out) == 8, len(out)\n"
        "    for i in range(2):\n"
        "        np.testing.assert_array_equal(out.ids[i], expected[i])\n"
        "print('ok')\n"))
    assert out == "ok"


def test_batch_with_threads_the_system_refuses(vocab_path, tmp_path):
    """Under an address-space limit that leaves no room for 8 thread stacks, encode_batch
    runs on the threads that did start, with the same result (before: std::terminate)."""
    out = _run_tokenizer_script(tmp_path, vocab_path("uncased"), (
        "import resource\n"
        "import numpy.testing  # nothing to import once the limit is set\n"
        "texts = ['hello world, again ' * 3000] * 64\n"
        "want = tok.encode_batch(texts, max_seq_length=16, num_threads=1)\n"
        "status = open('/proc/self/status').read().split('VmSize:')[1]\n"
        "vm = int(status.split()[0]) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + (12 << 20),) * 2)\n"
        "got = tok.encode_batch(texts, max_seq_length=16, num_threads=8)\n"
        "np.testing.assert_array_equal(got.input_word_ids, want.input_word_ids)\n"
        "np.testing.assert_array_equal(got.offsets, want.offsets)\n"
        "print('ok')\n"))
    assert out == "ok"


def test_text_too_long_for_int32_offsets(vocab_path, tmp_path):
    """Offsets are int32: a text of 2**31 characters is refused by name (before: offsets
    wrapped to negative values). In a subprocess: it holds a 2 GiB string."""
    code = ("import sys, pybert\n"
            "tok = pybert.Tokenizer(sys.argv[1])\n"
            "try:\n"
            "    tok.encode_batch(['a', 'x' * 2**31])\n"
            "except ValueError as e:\n"
            "    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(vocab_path("uncased"))],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "texts[1] has 2147483648 characters; at most 2**31 - 1" in proc.stdout, proc.stdout


def test_bytes_policy(vocab_path):
    tok = pybert.Tokenizer(vocab_path("uncased"))
    assert tok.tokenize(b"caf\xc3\xa9") == ["cafe"]
    with pytest.raises(ValueError, match=r"texts\[1\]: invalid UTF-8 at byte 1"):
        tok.encode_batch([b"ok", b"a\xff"])
    with pytest.raises(TypeError, match=r"texts\[0\] must be str or bytes, got int"):
        tok.encode_batch([3])
    with pytest.raises(TypeError, match="texts must be a sequence of str"):
        tok.encode_batch("just one string")


def test_vocab_errors(tmp_path, vocab_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        pybert.Tokenizer(tmp_path / "missing.txt")
    cases = {
        "empty.txt": (b"", r"empty\.txt: the vocabulary is empty"),
        "dup.txt": (b"[UNK]\na\nb\na\n", r"dup\.txt:4: duplicate token 'a' \(first on line 2\)"),
        "utf8.txt": (b"[UNK]\nok\nbad\xff\n", r"utf8\.txt:3: invalid UTF-8"),
        "nounk.txt": (b"a\nb\n", r"nounk\.txt: the vocabulary has no unknown token '\[UNK\]'"),
    }
    for name, (content, pattern) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=pattern):
            pybert.Tokenizer(path)
    path = tmp_path / "nocls.txt"
    path.write_bytes(b"[UNK]\nhello\n")
    tok = pybert.Tokenizer(path)
    assert tok.tokenize("hello") == ["hello"]
    with pytest.raises(ValueError, match=r"nocls\.txt: the vocabulary has no \[CLS\] token"):
        tok.encode("hello")
    assert tok.encode("hello", add_special_tokens=False).tokens == ["hello"]
    # A file name that is not UTF-8 (legal on Linux; Python gives it lone surrogates): it
    # loads, and its errors name it (before: pybind11's "incompatible constructor
    # arguments" listing the whole vocabulary)
    odd = os.fsdecode(bytes(tmp_path) + b"/v\xff.txt")
    with open(odd, "wb") as f:
        f.write(b"[UNK]\nhello\n")
    assert pybert.Tokenizer(odd).tokenize("hello") == ["hello"]
    with open(odd, "ab") as f:
        f.write(b"hello\n")
    with pytest.raises(ValueError, match=r"v\\xff\.txt:3: duplicate token 'hello'"):
        pybert.Tokenizer(odd)


def test_argument_errors(vocab_path):
    tok = pybert.Tokenizer(vocab_path("uncased"))
    assert tok.convert_ids_to_tokens([101, 0]) == ["[CLS]", "[PAD]"]
    for bad in (-1, tok.vocab_size):
        with pytest.raises(KeyError, match=f"id {bad} is not in the vocabulary"):
            tok.convert_ids_to_tokens([bad])
    with pytest.raises(ValueError, match="truncation must be one of"):
        tok.encode("a", truncation="nope")
    with pytest.raises(ValueError, match=r"max_seq_length must be an int in \[1, 65536\]"):
        tok.encode("a", max_seq_length=0)
    with pytest.raises(ValueError, match="leaves no room"):
        tok.encode("a", "b", max_seq_length=4)
    with pytest.raises(ValueError, match="num_threads"):
        tok.encode_batch(["a"], num_threads=-2)
    # beyond the C++ int: the argument named (not pybind11's "incompatible function arguments")
    with pytest.raises(ValueError, match=r"max_seq_length must be an int in \[1, 65536\]"):
        tok.encode_batch(["a"], max_seq_length=2**31)
    # padded rows are allocated at max_seq_length: a typo is an error, not an OOM kill
    with pytest.raises(ValueError, match=r"max_seq_length must be an int in \[1, 65536\]"):
        tok.encode("a", max_seq_length=2**31 - 1)
    for kwargs, message in [({"unk_token": None}, "unk_token must be a non-empty str, got None"),
                            ({"unk_token": "\ud800"}, "is not valid Unicode text"),
                            ({"max_input_chars_per_word": 2**40}, "below 2\\*\\*31")]:
        with pytest.raises(ValueError, match=message):
            pybert.Tokenizer(vocab_path("uncased"), **kwargs)
    with pytest.raises(ValueError, match=r"num_threads must be in \[0, 4096\]"):
        tok.encode_batch(["a"], num_threads=2**40)
    for bad in (2.7, True, "2"):  # not truncated to an int
        with pytest.raises(ValueError, match=r"num_threads must be an int in \[0, 4096\]"):
            tok.encode_batch(["a b"], num_threads=bad)
    for bad in (1.9, True):
        with pytest.raises(TypeError, match="token ids must be ints"):
            tok.convert_ids_to_tokens([bad])
    assert tok.convert_ids_to_tokens([np.int32(101)]) == ["[CLS]"]
    with pytest.raises(ValueError, match="text_pairs has 1 items but texts has 2"):
        tok.encode_batch(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="max_input_chars_per_word"):
        pybert.Tokenizer(vocab_path("uncased"), max_input_chars_per_word=0)


def test_same_ids_as_hf_tokenizers_on_corpora(tok_and_vocab, data_dir):
    """HF `tokenizers` agrees on real text; its known differences are below."""
    tokenizers = pytest.importorskip("tokenizers")
    tok, _, lower = tok_and_vocab
    hf = tokenizers.BertWordPieceTokenizer(tok.vocab_file, lowercase=lower, strip_accents=lower)
    texts = []
    for rel in ("glue/MRPC/dev.tsv", "multilingual/tatoeba_mixed_24langs_bert_format.txt"):
        texts += corpus_lines(data_dir, rel)
    ours = tok.encode_batch(texts, add_special_tokens=False, pad=False).ids
    theirs = hf.encode_batch(texts, add_special_tokens=False)
    for text, a, b in zip(texts, ours, theirs, strict=True):
        assert a.tolist() == b.ids, repr(text)


def test_documented_differences_from_hf_tokenizers(vocab_path):
    """Each difference listed in README 'Tokenizer' still exists (the original wins)."""
    tokenizers = pytest.importorskip("tokenizers")
    path = vocab_path("multi_cased")
    tok = pybert.Tokenizer(path, do_lower_case=True)
    hf = tokenizers.BertWordPieceTokenizer(str(path), lowercase=True, strip_accents=True)

    def both(text):
        return tok.tokenize(text), hf.encode(text, add_special_tokens=False).tokens

    ours, theirs = both("ΟΔΟΣ.")  # Final_Sigma: CPython lowers a word-final Σ to ς
    assert ours == ["ο", "##δος", "."] and theirs != ours
    ours, theirs = both("[CLS] hi")  # special tokens in text: split like any text
    assert ours[0] == "[" and "[CLS]" not in ours and theirs[0] == "[CLS]"
    ours, theirs = both("x" + "a" * 150)  # max_input_chars_per_word: 400 vs HF's 100
    assert ours != ["[UNK]"] and theirs == ["[UNK]"]
    ours, theirs = both("a\ue000b")  # private use (Co) characters: kept by the original
    assert ours != theirs


def test_tokenize_tool_writes_one_row_per_line(tmp_path, vocab_path):
    """pybert-tokenize --output_file: one row per input line (blank lines empty), ids as the
    API gives them; bad input and an output on the input are one-line errors."""
    import tempfile

    src = tmp_path / "in.txt"
    # lines end at \n only (a form feed or U+2028 inside a line does not split it)
    src.write_bytes("Hello world!\r\n\nunaffable\x0c jumps\u2028\n".encode())
    out = tmp_path / "ids.npz"
    vocab = str(vocab_path("uncased"))
    tool = [sys.executable, "-m", "pybert.cli.tokenize", f"--vocab_file={vocab}"]

    def run(*args):
        return subprocess.run([*tool, *args], capture_output=True, text=True,
                              cwd=tempfile.gettempdir())

    proc = run(f"--input_file={src}", f"--output_file={out}", "--num_threads=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tokenized 3 lines" in proc.stdout
    with np.load(out) as z:
        splits, flat = z["row_splits"], z["flat_ids"]
    tok = pybert.Tokenizer(vocab)
    rows = [tok.convert_tokens_to_ids(tok.tokenize(t))
            for t in ("Hello world!", "", "unaffable\x0c jumps\u2028")]
    assert splits.tolist() == [0, *np.cumsum([len(r) for r in rows]).tolist()]
    assert flat.tolist() == [i for r in rows for i in r]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nnot \xff fine\n")
    before = src.read_bytes()
    for args, message in [([f"--input_file={bad}"], f"{bad}:2: not valid UTF-8"),
                          ([f"--input_file={src}", f"--output_file={src}"],
                           f"--output_file {src} is also --input_file"),
                          ([f"--input_file={src}", "--min_mb=nan"], "--min_mb=nan")]:
        proc = run(*args)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
    assert src.read_bytes() == before and not list(tmp_path.glob("*.tmp*"))
