"""predict: high-throughput batch prediction with an exported ONNX model (pybert-export-onnx).

  pybert-predict --model_dir=out/mrpc_onnx --input_file=glue/MRPC/dev.tsv \\
    --text_a_column="#1 String" --text_b_column="#2 String" --label_column=Quality \\
    --output_file=out/mrpc_dev_predictions.tsv

  pybert-predict --model_dir=out/squad_onnx --input_file=dev-v1.1.json --output_dir=out/squad

Input: TSV (no quoting, as GLUE's files), CSV or JSONL, one example per row;
columns by header name or 0-based index (--text_a_column, optional
--text_b_column for pairs, optional --label_column to report accuracy, or for a
regression model the mean squared error and the Pearson and Spearman
correlations); or a SQuAD JSON for a span model. Output: TSV or JSONL (by
--output_file's extension or --output_format) with the input line number, the
label and one probability per label (classifier), the value and the gold value
(regression; the metrics are those of the written values) or pooled_output
(encoder; --pooling=mean|cls writes an `embedding` instead, --normalize scales it
to unit length); for SQuAD, predictions.json, nbest_predictions.json (and
null_odds.json for v2.0) in --output_dir. A row that does not parse, lacks a
column or has an empty text is reported with its line number and skipped
(--on_error=skip, counted in the summary) or ends the run (--on_error=fail).
Outputs are written under a temporary name and renamed when complete. A run
that is killed or fails part way through leaves <output_file>.incomplete (and
.incomplete.progress); the same command run again continues after the last
chunk written, reading the input from where that chunk ended (its rows before are
not read again), as long as the input file, the model and the flags that decide
the rows are unchanged (otherwise it starts over).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator

from absl import flags

from pybert.cli._runner import run_tool

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Directory written by pybert-export-onnx.")
flags.DEFINE_string("input_file", None, "TSV, CSV, JSONL or SQuAD JSON.")
flags.DEFINE_enum("input_format", "auto", ["auto", "tsv", "csv", "jsonl", "squad"],
                  "Input format (auto: by extension; .json is SQuAD).")
flags.DEFINE_string("text_a_column", "0", "Column name or 0-based index (JSONL: field name).")
flags.DEFINE_string("text_b_column", None, "Second text of a pair (column or field).")
flags.DEFINE_string("label_column", None, "Gold label column or field: accuracy is reported "
                    "(regression: mean squared error, Pearson and Spearman correlations).")
flags.DEFINE_enum("header", "auto", ["auto", "true", "false"],
                  "TSV/CSV first row is a header (auto: when a column is given by name).")
flags.DEFINE_string("output_file", None, "Predictions (.tsv or .jsonl).")
flags.DEFINE_enum("output_format", "auto", ["auto", "tsv", "jsonl"], "Output format.")
flags.DEFINE_string("output_dir", None, "SQuAD: where the prediction files go.")
flags.DEFINE_enum("precision", "fp32", ["fp32", "int8", "fp16"], "Which exported model to run.")
flags.DEFINE_enum("device", "auto", ["auto", "cpu", "gpu"], "auto: GPU when onnxruntime-gpu "
                  "sees one.")
flags.DEFINE_integer("batch_size", None, "Examples per inference batch (default: 1 for int8 "
                     "on the CPU, so that a row's result does not depend on its batch mates, "
                     "else 32).", lower_bound=1)
flags.DEFINE_integer("num_streams", None, "Batches run at the same time on the one model "
                     "(default: one per core for batch size 1 on the CPU, else 1).",
                     lower_bound=1)
flags.DEFINE_integer("chunk_size", 4096,
                     "Examples read, tokenized and sorted by length together (bounds memory).",
                     lower_bound=1)
flags.DEFINE_integer("intra_op_threads", 0, "ONNX Runtime's thread pool, shared by the "
                     "streams (0: one stream: ONNX Runtime's default; more: the cores less "
                     "one per further stream).", lower_bound=0)
flags.DEFINE_enum("on_error", "skip", ["skip", "fail"], "What a bad input row does.")
flags.DEFINE_integer("n_best_size", 20, "SQuAD: n-best predictions per question.",
                     lower_bound=1)
flags.DEFINE_integer("max_answer_length", 30, "SQuAD: longest answer in word pieces.",
                     lower_bound=1)
flags.DEFINE_float("null_score_diff_threshold", 0.0, "SQuAD v2.0 null threshold.")
flags.DEFINE_enum("pooling", "pooled", ["pooled", "cls", "mean"],
                  "Encoder: the vector per text: pooled (the seed's pooled_output), cls (the "
                  "[CLS] row of the sequence output) or mean (mean over its word pieces, "
                  "as sentence-transformers; written as `embedding`).")
flags.DEFINE_bool("normalize", False, "Encoder: scale each vector to unit L2 norm.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")

logger = logging.getLogger("pybert.predict")


class InputError(ValueError):
    """A bad input row (its message names file and line)."""


class _Errors:
    def __init__(self, mode: str):
        self.mode, self.count, self.shown = mode, 0, 0

    def __call__(self, message: str) -> None:
        if self.mode == "fail":
            raise InputError(message)
        self.count += 1
        if self.shown < 20:
            print(f"predict: skipped {message}", file=sys.stderr)
            self.shown += 1
            if self.shown == 20:
                print("predict: (further skipped rows are only counted)", file=sys.stderr)


def _format(path: str, flag: str, table: dict) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in table:
        raise ValueError(f"--{flag}: cannot tell the format of {path} from its extension; "
                         f"give --{flag.replace('file', 'format')}")
    return table[ext]


def _column(spec: str | None, header: list[str] | None, flag: str, path: str):
    if spec is None:
        return None
    if header is not None and spec in header:
        return header.index(spec)
    if spec.lstrip("-").isdigit():
        return int(spec)
    if header is None:
        raise ValueError(f"--{flag} {spec!r}: a column name needs a header row "
                         f"(--header=true), or give a 0-based index")
    raise ValueError(f"--{flag} {spec!r}: no such column in the header of {path} "
                     f"(columns: {header})")


class _Counted:
    """Lines of a text file opened with newline="" (line ends kept), counting the bytes
    read (with errors="surrogateescape" each line encodes back to exactly its bytes) and
    the line feeds: a lone "\r" (in a quoted CSV field, say) ends a line for the csv
    module but not for editors and grep -n, so file lines are counted by "\n".
    drop_cr (TSV, opened with newline="\n"): every "\r" is dropped from the text, as the
    seed's TSV reader (and pybert's data tool) drops it."""

    def __init__(self, f, offset: int, drop_cr: bool = False):
        self.f, self.offset, self.newlines, self.last_ended = f, offset, 0, True
        self.drop_cr = drop_cr

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.f)
        self.offset += len(line.encode("utf-8", "surrogateescape"))
        self.last_ended = line.endswith("\n")
        self.newlines += self.last_ended
        return line.replace("\r", "") if self.drop_cr else line

    @property
    def last_line(self) -> int:
        """The file line (1-based, from where reading started) of the last text read."""
        return self.newlines + (0 if self.last_ended else 1)


@contextlib.contextmanager
def _open_at(path: str, start: int, tsv: bool = False):
    """The file as text from byte `start` (0: the beginning, a UTF-8 BOM skipped and
    counted), as a _Counted; tsv: lines end at "\n" only and lose every "\r"."""
    import io

    raw = open(path, "rb")
    try:
        if start:
            raw.seek(start)
            offset = start
        else:
            offset = 3 if raw.read(3) == b"\xef\xbb\xbf" else 0
            raw.seek(offset)
        with io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape",
                              newline="\n" if tsv else "") as f:
            yield _Counted(f, offset, drop_cr=tsv)
    finally:
        raw.close()


def read_table(path: str, fmt: str, errors: _Errors, start: tuple[int, int] | None = None
               ) -> Iterator[tuple[int, str, str | None, str | None, tuple[int, int]]]:
    """(line, text_a, text_b, label, (byte offset, line) after the row) from a TSV/CSV
    file, a row named by the line it starts on (a quoted field may span lines);
    from `start` (such a position) when given, the header still read from the top."""
    specs = (FLAGS.text_a_column, FLAGS.text_b_column, FLAGS.label_column)
    by_name = any(s is not None and not s.lstrip("-").isdigit() for s in specs)
    has_header = FLAGS.header == "true" or (FLAGS.header == "auto" and by_name)

    def reader_of(f):
        return (csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv"
                else csv.reader(f))

    header, offset, base = None, 0, 0
    if has_header:
        with _open_at(path, 0, fmt == "tsv") as f:
            top = reader_of(f)
            try:
                header = next(top)
            except StopIteration:
                return
            except csv.Error as e:
                raise ValueError(f"{path}:{f.last_line}: {e}") from None
            offset, base = f.offset, f.newlines  # a quoted header field may span lines
    cols = [_column(s, header, flag, path) for s, flag in
            zip(specs, ("text_a_column", "text_b_column", "label_column"), strict=True)]
    if start is not None:
        offset, base = start
    with _open_at(path, offset, fmt == "tsv") as f:
        reader = reader_of(f)
        while True:
            line = base + f.newlines + 1  # a row is named by the line it starts on
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                errors(f"{path}:{base + f.last_line}: {e}")
                continue
            if not row or row == [""]:
                continue
            values = []
            for col, flag in zip(cols, ("text_a_column", "text_b_column", "label_column"),
                                 strict=True):
                if col is None:
                    values.append(None)
                elif col >= len(row) or col < -len(row):
                    values.append(KeyError(f"{path}:{line}: {len(row)} columns, --{flag} "
                                           f"needs column {col}"))
                else:
                    values.append(row[col])
            yield line, *values, (f.offset, base + f.newlines)


def read_jsonl(path: str, errors: _Errors, start: tuple[int, int] | None = None
               ) -> Iterator[tuple[int, str, str | None, str | None, tuple[int, int]]]:
    """As read_table, for JSON lines."""
    offset, base = start if start is not None else (0, 0)
    with _open_at(path, offset) as f:
        for line, text in enumerate(f, base + 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                errors(f"{path}:{line}: not valid JSON ({e.msg})")
                continue
            if not isinstance(obj, dict):
                errors(f"{path}:{line}: expected a JSON object, got {type(obj).__name__}")
                continue
            values = []
            for name, flag in ((FLAGS.text_a_column, "text_a_column"),
                               (FLAGS.text_b_column, "text_b_column"),
                               (FLAGS.label_column, "label_column")):
                if name is None:
                    values.append(None)
                elif name not in obj:
                    values.append(KeyError(f"{path}:{line}: no field {name!r} (--{flag})"))
                elif flag != "label_column" and not isinstance(obj[name], str):
                    values.append(KeyError(f"{path}:{line}: field {name!r} (--{flag}) is "
                                           f"{type(obj[name]).__name__}, not a string"))
                else:
                    v = obj[name]
                    values.append(v if isinstance(v, str) else json.dumps(v))
            yield line, *values, (f.offset, line)


def _utf8(text: str | None) -> bool:
    """False for text with bytes that are not UTF-8 (read as lone surrogates)."""
    if text is None or text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Chunk(list):
    """A chunk's (line, label) items, with where the input is after its last row
    (`position`: byte offset, line) and how many rows were skipped up to there."""

    position: tuple[int, int]
    errors: int


def _gold_number(label: str) -> float | None:
    """A regression label as a finite number, or None."""
    if "_" in label:  # float() reads "1_5" as 15
        return None
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _chunks(rows, errors: _Errors, chunk_size: int, pairs: bool, numeric_labels: bool = False):
    """Valid rows grouped into chunks of (items, texts_a, texts_b); bad rows reported.
    numeric_labels (a regression model): an item's label is its gold value, a float."""
    items, a, b = _Chunk(), [], []
    # Where the input is after the last row received, and the skipped rows up to there
    # (rows the reader skipped itself, past that row, are counted again on a rerun).
    position, skipped = None, errors.count

    def done():
        items.position, items.errors = position, skipped
        return items, a, b if pairs else None

    for line, text_a, text_b, label, at in rows:
        bad = next((v.args[0] for v in (text_a, text_b, label) if isinstance(v, KeyError)),
                   None)
        if bad is None and not (_utf8(text_a) and _utf8(text_b) and _utf8(label)):
            bad = f"{FLAGS.input_file}:{line}: not valid UTF-8"
        if bad is None and (not text_a or not text_a.strip()):
            bad = f"{FLAGS.input_file}:{line}: empty text (--text_a_column)"
        if bad is None and pairs and (not text_b or not text_b.strip()):
            bad = f"{FLAGS.input_file}:{line}: empty text (--text_b_column)"
        if bad is None and numeric_labels and label is not None:
            gold = _gold_number(label)
            if gold is None:
                bad = (f"{FLAGS.input_file}:{line}: label {label!r} is not a number "
                       "(--label_column; a regression model)")
            label = gold
        if bad is not None:
            errors(bad)
        else:
            items.append((line, label))
            a.append(text_a)
            b.append(text_b)
        position, skipped = at, errors.count
        if len(items) == chunk_size:
            yield done()
            items, a, b = _Chunk(), [], []
    if items:
        yield done()


