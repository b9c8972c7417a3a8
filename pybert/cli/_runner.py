"""The one entry-point wrapper of pybert's absl tools: logging, bad input -> status 1.

A tool's run() raises ValueError (bad flags or data) or OSError (a missing,
unreadable or unwritable path, a full disk) for bad input; TensorFlow raises
DataLossError for corrupt TFRecords and ResourceExhaustedError when memory
runs out. For these the message goes to stderr as "<tool>: error: ..." and
the process exits with 1 (no traceback). Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import errno
import logging
import math
import re
import sys
import time
from collections.abc import Callable

from absl import app, flags

# Flags that name input files, listed in a corrupt-data message (whichever the tool has and set).
_INPUT_FLAGS = ("input_files", "input_file", "train_data_path", "eval_data_path", "predict_file",
                "init_checkpoint", "hub_module_url", "checkpoint_to_convert",
                "model_checkpoint_path")
# Flags that name outputs, listed when a write fails without naming its file (a full disk).
_OUTPUT_FLAGS = ("output_file", "output_dir", "model_dir", "train_data_output_path",
                 "eval_data_output_path", "test_data_output_path", "meta_data_file_path",
                 "model_export_path", "export_path", "saved_model_dir",
                 "converted_checkpoint_path")


def _tf_message(e) -> str:
    """An op error's message without TensorFlow's {{function_node ...}} and [Op:...] wrapping."""
    text = re.sub(r"\{\{[^}]*\}\}", "", e.message)
    text = re.sub(r"\s*\[Op:[^\]]*\].*$", "", text, flags=re.S)
    return " ".join(text.split())


def _given(names, what: str) -> str:
    given = []
    for name in names:
        if name in flags.FLAGS and flags.FLAGS[name].present and flags.FLAGS[name].value:
            given.append(f"--{name}={flags.FLAGS[name].value}")
    return f" ({what}: {', '.join(given)})" if given else ""


def _inputs() -> str:
    return _given(_INPUT_FLAGS, "inputs")


def user_error(e: BaseException) -> str | None:
    """The message for an error caused by the tool's input or machine; None for a bug."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC and not e.filename:
        return f"no space left on device while writing{_given(_OUTPUT_FLAGS, 'outputs')}"
    if isinstance(e, (ValueError, OSError)):
        return str(e)
    if isinstance(e, MemoryError):
        return "out of memory"
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(e, tf.errors.OpError):
        if isinstance(e, tf.errors.DataLossError):
            return f"corrupt or truncated input data{_inputs()}: {_tf_message(e)}"
        if "No space left on device" in e.message:  # TensorFlow's file writers say this
            return f"no space left on device: {_tf_message(e)}"
        if isinstance(e, tf.errors.ResourceExhaustedError):
            return (f"out of memory: {_tf_message(e)}; try a smaller batch size or "
                    f"shorter sequences")
        if isinstance(e, (tf.errors.NotFoundError, tf.errors.PermissionDeniedError,
                          tf.errors.AlreadyExistsError)):
            return _tf_message(e)
        found = re.search(r"indices\[[^\]]*\] = (-?\d+) is not in \[0, (\d+)\)", e.message)
        if (isinstance(e, tf.errors.InvalidArgumentError) and found
                and "embedding" in e.message.lower()):
            return (f"an input id {found[1]} is outside an embedding table of {found[2]} rows: "
                    "the input data does not fit the model (vocab_size or type_vocab_size of "
                    f"--bert_config_file, or another vocabulary){_inputs()}")
    return None


# Float flags for which infinity means something ("never", "always"); NaN never does.
_INFINITE_OK = ("null_score_diff_threshold", "predict_progress_seconds")


def _check_float_flags() -> None:
    """absl's bounds let NaN through (and infinity without an upper bound)."""
    for name in flags.FLAGS:
        flag = flags.FLAGS[name]
        if flag.present and isinstance(flag.value, float) and not math.isfinite(flag.value):
            if math.isnan(flag.value) or name not in _INFINITE_OK:
                raise ValueError(f"flag --{name}={flag.value}: not a finite number")


def _flags_for_help() -> None:
    """--help lists the key flags of the main module (sys.argv[0]: a console script): make
    the flags that pybert's tool modules define (common_flags too) its key flags."""
    values = flags.FLAGS
    for module, defined in values.flags_by_module_dict().items():
        if module.startswith("pybert.cli.") and module != sys.argv[0]:
            for flag in defined:
                values.register_key_flag_for_module(sys.argv[0], flag)


def run_tool(name: str, run: Callable, report: Callable = lambda result, seconds: print(result),
             argv=None) -> None:
    def _main(_):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        start = time.perf_counter()
        try:
            _check_float_flags()
            result = run()
        except Exception as e:
            message = user_error(e)
            if message is None:
                raise
            print(f"{name}: error: {message}", file=sys.stderr)
            sys.exit(1)
        report(result, time.perf_counter() - start)

    _flags_for_help()
    app.run(_main, argv=argv or sys.argv)
