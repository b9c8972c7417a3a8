"""pybert-tokenize: tokenize a text file with the C++ tokenizer and report throughput.

With no flags it runs on embedded defaults (the bundled BERT uncased vocab and
BERT's sample pre-training text, repeated to --min_mb megabytes), which is
the README's first command. With --output_file it writes the ids as a NumPy
.npz (flat_ids, row_splits), one row per input line (blank lines give empty
rows; the input is not repeated).

  pybert-tokenize --input_file=corpus.txt --vocab_file=vocab.txt --num_threads=2
"""

from __future__ import annotations

import os
import time

import numpy as np
from absl import flags

from pybert.cli._runner import run_tool
from pybert.resources import resource_path
from pybert.tokenization import Tokenizer

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "input_file", None, "UTF-8 text, one sequence per line (default: bundled sample)."
)
flags.DEFINE_string("vocab_file", None, "WordPiece vocab (default: bundled BERT uncased vocab).")
flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (uncased models).")
flags.DEFINE_integer("num_threads", 0, "Threads (0 = all cores).", lower_bound=0)
flags.DEFINE_float("min_mb", 8.0, "Without --output_file: repeat the input until it has at "
                   "least this many MB (a throughput run).", lower_bound=0.0, upper_bound=1e5)
flags.DEFINE_string("output_file", None, "Optional .npz output (flat_ids, row_splits), one row "
                    "per input line.")


def run(
    input_file: str,
    vocab_file: str,
    do_lower_case: bool,
    num_threads: int,
    min_mb: float,
    output_file: str | None,
) -> dict:
    from pybert._outputs import check_output_file

    if output_file:
        check_output_file(output_file, "--output_file", {"--input_file": [input_file]})
    with open(input_file, "rb") as f:
        raw = f.read()
    try:
        # lines end at "\n" only (str.splitlines also splits at form feeds, U+2028, ...)
        lines = raw.decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{input_file}:{line}: not valid UTF-8 (byte {e.start})") from None
    if not output_file:  # a throughput run: the non-empty lines, repeated to --min_mb
        lines = [line for line in lines if line.strip()]
    if not any(line.strip() for line in lines):
        raise ValueError(f"{input_file}: no non-empty lines to tokenize")
    size = sum(len(line.encode("utf-8")) for line in lines)
    repeat = 1 if output_file else max(1, int(np.ceil(min_mb * 1e6 / size)))
    texts = lines * repeat
    tokenizer = Tokenizer(vocab_file, do_lower_case=do_lower_case)
    threads = num_threads or os.cpu_count() or 1
    start = time.perf_counter()
    batch = tokenizer.encode_batch(
        texts, add_special_tokens=False, return_offsets=False, pad=False, num_threads=threads
    )
    seconds = time.perf_counter() - start
    if output_file:
        from pybert.data.records import write_then_commit

        tmp = output_file + ".tmp.npz"
        write_then_commit(tmp, output_file, lambda: np.savez(
            tmp, flat_ids=batch.flat_ids, row_splits=batch.row_splits))
    return {
        "lines": len(texts),
        "mb": size * repeat / 1e6,
        "tokens": int(batch.flat_ids.size),
        "seconds": seconds,
        "threads": threads,
    }


def main(argv=None):
    def _run():
        return run(
            FLAGS.input_file or resource_path("sample_text.txt"),
            FLAGS.vocab_file or resource_path("vocab_uncased.txt"),
            FLAGS.do_lower_case,
            FLAGS.num_threads,
            FLAGS.min_mb,
            FLAGS.output_file,
        )

    def report(stats, _seconds):
        print(
            f"tokenized {stats['lines']} lines, {stats['mb']:.1f} MB -> {stats['tokens']} "
            f"word pieces in {stats['seconds']:.3f} s on {stats['threads']} thread(s): "
            f"{stats['mb'] / stats['seconds']:.1f} MB/s, "
            f"{stats['tokens'] / stats['seconds'] / 1e6:.2f} M tokens/s"
        )

    run_tool("pybert-tokenize", _run, report, argv)


if __name__ == "__main__":
    main()