def _write_rows(f, fmt: str, task: str, labels, items, preds, first: bool,
                key: str = "pooled_output") -> None:
    if task == "classifier":
        if fmt == "tsv":
            if first:
                f.write("line\tlabel\t" + "\t".join(f"p_{lab}" for lab in labels) + "\n")
            for (line, _), lab, p in zip(items, preds["label"], preds["probabilities"],
                                         strict=True):
                f.write(f"{line}\t{lab}\t" + "\t".join(f"{x:.6g}" for x in p) + "\n")
        else:
            for (line, _), lab, p in zip(items, preds["label"], preds["probabilities"],
                                         strict=True):
                f.write(json.dumps({"line": line, "label": lab, "probabilities": dict(
                    zip(labels, (round(float(x), 6) for x in p), strict=True))}) + "\n")
    elif task == "regression":  # with --label_column, the gold value too
        if fmt == "tsv" and first:
            f.write("line\tprediction" + ("\tgold" if FLAGS.label_column is not None else "")
                    + "\n")
        for (line, gold), v in zip(items, preds["prediction"], strict=True):
            if fmt == "tsv":
                f.write(f"{line}\t{v:.6g}" + ("" if gold is None else f"\t{gold!r}") + "\n")
            else:
                row = {"line": line, "prediction": round(float(v), 6)}
                if gold is not None:
                    row["gold"] = gold
                f.write(json.dumps(row) + "\n")
    else:  # encoder: pooled_output or embedding (key)
        if fmt == "tsv" and first:
            f.write(f"line\t{key}\n")
        for (line, _), v in zip(items, preds[key], strict=True):
            f.write(f"{line}\t" + " ".join(f"{x:.6g}" for x in v) + "\n" if fmt == "tsv" else
                    json.dumps({"line": line, key: [round(float(x), 6) for x in v]}) + "\n")


