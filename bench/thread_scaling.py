"""1 vs N threads for the tokenizer, interleaved: each round runs encode_batch on
one thread and on all cores, ROUNDS rounds; prints best and median of each
and their ratios. On a shared host the median ratio is the steadier number.

  .venv/bin/python bench/thread_scaling.py [ROUNDS]
"""

import os
import statistics
import sys
import time

from conftest import SHARED_DATA, english_lines, nbytes

import pybert


def main(rounds: int = 20) -> None:
    lines = english_lines()
    tok = pybert.Tokenizer(SHARED_DATA / "vocab" / "bert-base-uncased-vocab.txt")
    size = nbytes(lines)
    threads = os.cpu_count() or 1
    times = {1: [], threads: []}
    for _ in range(rounds):
        for n in times:
            start = time.perf_counter()
            tok.encode_batch(
                lines, add_special_tokens=False, return_offsets=False, pad=False, num_threads=n
            )
            times[n].append(time.perf_counter() - start)
    for n, t in times.items():
        print(
            f"{n} thread(s): best {size / min(t) / 1e6:.1f} MB/s, "
            f"median {size / statistics.median(t) / 1e6:.1f} MB/s"
        )
    print(
        f"ratio: best {min(times[1]) / min(times[threads]):.2f}x, "
        f"median {statistics.median(times[1]) / statistics.median(times[threads]):.2f}x"
    )


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
