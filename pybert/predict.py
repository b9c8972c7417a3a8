"""Batch prediction on ONNX Runtime with the C++ tokenizer (no TensorFlow needed).

    from pybert.predict import Predictor
    p = Predictor("out/mrpc_onnx")                 # a pybert-export-onnx directory
    p.predict(["a sentence"], ["its pair"])        # {"label": [...], "probabilities": ...}

Texts are tokenized on a thread pool (C++, GIL released), sorted by length
within each chunk so that a batch carries little padding, run through an
ONNX Runtime session (CPU; CUDA with IO binding when onnxruntime-gpu is
installed), and put back in input order. predict_stream() does this for an
unbounded iterator of records with the tokenization of the next chunk
overlapping the inference of the current one; memory is bounded by the chunk
size.
"""

from __future__ import annotations

import numbers
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pybert.export.onnx import INPUT_NAMES, read_metadata


@dataclass
class Stats:
    """Counters of a prediction run: examples, batches and padded vs real tokens."""

    examples: int = 0
    batches: int = 0
    tokens: int = 0
    padded_tokens: int = 0  # tokens computed, padding included
    seconds_inference: float = 0.0

    @property
    def padding_share(self) -> float:
        return 1.0 - self.tokens / self.padded_tokens if self.padded_tokens else 0.0


@dataclass
class Encoded:
    """Ragged word-piece ids of a chunk (the tokenizer's flat form)."""

    ids: np.ndarray
    type_ids: np.ndarray
    row_splits: np.ndarray
    lengths: np.ndarray = field(init=False)

    def __post_init__(self):
        self.lengths = np.diff(self.row_splits).astype(np.int64)

    def __len__(self) -> int:
        return len(self.lengths)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


POOLINGS = ("pooled", "cls", "mean")