def _predictor():
    from pybert.predict import Predictor

    if not FLAGS.model_dir:
        raise ValueError("--model_dir is required")
    return Predictor(FLAGS.model_dir, precision=FLAGS.precision, device=FLAGS.device,
                     batch_size=FLAGS.batch_size, intra_op_threads=FLAGS.intra_op_threads,
                     pooling=FLAGS.pooling, normalize=FLAGS.normalize,
                     num_streams=FLAGS.num_streams)


def run() -> dict:
    if not FLAGS.input_file:
        raise ValueError("--input_file is required")
    if not os.path.isfile(FLAGS.input_file):
        raise FileNotFoundError(f"--input_file {FLAGS.input_file}: file not found")
    fmt = FLAGS.input_format
    if fmt == "auto":
        fmt = _format(FLAGS.input_file, "input_file",
                      {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "squad"})
    if FLAGS.output_file and fmt != "squad":  # before the model is loaded
        from pybert._outputs import check_output_file

        check_output_file(FLAGS.output_file, "--output_file",
                          {"--input_file": [FLAGS.input_file]})
    predictor = _predictor()
    start = time.perf_counter()
    if fmt == "squad" or predictor.task == "span":
        if fmt != "squad" or predictor.task != "span":
            raise ValueError(f"SQuAD input needs a span model and a span model SQuAD input "
                             f"(model task {predictor.task}, input format {fmt})")
        if not FLAGS.output_dir:
            raise ValueError("--output_dir is required for SQuAD input")
        preds, _, _ = predictor.predict_squad(
            FLAGS.input_file, FLAGS.n_best_size, FLAGS.max_answer_length,
            FLAGS.null_score_diff_threshold, output_dir=FLAGS.output_dir)
        return _summary(predictor, start, errors=0, output=FLAGS.output_dir,
                        questions=len(preds))

    if not FLAGS.output_file:
        raise ValueError("--output_file is required")
    if FLAGS.label_column is not None and predictor.task == "encoder":
        raise ValueError("--label_column: an encoder model predicts no labels to score")
    out_fmt = FLAGS.output_format
    if out_fmt == "auto":
        out_fmt = _format(FLAGS.output_file, "output_file", {".tsv": "tsv", ".jsonl": "jsonl"})
    errors = _Errors(FLAGS.on_error)
    tmp = FLAGS.output_file + ".incomplete"
    progress = _Progress(tmp, _settings(predictor, fmt, out_fmt))
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output_file)), exist_ok=True)
    resumed = progress.resume()  # an interrupted run with the same settings: continue it
    if resumed:
        print(f"predict: continuing {tmp} after {progress.examples} examples (input line "
              f"{progress.position[1]})", file=sys.stderr)
        errors.count = progress.errors  # the rows before are not read again
    else:
        progress.discard()  # a partial output of other settings (or none)
    at = progress.position if resumed else None
    rows = (read_jsonl(FLAGS.input_file, errors, at) if fmt == "jsonl"
            else read_table(FLAGS.input_file, fmt, errors, at))
    chunks = _chunks(rows, errors, FLAGS.chunk_size, FLAGS.text_b_column is not None,
                     numeric_labels=predictor.task == "regression")
    from tqdm import tqdm

    try:
        with open(tmp, "a" if resumed else "w", encoding="utf-8") as f, tqdm(
                unit="ex", disable=not FLAGS.progress, file=sys.stderr, smoothing=0.1,
                initial=progress.examples) as bar:
            for items, preds in predictor.predict_stream(chunks):
                _write_rows(f, out_fmt, predictor.task, predictor.labels, items, preds,
                            progress.chunks == 0, predictor.embedding_key)
                correct = labelled = 0
                if predictor.task == "classifier" and FLAGS.label_column is not None:
                    for (_, gold), lab in zip(items, preds["label"], strict=True):
                        labelled += 1
                        correct += gold == lab
                progress.commit(f, items, correct, labelled)
                bar.update(len(items))
        if errors.count and not progress.examples:
            raise ValueError(f"--input_file {FLAGS.input_file}: none of its {errors.count} rows "
                             f"could be predicted (see the skipped rows above); "
                             f"{FLAGS.output_file} not written")
    except BaseException:
        # What was predicted stays for a rerun with the same flags to continue (Ctrl-C, a
        # crash); an output with nothing in it is removed.
        if not progress.chunks:
            progress.discard()
        raise
    correct, labelled = progress.correct, progress.labelled
    extra = {"accuracy": correct / labelled, "labelled": labelled} if labelled else {}
    if predictor.task == "regression" and FLAGS.label_column is not None and progress.examples:
        from pybert.metrics import regression_metrics

        pred, gold = _regression_columns(tmp, out_fmt)
        extra = {**regression_metrics(pred, gold), "labelled": len(gold)}
        if extra.get("non_finite_predictions"):
            print(f"predict: {extra['non_finite_predictions']} predictions are NaN or infinite "
                  "(a diverged model?): the metrics are undefined", file=sys.stderr)
    os.replace(tmp, FLAGS.output_file)
    progress.discard()
    if resumed:
        extra["continued_after"] = progress.resumed_examples
    return _summary(predictor, start, errors=errors.count, output=FLAGS.output_file,
                    examples=progress.examples, **extra)


