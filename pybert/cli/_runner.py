"""The one entry-point wrapper of pybert's absl tools: logging, bad input -> status 1.

A tool's run() raises FileNotFoundError / ValueError for bad input; the
message goes to stderr as "<tool>: error: ..." and the process exits with 1
(no traceback). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from absl import app


def run_tool(name: str, run: Callable, report: Callable = lambda result, seconds: print(result),
             argv=None) -> None:
    def _main(_):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        start = time.perf_counter()
        try:
            result = run()
        except (FileNotFoundError, ValueError) as e:
            print(f"{name}: error: {e}", file=sys.stderr)
            sys.exit(1)
        report(result, time.perf_counter() - start)

    app.run(_main, argv=argv or sys.argv)