def _count(name: str, value, least: int, none_ok: bool = False) -> int | None:
    """An integer argument >= least (NumPy integers too; not a bool), or None if allowed."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}"
                         + (" (or None: automatic)" if none_ok else "") + f", got {value!r}")
    return int(value)


def _cores() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Predictor:
    """An exported model directory (model.onnx + vocab.txt + pybert_model.json).

    precision: "fp32", "int8" or "fp16" (the file must have been exported);
    device: "auto" (CUDA when onnxruntime-gpu sees a GPU, else CPU), "cpu" or "gpu".
    An encoder's vector per text (pooling): "pooled" (the seed's pooled_output, tanh
    of a dense layer over [CLS]), "cls" (the [CLS] row of the sequence output) or
    "mean" (the mean of the sequence output over the text's word pieces, special
    tokens included: sentence-transformers' pooling, e.g. for all-MiniLM-L6-v2);
    normalize: scaled to unit L2 norm (sentence-transformers' Normalize).

    batch_size None: 1 for int8 on the CPU (each row's activations are then quantized
    on their own, so its result does not depend on the other rows; with streams this is
    about as fast as batching there, or faster), else 32. num_streams: batches run at
    the same time on the one session (ONNX Runtime's run() is thread-safe); None: one
    per core for batch size 1 on the CPU, else 1. intra_op_threads: the session's
    thread pool, which the streams share (0: with one stream ONNX Runtime's default,
    else the cores less one per further stream). The defaults follow the device the
    session got (CPU when CUDA was asked for but could not be used). close() (or a
    with block) stops the streams' threads; a Predictor is not for use from several
    threads at once.
    """

    def __init__(
        self,
        model_dir,
        precision: str = "fp32",
        device: str = "auto",
        batch_size: int | None = None,
        intra_op_threads: int = 0,
        tokenizer_threads: int = 0,
        pooling: str = "pooled",
        normalize: bool = False,
        num_streams: int | None = None,
    ):
        import onnxruntime as ort

        from pybert.tokenization import FullTokenizer

        self.model_dir = Path(model_dir)
        self.meta = meta = read_metadata(model_dir)
        batch_size, num_streams = (_count(name, value, 1, none_ok=True) for name, value in (
            ("batch_size", batch_size), ("num_streams", num_streams)))
        intra_op_threads = _count("intra_op_threads", intra_op_threads, 0)
        if precision not in meta["models"]:
            raise ValueError(f"{model_dir}: no {precision} model (exported: "
                             f"{', '.join(meta['models'])}); export with --{precision}"
                             if precision != "fp32" else f"{model_dir}: no fp32 model")
        self.model_path = self.model_dir / meta["models"][precision]
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path}: missing (listed in pybert_model.json)")
        vocab = self.model_dir / meta["vocab_file"]
        if not vocab.is_file():
            raise FileNotFoundError(f"{vocab}: missing (listed in pybert_model.json)")
        self.tokenizer = FullTokenizer(str(vocab), do_lower_case=bool(meta["do_lower_case"]))
        model_vocab = int(meta.get("bert_config", {}).get("vocab_size", self.tokenizer.vocab_size))
        if self.tokenizer.vocab_size > model_vocab:
            raise ValueError(f"{vocab}: {self.tokenizer.vocab_size} tokens, but the model's "
                             f"embedding has {model_vocab} rows (wrong vocab for this model)")
        self.task = meta["task"]
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if (pooling != "pooled" or normalize) and self.task != "encoder":
            raise ValueError(f"pooling={pooling!r}, normalize={bool(normalize)}: for an encoder "
                             f"export only; {model_dir} is a {self.task} model")
        self.pooling, self.normalize = pooling, bool(normalize)
        self.labels = meta.get("labels")
        self.max_seq_length = int(meta["max_seq_length"])
        cores = _cores()
        self.tokenizer_threads = tokenizer_threads or cores

        available = ort.get_available_providers()
        if device == "gpu" and "CUDAExecutionProvider" not in available:
            raise ValueError("device 'gpu': onnxruntime has no CUDAExecutionProvider here "
                             f"(available: {available}); install onnxruntime-gpu")
        if device not in ("auto", "cpu", "gpu"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
        use_gpu = device != "cpu" and "CUDAExecutionProvider" in available

        def settings(gpu: bool) -> tuple[int, int, int]:
            """batch size, streams and intra-op threads (0: ONNX Runtime's default)."""
            batch = batch_size or (1 if precision == "int8" and not gpu else 32)
            streams = num_streams or (cores if batch == 1 and not gpu else 1)
            threads = intra_op_threads or (max(1, cores - streams + 1) if streams > 1 else 0)
            return batch, streams, threads

        def session(gpu: bool, threads: int):
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = threads
            providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu
                         else ["CPUExecutionProvider"])
            try:
                return ort.InferenceSession(str(self.model_path), opts, providers=providers)
            except Exception as e:  # ONNX Runtime's own exception types: a corrupt or cut file
                raise ValueError(f"{self.model_path}: ONNX Runtime cannot load this model "
                                 f"({type(e).__name__}: {str(e)[:300]})") from None

        planned = settings(use_gpu)
        self.session = session(use_gpu, planned[2])
        got_gpu = "CUDAExecutionProvider" in self.session.get_providers()
        if got_gpu != use_gpu and settings(got_gpu) != planned:  # CUDA could not be used
            self.session = session(got_gpu, settings(got_gpu)[2])
        self.device = "gpu" if got_gpu else "cpu"
        self.batch_size, self.num_streams, self.intra_op_threads = settings(got_gpu)
        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) != sorted(INPUT_NAMES):
            raise ValueError(f"{self.model_path}: inputs {names}, expected {list(INPUT_NAMES)}")
        self.output_names = [o.name for o in self.session.get_outputs()]
        if self.task == "encoder":  # the one output the pooling reads
            want = "pooled_output" if pooling == "pooled" else "sequence_output"
            if want not in self.output_names:
                raise ValueError(f"{self.model_path}: no {want} output (outputs "
                                 f"{self.output_names}); export it with pybert-export-onnx")
            self.output_names = [want]
        self.stats = Stats()
        self._pool: ThreadPoolExecutor | None = None  # the streams' threads, made when used
        self._pool_lock = threading.Lock()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- tokenization ---------------------------------------------------------------
    def encode(self, texts: Sequence[str], pairs: Sequence[str | None] | None = None
               ) -> Encoded:
        """Word pieces as the data tool (and the seed) makes them: a pair whose second text
        is None or has no word pieces is encoded as a single text."""
        enc = self.tokenizer.encode_batch(
            texts, pairs, max_seq_length=self.max_seq_length, return_offsets=False, pad=False,
            num_threads=self.tokenizer_threads, empty_pair_as_single=True)
        return Encoded(enc["flat_ids"], enc["flat_type_ids"], enc["row_splits"])

    # -- inference ------------------------------------------------------------------
    def _run(self, feeds: dict) -> list[np.ndarray]:
        if self.device == "gpu":
            binding = self.session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            for name in self.output_names:
                binding.bind_output(name)
            self.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()
        return self.session.run(self.output_names, feeds)

    def _run_all(self, batches: Iterable[tuple[dict, int]]) -> Iterator[list[np.ndarray]]:
        """Each (feeds, padded tokens) batch's outputs, in order, with num_streams batches
        running at a time (at most twice as many in flight: memory stays bounded). If one
        fails, the batches not started are cancelled and the error is raised.
        stats.seconds_inference gets the wall time of this loop (feeds made, models run),
        less the time the caller holds a result."""
        pending: deque = deque()

        def results() -> Iterator[tuple[list[np.ndarray], int]]:
            if self.num_streams == 1:
                for feeds, padded in batches:
                    yield self._run(feeds), padded
                return
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.num_streams,
                                                    thread_name_prefix="pybert-stream")
                pool = self._pool
            for feeds, padded in batches:
                pending.append((pool.submit(self._run, feeds), padded))
                while pending and (len(pending) >= 2 * self.num_streams
                                   or pending[0][0].done()):
                    future, n = pending.popleft()
                    yield future.result(), n
            while pending:
                future, n = pending.popleft()
                yield future.result(), n

        elapsed, start = 0.0, time.perf_counter()
        try:
            for outs, padded in results():
                self.stats.batches += 1
                self.stats.padded_tokens += padded
                elapsed += time.perf_counter() - start
                yield outs
                start = time.perf_counter()
        finally:
            for future, _ in pending:  # after an error: the batches not started stop here
                future.cancel()
            self.stats.seconds_inference += elapsed + time.perf_counter() - start

    def close(self) -> None:
        """Stops the streams' threads (a later call starts new ones)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def run_encoded(self, enc: Encoded) -> dict[str, np.ndarray]:
        """Model outputs for every row of `enc`, in its order. Rows are sorted by length
        and batched, each batch padded to its own longest row."""
        n = len(enc)
        order = np.argsort(enc.lengths, kind="stable")
        # a sequence output is pooled batch by batch (batches differ in length): "embedding"
        keys = ["embedding" if x == "sequence_output" else x for x in self.output_names]
        pieces: dict[str, list] = {key: [] for key in keys}
        batches = [order[lo:lo + self.batch_size] for lo in range(0, n, self.batch_size)]
        masks: list[np.ndarray] = []

        def feeds_of_batches():
            for rows in batches:
                seq = int(enc.lengths[rows].max())
                feeds = {k: np.zeros((len(rows), seq), np.int32) for k in INPUT_NAMES}
                for j, r in enumerate(rows):
                    a, b = enc.row_splits[r], enc.row_splits[r + 1]
                    feeds["input_word_ids"][j, : b - a] = enc.ids[a:b]
                    feeds["input_type_ids"][j, : b - a] = enc.type_ids[a:b]
                    feeds["input_mask"][j, : b - a] = 1
                masks.append(feeds["input_mask"])
                yield feeds, len(rows) * seq

        for i, outs in enumerate(self._run_all(feeds_of_batches())):
            mask, masks[i] = masks[i], None
            for key, value in zip(keys, outs, strict=True):
                if key == "embedding":
                    value = self._pool_rows(value, mask)
                pieces[key].append((batches[i], value))
        self.stats.examples += n
        self.stats.tokens += int(enc.lengths.sum())
        result = {}
        for name, parts in pieces.items():
            if not parts:  # no rows: the model's output shape, 0 rows
                shapes = {o.name: o.shape for o in self.session.get_outputs()}
                dims = (shapes["sequence_output"][2:] if name == "embedding"
                        else shapes[name][1:])
                result[name] = np.zeros((0, *(d if isinstance(d, int) else 0 for d in dims)),
                                        np.float32)
                continue
            # Sequence outputs differ in length between batches: only pooled/row outputs
            # (classifier logits, pooled_output) are gathered here.
            first = parts[0][1]
            out = np.empty((n,) + first.shape[1:], first.dtype)
            for rows, value in parts:
                out[rows] = value
            result[name] = out
        return result

    def _pool_rows(self, sequence: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """[batch, seq, hidden] -> [batch, hidden] float32: the [CLS] row, or the mean
        over the real tokens (float64 sums)."""
        if self.pooling == "cls":
            return sequence[:, 0].astype(np.float32)
        m = mask.astype(np.float64)
        total = np.einsum("bsh,bs->bh", sequence.astype(np.float64), m)
        return (total / np.maximum(m.sum(1, keepdims=True), 1.0)).astype(np.float32)

    @property
    def embedding_key(self) -> str:
        """An encoder's output key: pooled_output (pooling "pooled") or embedding."""
        return "pooled_output" if self.pooling == "pooled" else "embedding"

    def decode(self, outputs: dict[str, np.ndarray]) -> dict:
        """Classifier: label + probabilities; regression: prediction; encoder: pooled_output
        (or, with pooling "cls"/"mean", embedding), unit-norm with normalize."""
        if self.task == "classifier":
            probs = _softmax(outputs["logits"])
            ids = probs.argmax(-1)
            return {"label": [self.labels[i] for i in ids], "label_id": ids,
                    "probabilities": probs}
        if self.task == "regression":
            return {"prediction": outputs["logits"][:, 0].astype(np.float64)}
        if self.task == "encoder":
            key = self.embedding_key
            vectors = outputs["pooled_output" if key == "pooled_output" else "embedding"]
            if self.normalize:
                norms = np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
                vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
            return {key: vectors}
        raise ValueError("a span (SQuAD) model predicts with predict_squad()")

    def predict(self, texts: Sequence[str], pairs: Sequence[str | None] | None = None) -> dict:
        """Predictions for texts (or text pairs), in input order; a row whose pair is None
        (or has no word pieces) is a single text, as in the data tool."""
        if self.task not in ("classifier", "regression", "encoder"):
            raise ValueError(f"a {self.task} model: use predict_squad()")
        for name, value in (("texts", texts), ("pairs", pairs)):
            if isinstance(value, (str, bytes)):
                raise TypeError(f"{name} must be a sequence of strings, not one string "
                                "(wrap a single text in a list)")
        return self.decode(self.run_encoded(self.encode(list(texts),
                                                        None if pairs is None else list(pairs))))

    def predict_stream(self, chunks: Iterable[tuple[list, list[str], list[str] | None]]
                       ) -> Iterator[tuple[list, dict]]:
        """For each (items, texts, pairs) chunk, yields (items, predictions). The next
        chunk is read and tokenized on a background thread while this one runs."""
        it = iter(chunks)

        def load():
            try:
                items, texts, pairs = next(it)
            except StopIteration:
                return None
            return items, self.encode(texts, pairs)

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(load)
            while True:
                got = pending.result()
                if got is None:
                    return
                pending = pool.submit(load)
                items, enc = got
                yield items, self.decode(self.run_encoded(enc))

    # -- SQuAD ------------------------------------------------------------------------
    def predict_squad(self, predict_file, n_best_size: int = 20, max_answer_length: int = 30,
                      null_score_diff_threshold: float = 0.0, version_2_with_negative=None,
                      output_dir=None, verbose: bool = False):
        """Featurizes a SQuAD JSON (C++), runs the span model, decodes the n-best in C++.
        Returns (predictions, nbest, null_odds); writes the seed's three files to output_dir."""
        from pybert import squad as squad_post
        from pybert.data import squad

        if self.task != "span":
            raise ValueError(f"predict_squad needs a span model; {self.model_dir} is a {self.task}")
        v2 = (bool(self.meta.get("version_2_with_negative", False))
              if version_2_with_negative is None else bool(version_2_with_negative))
        data = squad.read_squad(str(predict_file), False, v2)
        feats = squad.featurize(data, self.tokenizer, self.max_seq_length,
                                int(self.meta.get("doc_stride", 128)),
                                int(self.meta.get("max_query_length", 64)), False,
                                num_threads=self.tokenizer_threads)
        a = feats.arrays
        n = len(a["unique_ids"])
        # Features keep their fixed padding (the decoder's top-k runs over all positions,
        # as in the seed); batches are cut in feature order.
        starts, ends = [], []
        batches = (({"input_word_ids": a["input_ids"][lo:lo + self.batch_size].astype(np.int32),
                     "input_mask": a["input_mask"][lo:lo + self.batch_size].astype(np.int32),
                     "input_type_ids": a["segment_ids"][lo:lo + self.batch_size].astype(np.int32)},
                    int(a["input_mask"][lo:lo + self.batch_size].size))
                   for lo in range(0, n, self.batch_size))
        for outs in self._run_all(batches):
            out = dict(zip(self.output_names, outs, strict=True))
            starts.append(out["start_logits"])
            ends.append(out["end_logits"])
        self.stats.examples += len(data)
        self.stats.tokens += int(a["input_mask"].sum())
        start = np.concatenate(starts) if starts else np.zeros((0, self.max_seq_length))
        end = np.concatenate(ends) if ends else np.zeros((0, self.max_seq_length))
        args = (feats.post, None, (a["unique_ids"], start, end), n_best_size, max_answer_length,
                bool(self.meta["do_lower_case"]))
        if output_dir is None:
            return squad_post.postprocess_output(*args, v2, null_score_diff_threshold, verbose,
                                                 num_threads=0)
        os.makedirs(output_dir, exist_ok=True)
        return squad_post.write_predictions(
            *args, os.path.join(output_dir, "predictions.json"),
            os.path.join(output_dir, "nbest_predictions.json"),
            os.path.join(output_dir, "null_odds.json"), v2, null_score_diff_threshold, verbose,
            num_threads=0)