def _settings(predictor, input_format: str, output_format: str) -> dict:
    """What decides the rows of the output: a rerun continues a partial output only when
    all of it is the same (the input and model files unchanged on disk)."""
    from pybert._outputs import file_identity

    return {"progress_format": 5,  # 2: rows of a CSV numbered by the line they start on;
            # 3: TSV lines end at "\n" only, "\r" dropped; an empty text_b is a single text;
            # 4: a regression output with --label_column has the gold values;
            # 5: an int8 model's batch size (its activations are quantized per batch)
            "input": file_identity(FLAGS.input_file),
            "model": file_identity(predictor.model_path),
            "int8_batch_size": predictor.batch_size if FLAGS.precision == "int8" else None,
            "input_format": input_format, "output_format": output_format,
            **{name: getattr(FLAGS, name) for name in (
                "text_a_column", "text_b_column", "label_column", "header", "chunk_size",
                "on_error", "pooling", "normalize")}}


class _Progress:
    """<output>.incomplete.progress: how many chunks of the input the partial output holds.

    After each chunk the output is flushed to disk first, then this file is replaced, so
    a run killed at any point leaves a progress record that the output holds at least.
    """

    def __init__(self, tmp: str, settings: dict):
        self.tmp, self.path, self.settings = tmp, tmp + ".progress", settings
        self.chunks = self.examples = self.correct = self.labelled = self.bytes = 0
        self.errors = self.resumed_examples = 0
        self.position = (0, 0)  # (byte offset, line) of the input after the last chunk

    def resume(self) -> bool:
        if not os.path.exists(self.tmp):
            return False
        try:
            with open(self.path, encoding="utf-8") as f:
                state = json.load(f)
            size = os.path.getsize(self.tmp)
        except (OSError, ValueError):
            print(f"predict: {self.tmp} has no readable progress record ({self.path}); "
                  "starting over", file=sys.stderr)
            return False
        if (isinstance(state, dict) and isinstance(state.get("settings"), dict)
                and state["settings"].get("progress_format") != self.settings["progress_format"]):
            print(f"predict: {self.tmp} was written by another version of pybert; "
                  "starting over", file=sys.stderr)
            return False
        if (not isinstance(state, dict) or state.get("settings") != self.settings
                or not isinstance(state.get("bytes"), int) or size < state["bytes"]):
            print(f"predict: {self.tmp} is from other input, model or flags; starting over",
                  file=sys.stderr)
            return False
        try:
            values = {key: int(state[key]) for key in (
                "chunks", "examples", "correct", "labelled", "bytes", "errors")}
            if not isinstance(state["position"], list):
                raise TypeError
            position = tuple(int(v) for v in state["position"])
            if len(position) != 2 or min(position) < 0 or min(values.values()) < 0:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            print(f"predict: {self.path} is not readable; starting over", file=sys.stderr)
            return False
        for key, value in values.items():
            setattr(self, key, value)
        self.position = position
        os.truncate(self.tmp, self.bytes)  # rows written after the last record: again
        self.resumed_examples = self.examples
        return True

    def commit(self, f, chunk: _Chunk, correct: int, labelled: int) -> None:
        f.flush()
        os.fsync(f.fileno())
        self.chunks += 1
        self.examples += len(chunk)
        self.correct += correct
        self.labelled += labelled
        self.errors, self.position = chunk.errors, chunk.position
        self.bytes = os.fstat(f.fileno()).st_size
        from pybert._outputs import replace_json

        replace_json(self.path, {
            "settings": self.settings, "chunks": self.chunks, "examples": self.examples,
            "correct": self.correct, "labelled": self.labelled, "bytes": self.bytes,
            "errors": self.errors, "position": list(self.position)})

    def discard(self) -> None:
        for path in (self.tmp, self.path, self.path + ".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _regression_columns(path: str, fmt: str) -> tuple[list[float], list[float]]:
    """The prediction and gold columns of a regression output this tool wrote."""
    pred, gold = [], []
    with open(path, encoding="utf-8") as f:
        if fmt == "tsv":
            next(f)  # the header
            for row in f:
                _, p, g = row.rstrip("\n").split("\t")
                pred.append(float(p))
                gold.append(float(g))
        else:
            for row in f:
                obj = json.loads(row)
                pred.append(obj["prediction"])
                gold.append(obj["gold"])
    return pred, gold


def _summary(predictor, start: float, examples: int | None = None, **extra) -> dict:
    """examples: all in the output (a continued run's too); the rate counts this run's."""
    s = predictor.stats
    wall = time.perf_counter() - start
    return {"examples": s.examples if examples is None else examples,
            "wall_seconds": round(wall, 3),
            "examples_per_second": round(s.examples / wall, 1) if wall > 0 else None,
            "inference_seconds": round(s.seconds_inference, 3),
            "padding_share": round(s.padding_share, 4), "batches": s.batches,
            "precision": FLAGS.precision, "device": predictor.device,
            "batch_size": predictor.batch_size, "num_streams": predictor.num_streams,
            "intra_op_threads": predictor.intra_op_threads or "default", **extra}


def _report(summary: dict, seconds: float) -> None:
    parts = [f"{summary['examples']} examples", f"{summary.get('errors', 0)} errors",
             f"{summary['wall_seconds']:.2f} s", f"{summary['examples_per_second']} ex/s",
             f"padding {100 * summary['padding_share']:.1f}%"]
    if "accuracy" in summary:
        parts.append(f"accuracy {100 * summary['accuracy']:.2f}% of {summary['labelled']}")
    if "mean_squared_error" in summary:
        figures = [f"{label} {'undefined' if summary[key] is None else f'{summary[key]:.4f}'}"
                   for key, label in (("mean_squared_error", "mean squared error"),
                                      ("pearson", "pearson"), ("spearman", "spearman"))]
        parts.append(f"{', '.join(figures)} of {summary['labelled']}")
        if summary.get("non_finite_predictions"):
            parts.append(f"{summary['non_finite_predictions']} predictions not finite")
    if "continued_after" in summary:
        parts.append(f"continued after {summary['continued_after']}")
    print("predict: " + ", ".join(parts) + f" -> {summary['output']}")
    print(json.dumps(summary))


def main(argv=None):
    run_tool("predict", run, report=_report, argv=argv)


if __name__ == "__main__":
    main()
